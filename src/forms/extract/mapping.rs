//! Turns a [`Scan`] into values by field key for one [`FormDef`], trying for each field, in order: a
//! content control tagged with its key (or `key=choice` for boxes), a legacy form field named after it,
//! the cell after its label cell, then a `Label: value` line. The first source that yields a non-empty
//! value wins and is recorded as the value's [`ValueSource`]. Placeholder wording counts as empty.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::boxes;
use super::scan::{Cell, LegacyKind, Scan};
use crate::forms::definition::normalise_label;
use crate::forms::{Choice, ExtractedValue, FieldDef, FieldKind, FormDef, Value, ValueSource};

/// Word's and LibreOffice's placeholder wordings, including the ones Postroom's blank uses; longer
/// spellings first so that removing one never leaves a stray full stop.
const PLACEHOLDERS: &[&str] = &[
    "Click or tap here to enter text.",
    "Click or tap to enter a date.",
    "Choose an item.",
    "Click here to enter text.",
    "Click here to enter a date.",
    "Click or tap here to enter text",
    "Click or tap to enter a date",
    "Choose an item",
];

/// One field being filled: its definition, its choices, and what each source found so far.
struct Slot<'d> {
    field: &'d FieldDef,
    choices: Cow<'d, [Choice]>,
    value: Option<ExtractedValue>,
    /// Per choice: the state of a box tagged `key=choice` (inner controls first, the first one wins).
    tag_boxes: Vec<Option<bool>>,
    legacy_boxes: Vec<Option<bool>>,
    tag_plain: Option<Value>,
    legacy_plain: Option<Value>,
}

impl Slot<'_> {
    fn boxes(&self) -> bool {
        self.field.kind.is_boxes()
    }

    fn set(&mut self, value: Option<Value>, source: ValueSource) {
        if self.value.is_none()
            && let Some(value) = value.filter(|v| !v.is_empty())
        {
            self.value = Some(ExtractedValue { value, source });
        }
    }

    /// A value read from free text in this field's place: typed text, or the boxes ticked in it.
    fn read(&self, text: &str) -> Option<Value> {
        if self.boxes() {
            self.choices_value(&boxes::ticked(text, &self.choices))
        } else {
            clean_text(text).map(Value::Text)
        }
    }

    fn choices_value(&self, ticked: &[usize]) -> Option<Value> {
        let keys: Vec<String> = ticked.iter().filter_map(|i| self.choices.get(*i)).map(|c| c.key.clone()).collect();
        (!keys.is_empty()).then_some(Value::Choices(keys))
    }

    fn boxes_value(&self, states: &[Option<bool>]) -> Option<Value> {
        let ticked: Vec<usize> = states.iter().enumerate().filter(|(_, s)| **s == Some(true)).map(|(i, _)| i).collect();
        self.choices_value(&ticked)
    }

    /// A single box named after a yes/no field means "yes" when ticked.
    fn single_box(&self, checked: Option<bool>) -> Option<Value> {
        (self.field.kind == FieldKind::YesNo && checked == Some(true)).then(|| self.choices_value(&[0])).flatten()
    }

    fn choice_index(&self, choice: &str) -> Option<usize> {
        self.choices.iter().position(|c| c.key == choice)
    }
}

/// Reads every field of `def` out of `scan`. Fields with no value are absent.
pub(super) fn values(scan: &Scan, def: &FormDef) -> BTreeMap<String, ExtractedValue> {
    let mut slots: Vec<Slot<'_>> = def
        .fields()
        .map(|field| {
            let choices = if field.kind == FieldKind::YesNo && field.choices.is_empty() {
                Cow::Owned(field.effective_choices())
            } else {
                Cow::Borrowed(field.choices.as_slice())
            };
            let n = choices.len();
            Slot {
                field,
                choices,
                value: None,
                tag_boxes: vec![None; n],
                legacy_boxes: vec![None; n],
                tag_plain: None,
                legacy_plain: None,
            }
        })
        .collect();

    read_tags(scan, &mut slots);
    read_legacy(scan, &mut slots);
    if slots.iter().any(|s| s.value.is_none()) {
        read_label_cells(scan, &mut slots);
    }
    if slots.iter().any(|s| s.value.is_none()) {
        read_label_lines(scan, &mut slots);
    }
    slots.into_iter().filter_map(|s| Some((s.field.key.clone(), s.value?))).collect()
}

/// Splits `key=choice`; a plain key has no choice.
fn split_tag(tag: &str) -> (&str, Option<&str>) {
    match tag.split_once('=') {
        Some((key, choice)) => (key.trim(), Some(choice.trim())),
        None => (tag.trim(), None),
    }
}

fn read_tags(scan: &Scan, slots: &mut [Slot<'_>]) {
    for control in &scan.controls {
        let (key, choice) = split_tag(scan.name_of(control.tag));
        let Some(slot) = slots.iter_mut().find(|s| s.field.key == key) else { continue };
        let content = scan.text_of(control.content);
        match choice {
            Some(choice) => {
                let index = slot.choice_index(choice);
                if let Some(state) = index.filter(|_| slot.boxes()).and_then(|i| slot.tag_boxes.get_mut(i))
                    && state.is_none()
                {
                    *state = control.checked.or_else(|| boxes::single_state(content));
                }
            }
            None if slot.tag_plain.is_none() => {
                slot.tag_plain = if control.checkbox { slot.single_box(control.checked) } else { slot.read(content) };
            }
            None => {}
        }
    }
    for slot in slots.iter_mut() {
        let value = slot.boxes_value(&slot.tag_boxes).or_else(|| slot.tag_plain.take());
        slot.set(value, ValueSource::Tag);
    }
}

fn read_legacy(scan: &Scan, slots: &mut [Slot<'_>]) {
    for field in &scan.fields {
        let name = scan.name_of(field.name);
        if name.is_empty() {
            continue;
        }
        let result = scan.text_of(field.result);
        for slot in slots.iter_mut().filter(|s| s.value.is_none()) {
            if slot.field.key == name {
                if slot.legacy_plain.is_none() {
                    slot.legacy_plain = if field.kind == LegacyKind::CheckBox {
                        slot.single_box(field.checked)
                    } else {
                        slot.read(result)
                    };
                }
                break;
            }
            // Bookmark names cannot hold `=`, so boxes are also accepted as `key_choice` or `key.choice`.
            let choice = name
                .strip_prefix(slot.field.key.as_str())
                .and_then(|rest| rest.strip_prefix(['=', '_', '.']))
                .and_then(|choice| slot.choice_index(choice));
            if let Some(i) = choice.filter(|_| slot.boxes())
                && let Some(state) = slot.legacy_boxes.get_mut(i)
                && state.is_none()
            {
                *state = field.checked.or_else(|| boxes::single_state(result));
                break;
            }
        }
    }
    for slot in slots.iter_mut() {
        let value = slot.boxes_value(&slot.legacy_boxes).or_else(|| slot.legacy_plain.take());
        slot.set(value, ValueSource::LegacyField);
    }
}

/// Normalised labels of the fields still without a value, for the two label fallbacks.
fn missing_labels(slots: &[Slot<'_>]) -> Vec<(String, usize)> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.value.is_none())
        .map(|(i, s)| (normalise_label(&s.field.label), i))
        .collect()
}

/// Which field a label cell names: its first line (the label; help text follows on the next), or its
/// whole text when a save merged the lines.
fn label_of(cell: &str, labels: &[(String, usize)]) -> Option<usize> {
    let find = |text: &str| {
        let n = normalise_label(text);
        if n.is_empty() {
            return None;
        }
        labels.iter().find(|(l, _)| *l == n).map(|(_, i)| *i)
    };
    let first = cell.lines().find(|l| !l.trim().is_empty())?;
    find(first).or_else(|| find(cell))
}

fn read_label_cells(scan: &Scan, slots: &mut [Slot<'_>]) {
    let labels = missing_labels(slots);
    let mut cells: Vec<&Cell> = scan.cells.iter().collect();
    cells.sort_by_key(|c| c.row);
    for pair in cells.windows(2) {
        let [label, value] = pair else { continue };
        if label.row != value.row {
            continue;
        }
        let Some(slot) = label_of(scan.text_of(label.span), &labels).and_then(|i| slots.get_mut(i)) else { continue };
        if slot.value.is_none() {
            let v = slot.read(scan.text_of(value.span));
            slot.set(v, ValueSource::LabelCell);
        }
    }
}

fn read_label_lines(scan: &Scan, slots: &mut [Slot<'_>]) {
    let labels = missing_labels(slots);
    // A label ends at one of the first few colons, within a label's length: bounding both keeps a line
    // of ten thousand colons from costing ten thousand normalisations of an ever longer prefix.
    let reach = labels.iter().map(|(l, _)| l.len()).max().unwrap_or(0) * 2 + 16;
    for line in &scan.lines {
        let text = scan.text_of(*line);
        for (at, _) in text.match_indices(':').take(8).take_while(|(at, _)| *at <= reach) {
            let (Some(left), Some(right)) = (text.get(..at), text.get(at + 1..)) else { continue };
            let n = normalise_label(left);
            let Some(slot) = labels.iter().find(|(l, _)| *l == n).and_then(|(_, i)| slots.get_mut(*i)) else {
                continue;
            };
            if slot.value.is_none() {
                let v = slot.read(right);
                slot.set(v, ValueSource::LabelLine);
            }
            break;
        }
    }
}

/// Trims a value and each of its lines, dropping placeholder wording; `None` when nothing is left.
pub(super) fn clean_text(raw: &str) -> Option<String> {
    let mut text = Cow::Borrowed(raw);
    if raw.contains("Click") || raw.contains("Choose an item") {
        for p in PLACEHOLDERS {
            if text.contains(p) {
                text = Cow::Owned(text.replace(p, ""));
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim) {
        if out.is_empty() && line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(line);
    }
    out.truncate(out.trim_end().len());
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_blank_lines_are_not_values() {
        assert_eq!(clean_text(" Click or tap here to enter text. "), None);
        assert_eq!(clean_text("Click or tap to enter a date.\n"), None);
        assert_eq!(clean_text("Choose an item."), None);
        assert_eq!(clean_text("\n  first \n\n second\n\n"), Some("first\n\nsecond".to_string()));
        assert_eq!(clean_text("Click or tap here to enter text.Fell at 10pm"), Some("Fell at 10pm".to_string()));
    }

    #[test]
    fn tags_split_into_key_and_choice() {
        assert_eq!(split_tag("expected=yes"), ("expected", Some("yes")));
        assert_eq!(split_tag(" details "), ("details", None));
    }
}
