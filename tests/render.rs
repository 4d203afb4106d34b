//! Rendering every embedded form through the public API: the parts of the package, a tag for every field
//! and box, the identity stamps, repeatable bytes, filled rendering; and the key conventions the form
//! definitions share, which duplicate detection, validation and linking rely on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read};

use postroom::forms::render::{PARTS, render};
use postroom::forms::{Catalog, FieldKind, FormDef, Value};

fn catalog() -> Catalog {
    Catalog::embedded().expect("embedded forms parse")
}

fn parts_of(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).expect("entry");
        let mut s = String::new();
        f.read_to_string(&mut s).expect("utf-8 part");
        out.insert(f.name().expect("name").to_string(), s);
    }
    out
}

fn assert_well_formed(name: &str, xml: &str) {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0i64;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(_)) => depth += 1,
            Ok(quick_xml::events::Event::End(_)) => depth -= 1,
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{name} is not well-formed XML: {e}"),
        }
    }
    assert_eq!(depth, 0, "{name}: unbalanced elements");
}

#[test]
fn all_twelve_forms_have_a_current_version_and_death_keeps_an_older_one() {
    let cat = catalog();
    let ids: BTreeSet<&str> = cat.current_forms().map(|d| d.id.as_str()).collect();
    for id in [
        "death",
        "abuse",
        "serious_injury",
        "event_stopping_service",
        "detained_death",
        "dols_outcome",
        "police_incident",
        "detained_absence",
        "detained_absence_return",
        "manager_absence",
        "manager_return",
        "contact_details",
    ] {
        assert!(ids.contains(id), "no form {id}");
        assert_eq!(cat.current(id).unwrap().version.as_str(), "2026.1", "{id}");
    }
    let old = cat.get("death", "2025.1").expect("the stale death form");
    let new = cat.current("death").unwrap();
    assert_ne!(old.fields().map(|f| &f.key).collect::<Vec<_>>(), new.fields().map(|f| &f.key).collect::<Vec<_>>());
    for id in ["death", "abuse", "detained_death"] {
        assert!(cat.current(id).unwrap().urgent, "{id} is urgent");
    }
    for id in ["detained_absence", "detained_absence_return"] {
        assert_eq!(cat.current(id).unwrap().mailbox, "mental_health");
    }
    assert_eq!(cat.current("detained_absence_return").unwrap().part_of.as_deref(), Some("detained_absence"));
    assert_eq!(cat.current("manager_return").unwrap().part_of.as_deref(), Some("manager_absence"));
    assert_eq!(cat.current("death").unwrap().mailbox, "notifications");
}

#[test]
fn every_form_renders_all_parts_with_a_tag_per_field_and_box_and_its_identity() {
    for def in catalog().all() {
        let parts = parts_of(&render(def, None).unwrap());
        let names: BTreeSet<&str> = parts.keys().map(String::as_str).collect();
        assert_eq!(names, PARTS.iter().copied().collect(), "{}", def.id);
        for (name, xml) in &parts {
            assert_well_formed(name, xml);
        }
        let doc = &parts["word/document.xml"];
        for f in def.fields() {
            if f.kind.is_boxes() {
                for c in f.effective_choices() {
                    let tag = format!("<w:tag w:val=\"{}={}\"/>", f.key, c.key);
                    assert_eq!(doc.matches(&tag).count(), 1, "{} {}", def.id, tag);
                }
            } else {
                let tag = format!("<w:tag w:val=\"{}\"/>", f.key);
                assert_eq!(doc.matches(&tag).count(), 1, "{} {}", def.id, tag);
            }
        }
        let custom = &parts["docProps/custom.xml"];
        assert!(custom.contains(&format!("name=\"postroom.form\"><vt:lpwstr>{}</vt:lpwstr>", def.id)));
        assert!(custom.contains(&format!("name=\"postroom.version\"><vt:lpwstr>{}</vt:lpwstr>", def.version)));
        let stamp = format!("Postroom form {} version {}", def.id, def.version);
        assert!(parts["word/footer1.xml"].contains(&format!("<w:t>{stamp}</w:t>")), "{}", def.id);
        assert!(parts["docProps/core.xml"].contains(&format!("<dc:subject>{stamp}</dc:subject>")));
        assert!(doc.contains("mc:Ignorable=\"w14\""));
        assert!(parts["[Content_Types].xml"].contains("/docProps/custom.xml"));
    }
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    for def in catalog().all() {
        assert_eq!(render(def, None).unwrap(), render(def, None).unwrap(), "{}", def.id);
    }
}

/// A plausible value for every field: text mentioning its key, the last choice ticked.
fn every_value(def: &FormDef) -> BTreeMap<String, Value> {
    def.fields()
        .map(|f| {
            let v = match f.kind {
                k if k.is_boxes() => Value::Choices(vec![f.effective_choices().last().unwrap().key.clone()]),
                FieldKind::Date => Value::Text("2026-11-20".into()),
                _ => Value::Text(format!("value of {} & <more>", f.key)),
            };
            (f.key.clone(), v)
        })
        .collect()
}

#[test]
fn a_form_filled_in_every_field_shows_every_value_and_no_placeholder() {
    for def in catalog().current_forms() {
        let values = every_value(def);
        let doc = parts_of(&render(def, Some(&values)).unwrap()).remove("word/document.xml").unwrap();
        assert!(!doc.contains("showingPlcHdr"), "{}", def.id);
        for f in def.fields() {
            match &values[&f.key] {
                Value::Text(_) if f.kind == FieldKind::Date => assert!(doc.contains("<w:t>20/11/2026</w:t>")),
                Value::Text(_) => {
                    assert!(doc.contains(&format!("value of {} &amp; &lt;more&gt;", f.key)), "{}", f.key)
                }
                Value::Choices(keys) => {
                    let at = doc.find(&format!("w:val=\"{}={}\"", f.key, keys[0])).unwrap();
                    let sdt = &doc[at..at + doc[at..].find("</w:sdt>").unwrap()];
                    assert!(sdt.contains("<w14:checked w14:val=\"1\"/>") && sdt.contains('\u{2612}'), "{}", f.key);
                }
            }
        }
        let boxes: usize = def.fields().filter(|f| f.kind.is_boxes()).count();
        assert_eq!(doc.matches("<w14:checked w14:val=\"1\"/>").count(), boxes, "{}", def.id);
    }
}

#[test]
fn a_value_for_a_field_the_form_lacks_is_an_error() {
    let cat = catalog();
    let def = cat.current("death").unwrap();
    let values = BTreeMap::from([("no_such_field".to_string(), Value::Text("x".into()))]);
    assert!(render(def, Some(&values)).unwrap_err().to_string().contains("no_such_field"));
}

const AGE_KEYS: [&str; 14] = [
    "stillborn",
    "age_under_1",
    "age_1_4",
    "age_5_11",
    "age_12_15",
    "age_16_17",
    "age_18_24",
    "age_25_34",
    "age_35_44",
    "age_45_54",
    "age_55_64",
    "age_65_74",
    "age_75_84",
    "age_85_plus",
];

#[test]
fn forms_share_the_common_keys_and_types() {
    let provider_level = ["contact_details", "manager_absence", "manager_return"];
    let incidents = [
        "death",
        "abuse",
        "serious_injury",
        "event_stopping_service",
        "detained_death",
        "dols_outcome",
        "police_incident",
        "detained_absence",
    ];
    for def in catalog().all() {
        let kind = |key: &str| def.field(key).map(|f| (f.kind, f.required));
        let id = def.id.as_str();
        assert_eq!(kind("provider_id"), Some((FieldKind::ProviderId, true)), "{id}");
        assert_eq!(kind("provider_name"), Some((FieldKind::Text, true)), "{id}");
        assert_eq!(kind("provider_reference"), Some((FieldKind::Text, false)), "{id}");
        assert_eq!(kind("date_submitted"), Some((FieldKind::Date, true)), "{id}");
        assert_eq!(kind("notifier_email"), Some((FieldKind::Email, true)), "{id}");
        assert_eq!(kind("notifier_phone"), Some((FieldKind::Phone, true)), "{id}");
        for key in ["notifier_name", "notifier_job_title", "location_name", "location_postcode", "regulated_activity"] {
            assert_eq!(kind(key).map(|k| k.0), Some(FieldKind::Text), "{id} {key}");
        }
        assert_eq!(kind("contact_name"), Some((FieldKind::Text, false)), "{id}");
        let location = kind("location_id").expect("location_id");
        assert_eq!(location.0, FieldKind::LocationId);
        assert!(location.1 || provider_level.contains(&id), "{id}: location_id must be required");
        if incidents.contains(&id) {
            assert_eq!(kind("event_date"), Some((FieldKind::Date, true)), "{id}");
        }
        if let Some(f) = def.field("event_time") {
            assert_eq!(f.kind, FieldKind::Time, "{id}");
        }
        if let Some(f) = def.field("person_age_range") {
            assert_eq!(f.kind, FieldKind::Choice);
            let keys: Vec<&str> = f.choices.iter().map(|c| c.key.as_str()).collect();
            assert_eq!(keys, AGE_KEYS, "{id}");
            assert_eq!(kind("person_identifier").map(|k| k.0), Some(FieldKind::Text), "{id}");
        }
        if let Some(f) = def.field("police_reference") {
            assert!(
                f.required
                    || f.required_when.as_ref().is_some_and(|c| c.field == "police_informed" && c.equals == "yes"),
                "{id}"
            );
        }
    }
    let cat = catalog();
    let abuse = cat.current("abuse").unwrap();
    assert_eq!(abuse.field("abuse_types").unwrap().kind, FieldKind::MultiChoice);
    let injury = cat.current("serious_injury").unwrap();
    assert_eq!(injury.field("seriousness_criteria").unwrap().kind, FieldKind::MultiChoice);
    let absence = cat.current("manager_absence").unwrap();
    assert!(
        absence.field("absence_start").unwrap().allow_future && absence.field("expected_return").unwrap().allow_future
    );
    assert_eq!(cat.current("manager_return").unwrap().field("return_date").unwrap().kind, FieldKind::Date);
    assert_eq!(cat.current("detained_absence_return").unwrap().field("return_date").unwrap().kind, FieldKind::Date);
    let cause = cat.current("death").unwrap().field("cause_of_death").unwrap();
    assert_eq!(
        cause.required_when.as_ref().map(|c| (c.field.as_str(), c.equals.as_str())),
        Some(("cause_known", "yes"))
    );
}
