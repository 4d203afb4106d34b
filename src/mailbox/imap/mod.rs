//! IMAP mailboxes (issue 4): the same two operations as a Maildir — fetch what waits in the inbox, settle each
//! message into a folder once it is filed — against a real server over async-imap on tokio.
//!
//! The rules that keep mail safe hold here too. **Store first, settle last:** a message is fetched with
//! `BODY.PEEK[]` (never setting `\Seen`), handed to [`Pipeline::process`](crate::pipeline::Pipeline::process),
//! which commits it to the ledger under the key `UIDVALIDITY:UID`, and only then moved out of the inbox
//! (`UID MOVE`, or `UID COPY` + `\Deleted` + `UID EXPUNGE`) and acknowledged with `mark_settled`. A crash
//! anywhere in between leaves the message in the inbox, where the next session finds it and the ledger
//! recognises it, so it is settled, never filed twice. **The inbox is the queue:** every message in it is
//! pending, read or unread, so a person opening the mailbox never hides mail from Postroom. **Nothing hangs:**
//! every command runs under `command_timeout_ms`; a timeout or broken connection drops the session and the
//! loop reconnects with exponential backoff and jitter; IDLE is renewed well before servers drop it, and
//! polling stays on as the safety net. **Nothing is retried forever:** a message over the size limit, or
//! one the server will not hand over in three isolated attempts, is recorded unfetched and quarantined once.
//!
//! [`connect`] opens an [`ImapSession`] (implicit TLS, STARTTLS or plain; LOGIN or XOAUTH2);
//! [`run_mailbox`] is the per-mailbox loop the daemon runs, one task per mailbox, so one failing mailbox
//! never stops the others.

mod connect;
mod reconcile;
mod run;
mod session;
mod wire;

pub use connect::{ImapStream, access_token, connect};
pub use reconcile::{FolderCount, Reconciliation, reconcile};
pub use run::{Backoff, MAX_FETCH_ATTEMPTS, drain_once, reconcile_mailbox, run_mailbox, source_key};
pub use session::{FetchedMessage, ImapSession, Pending, ServerCaps};

/// What went wrong talking to an IMAP server. Each message names the account (`user at host:port`), what
/// failed, and what to check; none ever contains a password or token.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The configuration cannot work (unreadable CA file, impossible folder name, ...).
    #[error("IMAP {account}: {message}")]
    Config { account: String, message: String },
    /// No TCP connection.
    #[error(
        "cannot connect to IMAP server {account}: {source}; check `host` and `port`, that the server is up, \
         and any firewall in between"
    )]
    Connect { account: String, source: std::io::Error },
    /// The TLS handshake or STARTTLS failed.
    #[error("TLS with IMAP server {account} failed: {message}")]
    Tls { account: String, message: String },
    /// The server refused the credentials, or they could not be obtained.
    #[error("IMAP authentication for {account} failed: {message}")]
    Auth { account: String, message: String },
    /// No OAuth2 access token from the token endpoint (client credentials): nothing was sent to the server.
    #[error("no OAuth2 access token for IMAP {account}: {message}")]
    Token { account: String, message: String },
    /// A command got no answer in time: the connection is treated as dead.
    #[error(
        "IMAP {command} on {account} got no answer within {after_ms} ms: the connection is treated as dead \
         (check the network; raise `command_timeout_ms` for a slow server)"
    )]
    Timeout { account: String, command: String, after_ms: u64 },
    /// The server answered NO or BAD; the connection is still usable.
    #[error("IMAP server {account} refused {command}: {message}")]
    Refused { account: String, command: String, message: String },
    /// The connection broke (closed, I/O error, unparseable response); it is no longer usable.
    #[error("IMAP connection to {account} failed during {command}: {message}")]
    Connection { account: String, command: String, message: String },
}

impl ImapError {
    /// Whether the session is unusable after this error (the caller reconnects).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ImapError::Connect { .. }
                | ImapError::Tls { .. }
                | ImapError::Timeout { .. }
                | ImapError::Connection { .. }
        )
    }
}
