//! The registry against a real database: import (both care-directory layouts, the people file, bad rows,
//! re-imports), the authority checks (one test per problem code, asserting code, field and quoted value),
//! and the synthetic registry. Every test runs on a SQLite file; with `POSTROOM_TEST_PG` set to a server URL
//! (e.g. postgres://postgres@127.0.0.1:5432/postgres) it runs again on a throwaway PostgreSQL database.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use postroom::ids::EmailAddress;
use postroom::problem::{Problem, ProblemCode};
use postroom::registry::{self, CsvInput, ImportError, ImportReport, synthetic};
use postroom::store::Store;
use sqlx::Row;

// ---------------------------------------------------------------------------------------------------------
// Harness

struct Db {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Db {
    async fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()), 2).await.unwrap();
        Db { store, _dir: Some(dir), pg: None }
    }

    /// A fresh database on the server named by POSTROOM_TEST_PG, or None (test skipped) when unset.
    async fn postgres() -> Option<Db> {
        let admin = std::env::var("POSTROOM_TEST_PG").ok().filter(|u| !u.is_empty())?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("postroom_t_{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed));
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let (base, _) = admin.rsplit_once('/').expect("POSTROOM_TEST_PG ends in /database");
        let store = Store::connect(&format!("{base}/{name}"), 2).await.unwrap();
        Some(Db { store, _dir: None, pg: Some((admin, name)) })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else { return };
        // Drop runs inside the test's runtime: drop the database from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Each test body runs once per backend: `sqlite::name` always, `postgres::name` when POSTROOM_TEST_PG is set.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::Db::sqlite().await;
                super::$name(&db.store).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = super::Db::postgres().await else {
                    eprintln!("POSTROOM_TEST_PG is not set: PostgreSQL run skipped");
                    return;
                };
                super::$name(&db.store).await;
            })*
        }
    };
}

on_both_backends!(
    public_layout_with_preamble_and_bom_imports_every_location,
    full_layout_imports_provider_details_and_nhs_codes,
    public_layout_after_full_layout_keeps_columns_it_does_not_have,
    bad_directory_rows_are_listed_by_line_and_nothing_is_imported,
    bad_people_rows_are_listed_by_line_and_nothing_is_imported,
    unreadable_files_say_why_and_where,
    reimport_marks_missing_ids_deregistered_and_relisted_ones_active,
    people_reimport_replaces_the_people_set,
    registered_manager_at_own_location_has_no_problems,
    sender_not_registered_reveals_no_registry_data,
    sender_not_at_provider_reveals_no_registry_data,
    unknown_provider_is_told_apart_from_deregistered_provider,
    unknown_provider_that_is_a_location_id_says_so,
    provider_deregistered_says_since_when,
    unknown_location_lists_locations_to_a_sender_with_a_role,
    location_deregistered_says_since_when,
    location_not_of_provider_lists_this_providers_locations_to_a_sender_with_a_role,
    location_not_of_provider_lists_nothing_to_a_sender_without_a_role,
    email_multiple_roles_names_the_people_sharing_the_address,
    one_person_with_several_roles_is_not_multiple_roles,
    manager_not_at_location_names_the_managers_own_locations,
    provider_wide_roles_may_notify_for_any_location,
    nhs_codes_are_checked_like_cqc_ids,
    ids_validation_rejected_and_provider_wide_forms_are_not_checked_again,
    synthetic_registry_imports_and_its_samples_behave_as_documented,
    progress_is_reported_for_every_row_written,
);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry").join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// The fixture registry as it stands today: the fuller (earlier) directory, then the public one with the
/// people file. Returns the second import's report (its `at` is when Elmtree was deregistered).
async fn standard(store: &Store) -> ImportReport {
    registry::import(store, Some(&fixture("care_directory_full.csv")), None, &registry::Quiet).await.unwrap();
    registry::import(store, Some(&fixture("care_directory_public.csv")), Some(&fixture("people.csv")), &registry::Quiet)
        .await
        .unwrap()
}

async fn check(store: &Store, sender: &str, provider: &str, location: &str) -> Vec<Problem> {
    let sender = EmailAddress::parse(sender).unwrap();
    registry::check(store, &sender, true, Some(provider), Some(location)).await.unwrap()
}

/// The only problem, asserted to have this code, field and quoted value.
fn only(problems: &[Problem], code: ProblemCode, field: Option<&str>, value: &str) -> Problem {
    assert_eq!(problems.len(), 1, "expected one {code:?}, got {problems:#?}");
    let p = problems[0].clone();
    assert_eq!(p.code, code, "{p:#?}");
    assert_eq!(p.field.as_deref(), field, "{p:#?}");
    assert_eq!(p.value.as_deref(), Some(value), "{p:#?}");
    p
}

fn find(problems: &[Problem], code: ProblemCode) -> Problem {
    problems.iter().find(|p| p.code == code).cloned().unwrap_or_else(|| panic!("no {code:?} in {problems:#?}"))
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(store.pool()).await.unwrap().try_get::<i64, _>(0).unwrap()
}

async fn text(store: &Store, sql: &'static str, key: &str) -> Option<String> {
    sqlx::query(sql).bind(key).fetch_one(store.pool()).await.unwrap().try_get::<Option<String>, _>(0).unwrap()
}

fn london_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&chrono_tz::Europe::London)
        .format("%-d %B %Y")
        .to_string()
}

const OAKFIELD: &str = "1-101641531";
const OAKFIELD_HOUSE: &str = "1-1000210669";
const WILLOWBANK: &str = "1-1000210670";
const MEADOW_VIEW: &str = "1-1000210671";
const OAKFIELD_ANNEXE: &str = "1-1000210672";
const BROOKSIDE: &str = "1-202020202";
const BROOKSIDE_COURT: &str = "1-2000000001";
const ELMTREE: &str = "1-505050505";
const ELMTREE_HOUSE: &str = "1-5000000001";
const JANE: &str = "jane.smith@oakfield-care.example";
const MARGARET: &str = "margaret.holt@oakfield-care.example";
const ALAN: &str = "alan.green@brookside.example";

// ---------------------------------------------------------------------------------------------------------
// Import

async fn progress_is_reported_for_every_row_written(store: &Store) {
    use std::sync::atomic::{AtomicU64, Ordering};
    #[derive(Default)]
    struct Count(AtomicU64, AtomicU64);
    impl registry::Progress for Count {
        fn start(&self, rows: u64) {
            self.0.store(rows, Ordering::SeqCst);
        }
        fn advance(&self, rows: u64) {
            self.1.fetch_add(rows, Ordering::SeqCst);
        }
    }
    let count = Count::default();
    let report =
        registry::import(store, Some(&fixture("care_directory_public.csv")), Some(&fixture("people.csv")), &count)
            .await
            .unwrap();
    let rows = (report.providers.listed + report.locations.listed + report.people.listed) as u64;
    assert_eq!(count.0.load(Ordering::SeqCst), rows, "the bar's length is every row to write");
    assert_eq!(count.1.load(Ordering::SeqCst), rows, "and it reaches the end");
}

async fn public_layout_with_preamble_and_bom_imports_every_location(store: &Store) {
    let report =
        registry::import(store, Some(&fixture("care_directory_public.csv")), None, &registry::Quiet).await.unwrap();
    assert_eq!((report.providers.listed, report.providers.added), (5, 5));
    assert_eq!((report.locations.listed, report.locations.added), (9, 9));
    assert_eq!(report.locations.deregistered, 0);
    let name = text(store, "SELECT name FROM locations WHERE location_id = $1", MEADOW_VIEW).await;
    assert_eq!(name.as_deref(), Some("Meadow View, Annexe"));
    let address = text(store, "SELECT address FROM locations WHERE location_id = $1", MEADOW_VIEW).await;
    assert_eq!(address.as_deref(), Some("Meadow View\r\nOtley Road, Leeds"));
    let aka = text(store, "SELECT also_known_as FROM locations WHERE location_id = $1", WILLOWBANK).await;
    assert_eq!(aka.as_deref(), Some("The \"Lodge\""));
    let la = text(store, "SELECT local_authority FROM locations WHERE location_id = $1", OAKFIELD_HOUSE).await;
    assert_eq!(la.as_deref(), Some("Leeds"));
    let region = text(store, "SELECT region FROM locations WHERE location_id = $1", "RX1CC").await;
    assert_eq!(region.as_deref(), Some("East Midlands"));
    let provider = text(store, "SELECT name FROM providers WHERE provider_id = $1", "RX1").await;
    assert_eq!(provider.as_deref(), Some("Nottingham University Hospitals NHS Trust"));
    assert_eq!(count(store, "SELECT COUNT(*) FROM registry_imports").await, 1);
    let file: String =
        sqlx::query("SELECT locations_file FROM registry_imports").fetch_one(store.pool()).await.unwrap().get(0);
    assert!(file.ends_with("care_directory_public.csv"), "{file}");
}

async fn full_layout_imports_provider_details_and_nhs_codes(store: &Store) {
    let report =
        registry::import(store, Some(&fixture("care_directory_full.csv")), None, &registry::Quiet).await.unwrap();
    assert_eq!((report.providers.listed, report.locations.listed), (6, 11));
    let ni = text(store, "SELECT nominated_individual FROM providers WHERE provider_id = $1", OAKFIELD).await;
    assert_eq!(ni.as_deref(), Some("Margaret Holt"));
    let sector = text(store, "SELECT sector FROM providers WHERE provider_id = $1", "1-303030303").await;
    assert_eq!(sector.as_deref(), Some("Individual"));
    let since = text(store, "SELECT registered_since FROM providers WHERE provider_id = $1", OAKFIELD).await;
    assert_eq!(since.as_deref(), Some("2011-04-01"));
    // Street, line 2 and city joined; postcodes upper-cased; NHS codes upper-cased.
    let address = text(store, "SELECT address FROM locations WHERE location_id = $1", OAKFIELD_HOUSE).await;
    assert_eq!(address.as_deref(), Some("12 Church Road, Headingley, Leeds"));
    let postcode = text(store, "SELECT postcode FROM locations WHERE location_id = $1", BROOKSIDE_COURT).await;
    assert_eq!(postcode.as_deref(), Some("BD1 4GH"));
    let owner = text(store, "SELECT provider_id FROM locations WHERE location_id = $1", "RX1RA").await;
    assert_eq!(owner.as_deref(), Some("RX1"));
    let kind = text(store, "SELECT location_type FROM locations WHERE location_id = $1", "RX1CC").await;
    assert_eq!(kind.as_deref(), Some("NHS Healthcare Organisation"));
}

async fn public_layout_after_full_layout_keeps_columns_it_does_not_have(store: &Store) {
    standard(store).await;
    let ni = text(store, "SELECT nominated_individual FROM providers WHERE provider_id = $1", OAKFIELD).await;
    assert_eq!(ni.as_deref(), Some("Margaret Holt"), "the public layout has no nominated individual column");
    // Columns both layouts have take the latest file's value.
    let address = text(store, "SELECT address FROM locations WHERE location_id = $1", MEADOW_VIEW).await;
    assert_eq!(address.as_deref(), Some("Meadow View\r\nOtley Road, Leeds"));
}

async fn bad_directory_rows_are_listed_by_line_and_nothing_is_imported(store: &Store) {
    let err = registry::import(store, Some(&fixture("bad_directory.csv")), None, &registry::Quiet).await.unwrap_err();
    let ImportError::Rows { errors, more } = &err else { panic!("{err}") };
    assert_eq!(*more, 0);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![5, 8, 9, 10], "{err}");
    assert!(errors[0].message.contains("\"1-123\""), "{}", errors[0]);
    assert!(errors[1].message.contains("provider ID is empty"), "{}", errors[1]);
    assert!(errors[2].message.contains("first on line 4"), "{}", errors[2]);
    assert!(errors[3].message.contains("double quotes"), "{}", errors[3]);
    assert!(err.to_string().contains("nothing was imported"), "{err}");
    assert!(err.to_string().contains("bad_directory.csv line 5:"), "{err}");
    assert_eq!(count(store, "SELECT COUNT(*) FROM providers").await, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM locations").await, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM registry_imports").await, 0);
}

async fn bad_people_rows_are_listed_by_line_and_nothing_is_imported(store: &Store) {
    let directory = bytes("care_directory_public.csv");
    let people = bytes("bad_people.csv");
    let err = registry::import_bytes(
        store,
        Some(CsvInput { name: "directory.csv", bytes: &directory }),
        Some(CsvInput { name: "people.csv", bytes: &people }),
    )
    .await
    .unwrap_err();
    let ImportError::Rows { errors, .. } = &err else { panic!("{err}") };
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.message.as_str())).collect();
    let expect: [(usize, &str); 8] = [
        (3, "role \"manager\" is not one of"),
        (4, "email \"tom.brown at oakfield-care.example\" is not a valid address"),
        (5, "needs the location_id"),
        (6, "location_id is only for registered_manager rows"),
        (7, "provider 1-909090909 is not in the registry"),
        (8, "belongs to provider 1-202020202, not to provider 1-101641531"),
        (9, "repeats line 2"),
        (10, "\"Maggie Holt\" here but \"Margaret Holt\" on line 2"),
    ];
    assert_eq!(got.len(), expect.len(), "{err}");
    for ((line, message), (want_line, want)) in got.iter().zip(expect) {
        assert_eq!(*line, want_line, "{err}");
        assert!(message.contains(want), "line {line}: {message:?} should contain {want:?}");
        assert!(errors.iter().all(|e| e.file == "people.csv"));
    }
    // All or nothing across both files: the valid directory was not imported either.
    assert_eq!(count(store, "SELECT COUNT(*) FROM providers").await, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM people").await, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM registry_imports").await, 0);
}

async fn unreadable_files_say_why_and_where(store: &Store) {
    let cases: [(&[u8], &str, Option<usize>); 4] = [
        (b"Name,Location ID,Provider ID,Provider name\nCaf\xE9,1-1000210669,1-101641531,X\n", "UTF-8", Some(2)),
        (b"Some report\nName,Provider name\nx,y\n", "no header row", None),
        (b"Location ID,Name,Provider name\n1-1000210669,x,y\n", "no \"CQC Provider ID", Some(1)),
        (b"Location ID,Provider ID,Name,Provider name\n\"1-1000210669,1-101641531,x,y\n", "never closed", Some(2)),
    ];
    for (csv, says, line) in cases {
        let err = registry::import_bytes(store, Some(CsvInput { name: "d.csv", bytes: csv }), None).await.unwrap_err();
        let ImportError::File { line: got, .. } = &err else { panic!("{err}") };
        assert!(err.to_string().contains(says), "{err}");
        assert_eq!(*got, line, "{err}");
    }
    let err = registry::import_bytes(store, None, None).await.unwrap_err();
    assert!(matches!(err, ImportError::NothingToImport));
    let err =
        registry::import(store, Some(Path::new("/nonexistent/care.csv")), None, &registry::Quiet).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/care.csv"), "{err}");
    assert_eq!(count(store, "SELECT COUNT(*) FROM registry_imports").await, 0);
}

async fn reimport_marks_missing_ids_deregistered_and_relisted_ones_active(store: &Store) {
    let first =
        registry::import(store, Some(&fixture("care_directory_full.csv")), None, &registry::Quiet).await.unwrap();
    assert_eq!((first.providers.added, first.locations.added), (6, 11));

    let second =
        registry::import(store, Some(&fixture("care_directory_public.csv")), None, &registry::Quiet).await.unwrap();
    assert_eq!(second.providers.deregistered, 1, "{second}");
    assert_eq!(second.locations.deregistered, 2, "Elmtree House and Oakfield Annexe: {second}");
    assert_eq!((second.providers.added, second.locations.added), (0, 0));
    let gone = sqlx::query("SELECT deregistered_at FROM providers WHERE provider_id = $1")
        .bind(ELMTREE)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get::<Option<i64>, _>(0)
        .unwrap();
    assert_eq!(gone, Some(second.at));
    for id in [ELMTREE_HOUSE, OAKFIELD_ANNEXE] {
        let at = sqlx::query("SELECT deregistered_at FROM locations WHERE location_id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get::<Option<i64>, _>(0)
            .unwrap();
        assert_eq!(at, Some(second.at), "{id}");
    }
    // Never deleted.
    assert_eq!(count(store, "SELECT COUNT(*) FROM locations").await, 11);

    let third =
        registry::import(store, Some(&fixture("care_directory_full.csv")), None, &registry::Quiet).await.unwrap();
    assert_eq!((third.providers.reactivated, third.locations.reactivated), (1, 2), "{third}");
    assert_eq!(third.locations.deregistered, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM locations WHERE deregistered_at IS NULL").await, 11);
    assert_eq!(count(store, "SELECT COUNT(*) FROM registry_imports").await, 3);
    assert_eq!(
        count(store, "SELECT locations_deregistered FROM registry_imports ORDER BY id LIMIT 1 OFFSET 1").await,
        2
    );
}

async fn people_reimport_replaces_the_people_set(store: &Store) {
    let report = standard(store).await;
    assert_eq!((report.people.listed, report.people.added, report.people.removed), (14, 14, 0));
    let priya = "priya.patel@oakfield-care.example";
    assert!(check(store, priya, OAKFIELD, WILLOWBANK).await.is_empty());

    let again = registry::import(store, None, Some(&fixture("people_v2.csv")), &registry::Quiet).await.unwrap();
    assert_eq!((again.people.listed, again.people.added, again.people.removed), (14, 1, 1));
    assert_eq!(again.locations, Default::default(), "a people-only import leaves the directory alone");
    only(&check(store, priya, OAKFIELD, WILLOWBANK).await, ProblemCode::SenderNotRegistered, None, priya);
    assert!(check(store, "omar.farouk@oakfield-care.example", OAKFIELD, WILLOWBANK).await.is_empty());
    // Stored lower-cased, so the mixed-case address in the file still matches.
    let email = text(store, "SELECT email FROM people WHERE person_id = $1", "P002").await;
    assert_eq!(email.as_deref(), Some(JANE));
    assert_eq!(count(store, "SELECT COUNT(*) FROM locations WHERE deregistered_at IS NULL").await, 9);
}

// ---------------------------------------------------------------------------------------------------------
// Checks: one per problem code

async fn registered_manager_at_own_location_has_no_problems(store: &Store) {
    standard(store).await;
    assert_eq!(check(store, JANE, OAKFIELD, OAKFIELD_HOUSE).await, vec![]);
    assert_eq!(check(store, "JANE.SMITH@Oakfield-Care.example", "1-101641531", "1-1000210669").await, vec![]);
}

async fn sender_not_registered_reveals_no_registry_data(store: &Store) {
    standard(store).await;
    let stranger = "office@oakfield-care.example";
    let problems = check(store, stranger, OAKFIELD, WILLOWBANK).await;
    let p = only(&problems, ProblemCode::SenderNotRegistered, None, stranger);
    let all = format!("{} {}", p.message, p.hint);
    assert!(all.contains(stranger), "{all}");
    assert!(all.contains("delegate"), "{all}");
    for secret in ["margaret", "jane.smith", "Willowbank", OAKFIELD_HOUSE, MEADOW_VIEW] {
        assert!(!all.contains(secret), "leaks {secret}: {all}");
    }
}

async fn sender_not_at_provider_reveals_no_registry_data(store: &Store) {
    standard(store).await;
    let problems = check(store, ALAN, OAKFIELD, WILLOWBANK).await;
    let p = only(&problems, ProblemCode::SenderNotAtProvider, None, ALAN);
    let all = format!("{} {}", p.message, p.hint);
    assert!(all.contains(OAKFIELD), "{all}");
    // The sender's own registration may be told to the sender; the other provider's data may not.
    assert!(all.contains(BROOKSIDE), "{all}");
    for secret in ["Margaret", "Oakfield House", OAKFIELD_HOUSE, MEADOW_VIEW, "jane.smith"] {
        assert!(!all.contains(secret), "leaks {secret}: {all}");
    }
}

async fn unknown_provider_is_told_apart_from_deregistered_provider(store: &Store) {
    standard(store).await;
    let problems = check(store, JANE, "1-505050506", OAKFIELD_HOUSE).await;
    let p = only(&problems, ProblemCode::UnknownProvider, Some("provider_id"), "1-505050506");
    assert!(p.message.contains("not one we hold"), "{}", p.message);
    // The location on the form is valid, so its provider is the likely right answer.
    assert!(p.message.contains(&format!("registered to provider {OAKFIELD} (Oakfield Care Ltd)")), "{}", p.message);
    let problems = check(store, JANE, ELMTREE, OAKFIELD_HOUSE).await;
    assert_eq!(find(&problems, ProblemCode::ProviderDeregistered).value.as_deref(), Some(ELMTREE));
}

async fn unknown_provider_that_is_a_location_id_says_so(store: &Store) {
    standard(store).await;
    let problems = check(store, JANE, OAKFIELD_HOUSE, OAKFIELD_HOUSE).await;
    let p = find(&problems, ProblemCode::UnknownProvider);
    assert_eq!((p.field.as_deref(), p.value.as_deref()), (Some("provider_id"), Some(OAKFIELD_HOUSE)));
    assert!(
        p.message.contains("is the ID of a location, Oakfield House; the provider ID of that location is 1-101641531"),
        "{}",
        p.message
    );
    // To someone with no role at Oakfield: only that it is a location ID, not whose.
    let problems = check(store, ALAN, OAKFIELD_HOUSE, BROOKSIDE_COURT).await;
    let p = find(&problems, ProblemCode::UnknownProvider);
    assert!(p.message.contains("1-1000210669 is a location ID, not a provider ID"), "{}", p.message);
    assert!(!p.message.contains("Oakfield"), "{}", p.message);
    // Nor is a stranger told the provider of the (valid) location on the form.
    let problems = check(store, "x@y.example", "1-505050506", OAKFIELD_HOUSE).await;
    let p = find(&problems, ProblemCode::UnknownProvider);
    assert!(!p.message.contains(OAKFIELD), "{}", p.message);
}

async fn provider_deregistered_says_since_when(store: &Store) {
    let report = standard(store).await;
    let problems = check(store, MARGARET, ELMTREE, ELMTREE_HOUSE).await;
    let p = find(&problems, ProblemCode::ProviderDeregistered);
    assert_eq!((p.field.as_deref(), p.value.as_deref()), (Some("provider_id"), Some(ELMTREE)));
    assert!(p.message.contains("Elmtree Homes Limited"), "{}", p.message);
    assert!(p.message.contains(&format!("since {}", london_day(report.at))), "{}", p.message);
    assert!(p.hint.contains("new provider ID"), "{}", p.hint);
    // Its location went with it.
    assert_eq!(find(&problems, ProblemCode::LocationDeregistered).value.as_deref(), Some(ELMTREE_HOUSE));
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

async fn unknown_location_lists_locations_to_a_sender_with_a_role(store: &Store) {
    standard(store).await;
    let problems = check(store, JANE, OAKFIELD, "1-1000210699").await;
    let p = only(&problems, ProblemCode::UnknownLocation, Some("location_id"), "1-1000210699");
    assert!(p.message.contains("1-1000210669 Oakfield House (LS6 2AB)"), "{}", p.message);
    // A stranger learns only that the ID is unknown.
    let stranger = check(store, "someone@elsewhere.example", OAKFIELD, "1-1000210699").await;
    let p = find(&stranger, ProblemCode::UnknownLocation);
    assert!(!p.message.contains("Oakfield House"), "{}", p.message);
    // A provider ID typed as the location is named as such; the provider's name only to its own people.
    let problems = check(store, JANE, OAKFIELD, BROOKSIDE).await;
    let p = only(&problems, ProblemCode::UnknownLocation, Some("location_id"), BROOKSIDE);
    assert!(p.message.contains("1-202020202 is a provider ID, not a location ID"), "{}", p.message);
    assert!(!p.message.contains("Brookside Healthcare"), "{}", p.message);
    let problems = check(store, MARGARET, OAKFIELD, OAKFIELD).await;
    let p = only(&problems, ProblemCode::UnknownLocation, Some("location_id"), OAKFIELD);
    assert!(p.message.contains("1-101641531 is the provider ID of Oakfield Care Ltd"), "{}", p.message);
}

async fn location_deregistered_says_since_when(store: &Store) {
    let report = standard(store).await;
    let problems = check(store, MARGARET, OAKFIELD, OAKFIELD_ANNEXE).await;
    let p = only(&problems, ProblemCode::LocationDeregistered, Some("location_id"), OAKFIELD_ANNEXE);
    assert!(p.message.contains("Oakfield Annexe, LS6 2AC"), "{}", p.message);
    assert!(p.message.contains(&format!("since {}", london_day(report.at))), "{}", p.message);
    // Margaret is the nominated individual: the registered locations are listed, the old one not among them.
    assert!(p.message.contains("1-1000210670 Willowbank Lodge"), "{}", p.message);
    assert_eq!(p.message.matches(OAKFIELD_ANNEXE).count(), 1, "{}", p.message);
}

async fn location_not_of_provider_lists_this_providers_locations_to_a_sender_with_a_role(store: &Store) {
    standard(store).await;
    let problems = check(store, MARGARET, OAKFIELD, BROOKSIDE_COURT).await;
    let p = only(&problems, ProblemCode::LocationNotOfProvider, Some("location_id"), BROOKSIDE_COURT);
    assert!(
        p.message.contains(&format!("Location {BROOKSIDE_COURT} is not one of the locations of provider {OAKFIELD}")),
        "{}",
        p.message
    );
    for listed in [
        "1-1000210669 Oakfield House (LS6 2AB)",
        "1-1000210670 Willowbank Lodge (LS12 3CD)",
        "1-1000210671 Meadow View, Annexe (LS16 5EF)",
    ] {
        assert!(p.message.contains(listed), "missing {listed}: {}", p.message);
    }
    assert!(!p.message.contains(OAKFIELD_ANNEXE), "deregistered location listed: {}", p.message);
    // Margaret holds no role at Brookside: nothing about Brookside's registration beyond the ID she typed.
    assert!(!p.message.contains("Brookside Healthcare"), "{}", p.message);
}

async fn location_not_of_provider_lists_nothing_to_a_sender_without_a_role(store: &Store) {
    standard(store).await;
    let problems = check(store, ALAN, OAKFIELD, BROOKSIDE_COURT).await;
    let p = find(&problems, ProblemCode::LocationNotOfProvider);
    assert_eq!((p.field.as_deref(), p.value.as_deref()), (Some("location_id"), Some(BROOKSIDE_COURT)));
    for secret in ["Oakfield House", OAKFIELD_HOUSE, WILLOWBANK, MEADOW_VIEW] {
        assert!(!p.message.contains(secret), "leaks {secret}: {}", p.message);
    }
    // Alan is registered at Brookside, which the location belongs to: he is told that.
    assert!(p.message.contains(&format!("location of provider {BROOKSIDE}")), "{}", p.message);
    assert_eq!(find(&problems, ProblemCode::SenderNotAtProvider).value.as_deref(), Some(ALAN));
    // Nobody at all: no list either.
    let problems = check(store, "x@y.example", OAKFIELD, BROOKSIDE_COURT).await;
    let p = find(&problems, ProblemCode::LocationNotOfProvider);
    assert!(!p.message.contains("Oakfield House"), "{}", p.message);
    assert!(!p.message.contains("Brookside Healthcare"), "{}", p.message);
}

async fn email_multiple_roles_names_the_people_sharing_the_address(store: &Store) {
    standard(store).await;
    let inbox = "manager@hilltop-care.example";
    let problems = check(store, inbox, "1-404040404", "1-4000000001").await;
    let p = only(&problems, ProblemCode::EmailMultipleRoles, None, inbox);
    assert!(p.message.contains("Email Address held by Multiple roles"), "{}", p.message);
    assert!(p.message.contains("Ruth Adams and Kevin Shaw"), "{}", p.message);
    assert!(p.hint.contains("change of contact details form"), "{}", p.hint);
    assert!(p.hint.contains("firstname.lastname@provider.co.uk"), "{}", p.hint);
    // Names only: no person IDs, no other addresses.
    assert!(!p.message.contains("P030") && !p.message.contains("linda.shaw"), "{}", p.message);
}

async fn one_person_with_several_roles_is_not_multiple_roles(store: &Store) {
    standard(store).await;
    // Jane Doe: responsible individual and registered manager of Rose Cottage, one person.
    assert_eq!(check(store, "jane.doe@rosecottage.example", "1-303030303", "1-3000000001").await, vec![]);
    // Tom Brown: registered manager of two locations.
    let tom = "tom.brown@oakfield-care.example";
    assert_eq!(check(store, tom, OAKFIELD, WILLOWBANK).await, vec![]);
    assert_eq!(check(store, tom, OAKFIELD, MEADOW_VIEW).await, vec![]);
}

async fn manager_not_at_location_names_the_managers_own_locations(store: &Store) {
    standard(store).await;
    let problems = check(store, JANE, OAKFIELD, WILLOWBANK).await;
    let p = only(&problems, ProblemCode::ManagerNotAtLocation, Some("location_id"), WILLOWBANK);
    assert!(p.message.contains("Oakfield House (1-1000210669)"), "{}", p.message);
    assert!(p.message.contains("Willowbank Lodge"), "{}", p.message);
    let tom = check(store, "tom.brown@oakfield-care.example", OAKFIELD, OAKFIELD_HOUSE).await;
    let p = only(&tom, ProblemCode::ManagerNotAtLocation, Some("location_id"), OAKFIELD_HOUSE);
    assert!(
        p.message.contains("Willowbank Lodge (1-1000210670) and Meadow View, Annexe (1-1000210671)"),
        "{}",
        p.message
    );
}

async fn provider_wide_roles_may_notify_for_any_location(store: &Store) {
    standard(store).await;
    for sender in [MARGARET, "priya.patel@oakfield-care.example"] {
        for location in [OAKFIELD_HOUSE, WILLOWBANK, MEADOW_VIEW] {
            assert_eq!(check(store, sender, OAKFIELD, location).await, vec![], "{sender} {location}");
        }
    }
    // The responsible individual of an individual provider, too.
    assert_eq!(check(store, "jane.doe@rosecottage.example", "1-303030303", "1-3000000001").await, vec![]);
}

async fn nhs_codes_are_checked_like_cqc_ids(store: &Store) {
    standard(store).await;
    assert_eq!(check(store, "sam.okafor@nuh.nhs.example", "RX1", "RX1RA").await, vec![]);
    assert_eq!(check(store, "grace.mensah@nuh.nhs.example", "rx1", "rx1cc").await, vec![]);
    let problems = check(store, "grace.mensah@nuh.nhs.example", "RX1", "RX1RA").await;
    only(&problems, ProblemCode::ManagerNotAtLocation, Some("location_id"), "RX1RA");
    let problems = check(store, "sam.okafor@nuh.nhs.example", "RX1", "RX1ZZ").await;
    let p = only(&problems, ProblemCode::UnknownLocation, Some("location_id"), "RX1ZZ");
    assert!(p.message.contains("RX1CC Queen's Medical Centre (NG7 2UH)"), "{}", p.message);
    let problems = check(store, "sam.okafor@nuh.nhs.example", "RX9", "RX1CC").await;
    only(&problems, ProblemCode::UnknownProvider, Some("provider_id"), "RX9");
}

async fn ids_validation_rejected_and_provider_wide_forms_are_not_checked_again(store: &Store) {
    standard(store).await;
    let jane = EmailAddress::parse(JANE).unwrap();
    // Malformed IDs are validation's problems (invalid_provider_id, invalid_location_id), not the registry's.
    assert_eq!(registry::check(store, &jane, true, Some("1-123"), Some("nonsense")).await.unwrap(), vec![]);
    assert_eq!(registry::check(store, &jane, true, None, None).await.unwrap(), vec![]);
    // A form about the provider as a whole: the location answer is not checked, any role at the provider will do.
    assert_eq!(registry::check(store, &jane, false, Some(OAKFIELD), Some(BROOKSIDE_COURT)).await.unwrap(), vec![]);
    let alan = EmailAddress::parse(ALAN).unwrap();
    let problems = registry::check(store, &alan, false, Some(OAKFIELD), None).await.unwrap();
    only(&problems, ProblemCode::SenderNotAtProvider, None, ALAN);
}

// ---------------------------------------------------------------------------------------------------------
// The synthetic registry

async fn synthetic_registry_imports_and_its_samples_behave_as_documented(store: &Store) {
    let s = synthetic::generate(20260301, synthetic::DEFAULT_PROVIDERS, synthetic::DEFAULT_LOCATIONS);
    assert_eq!(s, synthetic::generate(20260301, synthetic::DEFAULT_PROVIDERS, synthetic::DEFAULT_LOCATIONS));
    assert_ne!(s.care_directory, synthetic::generate(20260302, 2_000, 5_000).care_directory);
    assert!(s.care_directory.starts_with('\u{feff}'));

    let earlier = CsvInput { name: "earlier.csv", bytes: s.earlier_care_directory.as_bytes() };
    let first = registry::import_bytes(store, Some(earlier), None).await.unwrap();
    let current = CsvInput { name: "care_directory.csv", bytes: s.care_directory.as_bytes() };
    let people = CsvInput { name: "people.csv", bytes: s.people.as_bytes() };
    let report = registry::import_bytes(store, Some(current), Some(people)).await.unwrap();
    assert_eq!(report.providers.listed, synthetic::DEFAULT_PROVIDERS, "{report}");
    assert_eq!(report.locations.listed, synthetic::DEFAULT_LOCATIONS, "{report}");
    assert!(report.providers.deregistered >= 1 && report.locations.deregistered >= 2, "{report}");
    assert_eq!(first.locations.listed, report.locations.listed + report.locations.deregistered);
    assert!(report.people.listed > synthetic::DEFAULT_LOCATIONS / 2, "{report}");
    // Several NHS trusts, with 3- and 5-character codes.
    assert!(count(store, "SELECT COUNT(*) FROM providers WHERE provider_id NOT LIKE '1-%'").await >= 2);
    assert!(count(store, "SELECT COUNT(*) FROM locations WHERE location_id NOT LIKE '1-%'").await >= 5);

    let x = &s.samples;
    let go = |email: &str, provider: &str, location: &str| {
        let (email, provider, location) = (email.to_string(), provider.to_string(), location.to_string());
        async move { check(store, &email, &provider, &location).await }
    };
    let m = &x.manager;
    assert_eq!(go(&m.email, &m.provider_id, &m.location_id).await, vec![]);
    let other = &x.other_location.location_id;
    only(&go(&m.email, &m.provider_id, other).await, ProblemCode::ManagerNotAtLocation, Some("location_id"), other);
    assert_eq!(go(&x.nominated_individual.email, &m.provider_id, other).await, vec![]);
    assert_eq!(go(&x.delegate.email, &m.provider_id, other).await, vec![]);
    let gone = &x.deregistered_location.location_id;
    only(&go(&m.email, &m.provider_id, gone).await, ProblemCode::LocationDeregistered, Some("location_id"), gone);

    let n = &x.ni_also_manager;
    assert_eq!(go(&n.email, &n.provider_id, &n.location_id).await, vec![]);
    let t = &x.manager_of_two;
    assert_eq!(go(&t.email, &t.provider_id, &t.location_id).await, vec![]);
    assert_eq!(go(&t.email, &t.provider_id, &x.second_location.location_id).await, vec![]);

    let sh = &x.shared_inbox;
    assert_ne!(sh.person_ids[0], sh.person_ids[1]);
    let p = only(
        &go(&sh.email, &sh.provider_id, &sh.location_ids[0]).await,
        ProblemCode::EmailMultipleRoles,
        None,
        &sh.email,
    );
    assert!(p.message.contains(&sh.names[0]) && p.message.contains(&sh.names[1]), "{}", p.message);

    let nhs = &x.nhs;
    assert_eq!((nhs.provider_id.len(), nhs.location_id.len()), (3, 5));
    assert!(nhs.location_id.starts_with(&nhs.provider_id));
    assert_eq!(go(&nhs.email, &nhs.provider_id, &nhs.location_id).await, vec![]);

    let d = &x.deregistered_provider;
    let problems = go(&m.email, &d.provider_id, &d.location_id).await;
    assert_eq!(find(&problems, ProblemCode::ProviderDeregistered).value.as_deref(), Some(d.provider_id.as_str()));

    let u = &x.unregistered_email;
    only(&go(u, &m.provider_id, &m.location_id).await, ProblemCode::SenderNotRegistered, None, u);
}

// ---------------------------------------------------------------------------------------------------------
// Measurement (not run by default; prints, asserts no timing):
// `cargo test --release --test registry -- --ignored --nocapture`

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand with --release"]
async fn import_of_60000_locations_timing() {
    let t = std::time::Instant::now();
    let s = synthetic::generate(7, 30_000, 60_000);
    eprintln!("generate 30,000 providers / 60,000 locations: {:?}", t.elapsed());
    let mut dbs = vec![("sqlite", Db::sqlite().await)];
    if let Some(pg) = Db::postgres().await {
        dbs.push(("postgres", pg));
    }
    for (backend, db) in &dbs {
        for (what, dir, people) in [
            ("earlier directory (new)", &s.earlier_care_directory, None),
            ("directory + people", &s.care_directory, Some(&s.people)),
            ("directory + people again", &s.care_directory, Some(&s.people)),
        ] {
            let t = std::time::Instant::now();
            let report = registry::import_bytes(
                &db.store,
                Some(CsvInput { name: "directory.csv", bytes: dir.as_bytes() }),
                people.map(|p| CsvInput { name: "people.csv", bytes: p.as_bytes() }),
            )
            .await
            .unwrap();
            eprintln!("{backend}: {what}: {:?} ({report})", t.elapsed());
        }
    }
}

#[test]
#[ignore = "prints a sample of the synthetic registry"]
fn show_a_small_synthetic_registry() {
    let s = synthetic::generate(1, 50, 120);
    for text in [&s.care_directory, &s.earlier_care_directory, &s.people] {
        for line in text.lines().take(12) {
            println!("{line}");
        }
        println!("...");
    }
    println!("{:#?}", s.samples);
}
