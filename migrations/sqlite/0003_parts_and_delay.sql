-- Two-part notifications (a return after an absence) point at their first part; the person they concern
-- (the provider's identifier, or the absent manager's name) is kept normalised to find it.
ALTER TABLE submissions ADD COLUMN person_key TEXT;
ALTER TABLE submissions ADD COLUMN first_part BIGINT REFERENCES submissions(id);
-- Minutes from the event to receipt: "without delay" is a flag for staff, never a problem for the sender.
ALTER TABLE submissions ADD COLUMN receipt_delay_minutes BIGINT;
CREATE INDEX submissions_person ON submissions (provider_id, form_id, person_key);
