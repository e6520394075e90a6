-- Analytics facts: what the views are computed from. Every row carries the
-- time its event was recorded (`at`, µs since the epoch, the install's
-- clock), so a view evaluated as of a past time reads only what had been
-- recorded by then.

-- One row per ticket: what is known when it opens, and never changes.
CREATE TABLE analytics_tickets (
    ticket_id         TEXT PRIMARY KEY,
    program_id        TEXT NOT NULL,
    workflow_id       TEXT NOT NULL,       -- '' for a manual ticket
    feedback_id       TEXT NOT NULL,       -- '' for a manual ticket
    account_id        TEXT NOT NULL,
    opened_at         BIGINT NOT NULL,
    -- Targets of the ticket's SLA policy when it opened (seconds).
    fc_target_secs    BIGINT NOT NULL,
    close_target_secs BIGINT NOT NULL,
    -- Whether the workflow asks for an opportunity at the close (0/1).
    require_opportunity INTEGER NOT NULL,
    sequence          BIGINT NOT NULL
);
CREATE INDEX analytics_tickets_by_opened ON analytics_tickets (opened_at);

-- Each ticket's events that views read; owner_email is the new owner on an
-- opening or a reassignment, '' on other events (the owner is unchanged).
-- A close carries what closure quality scores of its documentation: the
-- word counts of its root cause and actions taken, and whether it recorded
-- an opportunity (0 on other events).
CREATE TABLE analytics_ticket_events (
    ticket_id        TEXT NOT NULL,
    sequence         BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    owner_email      TEXT NOT NULL,
    root_cause_words BIGINT NOT NULL,
    actions_words    BIGINT NOT NULL,
    opportunity      INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, sequence)
);

-- Every revision of every response (superseded ones included, marked), with
-- the answers views read.
CREATE TABLE analytics_responses (
    feedback_id  TEXT NOT NULL,
    sequence     BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    applied      INTEGER NOT NULL,          -- 0: a superseded (older) revision
    revision_key BIGINT NOT NULL,           -- when the revision was made (µs)
    response_id  TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    answers      TEXT NOT NULL,             -- JSON object of numeric answers
    PRIMARY KEY (feedback_id, sequence)
);
CREATE INDEX analytics_responses_by_submitted ON analytics_responses (submitted_at);

-- Every version of every account (region, segment, account team).
CREATE TABLE analytics_accounts (
    account_id TEXT NOT NULL,
    sequence   BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    region     TEXT NOT NULL,
    segment    TEXT NOT NULL,
    team       TEXT NOT NULL,              -- JSON object: role -> e-mail
    PRIMARY KEY (account_id, sequence)
);

-- Each ticket's SLA as the escalation role recorded it: the due times of
-- the first clock runs (counted in the ticket's calendar), and every
-- warning, breach and escalation.
CREATE TABLE analytics_sla_due (
    ticket_id TEXT PRIMARY KEY,
    fc_due    BIGINT NOT NULL,
    close_due BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    sequence  BIGINT NOT NULL
);

CREATE TABLE analytics_sla_events (
    ticket_id TEXT NOT NULL,
    sequence  BIGINT NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,     -- warned, breached, escalated
    clock     TEXT NOT NULL,     -- first_contact, closure; '' for escalations
    detail    BIGINT NOT NULL,   -- a warning's percent, an escalation's level
    PRIMARY KEY (ticket_id, sequence)
);

-- Each response's routing decision: whether it triggered no workflow.
CREATE TABLE analytics_routing (
    feedback_id TEXT PRIMARY KEY,
    unmatched   INTEGER NOT NULL,
    at          BIGINT NOT NULL,
    sequence    BIGINT NOT NULL
);

-- Readers that keep the facts in memory fetch what is new by sequence.
CREATE INDEX analytics_tickets_by_sequence ON analytics_tickets (sequence);
CREATE INDEX analytics_ticket_events_by_sequence ON analytics_ticket_events (sequence);
CREATE INDEX analytics_responses_by_sequence ON analytics_responses (sequence);
CREATE INDEX analytics_accounts_by_sequence ON analytics_accounts (sequence);
CREATE INDEX analytics_sla_due_by_sequence ON analytics_sla_due (sequence);
CREATE INDEX analytics_sla_events_by_sequence ON analytics_sla_events (sequence);
CREATE INDEX analytics_routing_by_sequence ON analytics_routing (sequence);
