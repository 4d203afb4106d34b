-- One poller per mailbox across instances: the holder renews its lease; another instance takes over once
-- it has expired.
CREATE TABLE mailbox_leases (
    mailbox    TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
