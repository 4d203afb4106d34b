//! One authenticated connection and the operations the mailbox loop needs, each under the command timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_imap::Session;
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response};
use async_imap::types::UnsolicitedResponse;
use chrono::{DateTime, Utc};

use super::ImapError;
use super::connect::{ImapStream, command_limit};
use super::wire::{folder_arg, internal_date, mutf7, run_tagged, uid_set};
use crate::config::{FoldersConfig, ImapConfig};
use crate::daemon::Shutdown;

/// A message waiting in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub uid: u32,
    /// RFC822.SIZE as the server reports it.
    pub size: u64,
    /// Larger than the `max_message_bytes` given to [`ImapSession::pending`]: never fetched.
    pub oversize: bool,
}

/// One fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
    /// When the server received it (INTERNALDATE), if it said.
    pub internal_date: Option<DateTime<Utc>>,
}

/// The extensions Postroom uses, as the server listed them after login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCaps {
    pub idle: bool,
    /// RFC 6851 MOVE.
    pub mv: bool,
    /// RFC 4315 UIDPLUS (UID EXPUNGE).
    pub uidplus: bool,
}

/// Account name and command time limit: what every command needs besides the connection.
struct Ctx {
    account: String,
    limit: Duration,
}

impl Ctx {
    fn closed(&self, command: &str) -> ImapError {
        ImapError::Connection {
            account: self.account.clone(),
            command: command.to_string(),
            message: "the connection was closed after an earlier failure; reconnect".into(),
        }
    }

    fn refused(&self, command: &str, message: String) -> ImapError {
        ImapError::Refused { account: self.account.clone(), command: command.to_string(), message }
    }

    fn config(&self, message: String) -> ImapError {
        ImapError::Config { account: self.account.clone(), message }
    }

    fn classify(&self, command: &str, e: async_imap::error::Error) -> ImapError {
        use async_imap::error::Error as E;
        match e {
            E::No(m) | E::Bad(m) => self.refused(command, m),
            E::Validate(v) => self.refused(command, format!("cannot be sent: {v}")),
            E::Append => self.refused(command, "the server did not accept the message".into()),
            other => ImapError::Connection {
                account: self.account.clone(),
                command: command.to_string(),
                message: other.to_string(),
            },
        }
    }

    async fn timed<T>(
        &self,
        command: &str,
        fut: impl Future<Output = Result<T, async_imap::error::Error>>,
    ) -> Result<T, ImapError> {
        match tokio::time::timeout(self.limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(command, e)),
            Err(_) => Err(ImapError::Timeout {
                account: self.account.clone(),
                command: command.to_string(),
                after_ms: u64::try_from(self.limit.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// Runs one command on the live connection under the time limit; a timeout or broken connection closes the
/// session, so later calls fail fast and the caller reconnects.
macro_rules! run {
    ($self:ident, $what:expr, $s:ident => $fut:expr) => {{
        let what: &str = $what;
        let result = match $self.conn.as_mut() {
            Some($s) => $self.ctx.timed(what, $fut).await,
            None => Err($self.ctx.closed(what)),
        };
        if matches!(&result, Err(e) if e.is_connection_lost()) {
            $self.conn = None;
        }
        result
    }};
}

/// An authenticated IMAP session (see [`connect`](super::connect)). `Send`, so it runs inside `tokio::spawn`.
pub struct ImapSession {
    /// `None` while IDLE holds the connection, or once it broke.
    conn: Option<Session<ImapStream>>,
    ctx: Ctx,
    caps: ServerCaps,
    inbox: String,
    use_idle: bool,
    idle_renew: Duration,
    /// Copied and flagged `\Deleted`, waiting for a plain EXPUNGE that removes nothing else (servers
    /// without UIDPLUS only).
    awaiting_expunge: BTreeSet<u32>,
    /// The server announced new messages while we were busy.
    new_mail: bool,
    /// Logged in with a client-credentials token: reconnect with a fresh one from this instant on.
    token_renew_at: Option<std::time::Instant>,
}

impl fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSession")
            .field("account", &self.ctx.account)
            .field("connected", &self.conn.is_some())
            .field("caps", &self.caps)
            .finish()
    }
}

impl ImapSession {
    pub(crate) fn new(conn: Session<ImapStream>, cfg: &ImapConfig, account: String) -> ImapSession {
        ImapSession {
            conn: Some(conn),
            ctx: Ctx { account, limit: command_limit(cfg) },
            caps: ServerCaps::default(),
            inbox: cfg.inbox.clone(),
            use_idle: cfg.idle,
            idle_renew: Duration::from_secs(cfg.idle_renew_secs.max(1)),
            awaiting_expunge: BTreeSet::new(),
            new_mail: false,
            token_renew_at: None,
        }
    }

    /// `user at host:port`.
    pub fn account(&self) -> &str {
        &self.ctx.account
    }

    /// IDLE, MOVE and UIDPLUS as listed after login.
    pub fn capabilities(&self) -> ServerCaps {
        self.caps
    }

    /// When the access token this session logged in with is due for renewal (client credentials only).
    pub fn token_renew_at(&self) -> Option<std::time::Instant> {
        self.token_renew_at
    }

    pub(crate) fn set_token_renew_at(&mut self, at: Option<std::time::Instant>) {
        self.token_renew_at = at;
    }

    /// Whether the connection is still usable.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Pretends the server lacks extensions it has, to exercise the fallbacks (tests only).
    #[doc(hidden)]
    pub fn limit_capabilities(&mut self, idle: bool, mv: bool, uidplus: bool) {
        self.caps =
            ServerCaps { idle: self.caps.idle && idle, mv: self.caps.mv && mv, uidplus: self.caps.uidplus && uidplus };
    }

    /// The raw async-imap session, for tests and tools; commands sent through it have no time limit.
    #[doc(hidden)]
    pub fn raw(&mut self) -> Option<&mut Session<ImapStream>> {
        self.conn.as_mut()
    }

    /// CAPABILITY, again: MOVE and UIDPLUS are listed only after login.
    pub async fn refresh_capabilities(&mut self) -> Result<ServerCaps, ImapError> {
        let caps = run!(self, "CAPABILITY", s => s.capabilities())?;
        self.caps =
            ServerCaps { idle: caps.has_str("IDLE"), mv: caps.has_str("MOVE"), uidplus: caps.has_str("UIDPLUS") };
        Ok(self.caps)
    }

    /// Every folder name on the server, as the server spells it (modified UTF-7).
    async fn list(&mut self) -> Result<BTreeSet<String>, ImapError> {
        let mut names = BTreeSet::new();
        run!(self, "LIST", s => run_tagged(s, "LIST \"\" \"*\"", |r| {
            if let Response::MailboxData(MailboxDatum::List(data)) = r {
                names.insert(data.name.to_string());
            }
        }))?;
        Ok(names)
    }

    /// Creates each settle folder the server lacks. A folder another instance created meanwhile is fine.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account))]
    pub async fn ensure_folders(&mut self, folders: &FoldersConfig) -> Result<(), ImapError> {
        let existing = self.list().await?;
        let wanted: BTreeSet<&str> =
            [folders.processed.as_str(), folders.rejected.as_str(), folders.quarantine.as_str()].into();
        for folder in wanted {
            if existing.contains(&mutf7(folder)) {
                continue;
            }
            self.create_folder(folder).await?;
        }
        Ok(())
    }

    /// CREATE, tolerating a folder that exists by the time the server answers.
    pub async fn create_folder(&mut self, folder: &str) -> Result<(), ImapError> {
        let arg = self.folder(folder)?;
        match run!(self, "CREATE", s => run_tagged(s, &format!("CREATE {arg}"), |_| {})) {
            Ok(()) => {
                tracing::info!(account = %self.ctx.account, folder, "created IMAP folder");
                Ok(())
            }
            Err(e @ ImapError::Refused { .. }) => {
                if self.list().await?.contains(&mutf7(folder)) {
                    Ok(())
                } else {
                    Err(self.ctx.refused(
                        "CREATE",
                        format!(
                            "cannot create folder `{folder}` ({e}); check the folder names in [mailboxes.imap.folders]"
                        ),
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// DELETE (tests and tools).
    pub async fn delete_folder(&mut self, folder: &str) -> Result<(), ImapError> {
        let arg = self.folder(folder)?;
        run!(self, "DELETE", s => run_tagged(s, &format!("DELETE {arg}"), |_| {}))
    }

    /// APPENDs a message to `folder` with optional flags like `(\Seen)` (tests and tools).
    pub async fn append(&mut self, folder: &str, flags: Option<&str>, raw: &[u8]) -> Result<(), ImapError> {
        let name = mutf7(folder);
        run!(self, "APPEND", s => s.append(&name, flags, None, raw))
    }

    /// SELECTs the inbox; returns its UIDVALIDITY.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account))]
    pub async fn select_inbox(&mut self) -> Result<u32, ImapError> {
        let inbox = self.inbox.clone();
        self.select(&inbox).await
    }

    /// SELECTs any folder; returns its UIDVALIDITY.
    pub async fn select(&mut self, folder: &str) -> Result<u32, ImapError> {
        let name = mutf7(folder);
        let mailbox = match run!(self, "SELECT", s => s.select(&name)) {
            Err(ImapError::Refused { message, .. }) => {
                return Err(self
                    .ctx
                    .refused("SELECT", format!("cannot open folder `{folder}` ({message}); check `inbox`")));
            }
            other => other?,
        };
        self.awaiting_expunge.clear();
        self.drain_unsolicited();
        self.new_mail = false;
        mailbox.uid_validity.ok_or_else(|| {
            self.ctx.refused("SELECT", format!("folder `{folder}` has no UIDVALIDITY: the server does not keep UIDs"))
        })
    }

    /// Every message in the inbox with its size, read or unread (the inbox is the queue, not `\Seen`).
    /// Messages settled by COPY and waiting for EXPUNGE (servers without MOVE and UIDPLUS) are left out.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account))]
    pub async fn pending(&mut self, max_message_bytes: u64) -> Result<Vec<Pending>, ImapError> {
        self.expunge_awaiting().await?;
        let mut found: BTreeMap<u32, u64> = BTreeMap::new();
        let mut new_mail = false;
        let listed = run!(self, "UID FETCH (RFC822.SIZE)", s => run_tagged(s, "UID FETCH 1:* (UID RFC822.SIZE)", |r| {
            match r {
                Response::Fetch(_, attrs) => {
                    let (mut uid, mut size) = (None, None);
                    for a in attrs {
                        match a {
                            AttributeValue::Uid(u) => uid = Some(*u),
                            AttributeValue::Rfc822Size(n) => size = Some(u64::from(*n)),
                            _ => {}
                        }
                    }
                    // A FETCH without UID or size is an unsolicited flag update, not an answer.
                    if let (Some(uid), Some(size)) = (uid, size) {
                        found.insert(uid, size);
                    }
                }
                Response::MailboxData(MailboxDatum::Exists(_)) => new_mail = true,
                _ => {}
            }
        }));
        match listed {
            Ok(()) => {}
            // Some servers refuse `1:*` in an empty folder: ask whether it is empty.
            Err(ImapError::Refused { .. }) if self.search("UID SEARCH ALL").await?.is_empty() => {}
            Err(e) => return Err(e),
        }
        self.new_mail |= new_mail;
        Ok(found
            .into_iter()
            .filter(|(uid, _)| !self.awaiting_expunge.contains(uid))
            .map(|(uid, size)| Pending { uid, size, oversize: size > max_message_bytes })
            .collect())
    }

    /// UIDs a `UID SEARCH ...` command returns.
    async fn search(&mut self, command: &str) -> Result<BTreeSet<u32>, ImapError> {
        let mut uids = BTreeSet::new();
        run!(self, "UID SEARCH", s => run_tagged(s, command, |r| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = r {
                uids.extend(found.iter().copied());
            }
        }))?;
        Ok(uids)
    }

    /// Of `uids`, those still in the selected folder.
    async fn still_there(&mut self, uids: &[u32]) -> Result<BTreeSet<u32>, ImapError> {
        if uids.is_empty() {
            return Ok(BTreeSet::new());
        }
        self.search(&format!("UID SEARCH UID {}", uid_set(uids))).await
    }

    /// Fetches `uids` whole in one round trip, with `BODY.PEEK[]` so `\Seen` is never set. A UID missing
    /// from the answer is gone (settled elsewhere) or one the server would not hand over.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account, count = uids.len()))]
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: BTreeSet<u32> = uids.iter().copied().collect();
        let command = format!("UID FETCH {} (UID INTERNALDATE BODY.PEEK[])", uid_set(uids));
        let mut got: BTreeMap<u32, FetchedMessage> = BTreeMap::new();
        let mut new_mail = false;
        run!(self, "UID FETCH (BODY.PEEK[])", s => run_tagged(s, &command, |r| {
            match r {
                Response::Fetch(_, attrs) => {
                    let (mut uid, mut body, mut date) = (None, None, None);
                    for a in attrs {
                        match a {
                            AttributeValue::Uid(u) => uid = Some(*u),
                            AttributeValue::BodySection { section: None, data: Some(d), .. }
                            | AttributeValue::Rfc822(Some(d)) => body = Some(d.to_vec()),
                            AttributeValue::InternalDate(d) => date = internal_date(d),
                            _ => {}
                        }
                    }
                    if let (Some(uid), Some(raw)) = (uid, body)
                        && wanted.contains(&uid)
                    {
                        got.insert(uid, FetchedMessage { uid, raw, internal_date: date });
                    }
                }
                Response::MailboxData(MailboxDatum::Exists(_)) => new_mail = true,
                _ => {}
            }
        }))?;
        self.new_mail |= new_mail;
        Ok(got.into_values().collect())
    }

    /// Moves each `(uid, folder)` out of the inbox, grouped per folder: `UID MOVE` where the server has MOVE,
    /// else `UID COPY` + `\Deleted` + `UID EXPUNGE` (UIDPLUS). Without UIDPLUS the copies are flagged and a
    /// plain `EXPUNGE` runs only while no other message is flagged `\Deleted` (it would remove those too);
    /// until then they wait, flagged, and [`pending`](Self::pending) leaves them out. The risk left: a
    /// message someone flags `\Deleted` between our check and the EXPUNGE is removed with ours (without
    /// Postroom seeing it, if it was new). A UID already gone is not an error: another instance settled it.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account, count = moves.len()))]
    pub async fn settle(&mut self, moves: &[(u32, String)]) -> Result<(), ImapError> {
        let mut groups: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (uid, folder) in moves {
            groups.entry(folder.as_str()).or_default().push(*uid);
        }
        for (folder, uids) in groups {
            let set = uid_set(&uids);
            let target = self.folder(folder)?;
            if self.caps.mv {
                self.copy_or_move("UID MOVE", &format!("UID MOVE {set} {target}"), folder, &uids).await?;
                continue;
            }
            if !self.copy_or_move("UID COPY", &format!("UID COPY {set} {target}"), folder, &uids).await? {
                continue;
            }
            let store = format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)");
            run!(self, "UID STORE", s => run_tagged(s, &store, |_| {}))?;
            if self.caps.uidplus {
                run!(self, "UID EXPUNGE", s => run_tagged(s, &format!("UID EXPUNGE {set}"), |_| {}))?;
            } else {
                self.awaiting_expunge.extend(uids.iter().copied());
                self.expunge_awaiting().await?;
            }
        }
        Ok(())
    }

    /// UID MOVE or UID COPY into `folder`, creating it once if the server says TRYCREATE. Returns false
    /// when none of `uids` exists any more (nothing left to do).
    async fn copy_or_move(&mut self, what: &str, command: &str, folder: &str, uids: &[u32]) -> Result<bool, ImapError> {
        let mut created = false;
        loop {
            match run!(self, what, s => run_tagged(s, command, |_| {})) {
                Ok(()) => return Ok(true),
                Err(ImapError::Refused { message, .. }) if !created && message.contains("TryCreate") => {
                    tracing::warn!(account = %self.ctx.account, folder, "settle folder vanished; creating it again");
                    self.create_folder(folder).await?;
                    created = true;
                }
                Err(e @ ImapError::Refused { .. }) => {
                    return if self.still_there(uids).await?.is_empty() { Ok(false) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Without UIDPLUS: EXPUNGE once the only `\Deleted` messages are our settled copies.
    async fn expunge_awaiting(&mut self) -> Result<(), ImapError> {
        if self.awaiting_expunge.is_empty() {
            return Ok(());
        }
        let deleted = self.search("UID SEARCH DELETED").await?;
        // Gone, or un-flagged by someone: no longer ours to expunge (an un-flagged one is seen again as a
        // duplicate and settled again).
        self.awaiting_expunge.retain(|uid| deleted.contains(uid));
        if deleted.iter().all(|uid| self.awaiting_expunge.contains(uid)) {
            if !deleted.is_empty() {
                run!(self, "EXPUNGE", s => run_tagged(s, "EXPUNGE", |_| {}))?;
            }
            self.awaiting_expunge.clear();
        } else {
            tracing::warn!(
                account = %self.ctx.account,
                waiting = self.awaiting_expunge.len(),
                "other messages in the inbox are flagged \\Deleted: settled copies stay flagged until those are \
                 gone (the server lacks UIDPLUS, and a plain EXPUNGE would remove them too)"
            );
        }
        Ok(())
    }

    /// Waits for the inbox to change, at most `min(max_wait, idle_renew_secs)`, or less if `shutdown` is
    /// requested: IDLE when configured and offered (ended with DONE, so the session is usable after), a plain
    /// sleep otherwise. Returns at once if the server announced new mail while we were busy.
    #[tracing::instrument(skip_all, fields(account = %self.ctx.account))]
    pub async fn wait_for_change(&mut self, max_wait: Duration, shutdown: &mut Shutdown) -> Result<(), ImapError> {
        self.drain_unsolicited();
        if std::mem::take(&mut self.new_mail) || shutdown.requested() {
            return Ok(());
        }
        let wait = max_wait.min(self.idle_renew);
        if !(self.use_idle && self.caps.idle) {
            shutdown.sleep(wait).await;
            return Ok(());
        }
        let Some(session) = self.conn.take() else { return Err(self.ctx.closed("IDLE")) };
        let mut handle = session.idle();
        // From here on a failure leaves `conn` empty: the session is lost, the caller reconnects.
        self.ctx.timed("IDLE", handle.init()).await?;
        let woke = {
            // The library's own limit counts quiet time only (keepalives reset it); ours is the deadline.
            let (idle, _interrupt) = handle.wait_with_timeout(wait + self.ctx.limit);
            tokio::select! {
                r = idle => Some(r),
                () = shutdown.sleep(wait) => None,
            }
        };
        match woke {
            Some(Err(e)) => return Err(self.ctx.classify("IDLE", e)),
            Some(Ok(IdleResponse::NewData(_))) => tracing::debug!(account = %self.ctx.account, "IDLE: inbox changed"),
            Some(Ok(_)) | None => {}
        }
        let session = self.ctx.timed("DONE", handle.done()).await?;
        self.conn = Some(session);
        Ok(())
    }

    /// STATUS MESSAGES of each folder, for reconciling the server's counts with the ledger.
    pub async fn status_counts(&mut self, folders: &[&str]) -> Result<Vec<(String, u32)>, ImapError> {
        let mut counts = Vec::with_capacity(folders.len());
        for folder in folders {
            let name = mutf7(folder);
            let mailbox = run!(self, "STATUS", s => s.status(&name, "(MESSAGES)"))?;
            counts.push((folder.to_string(), mailbox.exists));
        }
        Ok(counts)
    }

    /// LOGOUT, then the session is closed.
    pub async fn logout(&mut self) -> Result<(), ImapError> {
        let result = run!(self, "LOGOUT", s => s.logout());
        self.conn = None;
        result
    }

    /// Notes EXISTS announcements queued by async-imap's own commands, and empties its queue.
    fn drain_unsolicited(&mut self) {
        let Some(s) = self.conn.as_mut() else { return };
        while let Ok(r) = s.unsolicited_responses.try_recv() {
            if matches!(r, UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)) {
                self.new_mail = true;
            }
        }
    }

    /// A folder name as a quoted command argument.
    fn folder(&self, folder: &str) -> Result<String, ImapError> {
        folder_arg(folder).ok_or_else(|| self.ctx.config(format!("folder name `{folder:?}` contains a line break")))
    }
}
