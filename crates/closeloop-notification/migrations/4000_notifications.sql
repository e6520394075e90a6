-- Notifications (owned by closeloop-notification; portable between SQLite
-- and PostgreSQL). `notifications` is a projection of the notification
-- events and doubles as the delivery outbox: a pending row is due at
-- `next_attempt_at` (microseconds since the epoch).

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    ticket_id       TEXT NOT NULL,
    cause_event_id  TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    last_error      TEXT,
    requested_at    BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    finished_at     BIGINT,
    sequence        BIGINT NOT NULL
);

CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
CREATE INDEX notifications_by_ticket ON notifications (ticket_id, requested_at);

-- Which delivery worker is sending a notification, until when: a worker
-- claims a due row before sending, so replicas never send one at once.
CREATE TABLE notification_claims (
    id            TEXT PRIMARY KEY,
    claimed_by    TEXT NOT NULL,
    claimed_until BIGINT NOT NULL
);
