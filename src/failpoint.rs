//! Crash-test hooks: `POSTROOM_FAILPOINT=<name>` aborts the process at that point, the way a power cut
//! or SIGKILL would, so tests can prove that a restart files each message exactly once.
//! Names: `after_record` (raw stored, nothing filed), `after_commit` (filed, not settled),
//! `imap_before_settle` (an IMAP batch filed, not yet moved), `before_reply_sent` (reply written, not
//! marked sent).

use std::sync::OnceLock;

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("POSTROOM_FAILPOINT").ok().filter(|v| !v.is_empty()));
    if armed.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
