-- A stakeholder FYI in a daily digest waits for the digest's time
-- (microseconds since the epoch); the recipient's FYIs of one digest are
-- sent together, as one message. NULL: sent at once.
ALTER TABLE notifications ADD COLUMN digest_at BIGINT;
CREATE INDEX notifications_by_digest ON notifications (recipient, channel, digest_at);
