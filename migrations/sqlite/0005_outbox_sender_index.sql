-- The reply budget counts a sender's recent replies for every email: without this index that scanned
-- the whole outbox, and filing slowed as the outbox grew (backlog benchmark: 10,000 emails 141 s -> 92 s).
CREATE INDEX outbox_to_address ON outbox (to_address, created_at);
