//! Registration data: which providers and locations are registered, and who may notify for them. The
//! regulator's care directory (CSV) fills `providers` and `locations`; Postroom's own people file fills
//! `people`, one row per registered role held under an email address. [`import()`] loads both, all or
//! nothing; [`check()`] answers, for one form, whether its sender may notify for the provider and location
//! it names, with messages precise enough to fix a wrong ID at the first attempt; [`synthetic::generate`]
//! makes a realistic registry for the demo and the tests.

pub mod check;
pub mod import;
mod rows;
pub mod synthetic;

use std::fmt;

pub use check::check;
pub use import::{
    CsvInput, ImportError, ImportReport, Progress, Quiet, RowError, import, import_bytes, import_bytes_with,
};

/// A registered role, as written in the people file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    NominatedIndividual,
    RegisteredManager,
    ResponsibleIndividual,
    MainPartner,
    Delegate,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::NominatedIndividual,
        Role::RegisteredManager,
        Role::ResponsibleIndividual,
        Role::MainPartner,
        Role::Delegate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::NominatedIndividual => "nominated_individual",
            Role::RegisteredManager => "registered_manager",
            Role::ResponsibleIndividual => "responsible_individual",
            Role::MainPartner => "main_partner",
            Role::Delegate => "delegate",
        }
    }

    /// Reads a role, forgiving case, spaces and hyphens (`Registered Manager` is `registered_manager`).
    pub fn parse(text: &str) -> Option<Role> {
        let key: String =
            text.trim().chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect();
        Role::ALL.iter().copied().find(|r| r.as_str() == key)
    }

    /// Whether the role covers every location of the provider (all but registered manager).
    pub fn covers_provider(self) -> bool {
        self != Role::RegisteredManager
    }

    /// The role in words, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Role::NominatedIndividual => "nominated individual",
            Role::RegisteredManager => "registered manager",
            Role::ResponsibleIndividual => "responsible individual",
            Role::MainPartner => "main partner",
            Role::Delegate => "delegate",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
