-- Raw mail in a table of its own, as on SQLite (where every update of a message rewrote its raw bytes):
-- one schema for both engines.
CREATE TABLE message_raw (
    message_id BIGINT PRIMARY KEY REFERENCES messages(id),
    raw        BYTEA NOT NULL
);
-- Stored out of line but not compressed: mail is mostly base64 of zipped or image data, which pglz shrinks by
-- under 5% at about 1.5 ms per 45 KB message (five times the cost of the rest of the insert).
ALTER TABLE message_raw ALTER COLUMN raw SET STORAGE EXTERNAL;
-- Replies (5-10 KB of text) likewise: compressing each one took longer than the rest of its insert.
ALTER TABLE outbox ALTER COLUMN eml SET STORAGE EXTERNAL;
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages WHERE raw IS NOT NULL;
ALTER TABLE messages DROP COLUMN raw;
