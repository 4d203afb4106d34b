//! The regulator's care directory, in either published layout: the public directory (`Name, ...,
//! CQC Location ID (for office use only), CQC Provider ID (for office use only)`, after a few lines of
//! preamble) and the fuller active-locations file (`Location ID, Location Name, ..., Provider ID, Provider
//! Name, Provider Nominated Individual Name, ...`). The header is the first row naming a location ID column;
//! columns are found by name, so their order and any columns we do not use do not matter.

use std::collections::HashMap;

use super::{CsvInput, Errors, ImportError};
use crate::ids::{LocationId, ProviderId};
use crate::registry::rows::{self, Record};

/// The columns the importer reads, each with the header names it answers to (after [`header_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    LocationId,
    ProviderId,
    Name,
    AlsoKnownAs,
    Address,
    Street,
    Line2,
    City,
    County,
    Postcode,
    Phone,
    LocalAuthority,
    Region,
    LocationType,
    LocationSince,
    ProviderName,
    ProviderType,
    NominatedIndividual,
    MainPartner,
    ProviderSince,
}

const COLUMNS: &[(Col, &[&str])] = &[
    (Col::LocationId, &["location id"]),
    (Col::ProviderId, &["provider id"]),
    (Col::Name, &["name", "location name"]),
    (Col::AlsoKnownAs, &["also known as", "location also known as"]),
    (Col::Address, &["address"]),
    (Col::Street, &["location street address"]),
    (Col::Line2, &["location address line 2"]),
    (Col::City, &["location city"]),
    (Col::County, &["location county"]),
    (Col::Postcode, &["postcode", "location postal code", "location postcode"]),
    (Col::Phone, &["phone number", "location telephone number", "location phone number"]),
    (Col::LocalAuthority, &["local authority", "location local authority"]),
    (Col::Region, &["region", "location region"]),
    (Col::LocationType, &["location type/sector", "location type"]),
    (Col::LocationSince, &["location hsca start date"]),
    (Col::ProviderName, &["provider name"]),
    (Col::ProviderType, &["provider type/sector", "provider type"]),
    (Col::NominatedIndividual, &["provider nominated individual name"]),
    (Col::MainPartner, &["provider main partner name"]),
    (Col::ProviderSince, &["provider hsca start date"]),
];

/// A header cell reduced to what identifies it: lower case, parenthesised notes and a leading "CQC"
/// dropped, spaces collapsed; "CQC Location ID (for office use only)" becomes "location id".
fn header_key(cell: &str) -> String {
    let mut text = String::with_capacity(cell.len());
    let mut depth = 0usize;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => text.extend(c.to_lowercase()),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let words = if words.first() == Some(&"cqc") { &words[1..] } else { &words[..] };
    words.join(" ")
}

struct Columns {
    index: [Option<usize>; COLUMNS.len()],
    width: usize,
}

impl Columns {
    fn from_header(header: &Record) -> Columns {
        let mut index = [None; COLUMNS.len()];
        for (i, cell) in header.fields.iter().enumerate() {
            let key = header_key(cell);
            if let Some(pos) = COLUMNS.iter().position(|(_, names)| names.contains(&key.as_str())) {
                // The first column of a name wins; a repeated one is ignored.
                index[pos].get_or_insert(i);
            }
        }
        Columns { index, width: header.fields.len() }
    }

    fn pos(&self, col: Col) -> Option<usize> {
        COLUMNS.iter().position(|(c, _)| *c == col).and_then(|p| self.index[p])
    }

    fn has(&self, col: Col) -> bool {
        self.pos(col).is_some()
    }

    fn get<'r>(&self, rec: &'r Record, col: Col) -> &'r str {
        self.pos(col).map_or("", |i| rec.get(i))
    }

    fn opt(&self, rec: &Record, col: Col) -> Option<String> {
        Some(self.get(rec, col)).filter(|s| !s.is_empty()).map(str::to_string)
    }
}

/// Which optional columns the file has: a column the file lacks leaves the stored value alone on
/// re-import (the public directory has no nominated individual; it must not erase one the fuller file set).
#[derive(Debug, Clone, Copy)]
pub(super) struct Present {
    pub(super) also_known_as: bool,
    pub(super) address: bool,
    pub(super) postcode: bool,
    pub(super) phone: bool,
    pub(super) local_authority: bool,
    pub(super) region: bool,
    pub(super) location_type: bool,
    pub(super) location_since: bool,
    pub(super) sector: bool,
    pub(super) nominated_individual: bool,
    pub(super) main_partner: bool,
    pub(super) provider_since: bool,
}

#[derive(Debug, Clone)]
pub(super) struct DirProvider {
    pub(super) provider_id: String,
    pub(super) name: String,
    pub(super) sector: Option<String>,
    pub(super) nominated_individual: Option<String>,
    pub(super) main_partner: Option<String>,
    pub(super) registered_since: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct DirLocation {
    pub(super) line: usize,
    pub(super) location_id: String,
    pub(super) provider_id: String,
    pub(super) name: String,
    pub(super) also_known_as: Option<String>,
    pub(super) address: Option<String>,
    pub(super) postcode: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) local_authority: Option<String>,
    pub(super) region: Option<String>,
    pub(super) location_type: Option<String>,
    pub(super) registered_since: Option<String>,
}

pub(super) struct Directory {
    pub(super) providers: Vec<DirProvider>,
    pub(super) locations: Vec<DirLocation>,
    pub(super) present: Present,
    /// location ID -> provider ID, for checking the people file against this directory.
    pub(super) location_provider: HashMap<String, String>,
}

pub(super) fn parse_directory(input: CsvInput<'_>, errors: &mut Errors) -> Result<Directory, ImportError> {
    let file_error =
        |line: Option<usize>, message: String| ImportError::File { file: input.name.into(), line, message };
    let text = rows::decode(input.bytes).map_err(|e| file_error(Some(e.line), e.message))?;
    let mut reader = rows::Reader::new(text);

    let header = loop {
        match reader.next_record() {
            None => {
                return Err(file_error(
                    None,
                    "no header row found: a care directory has a row naming its columns, including \
                     \"CQC Location ID (for office use only)\" or \"Location ID\"; is this the right file?"
                        .into(),
                ));
            }
            Some(Err(e)) => return Err(file_error(Some(e.line), e.message)),
            Some(Ok(rec)) if rec.fields.iter().any(|f| header_key(f) == "location id") => break rec,
            Some(Ok(_)) => {} // preamble
        }
    };
    let cols = Columns::from_header(&header);
    let missing: Vec<&str> = [
        (Col::ProviderId, "\"CQC Provider ID (for office use only)\" or \"Provider ID\""),
        (Col::Name, "\"Name\" or \"Location Name\""),
        (Col::ProviderName, "\"Provider name\""),
    ]
    .iter()
    .filter(|(c, _)| !cols.has(*c))
    .map(|(_, names)| *names)
    .collect();
    if !missing.is_empty() {
        return Err(file_error(
            Some(header.line),
            format!(
                "the header row has no {} column; the importer reads the care directory layout (Name, ..., \
                 CQC Location ID, CQC Provider ID) and the active-locations layout (Location ID, Location Name, \
                 ..., Provider ID, Provider Name)",
                missing.join(", no ")
            ),
        ));
    }
    let split_address = [Col::Street, Col::Line2, Col::City, Col::County].iter().any(|c| cols.has(*c));
    let present = Present {
        also_known_as: cols.has(Col::AlsoKnownAs),
        address: cols.has(Col::Address) || split_address,
        postcode: cols.has(Col::Postcode),
        phone: cols.has(Col::Phone),
        local_authority: cols.has(Col::LocalAuthority),
        region: cols.has(Col::Region),
        location_type: cols.has(Col::LocationType),
        location_since: cols.has(Col::LocationSince),
        sector: cols.has(Col::ProviderType),
        nominated_individual: cols.has(Col::NominatedIndividual),
        main_partner: cols.has(Col::MainPartner),
        provider_since: cols.has(Col::ProviderSince),
    };

    let mut dir =
        Directory { providers: Vec::new(), locations: Vec::new(), present, location_provider: HashMap::new() };
    let mut provider_index: HashMap<String, usize> = HashMap::new();
    let mut location_index: HashMap<String, usize> = HashMap::new();
    while let Some(rec) = reader.next_record() {
        let rec = rec.map_err(|e| file_error(Some(e.line), e.message))?;
        if rec.is_blank() {
            continue;
        }
        let line = rec.line;
        let mut bad = |message: String| errors.add(input.name, line, message);
        if rec.fields.len() > cols.width && rec.fields[cols.width..].iter().any(|f| !f.trim().is_empty()) {
            bad(format!(
                "the row has {} values but the header (line {}) names {} columns: a value containing a comma \
                 must be in double quotes",
                rec.fields.len(),
                header.line,
                cols.width
            ));
            continue;
        }
        let raw_location = cols.get(&rec, Col::LocationId);
        let raw_provider = cols.get(&rec, Col::ProviderId);
        let location_id = LocationId::parse(raw_location);
        let provider_id = ProviderId::parse(raw_provider);
        let name = cols.get(&rec, Col::Name);
        let provider_name = cols.get(&rec, Col::ProviderName);
        let mut row_ok = true;
        if location_id.is_none() {
            row_ok = false;
            bad(if raw_location.is_empty() {
                "the location ID is empty".into()
            } else {
                format!(
                    "location ID \"{raw_location}\" is neither a CQC ID (1- and 9 to 11 digits, like 1-1000210669) \
                     nor an NHS site code (5 characters, like RX1CC)"
                )
            });
        }
        if provider_id.is_none() {
            row_ok = false;
            bad(if raw_provider.is_empty() {
                "the provider ID is empty".into()
            } else {
                format!(
                    "provider ID \"{raw_provider}\" is neither a CQC ID (1- and 9 to 11 digits, like 1-101641531) \
                     nor an NHS trust code (3 characters, like RX1)"
                )
            });
        }
        if name.is_empty() {
            row_ok = false;
            bad("the location has no name".into());
        }
        if provider_name.is_empty() {
            row_ok = false;
            bad("the provider has no name".into());
        }
        let (Some(location_id), Some(provider_id), true) = (location_id, provider_id, row_ok) else { continue };
        let (location_id, provider_id) = (location_id.as_str().to_string(), provider_id.as_str().to_string());

        let address = if cols.has(Col::Address) {
            cols.opt(&rec, Col::Address)
        } else {
            let parts: Vec<&str> = [Col::Street, Col::Line2, Col::City, Col::County]
                .iter()
                .map(|c| cols.get(&rec, *c))
                .filter(|s| !s.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        };
        let location = DirLocation {
            line,
            location_id: location_id.clone(),
            provider_id: provider_id.clone(),
            name: name.to_string(),
            also_known_as: cols.opt(&rec, Col::AlsoKnownAs),
            address,
            postcode: cols.opt(&rec, Col::Postcode).map(|p| p.to_ascii_uppercase()),
            phone: cols.opt(&rec, Col::Phone),
            local_authority: cols.opt(&rec, Col::LocalAuthority),
            region: cols.opt(&rec, Col::Region),
            location_type: cols.opt(&rec, Col::LocationType),
            registered_since: cols.opt(&rec, Col::LocationSince).map(|d| iso_date(&d)),
        };
        match location_index.get(&location_id) {
            Some(&i) if dir.locations[i].provider_id != provider_id => {
                let first = &dir.locations[i];
                bad(format!(
                    "location {location_id} is listed again (first on line {}) under another provider: {} there, \
                     {provider_id} here; a location belongs to one provider",
                    first.line, first.provider_id
                ));
                continue;
            }
            // The same location twice under the same provider: the later row wins.
            Some(&i) => dir.locations[i] = location,
            None => {
                location_index.insert(location_id, dir.locations.len());
                dir.locations.push(location);
            }
        }
        let provider = DirProvider {
            provider_id: provider_id.clone(),
            name: provider_name.to_string(),
            sector: cols.opt(&rec, Col::ProviderType),
            nominated_individual: cols.opt(&rec, Col::NominatedIndividual),
            main_partner: cols.opt(&rec, Col::MainPartner),
            registered_since: cols.opt(&rec, Col::ProviderSince).map(|d| iso_date(&d)),
        };
        match provider_index.get(&provider_id) {
            // The provider's first row names it; later rows only fill what it left empty.
            Some(&i) => {
                let p = &mut dir.providers[i];
                p.sector = p.sector.take().or(provider.sector);
                p.nominated_individual = p.nominated_individual.take().or(provider.nominated_individual);
                p.main_partner = p.main_partner.take().or(provider.main_partner);
                p.registered_since = p.registered_since.take().or(provider.registered_since);
            }
            None => {
                provider_index.insert(provider_id, dir.providers.len());
                dir.providers.push(provider);
            }
        }
    }
    if dir.locations.is_empty() && errors.list.is_empty() {
        return Err(file_error(
            Some(header.line),
            "the care directory lists no locations after its header row; importing it would deregister every \
             provider"
                .into(),
        ));
    }
    dir.location_provider = dir.locations.iter().map(|l| (l.location_id.clone(), l.provider_id.clone())).collect();
    Ok(dir)
}

/// `dd/mm/yyyy` as ISO `yyyy-mm-dd`; anything else kept as written (the date is shown, never computed on).
fn iso_date(text: &str) -> String {
    chrono::NaiveDate::parse_from_str(text, "%d/%m/%Y")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_keys_match_both_layouts() {
        assert_eq!(header_key("CQC Location ID (for office use only)"), "location id");
        assert_eq!(header_key(" CQC  Provider ID (for office use only) "), "provider id");
        assert_eq!(header_key("Location ID"), "location id");
        assert_eq!(header_key("Provider Type/Sector"), "provider type/sector");
        assert_eq!(header_key("Service's website (if available)"), "service's website");
    }

    #[test]
    fn dates_become_iso_when_they_are_uk_dates() {
        assert_eq!(iso_date("01/04/2011"), "2011-04-01");
        assert_eq!(iso_date("2011-04-01"), "2011-04-01");
    }
}
