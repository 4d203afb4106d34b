//! The statements that file a message and the lookups deciding it needs, on one connection: the pool's
//! for a single call ([`Store`](super::Store) wraps the few used alone), or a [`Batch`](super::Batch)'s open
//! transaction, so a message decided later in a batch sees what the batch filed before it.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::{
    Filing, IN_LIST_CHUNK, NewReply, NewSubmission, StoreError, SubmissionRef, now_ms, rows_in, submission_ref,
    value_rows,
};
use crate::problem::Problem;

/// What a batch's lookups will ask about: the Message-IDs, form hashes, senders, providers and locations of
/// its messages.
#[derive(Debug, Default)]
pub struct Keys {
    pub message_ids: Vec<String>,
    pub shas: Vec<String>,
    pub senders: Vec<String>,
    pub providers: Vec<String>,
    pub locations: Vec<String>,
    pub forms: Vec<String>,
}

/// The keys under which the ledger holds anything the lookups deciding a message could find. A lookup whose
/// key is not here cannot find anything, so it is not run: a batch asks 6 questions at its start instead of
/// 5-7 per message. Read inside the batch's transaction, then kept up to date with what the batch files.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Every lookup is run (a message of the batch could not be read ahead, so its keys are unknown).
    everything: bool,
    /// Message-IDs of messages filed other than as duplicates ([`find_redelivery`]).
    message_ids: HashSet<String>,
    /// Form hashes filed ([`find_same_form`]).
    shas: HashSet<String>,
    /// Providers with a rejected submission ([`open_rejection`]).
    rejected_providers: HashSet<String>,
    /// Providers with an accepted submission ([`first_part`]).
    accepted_providers: HashSet<String>,
    /// Locations with an accepted submission of one of the batch's forms ([`same_incident`]).
    accepted_locations: HashSet<String>,
    /// Addresses with a reply queued ([`replies_to_since`]).
    reply_recipients: HashSet<String>,
    /// References filed ([`find_by_reference`]): kept for a batch's held filings only, as a reference
    /// quoted is always looked up.
    references: HashSet<String>,
}

impl Known {
    /// Runs every lookup.
    pub fn everything() -> Known {
        Known { everything: true, ..Known::default() }
    }

    pub async fn load(db: &mut AnyConnection, keys: &Keys) -> Result<Known, StoreError> {
        async fn distinct(
            db: &mut AnyConnection,
            table: &str,
            column: &str,
            values: &[String],
            also: &str,
        ) -> Result<HashSet<String>, StoreError> {
            let mut values = values.to_vec();
            values.sort();
            values.dedup();
            let mut found = HashSet::new();
            let select = format!("SELECT DISTINCT {column} AS k FROM {table}");
            for chunk in values.chunks(IN_LIST_CHUNK) {
                for row in rows_in(db, &select, column, chunk, also).await? {
                    found.insert(row.try_get::<String, _>("k")?);
                }
            }
            Ok(found)
        }
        let filed = " AND status NOT IN ('received', 'duplicate')";
        // By form too, so the incident index (form_id, location_id, event_date) answers it. The ids are the
        // catalogue's own (a form's definition, not what the mail said), quoted all the same.
        let forms: Vec<String> = keys.forms.iter().map(|f| format!("'{}'", f.replace('\'', "''"))).collect();
        let incident = match forms.is_empty() {
            true => " AND status = 'accepted'".to_string(),
            false => format!(" AND status = 'accepted' AND form_id IN ({})", forms.join(", ")),
        };
        Ok(Known {
            everything: false,
            message_ids: distinct(db, "messages", "header_message_id", &keys.message_ids, filed).await?,
            shas: distinct(db, "submissions", "attachment_sha256", &keys.shas, "").await?,
            rejected_providers: distinct(db, "submissions", "provider_id", &keys.providers, " AND status = 'rejected'")
                .await?,
            accepted_providers: distinct(db, "submissions", "provider_id", &keys.providers, " AND status = 'accepted'")
                .await?,
            accepted_locations: distinct(db, "submissions", "location_id", &keys.locations, &incident).await?,
            reply_recipients: distinct(db, "outbox", "to_address", &keys.senders, "").await?,
            references: HashSet::new(),
        })
    }

    /// Adds what a message just filed in the batch could be found by.
    pub fn add(&mut self, f: &Filing) {
        if f.status != "received" && f.status != "duplicate" {
            self.message_ids.extend(f.header_message_id.clone());
        }
        for s in &f.submissions {
            self.shas.insert(s.attachment_sha256.clone());
            self.references.insert(s.reference.clone());
            match s.status.as_str() {
                "rejected" => self.rejected_providers.extend(s.provider_id.clone()),
                "accepted" => {
                    self.accepted_providers.extend(s.provider_id.clone());
                    self.accepted_locations.extend(s.location_id.clone());
                }
                _ => {}
            }
        }
        if let Some(r) = &f.reply {
            self.reply_recipients.insert(r.to.clone());
        }
    }

    pub fn may_be_redelivery(&self, message_id: &str) -> bool {
        self.everything || self.message_ids.contains(message_id)
    }
    pub fn may_be_same_form(&self, sha: &str) -> bool {
        self.everything || self.shas.contains(sha)
    }
    pub fn may_have_rejection(&self, provider: &str) -> bool {
        self.everything || self.rejected_providers.contains(provider)
    }
    pub fn may_have_first_part(&self, provider: &str) -> bool {
        self.everything || self.accepted_providers.contains(provider)
    }
    pub fn may_be_same_incident(&self, location: &str) -> bool {
        self.everything || self.accepted_locations.contains(location)
    }
    pub fn may_have_replies(&self, to: &str) -> bool {
        self.everything || self.reply_recipients.contains(to)
    }
    pub fn may_hold_reference(&self, reference: &str) -> bool {
        self.everything || self.references.contains(reference)
    }
}

/// Files everything decided about a message; run it inside a transaction (or a batch's savepoint), which
/// the caller rolls back on error. The ledger row and the submissions are written at once (the lookups of
/// later messages read them); the problems, the reply and the audit entry go into `later`, which the caller
/// writes with [`Deferred::write`] in the same transaction. Returns false, changing nothing, when the
/// message was already filed (a second worker or a retry got there first).
pub async fn file(db: &mut AnyConnection, f: &Filing, later: &mut Deferred) -> Result<bool, StoreError> {
    let now = now_ms();
    if update_ledger(db, &[(f, now)]).await? == 0 {
        return Ok(false);
    }
    insert_submissions(db, &[(f, now)], &mut later.submission_ids).await?;
    later.defer_rest(f, now);
    Ok(true)
}

/// Writes the decisions into the messages' ledger rows, each only if still `received` (the guard against
/// filing twice); returns how many were.
async fn update_ledger(db: &mut AnyConnection, filings: &[(&Filing, i64)]) -> Result<u64, StoreError> {
    let mut updated = 0;
    for chunk in filings.chunks(DEFERRED_CHUNK) {
        let sql = format!(
            "UPDATE messages SET status = v.column2, reason = v.column3, header_message_id = v.column4, \
             from_address = v.column5, subject = v.column6, duplicate_of = v.column7, processed_at = v.column8 \
             FROM (VALUES {}) AS v WHERE messages.id = v.column1 AND messages.status = 'received'",
            value_rows(chunk.len(), 8)
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (f, now) in chunk {
            update = update
                .bind(f.message)
                .bind(&f.status)
                .bind(&f.reason)
                .bind(&f.header_message_id)
                .bind(&f.from_address)
                .bind(&f.subject)
                .bind(f.duplicate_of)
                .bind(*now);
        }
        updated += update.execute(&mut *db).await?.rows_affected();
    }
    Ok(updated)
}

/// Submission ids by (message, form index), as the inserts returned them.
type SubmissionIds = HashMap<(i64, i64), i64>;

/// Inserts the submissions of `filings` in multi-row statements, adding their ids to `ids`. A reference
/// already taken (drawn twice) fails the call with [`StoreError::ReferenceTaken`].
async fn insert_submissions(
    db: &mut AnyConnection,
    filings: &[(&Filing, i64)],
    ids: &mut SubmissionIds,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &NewSubmission, i64)> =
        filings.iter().flat_map(|(f, now)| f.submissions.iter().map(move |s| (f.message, s, *now))).collect();
    for chunk in rows.chunks(DEFERRED_CHUNK) {
        let sql = format!(
            "INSERT INTO submissions (message_id, form_index, reference, status, form_id, form_version, \
             attachment_name, attachment_sha256, sender, provider_id, location_id, event_date, event_time, \
             values_json, urgent, resubmission_of, same_incident_as, created_at, person_key, first_part, \
             receipt_delay_minutes) VALUES {} ON CONFLICT (reference) DO NOTHING \
             RETURNING id, message_id, form_index",
            value_rows(chunk.len(), 21)
        );
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (message, s, now) in chunk {
            insert = insert
                .bind(*message)
                .bind(s.form_index)
                .bind(&s.reference)
                .bind(&s.status)
                .bind(&s.form_id)
                .bind(&s.form_version)
                .bind(&s.attachment_name)
                .bind(&s.attachment_sha256)
                .bind(&s.sender)
                .bind(&s.provider_id)
                .bind(&s.location_id)
                .bind(&s.event_date)
                .bind(&s.event_time)
                .bind(&s.values_json)
                .bind(i64::from(s.urgent))
                .bind(s.resubmission_of)
                .bind(s.same_incident_as)
                .bind(*now)
                .bind(&s.person_key)
                .bind(s.first_part)
                .bind(s.receipt_delay_minutes);
        }
        for row in insert.fetch_all(&mut *db).await? {
            let key = (row.try_get::<i64, _>("message_id")?, row.try_get::<i64, _>("form_index")?);
            ids.insert(key, row.try_get::<i64, _>("id")?);
        }
        if let Some((_, taken, _)) = chunk.iter().find(|(m, s, _)| !ids.contains_key(&(*m, s.form_index))) {
            return Err(StoreError::ReferenceTaken(taken.reference.clone()));
        }
    }
    Ok(())
}

/// Rows of filed messages that no lookup reads back (problems, replies, audit entries), held until the
/// batch ends and then written in a few multi-row statements: on PostgreSQL each statement is a round
/// trip, and these were most of a message's. In a batch, whole filings are held too ([`Deferred::hold`]):
/// their ledger rows and submissions are written in a few statements when a lookup could find them or
/// when the batch ends.
#[derive(Debug, Default)]
pub struct Deferred {
    /// (filing, filed at): held whole, nothing of them written yet.
    held: Vec<(Filing, i64)>,
    /// What the held filings could be found by.
    held_keys: Known,
    /// (message, problem): the submission id, by the problem's form index, is looked up when written.
    problems: Vec<(i64, Problem)>,
    /// The ids of the submissions written, for the problems about them.
    submission_ids: SubmissionIds,
    /// (message, reply, queued at)
    replies: Vec<(i64, NewReply, i64)>,
    /// (at, action, message, detail)
    audit: Vec<(i64, String, i64, String)>,
}

/// Rows per multi-row statement: 21 columns at most, well under both backends' bound-parameter limits.
const DEFERRED_CHUNK: usize = 200;

impl Deferred {
    /// Replies held here for `to` (of `kind`, if given): the reply budget counts them with the outbox's.
    pub fn replies_to(&self, to: &str, kind: Option<&str>) -> i64 {
        let of_held = self.held.iter().filter_map(|(f, _)| f.reply.as_ref());
        let replies = self.replies.iter().map(|(_, r, _)| r).chain(of_held);
        replies.filter(|r| r.to == to && kind.is_none_or(|k| r.kind == k)).count() as i64
    }

    /// Holds a filing whole, to be written with the batch's others: the batch's alternative to [`file`],
    /// two statements per batch instead of two per message. The ledger row is checked when written: if
    /// another worker filed the message meanwhile, the write fails and the caller files the batch again
    /// message by message.
    pub fn hold(&mut self, f: Filing) {
        self.held_keys.add(&f);
        self.held.push((f, now_ms()));
    }

    /// Writes the held filings if a lookup about to run could find one of them (`may_find`, asked of
    /// their keys), so that it does.
    pub async fn write_held_if(
        &mut self,
        db: &mut AnyConnection,
        may_find: impl Fn(&Known) -> bool,
    ) -> Result<(), StoreError> {
        match !self.held.is_empty() && may_find(&self.held_keys) {
            true => self.write_held(db).await,
            false => Ok(()),
        }
    }

    /// Writes the held filings' ledger rows and submissions; their problems, replies and audit entries join
    /// the rows written at the end.
    async fn write_held(&mut self, db: &mut AnyConnection) -> Result<(), StoreError> {
        let held = std::mem::take(&mut self.held);
        self.held_keys = Known::default();
        let filings: Vec<(&Filing, i64)> = held.iter().map(|(f, now)| (f, *now)).collect();
        let updated = update_ledger(db, &filings).await?;
        if updated != filings.len() as u64 {
            return Err(StoreError::FiledMeanwhile(filings.len() as u64 - updated));
        }
        insert_submissions(db, &filings, &mut self.submission_ids).await?;
        for (f, now) in &held {
            self.defer_rest(f, *now);
        }
        Ok(())
    }

    /// Holds what is written of a filing at the batch's end: its problems, reply and audit entry.
    fn defer_rest(&mut self, f: &Filing, now: i64) {
        for p in &f.problems {
            self.problems.push((f.message, p.clone()));
        }
        if let Some(r) = &f.reply {
            self.replies.push((f.message, r.clone(), now));
        }
        let detail = serde_json::json!({
            "reason": f.reason,
            "references": f.submissions.iter().map(|s| &s.reference).collect::<Vec<_>>(),
            "problems": f.problems.iter().map(|p| p.code.as_str()).collect::<Vec<_>>(),
            "reply": f.reply.as_ref().map(|r| &r.kind),
        });
        self.audit.push((now, format!("filed:{}", f.status), f.message, detail.to_string()));
    }

    /// Writes and forgets everything held (forgotten even when the write fails: the caller then rolls back
    /// the transaction the rows belonged to).
    pub async fn write(&mut self, db: &mut AnyConnection) -> Result<(), StoreError> {
        let held = self.write_held(db).await;
        let Deferred { problems, submission_ids, replies, audit, .. } = std::mem::take(self);
        held?;
        for chunk in problems.chunks(DEFERRED_CHUNK) {
            let sql = format!(
                "INSERT INTO problems (message_id, submission_id, form_index, code, field, value, message, hint) \
                 VALUES {}",
                value_rows(chunk.len(), 8)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (message, p) in chunk {
                let form_index = p.form_index.map(|i| i as i64);
                let submission = form_index.and_then(|i| submission_ids.get(&(*message, i)).copied());
                insert = insert
                    .bind(*message)
                    .bind(submission)
                    .bind(form_index)
                    .bind(p.code.as_str())
                    .bind(&p.field)
                    .bind(&p.value)
                    .bind(&p.message)
                    .bind(&p.hint);
            }
            insert.execute(&mut *db).await?;
        }
        for chunk in replies.chunks(DEFERRED_CHUNK) {
            let sql = format!(
                "INSERT INTO outbox (message_id, kind, to_address, mail_message_id, eml, next_attempt_at, created_at) \
                 VALUES {} ON CONFLICT (message_id, kind) DO NOTHING",
                value_rows(chunk.len(), 7)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (message, r, at) in chunk {
                insert = insert
                    .bind(*message)
                    .bind(&r.kind)
                    .bind(&r.to)
                    .bind(&r.mail_message_id)
                    .bind(&r.eml)
                    .bind(*at)
                    .bind(*at);
            }
            insert.execute(&mut *db).await?;
        }
        for chunk in audit.chunks(DEFERRED_CHUNK) {
            let sql = format!(
                "INSERT INTO audit (at, actor, action, message_id, detail) VALUES {}",
                value_rows(chunk.len(), 5)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (at, action, message, detail) in chunk {
                insert = insert.bind(*at).bind("postroom").bind(action).bind(*message).bind(detail);
            }
            insert.execute(&mut *db).await?;
        }
        Ok(())
    }
}

/// The Message-ID header recorded for a filed message.
pub async fn header_message_id(db: &mut AnyConnection, message: i64) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT header_message_id FROM messages WHERE id = $1")
        .bind(message)
        .fetch_optional(&mut *db)
        .await?;
    Ok(row.map(|r| r.try_get::<Option<String>, _>("header_message_id")).transpose()?.flatten())
}

/// The references filed from a message, in form order.
pub async fn references_of(db: &mut AnyConnection, message: i64) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT reference FROM submissions WHERE message_id = $1 ORDER BY form_index")
        .bind(message)
        .fetch_all(&mut *db)
        .await?;
    rows.iter().map(|r| Ok(r.try_get("reference")?)).collect()
}

/// An earlier message from the same sender with the same Message-ID that filed exactly these form bytes:
/// a redelivered copy (new Received headers, so a different raw hash).
pub async fn find_redelivery(
    db: &mut AnyConnection,
    message: i64,
    header_message_id: &str,
    from: &str,
    form_shas: &[String],
) -> Result<Option<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT id FROM messages WHERE header_message_id = $1 AND from_address = $2 AND id <> $3 \
         AND status NOT IN ('received', 'duplicate') ORDER BY id",
    )
    .bind(header_message_id)
    .bind(from)
    .bind(message)
    .fetch_all(&mut *db)
    .await?;
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let shas = sqlx::query("SELECT attachment_sha256 FROM submissions WHERE message_id = $1 ORDER BY form_index")
            .bind(id)
            .fetch_all(&mut *db)
            .await?;
        let mut theirs: Vec<String> = shas.iter().map(|r| r.try_get("attachment_sha256")).collect::<Result<_, _>>()?;
        let mut ours = form_shas.to_vec();
        theirs.sort();
        ours.sort();
        if theirs == ours {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// The first submission of these exact form bytes from this sender, from another message.
pub async fn find_same_form(
    db: &mut AnyConnection,
    message: i64,
    sender: &str,
    sha: &str,
) -> Result<Option<SubmissionRef>, StoreError> {
    let row = sqlx::query(
        "SELECT id, message_id, reference, status FROM submissions \
         WHERE attachment_sha256 = $1 AND sender = $2 AND message_id <> $3 ORDER BY id LIMIT 1",
    )
    .bind(sha)
    .bind(sender)
    .bind(message)
    .fetch_optional(&mut *db)
    .await?;
    row.map(|r| submission_ref(&r)).transpose()
}

pub async fn find_by_reference(
    db: &mut AnyConnection,
    reference: &str,
) -> Result<Option<(SubmissionRef, Option<String>, Option<String>)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, message_id, reference, status, provider_id, form_id FROM submissions WHERE reference = $1",
    )
    .bind(reference)
    .fetch_optional(&mut *db)
    .await?;
    match row {
        Some(r) => Ok(Some((submission_ref(&r)?, r.try_get("provider_id")?, r.try_get("form_id")?))),
        None => Ok(None),
    }
}

/// The latest rejected submission of this form for this provider by this sender since `since` (ms).
pub async fn open_rejection(
    db: &mut AnyConnection,
    sender: &str,
    provider_id: &str,
    form_id: &str,
    since: i64,
) -> Result<Option<SubmissionRef>, StoreError> {
    let row = sqlx::query(
        "SELECT id, message_id, reference, status FROM submissions WHERE sender = $1 AND provider_id = $2 \
         AND form_id = $3 AND status = 'rejected' AND created_at >= $4 ORDER BY id DESC LIMIT 1",
    )
    .bind(sender)
    .bind(provider_id)
    .bind(form_id)
    .bind(since)
    .fetch_optional(&mut *db)
    .await?;
    row.map(|r| submission_ref(&r)).transpose()
}

/// An earlier accepted submission about the same incident: same form, location, event date and time.
pub async fn same_incident(
    db: &mut AnyConnection,
    form_id: &str,
    location_id: &str,
    event_date: &str,
    event_time: Option<&str>,
) -> Result<Option<SubmissionRef>, StoreError> {
    let row = sqlx::query(
        "SELECT id, message_id, reference, status FROM submissions WHERE form_id = $1 AND location_id = $2 \
         AND event_date = $3 AND COALESCE(event_time, '') = $4 AND status = 'accepted' ORDER BY id LIMIT 1",
    )
    .bind(form_id)
    .bind(location_id)
    .bind(event_date)
    .bind(event_time.unwrap_or_default())
    .fetch_optional(&mut *db)
    .await?;
    row.map(|r| submission_ref(&r)).transpose()
}

/// The latest accepted first part (`form_id`) from this provider about this person.
pub async fn first_part(
    db: &mut AnyConnection,
    provider_id: &str,
    form_id: &str,
    person_key: &str,
) -> Result<Option<SubmissionRef>, StoreError> {
    let row = sqlx::query(
        "SELECT id, message_id, reference, status FROM submissions WHERE provider_id = $1 AND form_id = $2 \
         AND person_key = $3 AND status = 'accepted' ORDER BY id DESC LIMIT 1",
    )
    .bind(provider_id)
    .bind(form_id)
    .bind(person_key)
    .fetch_optional(&mut *db)
    .await?;
    row.map(|r| submission_ref(&r)).transpose()
}

/// Marks the reply with this Message-ID (with or without angle brackets) `delivery_failed`: a bounce
/// came back for it. Returns whether it was one of ours.
pub async fn mark_reply_bounced(db: &mut AnyConnection, mail_message_id: &str) -> Result<bool, StoreError> {
    let id = format!("<{}>", mail_message_id.trim().trim_matches(|c| c == '<' || c == '>'));
    let done = sqlx::query("UPDATE outbox SET status = 'delivery_failed' WHERE mail_message_id = $1")
        .bind(id)
        .execute(&mut *db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Replies queued for `to` since `since` (ms), of `kind` or of any kind.
pub async fn replies_to_since(
    db: &mut AnyConnection,
    to: &str,
    since: i64,
    kind: Option<&str>,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM outbox WHERE to_address = $1 AND created_at >= $2 AND ($3 = '' OR kind = $3)",
    )
    .bind(to)
    .bind(since)
    .bind(kind.unwrap_or_default())
    .fetch_one(&mut *db)
    .await?;
    Ok(row.try_get("n")?)
}
