-- Raw mail in a table of its own. SQLite writes a whole row again on any update, so with the raw message
-- inline every change of a message's status or settlement rewrote its 10-50 KB of raw mail, and any column
-- stored after it was reached by reading through it (backlog benchmark: the raw bytes were half of the
-- database's work).
CREATE TABLE message_raw (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id),
    raw        BLOB NOT NULL
);
INSERT INTO message_raw (message_id, raw) SELECT id, raw FROM messages WHERE raw IS NOT NULL;
ALTER TABLE messages DROP COLUMN raw;
