//! Imports the registry from CSV: the regulator's care directory (providers and locations, in either of
//! its two published layouts, matched by column name) and Postroom's people file. Every row of both files
//! is checked before anything is written, and everything is written in one transaction: a file with one
//! bad row imports nothing and the error lists each bad row by line number.
//!
//! A care-directory import is the whole list of active locations: a provider or location it no longer lists
//! is marked deregistered (never deleted, so a form quoting an old ID is told apart from a mistyped one) and
//! one listed again is re-activated. A people import replaces the people set: anyone no longer listed is
//! removed, because the file is the one authority on who may notify (a person who left must lose that at
//! once) and keeping old addresses and phone numbers would hold personal data with no use for it; the
//! `registry_imports` row keeps the counts of who was added and removed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use sqlx::{Any, Row, Transaction};

use super::Role;
use super::rows::{self, Record};
use crate::ids::{EmailAddress, LocationId, ProviderId};
use crate::store::{Store, StoreError, now_ms};

/// At most this many bad rows are listed; the rest are counted.
const MAX_LISTED_ERRORS: usize = 200;
/// Rows per multi-row INSERT: well under both backends' limits on bound parameters (SQLite 32,766,
/// PostgreSQL 65,535) with 12 parameters a row.
const BATCH_ROWS: usize = 500;

/// One CSV file to import: a name for messages and the import record, and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct CsvInput<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// A row that cannot be imported, with where it is and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}: {}", self.file, self.line, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("nothing to import: give a care directory CSV, a people CSV, or both")]
    NothingToImport,
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    /// The file as a whole cannot be read: not UTF-8, no header row, a required column missing.
    #[error("{file}{}: {message}; nothing was imported", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    File { file: String, line: Option<usize>, message: String },
    /// Rows that need fixing; nothing was imported.
    #[error("{}", rows_message(errors, *more))]
    Rows { errors: Vec<RowError>, more: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        ImportError::Store(StoreError::Db(e))
    }
}

fn rows_message(errors: &[RowError], more: usize) -> String {
    let total = errors.len() + more;
    let mut out = format!(
        "nothing was imported: {total} row{} need{} fixing; correct {} and import again",
        if total == 1 { "" } else { "s" },
        if total == 1 { "s" } else { "" },
        if total == 1 { "it" } else { "them" }
    );
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    if more > 0 {
        out.push_str(&format!("\n  ... and {more} more"));
    }
    out
}

/// What an import changed among providers or locations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryChanges {
    /// Listed in this care directory.
    pub listed: usize,
    /// Listed for the first time.
    pub added: usize,
    /// Deregistered before, listed again.
    pub reactivated: usize,
    /// Active before, not listed now.
    pub deregistered: usize,
}

/// What an import changed among people (one count per role held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PeopleChanges {
    pub listed: usize,
    pub added: usize,
    pub removed: usize,
}

/// The outcome of one import, also kept in `registry_imports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    pub import_id: i64,
    /// Unix milliseconds; the date deregistrations carry.
    pub at: i64,
    pub directory_file: Option<String>,
    pub people_file: Option<String>,
    pub providers: DirectoryChanges,
    pub locations: DirectoryChanges,
    pub people: PeopleChanges,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry import {}", self.import_id)?;
        for (what, c) in [("providers", &self.providers), ("locations", &self.locations)] {
            if self.directory_file.is_some() {
                write!(
                    f,
                    "; {what}: {} listed, {} new, {} re-activated, {} deregistered",
                    c.listed, c.added, c.reactivated, c.deregistered
                )?;
            }
        }
        if self.people_file.is_some() {
            let p = &self.people;
            write!(f, "; people: {} roles listed, {} added, {} removed", p.listed, p.added, p.removed)?;
        }
        Ok(())
    }
}

/// Imports the care directory, the people file, or both, from files.
pub async fn import(
    store: &Store,
    locations_csv: Option<&Path>,
    people_csv: Option<&Path>,
) -> Result<ImportReport, ImportError> {
    async fn read(path: Option<&Path>) -> Result<Option<(String, Vec<u8>)>, ImportError> {
        let Some(path) = path else { return Ok(None) };
        let name = path.display().to_string();
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some((name, bytes))),
            Err(source) => Err(ImportError::Read { path: name, source }),
        }
    }
    let directory = read(locations_csv).await?;
    let people = read(people_csv).await?;
    import_bytes(
        store,
        directory.as_ref().map(|(name, bytes)| CsvInput { name, bytes }),
        people.as_ref().map(|(name, bytes)| CsvInput { name, bytes }),
    )
    .await
}

/// Imports the care directory, the people file, or both, from bytes: checks every row of both, then
/// writes everything in one transaction.
pub async fn import_bytes(
    store: &Store,
    directory: Option<CsvInput<'_>>,
    people: Option<CsvInput<'_>>,
) -> Result<ImportReport, ImportError> {
    if directory.is_none() && people.is_none() {
        return Err(ImportError::NothingToImport);
    }
    let t0 = std::time::Instant::now();
    let mut errors = Errors::default();
    let dir = directory.map(|input| parse_directory(input, &mut errors)).transpose()?;
    let people_rows = people.map(|input| parse_people(input, &mut errors)).transpose()?;

    eprintln!("parse {:?}", t0.elapsed());
    let at = now_ms();
    let mut tx = store.pool().begin().await?;
    // Write first: on SQLite this takes the write lock before the reads below, so the transaction never
    // has to upgrade a read lock (which fails at once in WAL mode when another writer got in between).
    let import_id: i64 =
        sqlx::query("INSERT INTO registry_imports (at, locations_file, people_file) VALUES ($1, $2, $3) RETURNING id")
            .bind(at)
            .bind(directory.map(|d| d.name.to_string()))
            .bind(people.map(|p| p.name.to_string()))
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
    let existing = Existing::load(&mut tx).await?;
    eprintln!("load {:?}", t0.elapsed());
    if let (Some(input), Some(rows)) = (people, &people_rows) {
        check_people_references(input.name, rows, dir.as_ref(), &existing, &mut errors);
    }
    if !errors.list.is_empty() {
        tx.rollback().await?;
        let mut list = errors.list;
        list.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(ImportError::Rows { errors: list, more: errors.more });
    }

    let mut report = ImportReport {
        import_id,
        at,
        directory_file: directory.map(|d| d.name.to_string()),
        people_file: people.map(|p| p.name.to_string()),
        ..ImportReport::default()
    };
    if let Some(dir) = &dir {
        write_directory(&mut tx, dir, &existing, import_id, at, &mut report).await?;
    }
    eprintln!("dir {:?}", t0.elapsed());
    if let Some(rows) = &people_rows {
        report.people = write_people(&mut tx, rows, import_id).await?;
    }
    let (p, l, pe) = (&report.providers, &report.locations, &report.people);
    sqlx::query(
        "UPDATE registry_imports SET providers_listed = $1, providers_added = $2, providers_reactivated = $3, \
         providers_deregistered = $4, locations_listed = $5, locations_added = $6, locations_reactivated = $7, \
         locations_deregistered = $8, people_listed = $9, people_added = $10, people_removed = $11 WHERE id = $12",
    )
    .bind(p.listed as i64)
    .bind(p.added as i64)
    .bind(p.reactivated as i64)
    .bind(p.deregistered as i64)
    .bind(l.listed as i64)
    .bind(l.added as i64)
    .bind(l.reactivated as i64)
    .bind(l.deregistered as i64)
    .bind(pe.listed as i64)
    .bind(pe.added as i64)
    .bind(pe.removed as i64)
    .bind(import_id)
    .execute(&mut *tx)
    .await?;
    eprintln!("people {:?}", t0.elapsed());
    tx.commit().await?;
    eprintln!("commit {:?}", t0.elapsed());
    tracing::info!(
        import_id,
        providers = p.listed,
        providers_deregistered = p.deregistered,
        locations = l.listed,
        locations_deregistered = l.deregistered,
        people = pe.listed,
        "registry imported"
    );
    Ok(report)
}

#[derive(Default)]
struct Errors {
    list: Vec<RowError>,
    more: usize,
}

impl Errors {
    fn add(&mut self, file: &str, line: usize, message: String) {
        if self.list.len() < MAX_LISTED_ERRORS {
            self.list.push(RowError { file: file.to_string(), line, message });
        } else {
            self.more += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The care directory

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
struct Present {
    also_known_as: bool,
    address: bool,
    postcode: bool,
    phone: bool,
    local_authority: bool,
    region: bool,
    location_type: bool,
    location_since: bool,
    sector: bool,
    nominated_individual: bool,
    main_partner: bool,
    provider_since: bool,
}

#[derive(Debug, Clone)]
struct DirProvider {
    provider_id: String,
    name: String,
    sector: Option<String>,
    nominated_individual: Option<String>,
    main_partner: Option<String>,
    registered_since: Option<String>,
}

#[derive(Debug, Clone)]
struct DirLocation {
    line: usize,
    location_id: String,
    provider_id: String,
    name: String,
    also_known_as: Option<String>,
    address: Option<String>,
    postcode: Option<String>,
    phone: Option<String>,
    local_authority: Option<String>,
    region: Option<String>,
    location_type: Option<String>,
    registered_since: Option<String>,
}

struct Directory {
    providers: Vec<DirProvider>,
    locations: Vec<DirLocation>,
    present: Present,
    /// location ID -> provider ID, for checking the people file against this directory.
    location_provider: HashMap<String, String>,
}

fn parse_directory(input: CsvInput<'_>, errors: &mut Errors) -> Result<Directory, ImportError> {
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

// ---------------------------------------------------------------------------------------------------------
// The people file

const PEOPLE_COLUMNS: [&str; 7] = ["person_id", "name", "role", "email", "phone", "provider_id", "location_id"];

#[derive(Debug, Clone)]
struct PersonRow {
    line: usize,
    person_id: String,
    name: String,
    role: Role,
    email: String,
    phone: Option<String>,
    provider_id: String,
    /// '' for roles that cover the whole provider.
    location_id: String,
}

fn parse_people(input: CsvInput<'_>, errors: &mut Errors) -> Result<Vec<PersonRow>, ImportError> {
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
fn check_people_references(
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

// ---------------------------------------------------------------------------------------------------------
// Writing

struct ExistingLocation {
    provider_id: String,
    deregistered: bool,
}

/// What the database held before this import: to validate the people file and to count the changes.
struct Existing {
    /// provider ID -> deregistered?
    providers: HashMap<String, bool>,
    locations: HashMap<String, ExistingLocation>,
}

impl Existing {
    async fn load(tx: &mut Transaction<'_, Any>) -> Result<Existing, sqlx::Error> {
        let mut providers = HashMap::new();
        for r in sqlx::query("SELECT provider_id, deregistered_at FROM providers").fetch_all(&mut **tx).await? {
            providers.insert(r.try_get("provider_id")?, r.try_get::<Option<i64>, _>("deregistered_at")?.is_some());
        }
        let mut locations = HashMap::new();
        for r in
            sqlx::query("SELECT location_id, provider_id, deregistered_at FROM locations").fetch_all(&mut **tx).await?
        {
            locations.insert(
                r.try_get("location_id")?,
                ExistingLocation {
                    provider_id: r.try_get("provider_id")?,
                    deregistered: r.try_get::<Option<i64>, _>("deregistered_at")?.is_some(),
                },
            );
        }
        Ok(Existing { providers, locations })
    }
}

/// `INSERT ... VALUES` for `rows` rows of `params` placeholders each, then `tail` (literals) in every row.
fn insert_sql(head: &str, rows: usize, params: usize, tail: &str, conflict: &str) -> String {
    let mut sql = String::with_capacity(head.len() + rows * (params * 6 + tail.len() + 4) + conflict.len());
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for p in 0..params {
            if p > 0 {
                sql.push(',');
            }
            sql.push('$');
            sql.push_str(&n.to_string());
            n += 1;
        }
        sql.push_str(tail);
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(conflict);
    sql
}

/// `SET col = excluded.col` for the columns always written and those this file has.
fn conflict_update(key: &str, always: &[&str], optional: &[(&str, bool)]) -> String {
    let sets: Vec<String> = always
        .iter()
        .copied()
        .chain(optional.iter().filter(|(_, present)| *present).map(|(c, _)| *c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!("ON CONFLICT ({key}) DO UPDATE SET {}, deregistered_at = NULL", sets.join(", "))
}

async fn write_directory(
    tx: &mut Transaction<'_, Any>,
    dir: &Directory,
    existing: &Existing,
    import_id: i64,
    at: i64,
    report: &mut ImportReport,
) -> Result<(), sqlx::Error> {
    let pr = &dir.present;
    let tail = format!(", {import_id}, {import_id}, NULL, {at}");

    let head = "INSERT INTO providers (provider_id, name, sector, nominated_individual, main_partner, \
                registered_since, first_seen_import, last_seen_import, deregistered_at, updated_at)";
    let conflict = conflict_update(
        "provider_id",
        &["name", "last_seen_import", "updated_at"],
        &[
            ("sector", pr.sector),
            ("nominated_individual", pr.nominated_individual),
            ("main_partner", pr.main_partner),
            ("registered_since", pr.provider_since),
        ],
    );
    for chunk in dir.providers.chunks(BATCH_ROWS) {
        let sql = insert_sql(head, chunk.len(), 6, &tail, &conflict);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(&p.provider_id)
                .bind(&p.name)
                .bind(&p.sector)
                .bind(&p.nominated_individual)
                .bind(&p.main_partner)
                .bind(&p.registered_since);
        }
        q.execute(&mut **tx).await?;
    }

    let head = "INSERT INTO locations (location_id, provider_id, name, also_known_as, address, postcode, phone, \
                local_authority, region, location_type, registered_since, first_seen_import, last_seen_import, \
                deregistered_at, updated_at)";
    let conflict = conflict_update(
        "location_id",
        &["provider_id", "name", "last_seen_import", "updated_at"],
        &[
            ("also_known_as", pr.also_known_as),
            ("address", pr.address),
            ("postcode", pr.postcode),
            ("phone", pr.phone),
            ("local_authority", pr.local_authority),
            ("region", pr.region),
            ("location_type", pr.location_type),
            ("registered_since", pr.location_since),
        ],
    );
    for chunk in dir.locations.chunks(BATCH_ROWS) {
        let sql = insert_sql(head, chunk.len(), 11, &tail, &conflict);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for l in chunk {
            q = q
                .bind(&l.location_id)
                .bind(&l.provider_id)
                .bind(&l.name)
                .bind(&l.also_known_as)
                .bind(&l.address)
                .bind(&l.postcode)
                .bind(&l.phone)
                .bind(&l.local_authority)
                .bind(&l.region)
                .bind(&l.location_type)
                .bind(&l.registered_since);
        }
        q.execute(&mut **tx).await?;
    }

    // Whatever this directory did not list is no longer registered, as of this import.
    let providers_gone = sqlx::query(
        "UPDATE providers SET deregistered_at = $1, updated_at = $1 WHERE deregistered_at IS NULL AND last_seen_import <> $2",
    )
    .bind(at)
    .bind(import_id)
    .execute(&mut **tx)
    .await?;
    let locations_gone = sqlx::query(
        "UPDATE locations SET deregistered_at = $1, updated_at = $1 WHERE deregistered_at IS NULL AND last_seen_import <> $2",
    )
    .bind(at)
    .bind(import_id)
    .execute(&mut **tx)
    .await?;

    report.providers = DirectoryChanges {
        listed: dir.providers.len(),
        added: dir.providers.iter().filter(|p| !existing.providers.contains_key(&p.provider_id)).count(),
        reactivated: dir.providers.iter().filter(|p| existing.providers.get(&p.provider_id) == Some(&true)).count(),
        deregistered: providers_gone.rows_affected() as usize,
    };
    report.locations = DirectoryChanges {
        listed: dir.locations.len(),
        added: dir.locations.iter().filter(|l| !existing.locations.contains_key(&l.location_id)).count(),
        reactivated: dir
            .locations
            .iter()
            .filter(|l| existing.locations.get(&l.location_id).is_some_and(|e| e.deregistered))
            .count(),
        deregistered: locations_gone.rows_affected() as usize,
    };
    Ok(())
}

async fn write_people(
    tx: &mut Transaction<'_, Any>,
    rows: &[PersonRow],
    import_id: i64,
) -> Result<PeopleChanges, sqlx::Error> {
    let mut before: HashSet<(String, String, String, String)> = HashSet::new();
    for r in sqlx::query("SELECT person_id, role, provider_id, location_id FROM people").fetch_all(&mut **tx).await? {
        before.insert((
            r.try_get("person_id")?,
            r.try_get("role")?,
            r.try_get("provider_id")?,
            r.try_get("location_id")?,
        ));
    }
    let after: HashSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r.person_id.clone(), r.role.as_str().to_string(), r.provider_id.clone(), r.location_id.clone()))
        .collect();

    sqlx::query("DELETE FROM people").execute(&mut **tx).await?;
    let head = "INSERT INTO people (person_id, name, role, email, phone, provider_id, location_id, import_id)";
    let tail = format!(", {import_id}");
    for chunk in rows.chunks(BATCH_ROWS) {
        let sql = insert_sql(head, chunk.len(), 7, &tail, "");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(&p.person_id)
                .bind(&p.name)
                .bind(p.role.as_str())
                .bind(&p.email)
                .bind(&p.phone)
                .bind(&p.provider_id)
                .bind(&p.location_id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(PeopleChanges {
        listed: rows.len(),
        added: after.difference(&before).count(),
        removed: before.difference(&after).count(),
    })
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
    fn insert_sql_numbers_placeholders_across_rows() {
        assert_eq!(
            insert_sql("INSERT INTO t (a, b, c)", 2, 2, ", 7", ""),
            "INSERT INTO t (a, b, c) VALUES ($1,$2, 7),($3,$4, 7) "
        );
    }

    #[test]
    fn dates_become_iso_when_they_are_uk_dates() {
        assert_eq!(iso_date("01/04/2011"), "2011-04-01");
        assert_eq!(iso_date("2011-04-01"), "2011-04-01");
    }
}
