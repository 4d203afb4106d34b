//! Postroom's people file: `person_id,name,role,email,phone,provider_id,location_id`, one row per
//! registered role held. `person_id` decides "same person", so one person's rows must agree on the name;
//! `location_id` is for registered managers only. Addresses are stored lowercased, the key a sender is
//! looked up by.

use std::collections::{HashMap, HashSet};

use super::directory::Directory;
use super::{CsvInput, Errors, Existing, ImportError};
use crate::ids::{EmailAddress, LocationId, ProviderId};
use crate::registry::Role;
use crate::registry::rows::{self, Record};

const PEOPLE_COLUMNS: [&str; 7] = ["person_id", "name", "role", "email", "phone", "provider_id", "location_id"];

#[derive(Debug, Clone)]
pub(super) struct PersonRow {
    pub(super) line: usize,
    pub(super) person_id: String,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) email: String,
    pub(super) phone: Option<String>,
    pub(super) provider_id: String,
    /// '' for roles that cover the whole provider.
    pub(super) location_id: String,
}

pub(super) fn parse_people(input: CsvInput<'_>, errors: &mut Errors) -> Result<Vec<PersonRow>, ImportError> {
    let file_error =
        |line: Option<usize>, message: String| ImportError::File { file: input.name.into(), line, message };
    let text = rows::decode(input.bytes).map_err(|e| file_error(Some(e.line), e.message))?;
    let mut reader = rows::Reader::new(text);
    let header = loop {
        match reader.next_record() {
            None => return Err(file_error(None, "the people file is empty".into())),
            Some(Err(e)) => return Err(file_error(Some(e.line), e.message)),
            Some(Ok(rec)) if rec.is_blank() => {}
            Some(Ok(rec)) => break rec,
        }
    };
    let keys: Vec<String> = header.fields.iter().map(|f| f.trim().to_ascii_lowercase()).collect();
    let pos = |name: &str| keys.iter().position(|k| k == name);
    let missing: Vec<&str> = PEOPLE_COLUMNS.iter().copied().filter(|c| *c != "phone" && pos(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(file_error(
            Some(header.line),
            format!(
                "the first row must be the header {}; it has no {} column",
                PEOPLE_COLUMNS.join(","),
                missing.join(", no ")
            ),
        ));
    }
    let col = |rec: &Record, name: &str| pos(name).map_or(String::new(), |i| rec.get(i).to_string());

    let mut out: Vec<PersonRow> = Vec::new();
    let mut seen: HashMap<(String, Role, String, String), usize> = HashMap::new();
    let mut names: HashMap<String, (String, usize)> = HashMap::new();
    while let Some(rec) = reader.next_record() {
        let rec = rec.map_err(|e| file_error(Some(e.line), e.message))?;
        if rec.is_blank() {
            continue;
        }
        let line = rec.line;
        if rec.fields.len() > header.fields.len()
            && rec.fields[header.fields.len()..].iter().any(|f| !f.trim().is_empty())
        {
            errors.add(
                input.name,
                line,
                format!(
                    "the row has {} values but the header names {} columns: a value containing a comma must be in \
                     double quotes",
                    rec.fields.len(),
                    header.fields.len()
                ),
            );
            continue;
        }
        let mut problems: Vec<String> = Vec::new();
        let person_id = col(&rec, "person_id");
        let name = col(&rec, "name");
        let raw_role = col(&rec, "role");
        let raw_email = col(&rec, "email");
        let phone = Some(col(&rec, "phone")).filter(|p| !p.is_empty());
        let raw_provider = col(&rec, "provider_id");
        let raw_location = col(&rec, "location_id");
        if person_id.is_empty() {
            problems.push("person_id is empty; every row needs the ID of the person holding the role".into());
        }
        if name.is_empty() {
            problems.push("name is empty".into());
        }
        let role = Role::parse(&raw_role);
        if role.is_none() {
            problems.push(format!(
                "role \"{raw_role}\" is not one of {}",
                Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let email = match EmailAddress::parse(&raw_email) {
            Ok(e) => Some(e.comparison_key().to_string()),
            Err(e) => {
                problems.push(format!("email \"{raw_email}\" is not a valid address: {e}"));
                None
            }
        };
        let provider_id = ProviderId::parse(&raw_provider);
        if provider_id.is_none() {
            problems.push(format!(
                "provider_id \"{raw_provider}\" is neither a CQC ID (1- and 9 to 11 digits) nor an NHS trust code \
                 (like RX1)"
            ));
        }
        let location_id = match role {
            Some(Role::RegisteredManager) if raw_location.is_empty() => {
                problems.push("a registered_manager row needs the location_id of the location managed".into());
                None
            }
            Some(Role::RegisteredManager) => match LocationId::parse(&raw_location) {
                Some(l) => Some(l.as_str().to_string()),
                None => {
                    problems.push(format!(
                        "location_id \"{raw_location}\" is neither a CQC ID (1- and 9 to 11 digits) nor an NHS site \
                         code (like RX1CC)"
                    ));
                    None
                }
            },
            Some(r) if !raw_location.is_empty() => {
                problems.push(format!(
                    "location_id is only for registered_manager rows; a {} covers every location of the provider, \
                     so leave location_id empty",
                    r.as_str()
                ));
                None
            }
            _ => Some(String::new()),
        };
        let (Some(role), Some(email), Some(provider_id), Some(location_id), true) =
            (role, email, provider_id, location_id, problems.is_empty())
        else {
            for message in problems {
                errors.add(input.name, line, message);
            }
            continue;
        };
        let provider_id = provider_id.as_str().to_string();
        let key = (person_id.clone(), role, provider_id.clone(), location_id.clone());
        if let Some(first) = seen.get(&key) {
            errors.add(input.name, line, format!("repeats line {first} (same person, role, provider and location)"));
            continue;
        }
        match names.get(&person_id) {
            Some((other, first)) if *other != name => {
                errors.add(
                    input.name,
                    line,
                    format!(
                        "person {person_id} is named \"{name}\" here but \"{other}\" on line {first}; one person_id \
                         is one person, so the names must agree"
                    ),
                );
                continue;
            }
            Some(_) => {}
            None => {
                names.insert(person_id.clone(), (name.clone(), line));
            }
        }
        seen.insert(key, line);
        out.push(PersonRow { line, person_id, name, role, email, phone, provider_id, location_id });
    }
    Ok(out)
}

/// The people file may name only providers (and, for managers, locations of that provider) that this
/// import's care directory lists or an earlier import recorded.
pub(super) fn check_people_references(
    file: &str,
    rows: &[PersonRow],
    dir: Option<&Directory>,
    existing: &Existing,
    errors: &mut Errors,
) {
    let listed: HashSet<&str> =
        dir.map(|d| d.providers.iter().map(|p| p.provider_id.as_str()).collect()).unwrap_or_default();
    for row in rows {
        let known = listed.contains(row.provider_id.as_str()) || existing.providers.contains_key(&row.provider_id);
        if !known {
            errors.add(
                file,
                row.line,
                format!(
                    "provider {} is not in the registry (neither in this care directory nor in an earlier import); \
                     check the ID, or import the care directory that lists it",
                    row.provider_id
                ),
            );
            continue;
        }
        if row.location_id.is_empty() {
            continue;
        }
        let owner = dir
            .and_then(|d| d.location_provider.get(&row.location_id))
            .or_else(|| existing.locations.get(&row.location_id).map(|l| &l.provider_id));
        match owner {
            None => errors.add(
                file,
                row.line,
                format!(
                    "location {} is not in the registry (neither in this care directory nor in an earlier import)",
                    row.location_id
                ),
            ),
            Some(owner) if *owner != row.provider_id => errors.add(
                file,
                row.line,
                format!(
                    "location {} belongs to provider {owner}, not to provider {}; a registered manager's row names \
                     the location's own provider",
                    row.location_id, row.provider_id
                ),
            ),
            Some(_) => {}
        }
    }
}
