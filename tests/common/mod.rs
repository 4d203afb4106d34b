//! One helper that starts Postroom on a fresh workspace (SQLite, Maildir, file outbox in a temp dir),
//! and builds providers' emails from the real form definitions.
#![allow(dead_code)]

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
    Notifier {
        name: "Jane Smith".into(),
        email: "jane.smith@oakfield-care.example".into(),
        provider_id: "1-101641531".into(),
        provider_name: "Oakfield Care Ltd".into(),
        location_id: "1-1000210669".into(),
        location_name: "Oakfield House".into(),
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_toml("test", postroom::config::DEFAULT_TOML, []).unwrap();
        config.resolve_paths(Some(dir.path()));
        let pipeline = postroom::daemon::open(config).await.unwrap();
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
        samples::email(&notifier().email, "notifications@postroom.localhost", subject, message_id, attachments).unwrap()
    }

    pub async fn process(&self, key: &str, raw: &[u8]) -> Outcome {
        let mb = self.pipeline.config.mailboxes[0].clone();
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
