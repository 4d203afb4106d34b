//! Where mail comes from. A local Maildir is the embedded default; IMAP joins it (issue 4) behind the same
//! two operations: fetch what is waiting, and settle a message into a folder once it is filed.

pub mod imap;
pub mod maildir;

pub use maildir::{Fetched, Maildir};
