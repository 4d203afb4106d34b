//! One `Config` for the whole program: `--config FILE`, else `./postroom.toml`, else the embedded defaults
//! (`config/postroom.toml`, which documents every key). Environment variables `POSTROOM_<SECTION>__<KEY>`
//! override any key (`POSTROOM_DATABASE__URL`, `POSTROOM_MAILBOXES__0__PATH`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::forms::DocxLimits;

/// The commented default configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/postroom.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub workspace: WorkspaceConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default = "default_mailboxes")]
    pub mailboxes: Vec<MailboxConfig>,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub reference: ReferenceConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub forms: FormsConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Absent: replies are written to `outbox.dir`.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workspace: WorkspaceConfig::default(),
            database: DatabaseConfig::default(),
            mailboxes: default_mailboxes(),
            mail: MailConfig::default(),
            limits: Limits::default(),
            reference: ReferenceConfig::default(),
            outbox: OutboxConfig::default(),
            forms: FormsConfig::default(),
            daemon: DaemonConfig::default(),
            retention: RetentionConfig::default(),
            smtp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceConfig {
    /// Relative paths elsewhere in the config resolve against this directory.
    pub dir: PathBuf,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        WorkspaceConfig { dir: PathBuf::from(".") }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://var/postroom.db` (relative to the workspace) or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://var/postroom.db".into(), max_connections: 4 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailboxKind {
    Maildir,
    Imap,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Names the mailbox in the ledger and in form definitions (`mailbox = "mental_health"`).
    pub name: String,
    /// Replies from this mailbox come from this address; mail from it is never answered.
    pub address: String,
    pub kind: MailboxKind,
    /// Maildir: the directory (Maildir++ folders `.Processed`, `.Rejected`, `.Quarantine` inside it).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// IMAP: the server and account (required when `kind = "imap"`).
    #[serde(default)]
    pub imap: Option<ImapConfig>,
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain, then STARTTLS before authenticating (IMAP 143, submission 587).
    Starttls,
    /// No TLS at all: refused unless the host is a loopback address.
    None,
}

/// How a session logs in (IMAP `[mailboxes.imap] auth`, SMTP `[smtp] auth`): a password, or an OAuth2 token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Login,
    Xoauth2,
}

/// Where an OAuth2 access token comes from (XOAUTH2). Exactly one source: `token_file`, `token_env`,
/// `token_command`, or the client-credentials flow (`token_url` with `client_id` and a client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    /// A file holding the current access token (refreshed by something else).
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the token.
    pub token_env: Option<String>,
    /// A command printing a fresh token on stdout.
    pub token_command: Option<String>,
    /// Client credentials: the token endpoint (https; http only on loopback).
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    /// The client secret; prefer `client_secret_file` outside tests.
    pub client_secret: Option<String>,
    /// A file holding the client secret (read at every token request, so a rotated secret needs no restart).
    pub client_secret_file: Option<PathBuf>,
    /// Sent with the token request (Microsoft 365: `https://outlook.office365.com/.default`).
    pub scope: Option<String>,
    /// A token is replaced, and a session using it reconnects, this long before it expires (at most half
    /// its lifetime).
    pub refresh_margin_secs: u64,
}

impl Default for OAuth2Config {
    fn default() -> Self {
        OAuth2Config {
            token_file: None,
            token_env: None,
            token_command: None,
            token_url: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scope: None,
            refresh_margin_secs: 300,
        }
    }
}

/// Settle folders on the IMAP server; created if missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoldersConfig {
    pub processed: String,
    pub rejected: String,
    pub quarantine: String,
}

impl Default for FoldersConfig {
    fn default() -> Self {
        FoldersConfig { processed: "Processed".into(), rejected: "Rejected".into(), quarantine: "Quarantine".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    /// The password (LOGIN); prefer `password_file` outside tests.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_auth_method")]
    pub auth: AuthMethod,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// Extra CA certificate (PEM) to trust, for a server with a private certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The folder mail arrives in.
    #[serde(default = "default_inbox")]
    pub inbox: String,
    #[serde(default)]
    pub folders: FoldersConfig,
    /// Use IDLE when the server offers it; polling stays as the safety net.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// Poll interval, and the longest IDLE wait before looking anyway (ms).
    #[serde(default = "default_imap_poll_ms")]
    pub poll_interval_ms: u64,
    /// IDLE is re-issued before this many seconds (servers drop it at 30 minutes).
    #[serde(default = "default_idle_renew_secs")]
    pub idle_renew_secs: u64,
    /// Any command not answered within this is a dead connection (ms).
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// Messages fetched per round trip.
    #[serde(default = "default_fetch_batch")]
    pub fetch_batch: usize,
    /// Bytes fetched per round trip, by the server's sizes (a message larger than this is fetched alone):
    /// a batch is held in memory while it is filed, so this bounds the daemon's memory as message sizes grow.
    #[serde(default = "default_fetch_batch_bytes")]
    pub fetch_batch_bytes: u64,
    /// Reconnect backoff: first delay and cap (ms); jitter is added.
    #[serde(default = "default_backoff_min_ms")]
    pub backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// How often the server's folder counts are reconciled with the ledger (and at every connect), in
    /// seconds.
    #[serde(default = "default_reconcile_secs")]
    pub reconcile_interval_secs: u64,
}

fn default_reconcile_secs() -> u64 {
    3600
}

/// A password given inline or in a file, without the file's trailing line break; `None` when neither is set.
/// Both set is refused: which one is meant cannot be guessed.
pub fn read_password(password: Option<&str>, file: Option<&Path>) -> Result<Option<String>, String> {
    match (password, file) {
        (Some(_), Some(_)) => Err("both `password` and `password_file` are set: keep one".into()),
        (Some(p), None) => Ok(Some(p.to_string())),
        (None, Some(path)) => {
            std::fs::read_to_string(path).map(|s| Some(s.trim_end_matches(['\r', '\n']).to_string())).map_err(|e| {
                format!("cannot read `password_file` {}: {e}; check the path and its permissions", path.display())
            })
        }
        (None, None) => Ok(None),
    }
}

fn default_auth_method() -> AuthMethod {
    AuthMethod::Login
}
fn default_inbox() -> String {
    "INBOX".into()
}
fn default_true() -> bool {
    true
}
fn default_imap_poll_ms() -> u64 {
    30_000
}
fn default_idle_renew_secs() -> u64 {
    25 * 60
}
fn default_command_timeout_ms() -> u64 {
    // With the 30 s poll/IDLE wait, a dead connection is noticed within a minute.
    25_000
}
fn default_fetch_batch() -> usize {
    // As daemon.batch_size: one fetch is filed as one batch.
    100
}
fn default_fetch_batch_bytes() -> u64 {
    8 * 1024 * 1024
}
fn default_backoff_min_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    300_000
}

/// The SMTP server replies leave through. Without an `[smtp]` section replies are written to the outbox
/// directory instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `login` (AUTH PLAIN or LOGIN with the password) or `xoauth2` (AUTH XOAUTH2 with a token from the
    /// `[smtp.oauth2]` table, the same sources as an IMAP mailbox's; Microsoft 365's SMTP.SendAsApp).
    #[serde(default = "default_auth_method")]
    pub auth: AuthMethod,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    /// Extra CA certificate (PEM) to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds before a silent server counts as down.
    #[serde(default = "default_smtp_timeout_secs")]
    pub timeout_secs: u64,
    /// Transient failures before a reply is given up as failed.
    #[serde(default = "default_smtp_attempts")]
    pub max_attempts: i64,
    /// First retry delay (ms); doubles per attempt, capped at an hour.
    #[serde(default = "default_smtp_retry_ms")]
    pub retry_base_ms: i64,
    /// Sessions replies are sent over at once, each carrying one reply at a time.
    #[serde(default = "default_smtp_connections")]
    pub connections: usize,
}

fn default_smtp_timeout_secs() -> u64 {
    30
}
fn default_smtp_attempts() -> i64 {
    10
}
fn default_smtp_retry_ms() -> i64 {
    30_000
}
fn default_smtp_connections() -> usize {
    2
}

fn default_mailboxes() -> Vec<MailboxConfig> {
    vec![
        MailboxConfig {
            name: "notifications".into(),
            address: "notifications@postroom.localhost".into(),
            kind: MailboxKind::Maildir,
            path: Some(PathBuf::from("var/mail/notifications")),
            imap: None,
        },
        MailboxConfig {
            name: "mental_health".into(),
            address: "mental-health-notifications@postroom.localhost".into(),
            kind: MailboxKind::Maildir,
            path: Some(PathBuf::from("var/mail/mental_health")),
            imap: None,
        },
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The authserv-id of our receiving MTA; Authentication-Results from anyone else are ignored.
    /// Empty: no header is trusted, so DMARC never quarantines.
    pub authserv_id: String,
    /// The regulator's name as shown in replies.
    pub organisation: String,
    /// Where providers download the current forms; quoted in replies about stale or unknown forms.
    pub forms_url: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            authserv_id: String::new(),
            organisation: "Care Quality Commission".into(),
            forms_url: "https://www.cqc.org.uk/guidance-providers/notifications".into(),
        }
    }
}

/// Size and shape limits for hostile input; each breach has its own reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_attachment_bytes: u64,
    /// Forwarded messages (message/rfc822) opened inside one another.
    pub max_nesting: usize,
    /// Total bytes inflated from one .docx (zip bombs).
    pub max_unzipped_bytes: u64,
    pub max_zip_entries: usize,
    pub max_xml_depth: usize,
    /// Automatic replies one sender may receive per window; past it, their mail is quarantined
    /// (`rate:flood`) instead of answered, so a loop with another auto-responder dies out.
    pub max_replies_per_sender: u32,
    /// "No form found" replies one sender may receive per window (loops rarely carry forms).
    pub max_no_form_replies_per_sender: u32,
    pub reply_window_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let d = DocxLimits::default();
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
            max_attachment_bytes: 10 * 1024 * 1024,
            max_nesting: 8,
            max_unzipped_bytes: d.max_unzipped_bytes,
            max_zip_entries: d.max_zip_entries,
            max_xml_depth: d.max_xml_depth,
            max_replies_per_sender: 60,
            max_no_form_replies_per_sender: 5,
            reply_window_secs: 3600,
        }
    }
}

impl Limits {
    pub fn message(&self) -> crate::message::MessageLimits {
        crate::message::MessageLimits {
            max_message_bytes: self.max_message_bytes,
            max_attachment_bytes: self.max_attachment_bytes,
            max_nesting: self.max_nesting,
        }
    }

    pub fn docx(&self) -> DocxLimits {
        DocxLimits {
            max_unzipped_bytes: self.max_unzipped_bytes,
            max_zip_entries: self.max_zip_entries,
            max_xml_depth: self.max_xml_depth,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferenceConfig {
    /// Starts every reference (`N-7K3QX9M`). Give a test instance its own so it never claims production mail.
    pub prefix: String,
}

impl Default for ReferenceConfig {
    fn default() -> Self {
        ReferenceConfig { prefix: "N".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// With no SMTP server configured, replies are written here, one .eml each.
    pub dir: PathBuf,
    /// How long a sender holds the replies it claimed; a sender that dies leaves them to come due again
    /// after this. Longer than one pass of sends can take.
    pub claim_lease_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { dir: PathBuf::from("var/outbox"), claim_lease_secs: 120 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FormsConfig {
    /// A directory of `<id>/<version>.toml` definitions that add to or replace the built-in ones.
    pub dir: Option<PathBuf>,
    /// A directory laid out like `templates/` (`reply/<kind>.{txt,html}.hbs`) whose files replace the
    /// built-in reply templates.
    pub templates_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// How often `run` looks for new mail in a Maildir.
    pub poll_interval_ms: u64,
    /// Messages filed per durable commit before their mail is settled.
    pub batch_size: usize,
    /// Several instances may share one database: one polls a given mailbox at a time, holding a lease it
    /// renews; if it dies, another takes over within this many seconds.
    pub mailbox_lease_secs: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig { poll_interval_ms: 2000, batch_size: 100, mailbox_lease_secs: 30 }
    }
}

/// How long personal data in raw mail is kept once it has served its purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days after filing before the raw message (and the settled Maildir copy and sent reply) of an
    /// accepted, ignored or duplicate email is deleted. Rejected and quarantined mail waits for a staff
    /// decision. 0 keeps everything.
    pub raw_mail_days: u32,
    /// How often the daemon runs the purge, in seconds.
    pub purge_interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { raw_mail_days: 30, purge_interval_secs: 3600 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

impl Config {
    /// Loads `explicit`, else `./postroom.toml` if present, else the embedded defaults; then applies the
    /// environment's overrides.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let local = Path::new("postroom.toml");
        let (origin, text) = match explicit {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                (p.display().to_string(), text)
            }
            None if local.exists() => {
                let text = std::fs::read_to_string(local)
                    .map_err(|source| ConfigError::Read { path: local.to_path_buf(), source })?;
                (local.display().to_string(), text)
            }
            None => ("(embedded defaults)".to_string(), DEFAULT_TOML.to_string()),
        };
        Config::from_toml(&origin, &text, std::env::vars())
    }

    /// Parses `text` and applies `POSTROOM_*` overrides from `env`.
    pub fn from_toml(
        origin: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: origin.to_string(), message };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        for (var, raw) in env {
            // Only SECTION__KEY names are config; POSTROOM_LOG and the test switches are not.
            let Some(path) = var.strip_prefix("POSTROOM_").filter(|p| p.contains("__")) else { continue };
            let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
            apply_override(&mut value, &keys, &raw)
                .map_err(|message| ConfigError::Env { var: var.clone(), message })?;
        }
        let config: Config =
            toml::Value::Table(value).try_into().map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        config.check().map_err(invalid)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.mailboxes.is_empty() {
            return Err("at least one [[mailboxes]] entry is needed".into());
        }
        let mut names = std::collections::HashSet::new();
        for m in &self.mailboxes {
            if !names.insert(&m.name) {
                return Err(format!("mailbox name `{}` is used twice", m.name));
            }
            if !m.address.contains('@') {
                return Err(format!("mailbox `{}`: address `{}` is not an email address", m.name, m.address));
            }
            if m.kind == MailboxKind::Maildir && m.path.is_none() {
                return Err(format!("mailbox `{}` is a maildir but has no `path`", m.name));
            }
            if let (MailboxKind::Imap, None) = (m.kind, &m.imap) {
                return Err(format!("mailbox `{}` is imap but has no [mailboxes.imap] table", m.name));
            }
            if let Some(imap) = &m.imap {
                if imap.tls == TlsMode::None && !is_loopback(&imap.host) {
                    return Err(format!("mailbox `{}`: tls = \"none\" is allowed only for a loopback host", m.name));
                }
                if imap.auth == AuthMethod::Xoauth2 {
                    let Some(oauth) = &imap.oauth2 else {
                        return Err(format!(
                            "mailbox `{}`: auth = \"xoauth2\" needs a [mailboxes.imap.oauth2] table",
                            m.name
                        ));
                    };
                    crate::oauth2::check_config(oauth)
                        .map_err(|e| format!("mailbox `{}`: [mailboxes.imap.oauth2]: {e}", m.name))?;
                }
            }
        }
        if let Some(smtp) = &self.smtp
            && smtp.tls == TlsMode::None
            && !is_loopback(&smtp.host)
        {
            return Err("smtp: tls = \"none\" is allowed only for a loopback host".into());
        }
        if let Some(smtp) = &self.smtp
            && smtp.auth == AuthMethod::Xoauth2
        {
            let (Some(oauth), Some(_)) = (&smtp.oauth2, &smtp.username) else {
                return Err(
                    "smtp: auth = \"xoauth2\" needs `username` (the sending mailbox) and an [smtp.oauth2] table".into(),
                );
            };
            crate::oauth2::check_config(oauth).map_err(|e| format!("[smtp.oauth2]: {e}"))?;
        }
        if let Some(smtp) = &self.smtp {
            if !(1..=16).contains(&smtp.connections) {
                return Err(format!("smtp.connections ({}) must be between 1 and 16", smtp.connections));
            }
            // Each sender marks its replies while filing holds one connection and the next batch is recorded
            // on another: fewer would leave filing waiting on the pool.
            let needed = smtp.connections.saturating_add(2);
            if usize::try_from(self.database.max_connections).unwrap_or(usize::MAX) < needed {
                return Err(format!(
                    "database.max_connections ({}) must be at least smtp.connections + 2 ({needed}): raise it, \
                     or lower smtp.connections",
                    self.database.max_connections
                ));
            }
        }
        if let Some(smtp) = &self.smtp
            && self.outbox.claim_lease_secs < smtp.timeout_secs.saturating_mul(2)
        {
            // A claim must outlast a send, or another instance could take a reply that is still being sent.
            return Err(format!(
                "outbox.claim_lease_secs ({}) must be at least twice smtp.timeout_secs ({})",
                self.outbox.claim_lease_secs, smtp.timeout_secs
            ));
        }
        if self.reference.prefix.is_empty() || !self.reference.prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("reference.prefix must be letters and digits, like N or TESTN".into());
        }
        if self.daemon.batch_size == 0 {
            return Err("daemon.batch_size must be at least 1".into());
        }
        Ok(())
    }

    /// Makes relative paths absolute against the workspace directory (or `workspace` when given).
    pub fn resolve_paths(&mut self, workspace: Option<&Path>) {
        if let Some(w) = workspace {
            self.workspace.dir = w.to_path_buf();
        }
        let base = self.workspace.dir.clone();
        let abs = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        for m in &mut self.mailboxes {
            m.path = m.path.as_deref().map(abs);
        }
        self.outbox.dir = abs(&self.outbox.dir);
        self.forms.dir = self.forms.dir.as_deref().map(abs);
        self.forms.templates_dir = self.forms.templates_dir.as_deref().map(abs);
        if let Some(rest) = self.database.url.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            self.database.url = format!("sqlite://{}", base.join(rest).display());
        }
    }

    pub fn mailbox(&self, name: &str) -> Option<&MailboxConfig> {
        self.mailboxes.iter().find(|m| m.name == name)
    }
}

/// Whether `host` is this machine (plain connections are allowed only there).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn apply_override(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = keys.split_last() else { return Err("empty key".into()) };
    let mut here = table;
    let mut i = 0;
    while i < parents.len() {
        let key = &parents[i];
        let entry = here.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                i += 1;
                let index: usize = parents
                    .get(i)
                    .and_then(|k| k.parse().ok())
                    .ok_or_else(|| format!("`{key}` is a list: give an index, like {}__0__...", key.to_uppercase()))?;
                match items.get_mut(index) {
                    Some(toml::Value::Table(t)) => t,
                    _ => return Err(format!("`{key}` has no entry {index}")),
                }
            }
            _ => return Err(format!("`{key}` is not a section")),
        };
        i += 1;
    }
    // Numbers and booleans keep their type; anything else is a string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_)))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    here.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_file_equals_the_built_in_defaults() {
        let parsed = Config::from_toml("config/postroom.toml", DEFAULT_TOML, []).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_documented_defaults_file_lists_every_key() {
        // Every key of the serialised defaults must appear, uncommented, in config/postroom.toml.
        let full = toml::to_string(&Config::default()).unwrap();
        let documented: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let full: toml::Table = toml::from_str(&full).unwrap();
        fn keys(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => t.iter().for_each(|(k, v)| keys(&format!("{prefix}.{k}"), v, out)),
                toml::Value::Array(a) => a.iter().for_each(|v| keys(&format!("{prefix}[]"), v, out)),
                _ => out.push(prefix.to_string()),
            }
        }
        let (mut want, mut have) = (Vec::new(), Vec::new());
        keys("", &toml::Value::Table(full), &mut want);
        keys("", &toml::Value::Table(documented), &mut have);
        for k in want {
            assert!(have.contains(&k), "config/postroom.toml does not list {k}");
        }
    }

    #[test]
    fn environment_overrides_reach_nested_and_listed_keys() {
        let env = [
            ("POSTROOM_DATABASE__URL".to_string(), "postgres://x@127.0.0.1/db".to_string()),
            ("POSTROOM_MAILBOXES__1__ADDRESS".to_string(), "mh@example.org".to_string()),
            ("POSTROOM_DAEMON__BATCH_SIZE".to_string(), "7".to_string()),
            ("POSTROOM_MAIL__AUTHSERV_ID".to_string(), "mx.example.org".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
            ("POSTROOM_LOG".to_string(), "debug".to_string()),
            ("POSTROOM_FAILPOINT".to_string(), "after_commit".to_string()),
        ];
        let c = Config::from_toml("t", DEFAULT_TOML, env).unwrap();
        assert_eq!(c.database.url, "postgres://x@127.0.0.1/db");
        assert_eq!(c.mailboxes[1].address, "mh@example.org");
        assert_eq!(c.daemon.batch_size, 7);
        assert_eq!(c.mail.authserv_id, "mx.example.org");
    }

    #[test]
    fn bad_config_says_what_and_where() {
        let err = Config::from_toml("my.toml", "[database]\nurll = 1\n", []).unwrap_err().to_string();
        assert!(err.contains("my.toml") && err.contains("urll"), "{err}");
        let env = [("POSTROOM_MAILBOXES__X".to_string(), "1".to_string())];
        let err = Config::from_toml("t", DEFAULT_TOML, env).unwrap_err().to_string();
        assert!(err.contains("POSTROOM_MAILBOXES__X") && err.contains("index"), "{err}");
        let err = Config::from_toml("t", "[reference]\nprefix = \"N-\"\n", []).unwrap_err().to_string();
        assert!(err.contains("reference.prefix"), "{err}");
    }

    #[test]
    fn the_production_example_parses_and_plain_text_is_refused_off_loopback() {
        let text = include_str!("../config/production.example.toml");
        let c = Config::from_toml("production.example.toml", text, []).unwrap();
        let imap = c.mailboxes[0].imap.as_ref().unwrap();
        assert_eq!((imap.tls, imap.auth), (TlsMode::Implicit, AuthMethod::Xoauth2));
        assert_eq!(c.smtp.as_ref().unwrap().tls, TlsMode::Starttls);
        let plain = text.replacen("tls = \"implicit\"", "tls = \"none\"", 1);
        let err = Config::from_toml("p", &plain, []).unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        let plain_local = plain.replacen("outlook.office365.com", "127.0.0.1", 1);
        assert!(Config::from_toml("p", &plain_local, []).is_ok());
    }

    #[test]
    fn smtp_connections_are_bounded_and_the_database_pool_must_have_room_for_them() {
        let text = include_str!("../config/production.example.toml");
        let c = Config::from_toml("p", text, []).unwrap();
        assert_eq!(c.smtp.as_ref().unwrap().connections, 2, "the default");
        let with = |connections: &str, pool: &str| {
            let env = [
                ("POSTROOM_SMTP__CONNECTIONS".to_string(), connections.to_string()),
                ("POSTROOM_DATABASE__MAX_CONNECTIONS".to_string(), pool.to_string()),
            ];
            Config::from_toml("p", text, env).map(|c| c.smtp.map(|s| s.connections)).map_err(|e| e.to_string())
        };
        assert_eq!(with("4", "6"), Ok(Some(4)));
        let err = with("4", "5").unwrap_err();
        assert!(err.contains("database.max_connections (5)") && err.contains("(6)"), "{err}");
        for bad in ["0", "17"] {
            let err = with(bad, "40").unwrap_err();
            assert!(err.contains("smtp.connections") && err.contains("between 1 and 16"), "{bad}: {err}");
        }
    }

    #[test]
    fn xoauth2_mailboxes_need_exactly_one_complete_token_source() {
        let text = include_str!("../config/production.example.toml");
        let c = Config::from_toml("p", text, []).unwrap();
        let oauth = c.mailboxes[0].imap.as_ref().unwrap().oauth2.as_ref().unwrap();
        assert_eq!(oauth.scope.as_deref(), Some("https://outlook.office365.com/.default"));
        assert_eq!(
            (
                oauth.refresh_margin_secs,
                c.mailboxes[1].imap.as_ref().unwrap().oauth2.as_ref().unwrap().refresh_margin_secs
            ),
            (300, 300)
        );
        let cases = [
            (text.replacen("client_id = ", "# client_id = ", 1), "client_id"),
            (text.replacen("client_secret_file = ", "client_secret = \"x\"\nclient_secret_file = ", 1), "keep one"),
            (text.replacen("scope = ", "token_env = \"T\"\nscope = ", 1), "exactly one"),
            (text.replacen("https://login.microsoftonline.com", "http://login.microsoftonline.com", 1), "loopback"),
            (text.replacen("token_url = ", "# token_url = ", 1), "exactly one"),
        ];
        for (bad, want) in cases {
            let err = Config::from_toml("p", &bad, []).unwrap_err().to_string();
            assert!(err.contains("mailbox `notifications`") && err.contains(want), "{want}: {err}");
        }
        // An environment override reaches the new keys.
        let env = [("POSTROOM_MAILBOXES__0__IMAP__OAUTH2__REFRESH_MARGIN_SECS".to_string(), "60".to_string())];
        let c = Config::from_toml("p", text, env).unwrap();
        assert_eq!(c.mailboxes[0].imap.as_ref().unwrap().oauth2.as_ref().unwrap().refresh_margin_secs, 60);
    }

    #[test]
    fn relative_paths_resolve_against_the_workspace() {
        let mut c = Config::default();
        c.resolve_paths(Some(Path::new("/srv/pr")));
        assert_eq!(c.database.url, "sqlite:///srv/pr/var/postroom.db");
        assert_eq!(c.mailboxes[0].path.as_deref(), Some(Path::new("/srv/pr/var/mail/notifications")));
        assert_eq!(c.outbox.dir, Path::new("/srv/pr/var/outbox"));
    }
}
