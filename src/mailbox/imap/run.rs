//! The per-mailbox loop: connect, make the folders, select the inbox, then file and settle whatever waits,
//! wait for a change (IDLE or poll), and again, until shutdown. Any IMAP failure drops the session and the
//! loop reconnects after an exponential, jittered backoff.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::session::{FetchedMessage, ImapSession, Pending};
use super::{ImapError, connect};
use crate::config::{FoldersConfig, ImapConfig, MailboxConfig};
use crate::daemon::Shutdown;
use crate::pipeline::{Folder, Incoming, Pipeline, PipelineError, Staged};

/// Isolated fetch attempts after which a message the server will not hand over is quarantined unfetched.
pub const MAX_FETCH_ATTEMPTS: u32 = 3;

/// The ledger key of a message in an IMAP inbox. A new UIDVALIDITY gives every message a new key; the
/// ledger's duplicate detection (Message-ID, sender and form hashes) still recognises mail filed before.
pub fn source_key(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity}:{uid}")
}

/// Reconnect delays: doubling from `min` up to `max`, each with up to half again of random jitter (never
/// past `max`), so many mailboxes of one failed server do not reconnect in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(min_ms: u64, max_ms: u64) -> Backoff {
        let min = Duration::from_millis(min_ms.max(1));
        Backoff { min, max: Duration::from_millis(max_ms).max(min), failures: 0 }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.min.saturating_mul(1u32 << self.failures.min(20)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = u64::try_from(base.as_millis() / 2).unwrap_or(u64::MAX);
        let jitter = if half == 0 { 0 } else { random_u64() % (half + 1) };
        (base + Duration::from_millis(jitter)).min(self.max)
    }

    /// After a good session: start from `min` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| u64::from(Utc::now().timestamp_subsec_nanos()))
}

/// What the loop remembers across sessions of one mailbox.
struct State {
    backoff: Backoff,
    uidvalidity: Option<u32>,
    /// Failed fetch attempts per UID (of the current UIDVALIDITY).
    fetch_failures: HashMap<u32, u32>,
}

impl State {
    fn new(cfg: &ImapConfig) -> State {
        State {
            backoff: Backoff::new(cfg.backoff_min_ms, cfg.backoff_max_ms),
            uidvalidity: None,
            fetch_failures: HashMap::new(),
        }
    }
}

/// Reads one IMAP mailbox until shutdown: files every message in its inbox through `p` and settles it into
/// the folder its outcome names. Errors are logged with the mailbox's name and retried; this returns only
/// on shutdown (or at once, with an error, if `mailbox` is not an IMAP mailbox). Run one per mailbox, each
/// in its own task, so one failing mailbox never stops the others.
#[tracing::instrument(skip_all, fields(mailbox = %mailbox.name))]
pub async fn run_mailbox(p: &Pipeline, mailbox: &MailboxConfig, mut shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(cfg) = mailbox.imap.as_ref() else {
        anyhow::bail!("mailbox `{}` has no [mailboxes.imap] table, so it cannot be read over IMAP", mailbox.name)
    };
    let mut state = State::new(cfg);
    let lease = Duration::from_millis(u64::try_from(crate::daemon::lease_ms(&p.config)).unwrap_or(30_000));
    let mut waiting_logged = false;
    while !shutdown.requested() {
        // One poller per mailbox across instances: wait for the lease (its holder renews it every round).
        if !crate::daemon::holds(p, &mailbox.name).await {
            if !waiting_logged {
                tracing::info!(mailbox = %mailbox.name, "another instance polls this mailbox; standing by");
                waiting_logged = true;
            }
            shutdown.sleep(lease / 3).await;
            continue;
        }
        waiting_logged = false;
        if let Err(e) = session(p, mailbox, cfg, &mut state, &mut shutdown).await {
            let delay = state.backoff.next_delay();
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            match &e {
                ImapError::Token { .. } => tracing::error!(
                    mailbox = %mailbox.name, error = %e, retry_in_ms,
                    "IMAP MAILBOX NOT BEING READ: OAUTH2 TOKEN REQUEST FAILED; fix the app registration or client \
                     secret as the error says (retrying with backoff)"
                ),
                ImapError::Auth { .. } | ImapError::Config { .. } => tracing::error!(
                    mailbox = %mailbox.name, error = %e, retry_in_ms,
                    "IMAP MAILBOX NOT BEING READ: cannot log in; fix the configuration or credentials"
                ),
                _ => {
                    tracing::error!(mailbox = %mailbox.name, error = %e, retry_in_ms, "IMAP mailbox failed; reconnecting")
                }
            }
            shutdown.sleep(delay).await;
        }
    }
    tracing::info!(mailbox = %mailbox.name, "IMAP mailbox stopped");
    Ok(())
}

/// Connects, creates missing folders, selects the inbox; returns the session and the inbox's UIDVALIDITY.
async fn open(mailbox: &MailboxConfig, cfg: &ImapConfig, state: &mut State) -> Result<(ImapSession, u32), ImapError> {
    let mut s = connect(cfg).await?;
    let caps = s.capabilities();
    tracing::info!(account = %s.account(), idle = caps.idle, r#move = caps.mv, uidplus = caps.uidplus, "IMAP connected");
    s.ensure_folders(&cfg.folders).await?;
    let uidvalidity = s.select_inbox().await?;
    if let Some(before) = state.uidvalidity.replace(uidvalidity)
        && before != uidvalidity
    {
        tracing::warn!(
            mailbox = %mailbox.name, before, now = uidvalidity,
            "the inbox's UIDVALIDITY changed (folder recreated or restored): every message has a new key; \
             mail filed before is recognised as a duplicate, not filed twice"
        );
        state.fetch_failures.clear();
    }
    Ok((s, uidvalidity))
}

/// One connection's life: returns Ok on shutdown, Err when the session failed.
#[tracing::instrument(skip_all, fields(mailbox = %mailbox.name))]
async fn session(
    p: &Pipeline,
    mailbox: &MailboxConfig,
    cfg: &ImapConfig,
    state: &mut State,
    shutdown: &mut Shutdown,
) -> Result<(), ImapError> {
    // Connecting can take long (a server slowing down failed logins, a dead host): shutdown need not wait.
    let (mut s, uidvalidity) = tokio::select! {
        r = open(mailbox, cfg, state) => r?,
        () = stopped(shutdown) => return Ok(()),
    };
    let poll = Duration::from_millis(cfg.poll_interval_ms.max(1));
    let reconcile_every = Duration::from_secs(cfg.reconcile_interval_secs.max(1));
    let mut last_reconciled: Option<std::time::Instant> = None;
    let mut previous: Option<Vec<u32>> = None;
    // IDLE never outlasts a third of the lease, so the lease is renewed in time.
    let lease = Duration::from_millis(u64::try_from(crate::daemon::lease_ms(&p.config)).unwrap_or(30_000));
    let poll = poll.min(lease / 3);
    loop {
        if shutdown.requested() {
            let _ = s.logout().await;
            return Ok(());
        }
        if !crate::daemon::holds(p, &mailbox.name).await {
            tracing::warn!(mailbox = %mailbox.name, "lost the mailbox lease to another instance; standing by");
            let _ = s.logout().await;
            return Ok(());
        }
        // A client-credentials token near expiry: log in again with a fresh one before the server ends the
        // session (Microsoft 365 does when the token expires). The loop around reconnects at once.
        if s.token_renew_at().is_some_and(|at| std::time::Instant::now() >= at) {
            tracing::info!(mailbox = %mailbox.name, "OAuth2 access token due for renewal: reconnecting");
            let _ = s.logout().await;
            return Ok(());
        }
        let pending = s.pending(p.config.limits.max_message_bytes).await?;
        let uids: Vec<u32> = pending.iter().map(|m| m.uid).collect();
        let unchanged = previous.as_ref() == Some(&uids);
        let settled = drain(p, mailbox, cfg, &mut s, uidvalidity, &pending, state, shutdown).await?;
        // A full round worked: the next failure starts the backoff from the bottom again.
        state.backoff.reset();
        previous = Some(uids);
        // Work done: look again at once (more may have come). Nothing done, or the same set again (a message
        // that keeps failing): wait for a change.
        if settled > 0 && !unchanged {
            continue;
        }
        // The inbox has just been drained: anything the ledger has not seen now is worth reporting.
        if last_reconciled.is_none_or(|t| t.elapsed() >= reconcile_every) {
            match super::reconcile(p, mailbox, &mut s, uidvalidity, &cfg.folders).await {
                Ok(r) => r.log(),
                Err(e) => tracing::error!(mailbox = %mailbox.name, error = %e, "reconciliation failed"),
            }
            last_reconciled = Some(std::time::Instant::now());
        }
        // Wake in time to renew the token (checked at the top of the loop).
        let wait =
            s.token_renew_at().map_or(poll, |at| poll.min(at.saturating_duration_since(std::time::Instant::now())));
        s.wait_for_change(wait, shutdown).await?;
    }
}

/// One pass over an IMAP mailbox (for `run --once` and tools): connect, file and settle everything waiting
/// until a look finds nothing new, log out. Returns how many messages were settled. Errors are returned,
/// not retried.
#[tracing::instrument(skip_all, fields(mailbox = %mailbox.name))]
pub async fn drain_once(p: &Pipeline, mailbox: &MailboxConfig, shutdown: &Shutdown) -> anyhow::Result<usize> {
    let Some(cfg) = mailbox.imap.as_ref() else {
        anyhow::bail!("mailbox `{}` has no [mailboxes.imap] table, so it cannot be read over IMAP", mailbox.name)
    };
    let mut state = State::new(cfg);
    let (mut s, uidvalidity) = open(mailbox, cfg, &mut state).await?;
    let mut total = 0;
    let mut previous: Option<Vec<u32>> = None;
    while !shutdown.requested() {
        let pending = s.pending(p.config.limits.max_message_bytes).await?;
        let uids: Vec<u32> = pending.iter().map(|m| m.uid).collect();
        if uids.is_empty() || previous.as_ref() == Some(&uids) {
            break;
        }
        let settled = drain(p, mailbox, cfg, &mut s, uidvalidity, &pending, &mut state, shutdown).await?;
        total += settled;
        if settled == 0 {
            break;
        }
        previous = Some(uids);
    }
    let _ = s.logout().await;
    Ok(total)
}

/// Connects, reconciles the mailbox's folders with the ledger, logs out (for `postroom reconcile`).
pub async fn reconcile_mailbox(p: &Pipeline, mailbox: &MailboxConfig) -> anyhow::Result<super::Reconciliation> {
    let Some(cfg) = mailbox.imap.as_ref() else {
        anyhow::bail!("mailbox `{}` has no [mailboxes.imap] table, so it cannot be read over IMAP", mailbox.name)
    };
    let mut state = State::new(cfg);
    let (mut s, uidvalidity) = open(mailbox, cfg, &mut state).await?;
    let r = super::reconcile(p, mailbox, &mut s, uidvalidity, &cfg.folders).await;
    let _ = s.logout().await;
    r
}

/// Resolves once shutdown is requested.
async fn stopped(shutdown: &mut Shutdown) {
    while !shutdown.requested() {
        shutdown.sleep(Duration::from_secs(3600)).await;
    }
}

/// The folder name on the server for an outcome.
pub(super) fn folder_name(folders: &FoldersConfig, folder: Folder) -> &str {
    match folder {
        Folder::Processed => &folders.processed,
        Folder::Rejected => &folders.rejected,
        Folder::Quarantine => &folders.quarantine,
    }
}

/// Files and settles `pending`: unfetchable ones recorded without fetching, the rest fetched in batches.
/// Store first (inside `process`), then move, then acknowledge. Returns how many messages were settled.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(mailbox = %mailbox.name, pending = pending.len()))]
async fn drain(
    p: &Pipeline,
    mailbox: &MailboxConfig,
    cfg: &ImapConfig,
    s: &mut ImapSession,
    uidvalidity: u32,
    pending: &[Pending],
    state: &mut State,
    shutdown: &Shutdown,
) -> Result<usize, ImapError> {
    let present: BTreeSet<u32> = pending.iter().map(|m| m.uid).collect();
    state.fetch_failures.retain(|uid, _| present.contains(uid));
    let failures = |uid: u32, state: &State| state.fetch_failures.get(&uid).copied().unwrap_or(0);

    // Too big, or refused too often: quarantined once, unfetched, never retried on every poll.
    let mut settled = 0;
    let mut done = Vec::new();
    for m in pending {
        let reason = if m.oversize {
            "size:oversize"
        } else if failures(m.uid, state) >= MAX_FETCH_ATTEMPTS {
            "fetch:failed"
        } else {
            continue;
        };
        let key = source_key(uidvalidity, m.uid);
        match p.record_unfetchable(mailbox, &key, m.size, reason, Utc::now()).await {
            Ok(outcome) => done.push((m.uid, outcome.ledger_id, folder_name(&cfg.folders, outcome.folder).to_string())),
            Err(e) => tracing::error!(mailbox = %mailbox.name, key, error = %e, "cannot record an unfetchable message"),
        }
    }
    settled += settle(p, mailbox, s, &done).await?;

    // Messages that failed before are fetched one at a time, so one bad message cannot sink a batch.
    let (mut suspects, fresh): (Vec<&Pending>, Vec<&Pending>) = pending
        .iter()
        .filter(|m| !m.oversize && failures(m.uid, state) < MAX_FETCH_ATTEMPTS)
        .partition(|m| failures(m.uid, state) > 0);
    // The least suspect first: a message that only shared a batch with a bad one is not held up by it.
    suspects.sort_by_key(|m| (failures(m.uid, state), m.uid));
    let batches = fetch_batches(&fresh, cfg.fetch_batch, cfg.fetch_batch_bytes)
        .into_iter()
        .chain(suspects.iter().map(|m| vec![m.uid]));
    // A backlog can take longer to drain than the lease lasts: renew it as we go (every third of the lease, as
    // between rounds), so no other instance starts draining the same inbox; once lost, settle what is filed
    // and stop.
    let renew_every = Duration::from_millis(u64::try_from(crate::daemon::lease_ms(&p.config)).unwrap_or(30_000)) / 3;
    let mut lease = LeaseRenewal { every: renew_every, renewed: std::time::Instant::now(), lost: false };
    // A pipeline on one connection: while a batch is filed, the one before it is moved out of the inbox and
    // the next one fetched, so the server's round trips overlap the filing instead of adding to it.
    // The next batch's first chunk is also read and recorded then, so the filing never waits for it.
    let mut batches = batches;
    let batch_size = p.config.daemon.batch_size.max(1);
    let mut in_hand =
        fetch_next(s, &mut batches, state, mailbox).await?.map(|(uids, m)| (Fetched::new(uidvalidity, uids, m), None));
    let mut unsettled: Vec<(u32, i64, String)> = Vec::new();
    while let Some((fetched, staged)) = in_hand.take() {
        if shutdown.requested() || lease.lost {
            break;
        }
        for uid in &fetched.uids {
            if !fetched.messages.iter().any(|f| f.uid == *uid) {
                // Gone (another instance settled it) or withheld; a withheld one is still pending next time.
                *state.fetch_failures.entry(*uid).or_default() += 1;
                tracing::warn!(mailbox = %mailbox.name, uid, "message not returned by the server");
            }
        }
        for m in &fetched.messages {
            state.fetch_failures.remove(&m.uid);
        }
        let previous = std::mem::take(&mut unsettled);
        let filing = file_fetched(p, mailbox, cfg, &fetched, staged, shutdown, &mut lease);
        let io = async {
            let moved = if previous.is_empty() {
                0
            } else {
                crate::failpoint::hit("imap_before_settle");
                settle(p, mailbox, s, &previous).await?
            };
            let next = match shutdown.requested() {
                true => None,
                false => fetch_next(s, &mut batches, state, mailbox).await?,
            };
            let next = match next {
                Some((uids, messages)) => {
                    let next = Fetched::new(uidvalidity, uids, messages);
                    let incoming = next.incoming();
                    let first = &incoming[..incoming.len().min(batch_size)];
                    let staged = match shutdown.requested() || first.is_empty() {
                        true => None,
                        false => Some(p.stage(mailbox, first).await),
                    };
                    drop(incoming);
                    Some((next, staged))
                }
                None => None,
            };
            Ok::<_, ImapError>((moved, next))
        };
        let (done, io) = tokio::join!(filing, io);
        // On an error the batch just filed stays in the inbox: the next round finds it filed and moves it.
        let (moved, next) = io?;
        settled += moved;
        unsettled = done;
        in_hand = next;
    }
    if !unsettled.is_empty() {
        crate::failpoint::hit("imap_before_settle");
        settled += settle(p, mailbox, s, &unsettled).await?;
    }
    Ok(settled)
}

/// When the mailbox lease was last renewed during a drain, and whether it was lost.
struct LeaseRenewal {
    every: Duration,
    renewed: std::time::Instant,
    lost: bool,
}

/// Groups messages, in order, into fetches of at most `count` messages and at most `bytes` by the server's
/// sizes; a message larger than `bytes` is fetched alone.
fn fetch_batches(pending: &[&Pending], count: usize, bytes: u64) -> Vec<Vec<u32>> {
    let mut batches: Vec<Vec<u32>> = Vec::new();
    let mut batch_bytes = 0u64;
    for m in pending {
        match batches.last_mut() {
            Some(b) if b.len() < count.max(1) && batch_bytes.saturating_add(m.size) <= bytes => {
                b.push(m.uid);
                batch_bytes += m.size;
            }
            _ => {
                batches.push(vec![m.uid]);
                batch_bytes = m.size;
            }
        }
    }
    batches
}

/// Fetches the next batch the server hands over; a refused one counts against its messages and is skipped.
async fn fetch_next(
    s: &mut ImapSession,
    batches: &mut impl Iterator<Item = Vec<u32>>,
    state: &mut State,
    mailbox: &MailboxConfig,
) -> Result<Option<(Vec<u32>, Vec<FetchedMessage>)>, ImapError> {
    for batch in batches.by_ref() {
        match s.fetch(&batch).await {
            Ok(fetched) => return Ok(Some((batch, fetched))),
            Err(e) => {
                for uid in &batch {
                    *state.fetch_failures.entry(*uid).or_default() += 1;
                }
                if e.is_connection_lost() {
                    return Err(e);
                }
                tracing::warn!(mailbox = %mailbox.name, error = %e, count = batch.len(), "fetch refused");
            }
        }
    }
    Ok(None)
}

/// A fetched batch with its messages' source keys and arrival times, fixed once so that a chunk staged
/// ahead is filed as it was recorded.
struct Fetched {
    /// The UIDs asked for.
    uids: Vec<u32>,
    messages: Vec<FetchedMessage>,
    keys: Vec<String>,
    received_at: Vec<DateTime<Utc>>,
}

impl Fetched {
    fn new(uidvalidity: u32, uids: Vec<u32>, messages: Vec<FetchedMessage>) -> Fetched {
        let keys = messages.iter().map(|m| source_key(uidvalidity, m.uid)).collect();
        let now = Utc::now();
        let received_at = messages.iter().map(|m| m.internal_date.filter(|d| *d <= now).unwrap_or(now)).collect();
        Fetched { uids, messages, keys, received_at }
    }

    fn incoming(&self) -> Vec<Incoming<'_>> {
        (self.messages.iter().zip(&self.keys).zip(&self.received_at))
            .map(|((m, key), at)| Incoming { source_key: key, raw: &m.raw, received_at: *at })
            .collect()
    }
}

/// Files fetched messages, `daemon.batch_size` per transaction, each batch read and recorded while the one
/// before it is filed (the first, `staged`, may have been read and recorded already), renewing the mailbox
/// lease as it goes (a backlog can take longer than the lease lasts; once lost, it stops). Returns what was
/// filed, to settle.
async fn file_fetched(
    p: &Pipeline,
    mailbox: &MailboxConfig,
    cfg: &ImapConfig,
    fetched: &Fetched,
    staged: Option<Result<Staged, PipelineError>>,
    shutdown: &Shutdown,
    lease: &mut LeaseRenewal,
) -> Vec<(u32, i64, String)> {
    let batch_size = p.config.daemon.batch_size.max(1);
    let incoming = fetched.incoming();
    let chunks: Vec<(&[Incoming], &[FetchedMessage])> =
        incoming.chunks(batch_size).zip(fetched.messages.chunks(batch_size)).collect();
    let chunks = &chunks;
    let mut done = Vec::with_capacity(fetched.messages.len());
    // A two-stage pipeline: while one batch is filed, the next is read, recorded and looked up. A staged
    // batch not filed (shutdown, lost lease) is recorded only: the next round finds it unfinished.
    let mut next = usize::from(staged.is_some());
    let mut staged: Option<(usize, Result<Staged, PipelineError>)> = staged.map(|s| (0, s));
    loop {
        let stop = shutdown.requested() || lease.lost;
        let stage = chunks.get(next).filter(|_| !stop).map(|(chunk, _)| p.stage(mailbox, chunk));
        let file = staged.take().map(|(i, s)| async move {
            let filed = match s {
                Ok(s) => p.file_staged(mailbox, chunks[i].0, s).await,
                Err(e) => Err(e),
            };
            (i, filed)
        });
        let (filed, stage) = match (file, stage) {
            (None, None) => break,
            (Some(file), None) => (Some(file.await), None),
            (None, Some(stage)) => (None, Some(stage.await)),
            (Some(file), Some(stage)) => {
                let (filed, stage) = tokio::join!(file, stage);
                (Some(filed), Some(stage))
            }
        };
        if let Some(stage) = stage {
            staged = Some((next, stage));
            next += 1;
        }
        let Some((i, filed)) = filed else { continue };
        let (chunk, uids) = chunks[i];
        match filed {
            Ok(outcomes) => {
                for ((outcome, m), f) in outcomes.into_iter().zip(chunk).zip(uids) {
                    match outcome {
                        Ok(o) => done.push((f.uid, o.ledger_id, folder_name(&cfg.folders, o.folder).to_string())),
                        // Left in the inbox, tried again next round; the others go on.
                        Err(e) => {
                            tracing::error!(mailbox = %mailbox.name, key = m.source_key, error = %e, "cannot file message; will retry")
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(mailbox = %mailbox.name, count = chunk.len(), error = %e, "cannot file a batch; will retry")
            }
        }
        if shutdown.requested() {
            break;
        }
        if lease.renewed.elapsed() >= lease.every {
            if !crate::daemon::holds(p, &mailbox.name).await {
                lease.lost = true;
                break;
            }
            lease.renewed = std::time::Instant::now();
        }
    }
    done
}

/// Moves filed messages out of the inbox, then records where they went.
async fn settle(
    p: &Pipeline,
    mailbox: &MailboxConfig,
    s: &mut ImapSession,
    done: &[(u32, i64, String)],
) -> Result<usize, ImapError> {
    if done.is_empty() {
        return Ok(0);
    }
    let moves: Vec<(u32, String)> = done.iter().map(|(uid, _, folder)| (*uid, folder.clone())).collect();
    s.settle(&moves).await?;
    let settled: Vec<(i64, &str)> = done.iter().map(|(_, id, folder)| (*id, folder.as_str())).collect();
    if let Err(e) = p.store.mark_settled_many(&settled).await {
        // The moves happened; only the acknowledgement is missing, and reconciliation shows it.
        tracing::error!(mailbox = %mailbox.name, count = done.len(), error = %e, "settled but not recorded");
    }
    tracing::info!(mailbox = %mailbox.name, count = done.len(), "settled");
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_within_bounds_and_resets() {
        let mut b = Backoff::new(100, 1000);
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert!((100..=150).contains(&delays[0]), "{delays:?}");
        assert!((200..=300).contains(&delays[1]), "{delays:?}");
        assert!((400..=600).contains(&delays[2]), "{delays:?}");
        assert!(delays.iter().all(|d| (100..=1000).contains(d)), "{delays:?}");
        assert_eq!(delays[7], 1000);
        b.reset();
        assert!(b.next_delay().as_millis() <= 150);
        // Absurd settings stay sane.
        let mut b = Backoff::new(0, 0);
        assert_eq!(b.next_delay(), Duration::from_millis(1));
        let mut b = Backoff::new(u64::MAX / 4, u64::MAX / 2);
        for _ in 0..40 {
            b.next_delay();
        }
    }

    #[test]
    fn fetches_are_bounded_by_count_and_by_bytes_and_a_large_message_goes_alone() {
        let sizes = [10, 10, 10, 10, 10, 95, 10, 200, 10, 10];
        let pending: Vec<Pending> =
            sizes.iter().enumerate().map(|(i, &size)| Pending { uid: i as u32 + 1, size, oversize: false }).collect();
        let pending: Vec<&Pending> = pending.iter().collect();
        assert_eq!(
            fetch_batches(&pending, 3, 100),
            vec![vec![1, 2, 3], vec![4, 5], vec![6], vec![7], vec![8], vec![9, 10]]
        );
        assert_eq!(fetch_batches(&pending, 100, u64::MAX), vec![(1..=10).collect::<Vec<u32>>()]);
        assert_eq!(fetch_batches(&pending, 0, 0).len(), 10);
        assert!(fetch_batches(&[], 3, 100).is_empty());
    }

    #[test]
    fn keys_carry_uidvalidity_and_uid() {
        assert_eq!(source_key(1_700_000_000, 42), "1700000000:42");
    }
}
