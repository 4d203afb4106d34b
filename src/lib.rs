//! Postroom: the intake gateway for statutory notifications emailed as Word forms to England's care
//! regulator. Mail flows one way through the stages below; `pipeline` is the only module that knows the order.

pub mod forms;

/// `forms/` and `templates/` as compiled into the binary (see build.rs).
pub mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub mod config;
pub mod daemon;
pub mod demo;
pub mod failpoint;
pub mod ids;
pub mod mailbox;
pub mod message;
pub mod oauth2;
pub mod pipeline;
pub mod problem;
pub mod reference;
pub mod registry;
pub mod reply;
pub mod retention;
pub mod samples;
pub mod store;
pub mod tls;
pub mod validate;

/// Lower-case hex SHA-256: the key of raw messages and attachments in the ledger and in receipts.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
