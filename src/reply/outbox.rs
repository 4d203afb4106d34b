//! The outbox worker: takes replies that are due, hands each to a transport, and records the result.
//! Transient failures come back later with backoff; permanent ones are recorded for staff, never retried.

use std::path::PathBuf;

use crate::store::{DueReply, ReplyFailure, Store, StoreError, now_ms};

/// How a send went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again later (server down, 4xx).
    Transient(String),
    /// Never going to work (5xx, bad recipient).
    Permanent(String),
}

/// Somewhere replies go: an SMTP server, or a directory of .eml files (the embedded default).
pub trait Transport: Send + Sync {
    fn send(&self, reply: &DueReply) -> impl std::future::Future<Output = Result<(), SendError>> + Send;

    /// How many sends may run at once (each SMTP connection carries one at a time).
    fn connections(&self) -> usize {
        1
    }
}

/// Writes each reply to `<dir>/<message-id>.eml`: the embedded default, with no SMTP server.
pub struct FileTransport {
    pub dir: PathBuf,
}

impl FileTransport {
    /// The file a reply is written to; named by its fixed Message-ID, so a resend overwrites, never doubles.
    pub fn path_for(&self, mail_message_id: &str) -> PathBuf {
        let name: String = mail_message_id
            .trim_matches(|c| c == '<' || c == '>')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '@' { c } else { '_' })
            .collect();
        self.dir.join(format!("{name}.eml"))
    }
}

impl Transport for FileTransport {
    async fn send(&self, reply: &DueReply) -> Result<(), SendError> {
        let path = self.path_for(&reply.mail_message_id);
        let tmp = path.with_extension("eml.tmp");
        let write = async {
            tokio::fs::create_dir_all(&self.dir).await?;
            tokio::fs::write(&tmp, &reply.eml).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        write.await.map_err(|e| SendError::Transient(format!("cannot write {}: {e}", path.display())))
    }
}

/// Replies claimed at a time: small, so a claim's lease outlasts the sends it covers.
const CLAIM_BATCH: i64 = 10;

/// Backoff before attempt `attempts + 1`: 30 s doubling, capped at an hour.
pub fn backoff_ms(attempts: i64, base_ms: i64) -> i64 {
    let factor = 1i64 << attempts.clamp(0, 12);
    (base_ms.saturating_mul(factor)).min(3_600_000)
}

/// What one pass over the outbox did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub sent: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl std::ops::AddAssign for Drained {
    fn add_assign(&mut self, other: Drained) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.failed += other.failed;
    }
}

/// How the outbox retries and leases, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Transient failures before a reply is given up as failed.
    pub max_attempts: i64,
    /// First retry delay; doubles per attempt, capped at an hour.
    pub retry_base_ms: i64,
    /// How long a claim holds a reply (see `outbox.claim_lease_secs`).
    pub lease_ms: i64,
    /// The longest one send may take (`smtp.timeout_secs`): a reply is sent only while its claim outlasts it.
    pub send_timeout_ms: i64,
}

impl RetryPolicy {
    pub fn from_config(config: &crate::config::Config) -> RetryPolicy {
        let (max_attempts, retry_base_ms, send_timeout_ms) = match &config.smtp {
            Some(s) => (
                s.max_attempts,
                s.retry_base_ms,
                i64::try_from(s.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            ),
            None => (10, 30_000, 30_000),
        };
        let lease_ms = i64::try_from(config.outbox.claim_lease_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        RetryPolicy { max_attempts, retry_base_ms, lease_ms, send_timeout_ms }
    }
}

/// Where replies go, chosen by configuration: SMTP when `[smtp]` is set, else the outbox directory.
pub enum Sender {
    File(FileTransport),
    Smtp(Box<super::smtp::SmtpTransport>),
}

impl Sender {
    pub fn from_config(config: &crate::config::Config) -> Result<Sender, super::smtp::SmtpSetupError> {
        Ok(match &config.smtp {
            Some(smtp) => Sender::Smtp(Box::new(super::smtp::SmtpTransport::new(smtp, config)?)),
            None => Sender::File(FileTransport { dir: config.outbox.dir.clone() }),
        })
    }
}

impl Transport for Sender {
    async fn send(&self, reply: &DueReply) -> Result<(), SendError> {
        match self {
            Sender::File(t) => t.send(reply).await,
            Sender::Smtp(t) => t.send(reply).await,
        }
    }

    fn connections(&self) -> usize {
        match self {
            Sender::File(t) => t.connections(),
            Sender::Smtp(t) => t.connections(),
        }
    }
}

/// Sends every due reply once, over as many connections as the transport allows: each sender claims its
/// own replies. Gives up on a reply after `max_attempts` transient failures; the first retry waits
/// `retry_base_ms`, doubling each time.
pub async fn drain<T: Transport>(store: &Store, transport: &T, policy: &RetryPolicy) -> Result<Drained, StoreError> {
    let senders = (0..transport.connections().max(1)).map(|_| drain_one_connection(store, transport, policy));
    let mut done = Drained::default();
    for drained in futures_util::future::join_all(senders).await {
        done += drained?;
    }
    Ok(done)
}

/// One sender's share of [`drain`]: claims replies a few at a time and sends them one after another.
async fn drain_one_connection<T: Transport>(
    store: &Store,
    transport: &T,
    policy: &RetryPolicy,
) -> Result<Drained, StoreError> {
    let mut done = Drained::default();
    let mut after = 0;
    loop {
        let claimed_at = std::time::Instant::now();
        let due = store.claim_replies(after, CLAIM_BATCH, policy.lease_ms).await?;
        let Some(last) = due.last() else { return Ok(done) };
        after = last.id;
        // Which instance holds which replies (several share one outbox): `POSTROOM_LOG=postroom::reply::outbox=debug`.
        tracing::debug!(ids = ?due.iter().map(|r| r.id).collect::<Vec<_>>(), "replies claimed");
        for (i, reply) in due.iter().enumerate() {
            // A slow server can outlast the claim, and then another sender may take the reply: send only while
            // the claim outlasts a whole send; hand the rest back at once rather than at the claim's end.
            let held_ms = i64::try_from(claimed_at.elapsed().as_millis()).unwrap_or(i64::MAX);
            if i > 0 && held_ms.saturating_add(policy.send_timeout_ms) >= policy.lease_ms {
                let rest: Vec<i64> = due[i..].iter().map(|r| r.id).collect();
                tracing::warn!(
                    count = rest.len(),
                    held_ms,
                    "the outbox claim runs out before another send could finish: handed back"
                );
                store.release_replies(&rest).await?;
                after = reply.id - 1;
                break;
            }
            match transport.send(reply).await {
                Ok(()) => {
                    crate::failpoint::hit("before_reply_sent");
                    store.mark_reply_sent(reply.id).await?;
                    tracing::debug!(outbox_id = reply.id, kind = %reply.kind, "reply sent");
                    done.sent += 1;
                }
                Err(e) => {
                    let (error, permanent) = match e {
                        SendError::Permanent(m) => (m, true),
                        SendError::Transient(m) => (m, reply.attempts + 1 >= policy.max_attempts),
                    };
                    tracing::warn!(outbox_id = reply.id, kind = %reply.kind, permanent, %error, "reply not sent");
                    let retry_at = now_ms() + backoff_ms(reply.attempts, policy.retry_base_ms);
                    store.mark_reply_failed(reply.id, &ReplyFailure { error, permanent, retry_at }).await?;
                    if permanent { done.failed += 1 } else { done.retrying += 1 }
                }
            }
        }
    }
}
