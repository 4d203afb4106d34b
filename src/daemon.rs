//! The daemon's loops: drain each mailbox (file, then settle), drain the outbox, sleep, repeat until
//! shutdown. A shutdown request lets the message in hand finish; nothing is left half-filed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Config, MailboxConfig, MailboxKind};
use crate::forms::Catalog;
use crate::mailbox::Maildir;
use crate::pipeline::{Outcome, Pipeline};
use crate::reply::Templates;
use crate::reply::outbox::{self, Drained, Sender};
use crate::store::Store;

/// Builds the pipeline from configuration: forms, templates, database (migrated).
pub async fn open(config: Config) -> anyhow::Result<Pipeline> {
    let catalog = match &config.forms.dir {
        Some(dir) => Catalog::with_overrides(dir)?,
        None => Catalog::embedded()?,
    };
    let templates = Templates::load(config.forms.templates_dir.as_deref())?;
    let store = Store::connect(&config.database.url, config.database.max_connections).await?;
    Ok(Pipeline::new(config, catalog, templates, store))
}

/// This process's name in mailbox leases: host, process id and a random part (a restarted process is a
/// new holder).
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        format!("{}:{}:{}", if host.is_empty() { "host" } else { &host }, std::process::id(), hex::encode(r))
    })
}

/// The mailbox lease length from configuration, in ms.
pub fn lease_ms(config: &Config) -> i64 {
    i64::try_from(config.daemon.mailbox_lease_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Whether this instance holds (or has just taken) `mailbox`; a database error counts as no.
pub async fn holds(p: &Pipeline, mailbox: &str) -> bool {
    match p.store.hold_mailbox(mailbox, instance_id(), lease_ms(&p.config)).await {
        Ok(held) => held,
        Err(e) => {
            tracing::error!(mailbox, error = %e, "cannot take or renew the mailbox lease");
            false
        }
    }
}

/// Tells every loop to stop after the message in hand.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    pub fn requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits `d`, or less if shutdown is requested meanwhile.
    pub async fn sleep(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, self.0.wait_for(|stop| *stop)).await;
    }
}

/// Files every message waiting in a Maildir mailbox and settles each after its commit; returns each
/// message's Maildir key with its outcome.
pub async fn drain_maildir(
    p: &Pipeline,
    mailbox_name: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<(String, Outcome)>> {
    let Some(mb) = p.config.mailbox(mailbox_name) else { anyhow::bail!("no mailbox named {mailbox_name}") };
    let Some(path) = &mb.path else { anyhow::bail!("mailbox {mailbox_name} has no path") };
    let maildir = Maildir::open(path)?;
    let mut outcomes = Vec::new();
    for (key, path) in maildir.waiting()? {
        if shutdown.requested() {
            break;
        }
        let Some(fetched) = maildir.read(&key, &path)? else { continue };
        let outcome = p.process(mb, &fetched.key, &fetched.raw, fetched.received_at).await?;
        maildir.settle(&fetched.key, outcome.folder.as_str())?;
        p.store.mark_settled(outcome.ledger_id, outcome.folder.as_str()).await?;
        outcomes.push((fetched.key, outcome));
    }
    Ok(outcomes)
}

/// Sends every due reply through the configured sender (SMTP, or the outbox directory).
pub async fn deliver_replies(p: &Pipeline) -> anyhow::Result<Drained> {
    let sender = Sender::from_config(&p.config)?;
    deliver_with(p, &sender).await
}

/// Sends every due reply through `sender` (the daemon keeps one, so SMTP connections are reused).
pub async fn deliver_with(p: &Pipeline, sender: &Sender) -> anyhow::Result<Drained> {
    Ok(outbox::drain(&p.store, sender, &outbox::RetryPolicy::from_config(&p.config)).await?)
}

/// The daemon: each IMAP mailbox in its own loop (IDLE or polling, its own reconnects), and every poll
/// interval the Maildir mailboxes, the outbox and (on its schedule) the retention purge, until shutdown.
/// With `once`, one pass over everything, then return.
pub async fn run(p: Arc<Pipeline>, shutdown: Shutdown, once: bool) -> anyhow::Result<()> {
    let sender = Sender::from_config(&p.config)?;
    let imap: Vec<MailboxConfig> = p.config.mailboxes.iter().filter(|m| m.kind == MailboxKind::Imap).cloned().collect();
    if once {
        for mb in &imap {
            if !holds(&p, &mb.name).await {
                tracing::warn!(mailbox = %mb.name, "another instance is polling this mailbox; skipped");
                continue;
            }
            if let Err(e) = crate::mailbox::imap::drain_once(&p, mb, &shutdown).await {
                tracing::error!(mailbox = %mb.name, error = %e, "mailbox failed");
            }
        }
        local_round(&p, &sender, &shutdown, &mut None).await;
        for mb in &p.config.mailboxes {
            let _ = p.store.release_mailbox(&mb.name, instance_id()).await;
        }
        tracing::info!("one pass done");
        return Ok(());
    }
    // Each IMAP mailbox and the local loop (Maildir, outbox, purge) are tasks of their own, so they run in
    // parallel on the runtime's workers. One failing mailbox never stops the others: each loop logs, backs
    // off and reconnects by itself.
    let mut tasks = tokio::task::JoinSet::new();
    for mb in imap {
        let (p, shutdown) = (p.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::mailbox::imap::run_mailbox(&p, &mb, shutdown).await {
                tracing::error!(mailbox = %mb.name, error = %e, "mailbox stopped");
            }
        });
    }
    let (local_p, mut local_shutdown) = (p.clone(), shutdown.clone());
    tasks.spawn(async move {
        let interval = Duration::from_millis(local_p.config.daemon.poll_interval_ms.max(10));
        let mut last_purge = None;
        while !local_shutdown.requested() {
            local_round(&local_p, &sender, &local_shutdown, &mut last_purge).await;
            local_shutdown.sleep(interval).await;
        }
    });
    while let Some(done) = tasks.join_next().await {
        // A panic is a bug: let it take the process down as before, for the service manager to restart.
        if let Err(e) = done
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    for mb in &p.config.mailboxes {
        let _ = p.store.release_mailbox(&mb.name, instance_id()).await;
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// One round of the work that is not an IMAP loop: retention purge when due, Maildir mailboxes, outbox.
async fn local_round(p: &Pipeline, sender: &Sender, shutdown: &Shutdown, last_purge: &mut Option<Instant>) {
    let purge_every = Duration::from_secs(p.config.retention.purge_interval_secs.max(1));
    if last_purge.is_none_or(|t| t.elapsed() >= purge_every) {
        if let Err(e) = crate::retention::purge(&p.store, &p.config, crate::store::now_ms()).await {
            tracing::error!(error = %e, "retention purge failed");
        }
        *last_purge = Some(Instant::now());
    }
    for mb in p.config.mailboxes.iter().filter(|m| m.kind == MailboxKind::Maildir) {
        // Another instance polls it: leave it alone this round.
        if !holds(p, &mb.name).await {
            continue;
        }
        match drain_maildir(p, &mb.name, shutdown).await {
            Ok(outcomes) if !outcomes.is_empty() => {
                tracing::info!(mailbox = %mb.name, messages = outcomes.len(), "mailbox drained")
            }
            Ok(_) => {}
            // One failing mailbox never stops the others; it is tried again next round.
            Err(e) => tracing::error!(mailbox = %mb.name, error = %e, "mailbox failed"),
        }
    }
    if let Err(e) = deliver_with(p, sender).await {
        tracing::error!(error = %e, "outbox failed");
    }
}
