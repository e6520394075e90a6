-- Portable between SQLite and PostgreSQL: BIGINT timestamps are Unix
-- microseconds (UTC); TEXT ids; no backend-specific types.

CREATE TABLE projector_checkpoints (
    name        TEXT PRIMARY KEY,
    sequence    BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Events a projector could not apply (undecodable, unknown type): kept with
-- the reason instead of blocking the projection.
CREATE TABLE projection_errors (
    projector   TEXT NOT NULL,
    sequence    BIGINT NOT NULL,
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (projector, sequence)
);

CREATE TABLE tickets (
    id                  TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    account_id          TEXT NOT NULL,
    owner_email         TEXT NOT NULL,
    program_id          TEXT NOT NULL,
    title               TEXT NOT NULL,
    source              TEXT NOT NULL,
    feedback_id         TEXT NOT NULL,
    workflow_id         TEXT NOT NULL,
    opened_at           BIGINT NOT NULL,
    last_touched_at     BIGINT NOT NULL,
    first_contact_at    BIGINT,
    closed_at           BIGINT,
    root_cause_category TEXT,
    root_cause          TEXT,
    actions_taken       TEXT,
    opportunity_kind    TEXT,
    opportunity_amount  DOUBLE PRECISION,
    contact_count       BIGINT NOT NULL DEFAULT 0,
    note_count          BIGINT NOT NULL DEFAULT 0,
    reply_count         BIGINT NOT NULL DEFAULT 0,
    reopen_count        BIGINT NOT NULL DEFAULT 0,
    sequence            BIGINT NOT NULL
);

CREATE INDEX tickets_by_opened ON tickets (opened_at, id);
CREATE INDEX tickets_by_status ON tickets (status, opened_at);
CREATE INDEX tickets_by_owner ON tickets (owner_email, opened_at);
CREATE INDEX tickets_by_program ON tickets (program_id, opened_at);
CREATE INDEX tickets_by_account ON tickets (account_id, opened_at);

CREATE TABLE ticket_activity (
    ticket_id   TEXT NOT NULL,
    sequence    BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (ticket_id, sequence)
);
