-- The ledger: one row for every message fetched, whatever becomes of it. Raw bytes are stored before
-- anything else happens; `raw` is emptied by the retention job, the row stays.
CREATE TABLE messages (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mailbox       TEXT NOT NULL,
    source_key    TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    raw           BYTEA,
    size_bytes    BIGINT NOT NULL,
    received_at   BIGINT NOT NULL,
    header_message_id TEXT,
    from_address  TEXT,
    subject       TEXT,
    status        TEXT NOT NULL DEFAULT 'received',
    reason        TEXT,
    duplicate_of  BIGINT REFERENCES messages(id),
    processed_at  BIGINT,
    settled_at    BIGINT,
    settled_folder TEXT,
    raw_purged_at BIGINT,
    UNIQUE (mailbox, source_key)
);
CREATE INDEX messages_sha256 ON messages (sha256);
CREATE INDEX messages_header_message_id ON messages (header_message_id);
CREATE INDEX messages_status ON messages (status, received_at);

-- One row per form found in a message (rejected ones too), each with its reference.
CREATE TABLE submissions (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id     BIGINT NOT NULL REFERENCES messages(id),
    form_index     BIGINT NOT NULL,
    reference      TEXT NOT NULL UNIQUE,
    status         TEXT NOT NULL,
    form_id        TEXT,
    form_version   TEXT,
    attachment_name TEXT,
    attachment_sha256 TEXT NOT NULL,
    sender         TEXT,
    provider_id    TEXT,
    location_id    TEXT,
    event_date     TEXT,
    event_time     TEXT,
    values_json    TEXT NOT NULL,
    urgent         BIGINT NOT NULL DEFAULT 0,
    resubmission_of BIGINT REFERENCES submissions(id),
    same_incident_as BIGINT REFERENCES submissions(id),
    created_at     BIGINT NOT NULL,
    UNIQUE (message_id, form_index)
);
CREATE INDEX submissions_attachment ON submissions (attachment_sha256, sender);
CREATE INDEX submissions_incident ON submissions (form_id, location_id, event_date);
CREATE INDEX submissions_open ON submissions (provider_id, form_id, status, created_at);

CREATE TABLE problems (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id    BIGINT NOT NULL REFERENCES messages(id),
    submission_id BIGINT REFERENCES submissions(id),
    form_index    BIGINT,
    code          TEXT NOT NULL,
    field         TEXT,
    value         TEXT,
    message       TEXT NOT NULL,
    hint          TEXT NOT NULL
);
CREATE INDEX problems_message ON problems (message_id);

-- Replies waiting to leave, and those that left. One per (message, kind): never sent twice.
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id    BIGINT NOT NULL REFERENCES messages(id),
    kind          TEXT NOT NULL,
    to_address    TEXT NOT NULL,
    mail_message_id TEXT NOT NULL UNIQUE,
    eml           BYTEA NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending',
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    sent_at       BIGINT,
    UNIQUE (message_id, kind)
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- Append-only record of what happened to what, by whom (the pipeline is actor `postroom`).
CREATE TABLE audit (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    message_id    BIGINT REFERENCES messages(id),
    submission_id BIGINT REFERENCES submissions(id),
    detail        TEXT
);
CREATE INDEX audit_message ON audit (message_id);
