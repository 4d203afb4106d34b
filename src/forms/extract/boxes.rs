//! Tick boxes as they survive in text. A checkbox control keeps `w14:checked`, but after LibreOffice or a
//! .doc round trip only a glyph (☒/☐), typed `[x]`, or a lone `X` is left, followed by the choice's label.
//! This module reads such text back into ticked choices; it knows nothing of XML.

use crate::forms::Choice;
use crate::forms::definition::normalise_label;

/// The glyph the reader writes into its transcript for a box it knows is ticked.
pub(super) const TICKED: char = '\u{2612}';
/// The glyph the reader writes for a box it knows is not ticked.
pub(super) const UNTICKED: char = '\u{2610}';

/// Whether a character is a box glyph, and if so whether it reads as ticked.
pub(super) fn glyph(c: char) -> Option<bool> {
    match c {
        '\u{2612}' | '\u{2611}' | '\u{25A0}' | '\u{2713}' | '\u{2714}' | '\u{2717}' | '\u{2718}' | '\u{22A0}' => {
            Some(true)
        }
        '\u{2610}' | '\u{25A1}' | '\u{25A2}' | '\u{274F}' | '\u{2750}' | '\u{2751}' | '\u{2752}' => Some(false),
        _ => None,
    }
}

/// Splits text into segments, each starting at a box mark (ticked or not) and running to the next mark
/// or line end. Text before the first mark on a line forms a segment with no mark.
pub(super) fn segments(text: &str) -> Vec<(Option<bool>, &str)> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut mark = None;
        let mut start = 0;
        let mut prev_space = true;
        let mut iter = line.char_indices().peekable();
        while let Some((i, c)) = iter.next() {
            let rest = line.get(i..).unwrap_or("");
            let found = if let Some(state) = glyph(c) {
                Some((state, c.len_utf8()))
            } else if c == '[' {
                bracket(rest)
            } else if (c == 'x' || c == 'X') && prev_space && iter.peek().is_none_or(|(_, n)| n.is_whitespace()) {
                Some((true, 1))
            } else {
                None
            };
            prev_space = c.is_whitespace();
            if let Some((state, len)) = found {
                out.push((mark, line.get(start..i).unwrap_or("")));
                mark = Some(state);
                start = i + len;
                prev_space = true;
                // Skip the rest of a multi-character mark such as `[x]`.
                while iter.peek().is_some_and(|(j, _)| *j < start) {
                    iter.next();
                }
            }
        }
        out.push((mark, line.get(start..).unwrap_or("")));
    }
    out.retain(|(mark, seg)| mark.is_some() || !seg.trim().is_empty());
    out
}

/// `[x]`, `[X]`, `[✓]` read as ticked; `[ ]` and `[]` as unticked.
fn bracket(rest: &str) -> Option<(bool, usize)> {
    for (pat, state) in
        [("[x]", true), ("[X]", true), ("[\u{2713}]", true), ("[\u{2714}]", true), ("[ ]", false), ("[]", false)]
    {
        if rest.starts_with(pat) {
            return Some((state, pat.len()));
        }
    }
    None
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

/// The state of one box from its visible content: a single mark, else unknown.
pub(super) fn single_state(text: &str) -> Option<bool> {
    let mut marks = segments(text).into_iter().filter_map(|(m, _)| m);
    match (marks.next(), marks.next()) {
        (Some(state), None) => Some(state),
        _ => None,
    }
}

/// Which choice a piece of text names: its label or key (normalised), or a label it starts with.
pub(super) fn match_choice(text: &str, choices: &[Choice]) -> Option<usize> {
    match_choice_with(text, choices, true)
}

fn match_choice_with(text: &str, choices: &[Choice], allow_prefix: bool) -> Option<usize> {
    let n = normalise_label(text.trim_matches(|c: char| c.is_whitespace() || c == '.' || c == ','));
    if n.is_empty() {
        return None;
    }
    let labels: Vec<String> = choices.iter().map(|c| normalise_label(&c.label)).collect();
    if let Some(i) = labels.iter().zip(choices).position(|(l, c)| *l == n || c.key == n) {
        return Some(i);
    }
    if !allow_prefix {
        return None;
    }
    labels
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            !l.is_empty()
                && n.starts_with(l.as_str())
                && n.get(l.len()..).is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric()))
        })
        .max_by_key(|(_, l)| l.len())
        .map(|(i, _)| i)
}

/// The ticked choices in a piece of text, by index into `choices`. With marks, a choice counts when the
/// mark before its label is ticked; without any, text naming a choice (a typed answer or a drop-down's
/// shown text) counts.
pub(super) fn ticked(text: &str, choices: &[Choice]) -> Vec<usize> {
    // A box field's answer is a few lines; a cell of megabytes is read no further than this.
    let segs = segments(truncate(text, 16 * 1024));
    let marked = segs.iter().any(|(m, _)| m.is_some());
    let mut found = Vec::new();
    for (mark, seg) in segs {
        if marked {
            if mark == Some(true) {
                found.extend(match_choice(seg, choices));
            }
        } else if let Some(i) = match_choice_with(seg, choices, false) {
            found.push(i);
        } else {
            // A typed list ("Physical, sexual"), or one answer with a remark after it.
            found.extend(seg.split([',', ';', '/']).filter_map(|part| match_choice(part, choices)));
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(pairs: &[(&str, &str)]) -> Vec<Choice> {
        pairs.iter().map(|(k, l)| Choice { key: k.to_string(), label: l.to_string() }).collect()
    }

    #[test]
    fn glyphs_before_labels_tick_those_labels() {
        let yes_no = choices(&[("yes", "Yes"), ("no", "No")]);
        assert_eq!(ticked("\u{2610} Yes\n\u{2612} No", &yes_no), [1]);
        assert_eq!(ticked("[] Yes [x] No", &yes_no), [1]);
        assert_eq!(ticked("[X] Yes [ ] No", &yes_no), [0]);
        assert_eq!(ticked("X Yes   No", &yes_no), [0]);
        assert_eq!(ticked("\u{2610} Yes \u{2610} No", &yes_no), Vec::<usize>::new());
        assert_eq!(ticked("yes", &yes_no), [0]);
    }

    #[test]
    fn multi_choice_reads_every_ticked_box_and_typed_lists() {
        let abuse = choices(&[("physical", "Physical"), ("sexual", "Sexual"), ("financial", "Financial or material")]);
        assert_eq!(ticked("\u{2611} Physical \u{2610} Sexual \u{2714} Financial or material", &abuse), [0, 2]);
        assert_eq!(ticked("Sexual, physical", &abuse), [0, 1]);
        assert_eq!(ticked("\u{2612} Financial or material (see notes)", &abuse), [2]);
        assert_eq!(ticked("\u{2612} Xylophone", &abuse), Vec::<usize>::new());
    }

    #[test]
    fn single_box_state_comes_from_its_only_mark() {
        assert_eq!(single_state("\u{2612}"), Some(true));
        assert_eq!(single_state(" \u{2610} "), Some(false));
        assert_eq!(single_state("x"), Some(true));
        assert_eq!(single_state("\u{2612} \u{2610}"), None);
        assert_eq!(single_state(""), None);
    }
}
