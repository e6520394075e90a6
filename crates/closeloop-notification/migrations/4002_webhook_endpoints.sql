-- Outbound webhook endpoints (a projection of the webhook events): what
-- the requester matches ticket events against, and what the delivery
-- worker signs with. Times in microseconds since the epoch.
CREATE TABLE webhook_endpoints (
    id                     TEXT PRIMARY KEY,
    url                    TEXT NOT NULL,
    -- Space-separated webhook event types; empty: all.
    events                 TEXT NOT NULL,
    description            TEXT NOT NULL,
    secret                 TEXT NOT NULL,
    previous_secret        TEXT,
    previous_secret_until  BIGINT,
    -- active, disabled or removed.
    status                 TEXT NOT NULL,
    disabled_reason        TEXT,
    registered_at          BIGINT NOT NULL,
    sequence               BIGINT NOT NULL
);

-- Deliveries per endpoint (webhooks list counts them).
CREATE INDEX notifications_by_recipient ON notifications (recipient, status);
