//! One helper that starts Postroom on a fresh workspace (SQLite, Maildir, file outbox in a temp dir),
//! and builds providers' emails from the real form definitions.
#![allow(dead_code)]

pub mod mail;

use std::collections::BTreeMap;
use std::path::PathBuf;

use postroom::config::Config;
use postroom::forms::{FormDef, Value};
use postroom::pipeline::{Outcome, Pipeline};
use postroom::samples::{self, Attached, Notifier};

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub pipeline: Pipeline,
}

pub fn notifier() -> Notifier {
    samples::example_notifier()
}

/// A small registry in the regulator's care-directory layout: Oakfield Care with two homes, Jane Smith
/// managing Oakfield House; Birchwood Care (another provider) with one home.
pub const DIRECTORY_CSV: &str = "\
Care directory with ratings\r
Data as at 01/11/2026\r
\r
Name,Also known as,Address,Postcode,Phone number,Service's website (if available),Service types,Date of latest check,Specialisms/services,Provider name,Local authority,Region,Location URL,CQC Location ID (for office use only),CQC Provider ID (for office use only)\r
Oakfield House,,1 Park Lane Leeds,LS1 4AP,0113 496 0000,,Care home service,01/05/2026,Dementia,Oakfield Care Ltd,Leeds,Yorkshire and The Humber,,1-1000210669,1-101641531\r
Oakfield Lodge,,3 Park Lane Leeds,LS1 4AQ,0113 496 0001,,Care home service,01/05/2026,Dementia,Oakfield Care Ltd,Leeds,Yorkshire and The Humber,,1-1000210670,1-101641531\r
Birchwood,,9 High Street York,YO1 7HH,01904 496000,,Care home service,01/03/2026,,Birchwood Care Ltd,York,Yorkshire and The Humber,,1-2000000001,1-202020202\r
";

/// The directory as an earlier import listed it: Old Care Ltd and Oakfield Annexe have since gone, so they
/// are deregistered (an old ID told apart from a mistyped one).
pub fn earlier_directory_csv() -> String {
    format!(
        "{DIRECTORY_CSV}Oakfield Annexe,,5 Park Lane Leeds,LS1 4AR,0113 496 0003,,Care home service,01/05/2025,,Oakfield Care Ltd,Leeds,Yorkshire and The Humber,,1-1000210671,1-101641531\r\n\
         Old Care,,1 Mill Road Hull,HU1 1AA,01482 496000,,Care home service,01/01/2024,,Old Care Ltd,Hull,Yorkshire and The Humber,,1-3000000001,1-303030303\r\n"
    )
}

pub const PEOPLE_CSV: &str = "\
person_id,name,role,email,phone,provider_id,location_id
P1,Jane Smith,registered_manager,jane.smith@oakfield-care.example,0113 496 0000,1-101641531,1-1000210669
P2,Tom Oak,nominated_individual,tom.oak@oakfield-care.example,0113 496 0002,1-101641531,
P3,Ann Birch,registered_manager,ann.birch@birchwood.example,01904 496000,1-202020202,1-2000000001
P4,Raj Patel,registered_manager,office@oakfield-care.example,0113 496 0004,1-101641531,1-1000210669
P5,Mary Jones,registered_manager,office@oakfield-care.example,0113 496 0005,1-101641531,1-1000210670
";

/// The database for one test: a SQLite file in the workspace, or, with `POSTROOM_TEST_BACKEND=postgres`, a
/// throwaway database on the server named by `POSTROOM_TEST_PG` (scripts/test drops `postroom_t_*` after).
pub async fn test_database_url(dir: &std::path::Path) -> String {
    if std::env::var("POSTROOM_TEST_BACKEND").as_deref() != Ok("postgres") {
        return format!("sqlite://{}/var/postroom.db", dir.display());
    }
    let admin =
        std::env::var("POSTROOM_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let name = format!("postroom_t_{}", hex::encode(bytes));
    postroom::store::create_database(&admin, &name).await.unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

impl TestApp {
    pub async fn start() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml("test", postroom::config::DEFAULT_TOML, []).unwrap();
        config.resolve_paths(Some(dir.path()));
        config.database.url = test_database_url(dir.path()).await;
        let pipeline = postroom::daemon::open(config).await.unwrap();
        let earlier = earlier_directory_csv();
        postroom::registry::import_bytes(
            &pipeline.store,
            Some(postroom::registry::CsvInput { name: "earlier.csv", bytes: earlier.as_bytes() }),
            None,
        )
        .await
        .unwrap();
        postroom::registry::import_bytes(
            &pipeline.store,
            Some(postroom::registry::CsvInput { name: "directory.csv", bytes: DIRECTORY_CSV.as_bytes() }),
            Some(postroom::registry::CsvInput { name: "people.csv", bytes: PEOPLE_CSV.as_bytes() }),
        )
        .await
        .unwrap();
        TestApp { dir, pipeline }
    }

    pub fn def(&self, id: &str) -> FormDef {
        self.pipeline.catalog.current(id).unwrap().clone()
    }

    pub fn today(&self) -> chrono::NaiveDate {
        chrono::Utc::now().with_timezone(&chrono_tz::Europe::London).date_naive()
    }

    /// A correctly filled form of `id`, with `change` applied to its answers.
    pub fn form(&self, id: &str, change: impl FnOnce(&mut BTreeMap<String, Value>)) -> Vec<u8> {
        let def = self.def(id);
        let mut values = samples::filled(&def, &notifier(), self.today());
        change(&mut values);
        postroom::forms::render::render(&def, Some(&values)).unwrap()
    }

    pub fn email(&self, message_id: &str, subject: &str, attachments: Vec<Attached>) -> Vec<u8> {
        self.email_from(&notifier().email, message_id, subject, attachments)
    }

    pub fn email_from(&self, from: &str, message_id: &str, subject: &str, attachments: Vec<Attached>) -> Vec<u8> {
        samples::email(from, "notifications@postroom.localhost", subject, message_id, attachments).unwrap()
    }

    pub async fn process(&self, key: &str, raw: &[u8]) -> Outcome {
        self.process_in("notifications", key, raw).await
    }

    pub async fn process_in(&self, mailbox: &str, key: &str, raw: &[u8]) -> Outcome {
        let mb = self.pipeline.config.mailbox(mailbox).unwrap().clone();
        self.pipeline.process(&mb, key, raw, chrono::Utc::now()).await.unwrap()
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.pipeline.config.outbox.dir.clone()
    }

    /// The reply files written to the outbox, as text.
    pub fn outbox(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.outbox_dir()) else { return Vec::new() };
        let mut v: Vec<String> = entries.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect();
        v.sort();
        v
    }
}

pub fn codes(o: &Outcome) -> Vec<&'static str> {
    o.problems.iter().map(|p| p.code.as_str()).collect()
}

/// Whether `cond` comes true within `limit` (checked every 20 ms).
pub async fn until(limit: std::time::Duration, mut cond: impl AsyncFnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
