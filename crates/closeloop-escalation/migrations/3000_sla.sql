-- SLA views (owned by closeloop-escalation; portable between SQLite and
-- PostgreSQL), projected from the SLA events.

-- Each ticket's SLA events (the stored protobuf, base64): the projector
-- folds them with the domain's evolve to know the ticket's timers.
CREATE TABLE sla_history (
    ticket_id TEXT NOT NULL,
    sequence  BIGINT NOT NULL,
    payload   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, sequence)
);

-- Due work: every timer not fired yet (warnings, breaches, escalation
-- levels), replaced as a whole for a ticket by each of its SLA events.
-- The worker pages through the due ones in the index's order; a tick
-- costs what is due.
CREATE TABLE sla_timers (
    ticket_id   TEXT NOT NULL,
    timer_key   TEXT NOT NULL,
    due_at      BIGINT NOT NULL,
    owner_email TEXT NOT NULL,
    program_id  TEXT NOT NULL,
    -- Escalation level (0: a warning or a breach).
    level       BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, timer_key)
);
CREATE INDEX sla_timers_due ON sla_timers (due_at, ticket_id, timer_key);

-- One row per ticket: what reports and recomputes select on.
CREATE TABLE sla_tickets (
    ticket_id         TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL,
    program_id        TEXT NOT NULL,
    workflow_id       TEXT NOT NULL,
    title             TEXT NOT NULL,
    region            TEXT NOT NULL,
    owner_email       TEXT NOT NULL,
    opened_at         BIGINT NOT NULL,
    closed            BIGINT NOT NULL,
    first_contact_due BIGINT,
    close_due         BIGINT,
    breached          BIGINT NOT NULL,
    escalation_level  BIGINT NOT NULL,
    policy_digest     TEXT NOT NULL,
    sequence          BIGINT NOT NULL
);
CREATE INDEX sla_tickets_open ON sla_tickets (closed, region);
CREATE INDEX sla_tickets_workflow ON sla_tickets (workflow_id, closed);
