-- Notifications about each ticket, as the ticket view shows them
-- (projected by ticketing from the notification events).
CREATE TABLE ticket_notifications (
    id           TEXT PRIMARY KEY,
    ticket_id    TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    channel      TEXT NOT NULL,
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    last_error   TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    finished_at  BIGINT,
    sequence     BIGINT NOT NULL
);

CREATE INDEX ticket_notifications_by_ticket ON ticket_notifications (ticket_id, requested_at);
