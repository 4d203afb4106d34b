//! One message through every stage, in order: store the raw bytes, parse, refuse machines and forgers,
//! spot duplicates, read each attached form, validate it, decide the outcome, and file everything with the
//! reply in one transaction. The only module that knows the order; each stage lives in its own module.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::London;
use serde::Serialize;

use crate::config::{Config, MailboxConfig};
use crate::forms::{Catalog, FieldKind, FormDef, Value, extract};
use crate::message::{AutoReason, Dmarc, EmailAddress, Message, SkipReason};
use crate::problem::{Problem, ProblemCode};
use crate::reference::Reference;
use crate::registry::check::Prefetched;
use crate::reply::{self, FormReply, LabelValue, ProblemLine, ReplyData, ReplyKind, Templates};
use crate::store::{
    Batch, Filing, Inbound, NewReply, NewSubmission, Recorded, Store, StoreError, SubmissionRef, queries,
};
use crate::validate::{self, Checked};
use sqlx::AnyConnection;

/// Where a message goes once filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Folder {
    Processed,
    Rejected,
    Quarantine,
}

impl Folder {
    /// The folder a message of this ledger status is settled in.
    pub fn for_status(status: &str) -> Folder {
        match status {
            "rejected" => Folder::Rejected,
            "quarantined" => Folder::Quarantine,
            _ => Folder::Processed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Processed => "Processed",
            Folder::Rejected => "Rejected",
            Folder::Quarantine => "Quarantine",
        }
    }
}

/// What became of one message: the `process --json` line.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The ledger row.
    pub ledger_id: i64,
    /// The email's Message-ID header; null when it had none.
    pub message_id: Option<String>,
    /// accepted | rejected | quarantined | ignored | duplicate
    pub outcome: String,
    /// Why, for quarantined, ignored and duplicate messages (a stable reason code).
    pub reason: Option<String>,
    /// One per filed form; for a duplicate, the original's.
    pub references: Vec<String>,
    pub problems: Vec<Problem>,
    /// The kind of reply queued: confirmation | rejection | no_form, or null.
    pub reply: Option<String>,
    #[serde(skip)]
    pub folder: Folder,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Reply(#[from] reply::ReplyError),
    #[error("the batch came back without an outcome for the message")]
    NothingFiled,
}

/// One message handed to the pipeline: its key in the mailbox, its bytes, when it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// Unique within the mailbox (see [`Inbound::source_key`]).
    pub source_key: &'a str,
    pub raw: &'a [u8],
    pub received_at: DateTime<Utc>,
}

/// Everything the pipeline needs, built once.
pub struct Pipeline {
    pub config: Config,
    pub catalog: Arc<Catalog>,
    pub templates: Templates,
    pub store: Store,
    own_addresses: Vec<EmailAddress>,
}

/// Reads an email and its forms: everything about a message that needs no database. Owned, so it can be
/// handed to the threads that read a batch while the batch before it is filed.
struct Reader {
    catalog: Arc<Catalog>,
    message_limits: crate::message::MessageLimits,
    docx_limits: crate::forms::DocxLimits,
    forms_url: String,
}

/// A batch read, recorded and with its registry rows at hand, waiting to be filed (see [`Pipeline::stage`]).
pub struct Staged {
    recorded: Vec<Recorded>,
    prepared: Vec<Option<Prepared>>,
    keys: queries::Keys,
    registry: Prefetched,
    started: std::time::Instant,
    prepare_ms: u128,
    record_ms: u128,
    registry_ms: u128,
}

/// One form found in the email, as far as it got.
struct FormResult {
    index: usize,
    attachment_name: String,
    sha256: String,
    def: Option<FormDef>,
    declared_version: Option<String>,
    checked: Option<Checked>,
    raw_values: serde_json::Value,
    problems: Vec<Problem>,
    resubmission_of: Option<(i64, String)>,
    same_incident: Option<(i64, String)>,
    /// The sender may not notify at all, so no form of the email is accepted, however well filled.
    sender_refused: bool,
    /// For a second part (a return): the first part it completes.
    first_part: Option<(i64, String)>,
}

impl FormResult {
    fn accepted(&self) -> bool {
        self.problems.is_empty() && !self.sender_refused
    }
}

/// A candidate form's SHA-256 and what the reader made of it.
type FormRead = (String, Result<ReadForm, extract::ExtractError>);

/// A form read, and checked against its definition when the catalogue knows it.
struct ReadForm {
    extracted: crate::forms::ExtractedForm,
    checked: Option<(FormDef, Checked)>,
}

/// What needs no database, worked out before a batch's transaction: the parsed email and its forms read.
struct Prepared {
    parsed: Result<Message, crate::message::MessageError>,
    /// One per candidate form, in order.
    read: Vec<FormRead>,
}

/// The decision about a message before it is filed.
struct Decision {
    status: &'static str,
    reason: Option<String>,
    duplicate_of: Option<(i64, Vec<String>)>,
    forms: Vec<FormResult>,
    email_problems: Vec<Problem>,
    reply: Option<ReplyKind>,
}

impl Decision {
    fn without_reply(status: &'static str, reason: &str) -> Decision {
        Decision {
            status,
            reason: Some(reason.to_string()),
            duplicate_of: None,
            forms: Vec::new(),
            email_problems: Vec::new(),
            reply: None,
        }
    }
}

const RESUBMISSION_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

impl Pipeline {
    pub fn new(config: Config, catalog: Catalog, templates: Templates, store: Store) -> Pipeline {
        let own_addresses = config.mailboxes.iter().filter_map(|m| EmailAddress::parse(&m.address).ok()).collect();
        Pipeline { config, catalog: Arc::new(catalog), templates, store, own_addresses }
    }

    fn reader(&self) -> Reader {
        Reader {
            catalog: self.catalog.clone(),
            message_limits: self.config.limits.message(),
            docx_limits: self.config.limits.docx(),
            forms_url: self.config.mail.forms_url.clone(),
        }
    }

    /// Runs one message through the pipeline (a batch of one; see [`Pipeline::process_batch`]).
    pub async fn process(
        &self,
        mailbox: &MailboxConfig,
        source_key: &str,
        raw: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let mut outcomes = self.process_batch(mailbox, &[Incoming { source_key, raw, received_at }]).await?;
        outcomes.pop().unwrap_or(Err(PipelineError::NothingFiled))
    }

    /// Runs a batch of messages through the pipeline with two durable commits: the raw messages first, then
    /// every message decided and filed in turn inside one transaction (so a message decided later sees what
    /// was filed before it; one that fails is undone alone). Returns one outcome per message, in order. Safe
    /// to repeat: a message already filed is recognised and reported as a duplicate with its original
    /// references; nothing is filed or sent twice. An error for the whole batch (the database unreachable)
    /// means nothing was filed.
    pub async fn process_batch(
        &self,
        mailbox: &MailboxConfig,
        batch: &[Incoming<'_>],
    ) -> Result<Vec<Result<Outcome, PipelineError>>, PipelineError> {
        let staged = self.stage(mailbox, batch).await?;
        self.file_staged(mailbox, batch, staged).await
    }

    /// The first half of [`Pipeline::process_batch`]: reads the batch's emails and forms (on the blocking
    /// thread pool, so a batch can be read while the one before it is filed), stores the raw messages in
    /// one commit, and reads the registry rows the forms name.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox.name, messages = batch.len()))]
    pub async fn stage(&self, mailbox: &MailboxConfig, batch: &[Incoming<'_>]) -> Result<Staged, PipelineError> {
        let started = std::time::Instant::now();
        let reader = self.reader();
        let name = mailbox.name.clone();
        let work: Vec<(Vec<u8>, DateTime<Utc>)> = batch.iter().map(|m| (m.raw.to_vec(), m.received_at)).collect();
        // A panic there (parsing and reading catch their own) leaves each message to be read when filed.
        let prepared: Vec<Option<Prepared>> =
            match tokio::task::spawn_blocking(move || reader.read_all(&name, &work)).await {
                Ok(read) => read.into_iter().map(Some).collect(),
                Err(_) => batch.iter().map(|_| None).collect(),
            };
        let prepare_ms = started.elapsed().as_millis();
        let inbound: Vec<Inbound> = batch
            .iter()
            .map(|m| Inbound {
                mailbox: &mailbox.name,
                source_key: m.source_key,
                raw: m.raw,
                received_at: m.received_at.timestamp_millis(),
            })
            .collect();
        let recorded = self.store.record_many(&inbound).await?;
        crate::failpoint::hit("after_record");
        let record_ms = started.elapsed().as_millis() - prepare_ms;
        let keys = lookup_keys(&prepared);
        let (senders, providers, locations) = (&keys.senders, &keys.providers, &keys.locations);
        let registry = Prefetched::load(
            &self.store,
            senders.iter().map(String::as_str),
            providers.iter().map(String::as_str),
            locations.iter().map(String::as_str),
        )
        .await?;
        let registry_ms = started.elapsed().as_millis() - prepare_ms - record_ms;
        Ok(Staged { recorded, prepared, keys, registry, started, prepare_ms, record_ms, registry_ms })
    }

    /// The second half of [`Pipeline::process_batch`]: decides and files every message of a staged batch in
    /// one transaction.
    #[tracing::instrument(skip_all, fields(mailbox = %mailbox.name, messages = batch.len()))]
    pub async fn file_staged(
        &self,
        mailbox: &MailboxConfig,
        batch: &[Incoming<'_>],
        staged: Staged,
    ) -> Result<Vec<Result<Outcome, PipelineError>>, PipelineError> {
        let Staged { recorded, prepared, keys, registry, started, prepare_ms, record_ms, registry_ms } = staged;
        let waited_ms = started.elapsed().as_millis() - prepare_ms - record_ms - registry_ms;
        let filing_started = std::time::Instant::now();
        // Optimistically without a savepoint per message (two round trips each); if any message fails, the
        // batch is undone and filed again with them, so a message that fails is undone alone.
        let all_read = prepared.iter().all(Option::is_some);
        let mut outcomes = Vec::with_capacity(batch.len());
        for isolated in [false, true] {
            outcomes.clear();
            let mut filing = self.store.begin_batch().await?;
            let known = match all_read {
                true => queries::Known::load(filing.connection(), &keys).await?,
                false => queries::Known::everything(),
            };
            let mut lookups = Lookups { registry: &registry, known, later: queries::Deferred::default() };
            for ((m, recorded), prepared) in batch.iter().zip(&recorded).zip(&prepared) {
                let outcome =
                    self.file_one(&mut filing, &mut lookups, mailbox, m, recorded, prepared.as_ref(), isolated);
                outcomes.push(outcome.await);
                if !isolated && outcomes.last().is_some_and(Result::is_err) {
                    break;
                }
            }
            if isolated {
                filing.commit().await?;
                break;
            }
            if outcomes.iter().all(Result::is_ok) {
                match lookups.later.write(filing.connection()).await {
                    Ok(()) => {
                        filing.commit().await?;
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "writing the batch's problems, replies and audit failed"),
                }
            }
            tracing::debug!("a message of the batch failed: filing the batch again, each message on its own");
            filing.rollback().await?;
        }
        crate::failpoint::hit("after_commit");
        // Where a batch's time goes, for tuning: `POSTROOM_LOG=postroom::pipeline=debug`.
        tracing::debug!(
            prepare_ms,
            record_ms,
            registry_ms,
            waited_ms,
            file_ms = filing_started.elapsed().as_millis(),
            "batch filed"
        );
        for (m, o) in batch.iter().zip(&outcomes) {
            if let Ok(o) = o {
                tracing::info!(key = m.source_key, ledger_id = o.ledger_id, outcome = %o.outcome, reason = ?o.reason, forms = o.references.len(), "filed");
            }
        }
        Ok(outcomes)
    }

    /// Decides and files one recorded message inside `batch`; `isolated`, in a savepoint of its own.
    #[allow(clippy::too_many_arguments)]
    async fn file_one(
        &self,
        batch: &mut Batch,
        lookups: &mut Lookups<'_>,
        mailbox: &MailboxConfig,
        m: &Incoming<'_>,
        recorded: &Recorded,
        prepared: Option<&Prepared>,
        isolated: bool,
    ) -> Result<Outcome, PipelineError> {
        let (ledger_id, sha256) = match recorded {
            Recorded::Filed { id, status } => return self.already_filed(batch.connection(), *id, status).await,
            Recorded::New { id, sha256 } | Recorded::Unfinished { id, sha256 } => (*id, sha256),
        };
        let prepared_here;
        let Prepared { parsed, read } = match prepared {
            Some(p) => p,
            None => {
                prepared_here = self.reader().read(&mailbox.name, m.raw, m.received_at);
                &prepared_here
            }
        };
        let attempts = if isolated { 3 } else { 1 };
        for attempt in 0..attempts {
            let filed = if isolated {
                let mut savepoint = batch.message().await?;
                let mut filed = self
                    .decide_and_file(&mut savepoint, lookups, ledger_id, sha256, mailbox, m, parsed, read, false)
                    .await;
                if filed.is_ok()
                    && let Err(e) = lookups.later.write(&mut savepoint).await
                {
                    filed = Err(e.into());
                }
                if filed.is_ok() {
                    savepoint.commit().await.map_err(StoreError::from)?;
                }
                filed
            } else {
                let db = batch.connection();
                self.decide_and_file(db, lookups, ledger_id, sha256, mailbox, m, parsed, read, true).await
            };
            match filed {
                // A freshly drawn reference collided with an old one: undo this message and draw again.
                Err(PipelineError::Store(StoreError::ReferenceTaken(r))) if attempt + 1 < attempts => {
                    tracing::debug!(reference = %r, "reference taken")
                }
                filed => return filed,
            }
        }
        Err(StoreError::ReferenceTaken("three draws in a row".into()).into())
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_and_file(
        &self,
        db: &mut AnyConnection,
        lookups: &mut Lookups<'_>,
        ledger_id: i64,
        sha256: &str,
        mailbox: &MailboxConfig,
        m: &Incoming<'_>,
        parsed: &Result<Message, crate::message::MessageError>,
        read: &[FormRead],
        hold: bool,
    ) -> Result<Outcome, PipelineError> {
        let message = parsed.as_ref().ok();
        let decision = match parsed {
            Ok(msg) => self.decide(db, lookups, ledger_id, msg, read, m.received_at).await?,
            Err(e) => Decision::without_reply("quarantined", e.reason_code()),
        };
        let filing = self.filing(ledger_id, sha256, mailbox, message, &decision, m.received_at)?;
        let outcome = self.outcome(ledger_id, message, &decision, &filing);
        // Held, in a batch filed as one: its rows are written with the batch's others.
        if hold {
            lookups.known.add(&filing);
            lookups.later.hold(filing);
        } else if queries::file(db, &filing, &mut lookups.later).await? {
            lookups.known.add(&filing);
        }
        Ok(outcome)
    }

    /// Records a message that could not be fetched (over the size limit, or refused by the server) so it
    /// is quarantined once, seen by staff, and never retried on every poll.
    pub async fn record_unfetchable(
        &self,
        mailbox: &MailboxConfig,
        source_key: &str,
        size: u64,
        reason: &str,
        received_at: DateTime<Utc>,
    ) -> Result<Outcome, PipelineError> {
        let recorded = self
            .store
            .record(Inbound {
                mailbox: &mailbox.name,
                source_key,
                raw: &[],
                received_at: received_at.timestamp_millis(),
            })
            .await?;
        let id = match recorded {
            Recorded::Filed { id, status } => {
                return self
                    .already_filed(&mut *self.store.pool().acquire().await.map_err(StoreError::from)?, id, &status)
                    .await;
            }
            Recorded::New { id, .. } | Recorded::Unfinished { id, .. } => id,
        };
        let decision = Decision::without_reply("quarantined", reason);
        let filing =
            Filing { message: id, status: "quarantined".into(), reason: Some(reason.to_string()), ..Filing::default() };
        self.store.file(&filing).await?;
        self.store.set_size(id, size).await?;
        tracing::warn!(ledger_id = id, size, reason, "message not fetched: quarantined");
        Ok(self.outcome(id, None, &decision, &filing))
    }

    async fn already_filed(&self, db: &mut AnyConnection, id: i64, status: &str) -> Result<Outcome, PipelineError> {
        Ok(Outcome {
            ledger_id: id,
            // Recorded when it was filed: no need to parse the message again.
            message_id: queries::header_message_id(db, id).await?,
            outcome: "duplicate".into(),
            reason: Some("duplicate:same_message".into()),
            references: queries::references_of(db, id).await?,
            problems: Vec::new(),
            reply: None,
            folder: Folder::for_status(status),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        db: &mut AnyConnection,
        lookups: &mut Lookups<'_>,
        ledger_id: i64,
        m: &Message,
        read: &[FormRead],
        received_at: DateTime<Utc>,
    ) -> Result<Decision, PipelineError> {
        let env = &m.envelope;
        if env.from_is_one_of(&self.own_addresses) {
            return Ok(Decision::without_reply("quarantined", "loop:own_address"));
        }
        if let Some(auto) = m.automatic(&self.own_addresses) {
            if auto == AutoReason::Bounce
                && let Some(bounced) = m.bounced_message_id()
                && queries::mark_reply_bounced(db, bounced).await?
            {
                tracing::warn!(ledger_id, "a reply of ours bounced; marked delivery_failed for staff");
            }
            let status = if auto.quarantine() { "quarantined" } else { "ignored" };
            return Ok(Decision::without_reply(status, auto.reason_code()));
        }
        let authserv = Some(self.config.mail.authserv_id.as_str()).filter(|s| !s.is_empty());
        if m.dmarc(authserv) == Dmarc::Fail {
            return Ok(Decision::without_reply("quarantined", "auth:dmarc_fail"));
        }
        let Some(from) = env.from.as_ref() else {
            // No single, parseable From: nobody to answer and no authority to check.
            return Ok(Decision::without_reply("quarantined", "sender:ambiguous"));
        };
        let sender = from.address.comparison_key().to_string();

        let candidates: Vec<_> = m.candidate_forms().collect();
        let shas: Vec<String> = read.iter().map(|(sha, _)| sha.clone()).collect();
        if let Some(mid) = &env.message_id
            && lookups.may_find(db, |k| k.may_be_redelivery(mid)).await?
            && let Some(original) = queries::find_redelivery(db, ledger_id, mid, &sender, &shas).await?
        {
            let refs = queries::references_of(db, original).await?;
            return Ok(Decision {
                duplicate_of: Some((original, refs)),
                ..Decision::without_reply("duplicate", "duplicate:redelivered")
            });
        }
        // The same form bytes from the same sender, filed before: not filed again.
        let mut duplicates = Vec::new();
        for sha in &shas {
            if lookups.may_find(db, |k| k.may_be_same_form(sha)).await?
                && let Some(s) = queries::find_same_form(db, ledger_id, &sender, sha).await?
            {
                duplicates.push((sha.clone(), s));
            }
        }
        if !shas.is_empty() && duplicates.len() == shas.len() {
            let original = duplicates[0].1.message_id;
            return Ok(Decision {
                duplicate_of: Some((original, duplicates.into_iter().map(|(_, d)| d.reference).collect())),
                ..Decision::without_reply("duplicate", "duplicate:same_form")
            });
        }

        let mut email_problems = Vec::new();
        for skipped in &m.skipped {
            let name = skipped.filename.clone().unwrap_or_else(|| "an attachment".into());
            let problem = match skipped.reason {
                SkipReason::TooLarge => Problem::new(ProblemCode::FileTooLarge)
                    .message(format!("{name} ({} bytes) is larger than we accept.", skipped.size)),
                SkipReason::TooDeep => Problem::new(ProblemCode::NoForm).message(format!(
                    "{name} is a message forwarded inside other forwarded messages too deeply for us to open."
                )),
                SkipReason::Unreadable => {
                    Problem::new(ProblemCode::CorruptFile).message(format!("{name} could not be decoded."))
                }
            };
            email_problems.push(problem.value(&name));
        }
        let quoted = Reference::find_all(env.subject.as_deref().unwrap_or_default(), &self.config.reference.prefix);
        let mut forms = Vec::new();
        for (index, (attachment, sha)) in candidates.iter().zip(&shas).enumerate() {
            if duplicates.iter().any(|(dup, _)| dup == sha) {
                continue;
            }
            let name = attachment.filename.clone().unwrap_or_else(|| format!("attachment {}", index + 1));
            let mut form = FormResult {
                index,
                attachment_name: name.clone(),
                sha256: sha.clone(),
                def: None,
                declared_version: None,
                checked: None,
                raw_values: serde_json::Value::Null,
                problems: Vec::new(),
                resubmission_of: None,
                same_incident: None,
                sender_refused: false,
                first_part: None,
            };
            let unread = Err(extract::ExtractError::Unreadable);
            match read.get(index).map_or(&unread, |(_, r)| r) {
                Err(e) => {
                    let code = e.reason_code();
                    if code.starts_with("size:") {
                        // Zip bombs and absurd nesting are attacks, not mistakes: staff look, nobody is answered.
                        return Ok(Decision::without_reply("quarantined", code));
                    }
                    form.problems
                        .push(Problem::new(problem_for_extract(code)).value(&name).message(format!("{name}: {e}")));
                }
                Ok(ReadForm { extracted, checked }) => {
                    if let Some((def, checked)) = checked {
                        let (def, checked) = (def.clone(), checked.clone());
                        form.problems.extend(checked.problems.iter().cloned());
                        let needs_location = def.field("location_id").is_some_and(|f| f.required);
                        let authority = crate::registry::check::check_with(
                            db,
                            lookups.registry,
                            &from.address,
                            needs_location,
                            checked.text("provider_id"),
                            checked.text("location_id"),
                        )
                        .await?;
                        for p in authority {
                            if is_about_sender(p.code) {
                                // About the email's sender, not this form: said once, for the whole email.
                                if !email_problems.iter().any(|e: &Problem| e.code == p.code) {
                                    email_problems.push(p);
                                }
                            } else {
                                form.problems.push(p);
                            }
                        }
                        form.raw_values = serde_json::to_value(&extracted.values).unwrap_or_default();
                        form.declared_version = Some(extracted.version.clone());
                        form.checked = Some(checked);
                        form.def = Some(def);
                    }
                }
            }
            for p in &mut form.problems {
                p.form_index = Some(index);
            }
            self.link(db, lookups, &mut form, &sender, &quoted, received_at).await?;
            forms.push(form);
        }

        if email_problems.iter().any(|p| is_about_sender(p.code)) {
            forms.iter_mut().for_each(|f| f.sender_refused = true);
        }
        let no_form = forms.is_empty() && email_problems.is_empty();
        if no_form {
            email_problems.push(Problem::new(ProblemCode::NoForm));
        }
        let rejected = !email_problems.is_empty() || forms.iter().any(|f| !f.accepted());
        let status = if rejected { "rejected" } else { "accepted" };
        let reply = if no_form {
            ReplyKind::NoForm
        } else if rejected {
            ReplyKind::Rejection
        } else {
            ReplyKind::Confirmation
        };
        // Loop and flood protection: past the reply budget the email is still filed but not answered.
        let since = received_at.timestamp_millis() - (self.config.limits.reply_window_secs as i64).saturating_mul(1000);
        let limits = &self.config.limits;
        // Counted in the outbox only where the batch's lookup keys say there can be any, and among the
        // replies the batch holds until its end.
        let any_replies = lookups.known.may_have_replies(&sender);
        let mut queued = async |kind: Option<&str>| -> Result<i64, PipelineError> {
            let stored = match any_replies {
                true => queries::replies_to_since(db, &sender, since, kind).await?,
                false => 0,
            };
            Ok(stored + lookups.later.replies_to(&sender, kind))
        };
        let mut over_budget = queued(None).await? >= i64::from(limits.max_replies_per_sender);
        if !over_budget && reply == ReplyKind::NoForm {
            over_budget =
                queued(Some(ReplyKind::NoForm.as_str())).await? >= i64::from(limits.max_no_form_replies_per_sender);
        }
        if over_budget {
            tracing::warn!(ledger_id, "reply budget for this sender spent: quarantined, not answered");
            return Ok(Decision {
                status: "quarantined",
                reason: Some("rate:flood".into()),
                duplicate_of: None,
                forms,
                email_problems,
                reply: None,
            });
        }
        Ok(Decision { status, reason: None, duplicate_of: None, forms, email_problems, reply: Some(reply) })
    }

    /// Links a corrected form to the rejection it answers, and an incident notified twice to the first.
    async fn link(
        &self,
        db: &mut AnyConnection,
        lookups: &mut Lookups<'_>,
        form: &mut FormResult,
        sender: &str,
        quoted: &[Reference],
        received_at: DateTime<Utc>,
    ) -> Result<(), PipelineError> {
        let (Some(def), Some(checked)) = (&form.def, &form.checked) else { return Ok(()) };
        let provider = checked.text("provider_id");
        for r in quoted {
            if let Some((s, p, f)) = lookups.by_reference(db, r).await?
                && s.status == "rejected"
                && f.as_deref() == Some(def.id.as_str())
                && (provider.is_none() || p.as_deref() == provider)
            {
                form.resubmission_of = Some((s.id, s.reference));
                break;
            }
        }
        if form.resubmission_of.is_none()
            && let Some(provider) = provider
            && lookups.may_find(db, |k| k.may_have_rejection(provider)).await?
        {
            let since = received_at.timestamp_millis() - RESUBMISSION_WINDOW_MS;
            if let Some(s) = queries::open_rejection(db, sender, provider, &def.id, since).await? {
                form.resubmission_of = Some((s.id, s.reference));
            }
        }
        if let (Some(first_form), Some(provider)) = (&def.part_of, provider) {
            let quoted_first = checked
                .text("first_part_reference")
                .and_then(|r| Reference::parse(r, &self.config.reference.prefix).ok());
            if let Some(r) = quoted_first
                && let Some((s, p, f)) = lookups.by_reference(db, &r).await?
                && f.as_deref() == Some(first_form.as_str())
                && p.as_deref() == Some(provider)
            {
                form.first_part = Some((s.id, s.reference));
            } else if let Some(person) = person_key(checked)
                && lookups.may_find(db, |k| k.may_have_first_part(provider)).await?
                && let Some(s) = queries::first_part(db, provider, first_form, &person).await?
            {
                form.first_part = Some((s.id, s.reference));
            }
        }
        if let (Some(location), Some(date)) = (checked.text("location_id"), checked.text("event_date"))
            && lookups.may_find(db, |k| k.may_be_same_incident(location)).await?
            && let Some(s) = queries::same_incident(db, &def.id, location, date, checked.text("event_time")).await?
        {
            form.same_incident = Some((s.id, s.reference));
        }
        Ok(())
    }

    fn filing(
        &self,
        ledger_id: i64,
        raw_sha256: &str,
        mailbox: &MailboxConfig,
        message: Option<&Message>,
        d: &Decision,
        received_at: DateTime<Utc>,
    ) -> Result<Filing, PipelineError> {
        let env = message.map(|m| &m.envelope);
        let sender = env.and_then(|e| e.from.as_ref()).map(|f| f.address.comparison_key().to_string());
        let prefix = &self.config.reference.prefix;
        let mut submissions = Vec::new();
        let mut references = Vec::new();
        for f in &d.forms {
            let reference = Reference::generate(prefix).to_string();
            references.push(reference.clone());
            let checked = f.checked.as_ref();
            let text = |k: &str| checked.and_then(|c| c.text(k)).map(str::to_string);
            submissions.push(NewSubmission {
                form_index: f.index as i64,
                reference,
                status: if f.accepted() { "accepted" } else { "rejected" }.into(),
                form_id: f.def.as_ref().map(|d| d.id.clone()),
                form_version: f.declared_version.clone(),
                attachment_name: Some(f.attachment_name.clone()),
                attachment_sha256: f.sha256.clone(),
                sender: sender.clone(),
                provider_id: text("provider_id"),
                location_id: text("location_id"),
                event_date: text("event_date"),
                event_time: text("event_time"),
                values_json: serde_json::json!({
                    "values": checked.map(|c| &c.values),
                    "extracted": f.raw_values,
                })
                .to_string(),
                urgent: f.def.as_ref().is_some_and(|d| d.urgent),
                resubmission_of: f.resubmission_of.as_ref().map(|(id, _)| *id),
                same_incident_as: f.same_incident.as_ref().map(|(id, _)| *id),
                person_key: checked.and_then(person_key),
                first_part: f.first_part.as_ref().map(|(id, _)| *id),
                receipt_delay_minutes: checked.and_then(|c| receipt_delay_minutes(c, received_at)),
            });
        }
        let mut problems = d.email_problems.clone();
        problems.extend(d.forms.iter().flat_map(|f| f.problems.iter().cloned()));

        let reply = match (d.reply, env, &sender) {
            (Some(kind), Some(env), Some(to)) => {
                Some(self.compose_reply(kind, raw_sha256, mailbox, env, to, d, &references, received_at)?)
            }
            _ => None,
        };
        Ok(Filing {
            message: ledger_id,
            status: d.status.to_string(),
            reason: d.reason.clone(),
            header_message_id: env.and_then(|e| e.message_id.clone()),
            from_address: sender,
            subject: env.and_then(|e| e.subject.clone()),
            duplicate_of: d.duplicate_of.as_ref().map(|(id, _)| *id),
            submissions,
            problems,
            reply,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn compose_reply(
        &self,
        kind: ReplyKind,
        raw_sha256: &str,
        mailbox: &MailboxConfig,
        env: &crate::message::Envelope,
        to: &str,
        d: &Decision,
        references: &[String],
        received_at: DateTime<Utc>,
    ) -> Result<NewReply, PipelineError> {
        let forms: Vec<FormReply> = d
            .forms
            .iter()
            .zip(references)
            .map(|(f, reference)| FormReply {
                title: f.def.as_ref().map(|d| d.title.clone()).unwrap_or_else(|| "Attachment not read".into()),
                reference: reference.clone(),
                accepted: f.accepted(),
                attachment_name: f.attachment_name.clone(),
                sha256: f.sha256.clone(),
                summary: summary(f),
                problems: f.problems.iter().map(|p| problem_line(f.def.as_ref(), p)).collect(),
                linked_to: f.resubmission_of.as_ref().map(|(_, r)| r.clone()),
                first_part: f.first_part.as_ref().map(|(_, r)| r.clone()),
                same_incident: f.same_incident.as_ref().map(|(_, r)| r.clone()),
            })
            .collect();
        let stale = d.forms.iter().flat_map(|f| &f.problems).any(|p| {
            matches!(p.code, ProblemCode::StaleFormVersion | ProblemCode::UnknownFormVersion | ProblemCode::UnknownForm)
        });
        let data = ReplyData {
            organisation: self.config.mail.organisation.clone(),
            mailbox_address: mailbox.address.clone(),
            forms_url: self.config.mail.forms_url.clone(),
            received_at: received_at.with_timezone(&London).format("%d/%m/%Y %H:%M").to_string(),
            plural: forms.len() > 1,
            forms,
            email_problems: d.email_problems.iter().map(|p| problem_line(None, p)).collect(),
            stale,
        };
        let tag = if references.is_empty() { String::new() } else { format!("[{}] ", references.join(", ")) };
        let what = match d.forms.as_slice() {
            [one] => one.def.as_ref().map(|d| d.title.clone()).unwrap_or_else(|| "your notification".into()),
            _ => format!("{} notification forms", d.forms.len()),
        };
        let subject = match kind {
            ReplyKind::Confirmation => format!("{tag}Notification received: {what}"),
            ReplyKind::Rejection => format!("{tag}Action needed: notification not accepted: {what}"),
            ReplyKind::NoForm => "Action needed: no notification form found in your email".to_string(),
        };
        let composed = self.templates.compose(kind, subject, &data)?;
        let message_id = reply::reply_message_id(kind, raw_sha256, &mailbox.address);
        let original = env.message_id.as_ref().map(|id| format!("<{id}>"));
        let mut thread: Vec<String> = env.references.iter().map(|r| format!("<{r}>")).collect();
        thread.extend(original.clone());
        let eml = reply::build_email(
            &reply::Envelope {
                from_name: &format!("{} notifications", self.config.mail.organisation),
                from_address: &mailbox.address,
                to,
                message_id: &message_id,
                in_reply_to: original.as_deref(),
                references: thread,
            },
            &composed,
        )?;
        Ok(NewReply { kind: kind.as_str().into(), to: to.to_string(), mail_message_id: message_id, eml })
    }

    fn outcome(&self, ledger_id: i64, m: Option<&Message>, d: &Decision, filing: &Filing) -> Outcome {
        let references = match &d.duplicate_of {
            Some((_, refs)) => refs.clone(),
            None => filing.submissions.iter().map(|s| s.reference.clone()).collect(),
        };
        Outcome {
            ledger_id,
            message_id: m.and_then(|m| m.envelope.message_id.clone()),
            outcome: d.status.to_string(),
            reason: d.reason.clone(),
            references,
            problems: filing.problems.clone(),
            reply: filing.reply.as_ref().map(|r| r.kind.clone()),
            folder: Folder::for_status(d.status),
        }
    }
}

impl Reader {
    /// Parses a message, reads each of its candidate forms and checks each against its definition.
    fn read(&self, mailbox: &str, raw: &[u8], received_at: DateTime<Utc>) -> Prepared {
        let parsed = crate::message::parse(raw, &self.message_limits);
        let ctx = validate::Context { catalog: &self.catalog, mailbox, received_at, forms_url: &self.forms_url };
        let read = match &parsed {
            Ok(msg) => msg
                .candidate_forms()
                .map(|a| {
                    let form = extract::extract(&a.bytes, &self.catalog, &self.docx_limits).map(|extracted| {
                        let def = self
                            .catalog
                            .get(&extracted.form_id, &extracted.version)
                            .or_else(|| self.catalog.current(&extracted.form_id))
                            .cloned();
                        let checked = def.map(|def| {
                            let checked = validate::check_form(&def, &extracted, &ctx);
                            (def, checked)
                        });
                        ReadForm { extracted, checked }
                    });
                    (crate::sha256_hex(&a.bytes), form)
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Prepared { parsed, read }
    }

    /// [`Reader::read`] for every message of a batch (raw bytes and arrival), on two threads.
    fn read_all(&self, mailbox: &str, batch: &[(Vec<u8>, DateTime<Utc>)]) -> Vec<Prepared> {
        let work = |part: &[(Vec<u8>, DateTime<Utc>)]| -> Vec<Prepared> {
            part.iter().map(|(raw, at)| self.read(mailbox, raw, *at)).collect()
        };
        let (first, second) = batch.split_at(batch.len() / 2);
        if first.is_empty() {
            return work(second);
        }
        std::thread::scope(|scope| {
            let other = scope.spawn(|| work(second));
            let mut all = work(first);
            match other.join() {
                Ok(rest) => all.extend(rest),
                // A panic there: that half is read again here, where a panic is the caller's to catch.
                Err(_) => all.extend(work(second)),
            }
            all
        })
    }
}

/// What deciding a message of a batch looks up first: the registry rows the batch names, and which of its
/// ledger lookups can find anything at all.
struct Lookups<'a> {
    registry: &'a Prefetched,
    known: queries::Known,
    /// What the batch filed and will write at its end.
    later: queries::Deferred,
}

impl Lookups<'_> {
    /// Whether a ledger lookup could find anything (`may_find`, asked of the keys known at the batch's
    /// start and filed since); if one of the batch's held filings could be what it finds, they are written
    /// first.
    async fn may_find(
        &mut self,
        db: &mut AnyConnection,
        may_find: impl Fn(&queries::Known) -> bool,
    ) -> Result<bool, StoreError> {
        if !may_find(&self.known) {
            return Ok(false);
        }
        self.later.write_held_if(db, may_find).await?;
        Ok(true)
    }

    /// The submission filed under a quoted reference (with its provider and form), the held filings
    /// written first if one of them has it.
    async fn by_reference(
        &mut self,
        db: &mut AnyConnection,
        reference: &Reference,
    ) -> Result<Option<(SubmissionRef, Option<String>, Option<String>)>, StoreError> {
        self.later.write_held_if(db, |k| k.may_hold_reference(reference.as_str())).await?;
        queries::find_by_reference(db, reference.as_str()).await
    }
}

/// The keys a batch's registry and ledger lookups will ask about (see [`Prefetched`], [`queries::Known`]),
/// from the messages read ahead.
fn lookup_keys(prepared: &[Option<Prepared>]) -> queries::Keys {
    let mut keys = queries::Keys::default();
    for p in prepared.iter().flatten() {
        let Ok(m) = &p.parsed else { continue };
        keys.message_ids.extend(m.envelope.message_id.clone());
        if let Some(from) = &m.envelope.from {
            keys.senders.push(from.address.comparison_key().to_string());
        }
        for (sha, read) in &p.read {
            keys.shas.push(sha.clone());
            if let Some((def, checked)) = read.as_ref().ok().and_then(|r| r.checked.as_ref()) {
                keys.forms.push(def.id.clone());
                keys.providers.extend(checked.text("provider_id").map(str::to_string));
                keys.locations.extend(checked.text("location_id").map(str::to_string));
            }
        }
    }
    keys
}

/// Who a notification is about, normalised: the provider's identifier for the person using the service,
/// or the absent manager's name.
fn person_key(checked: &Checked) -> Option<String> {
    let raw = checked.text("person_identifier").or_else(|| checked.text("absent_person_name"))?;
    let key = raw.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    (!key.is_empty()).then_some(key)
}

/// Minutes from the event (its date, and time when given, Europe/London) to receipt.
fn receipt_delay_minutes(checked: &Checked, received_at: DateTime<Utc>) -> Option<i64> {
    let date = chrono::NaiveDate::parse_from_str(checked.text("event_date")?, "%Y-%m-%d").ok()?;
    let time = checked
        .text("event_time")
        .and_then(|t| chrono::NaiveTime::parse_from_str(t, "%H:%M").ok())
        .unwrap_or(chrono::NaiveTime::MIN);
    let at = date.and_time(time).and_local_timezone(London).earliest()?;
    Some((received_at - at.with_timezone(&Utc)).num_minutes())
}

/// Problems about who sent the email rather than what a form says.
fn is_about_sender(code: ProblemCode) -> bool {
    matches!(code, ProblemCode::SenderNotRegistered | ProblemCode::EmailMultipleRoles)
}

fn problem_for_extract(code: &str) -> ProblemCode {
    match code {
        "type:legacy_doc" => ProblemCode::LegacyDoc,
        "type:encrypted" => ProblemCode::Encrypted,
        "type:macro" => ProblemCode::MacroEnabled,
        "type:not_word" | "type:no_document" => ProblemCode::NotWord,
        "form:unknown" => ProblemCode::UnknownForm,
        _ => ProblemCode::CorruptFile,
    }
}

fn problem_line(def: Option<&FormDef>, p: &Problem) -> ProblemLine {
    let label = p.field.as_deref().and_then(|k| def.and_then(|d| d.field(k)).map(|f| f.label.clone()));
    ProblemLine { label, message: p.message.clone(), hint: p.hint.clone() }
}

/// Every answer filed, labelled and shown the way the provider wrote it (choices by label, dates UK-style).
fn summary(f: &FormResult) -> Vec<LabelValue> {
    let (Some(def), Some(checked)) = (&f.def, &f.checked) else { return Vec::new() };
    def.fields()
        .filter_map(|field| {
            let v = checked.values.get(&field.key)?;
            let shown = match (field.kind, v) {
                (FieldKind::Date, serde_json::Value::String(s)) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.format("%d/%m/%Y").to_string())
                    .unwrap_or_else(|_| s.clone()),
                (k, _) if k.is_boxes() => {
                    let keys: Vec<String> = match v {
                        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                        serde_json::Value::String(s) => vec![s.clone()],
                        _ => Vec::new(),
                    };
                    let choices = field.effective_choices();
                    let labels: Vec<String> = keys
                        .iter()
                        .map(|k| choices.iter().find(|c| &c.key == k).map(|c| c.label.clone()).unwrap_or(k.clone()))
                        .collect();
                    labels.join(", ")
                }
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, other) => Value::Text(other.to_string()).display(),
            };
            Some(LabelValue { label: field.label.clone(), value: shown })
        })
        .collect()
}
