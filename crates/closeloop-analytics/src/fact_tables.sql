-- The analytics fact tables of one generation, as they are now: what the
-- views are computed from. Generation 0's were made by migrations 5000
-- (these tables) and 5002 (the event tables keyed by sequence); a rebuild
-- makes a new generation's from this file, each name suffixed with the
-- generation (`analytics_tickets_g1`, ...). A test holds the two equal.
--
-- Every row carries the time its event was recorded (`at`, µs since the
-- epoch, the install's clock), so a view evaluated as of a past time reads
-- only what had been recorded by then.
--
-- Every row is keyed by its event's stream sequence (each event writes at
-- most one row to each table) or, where a row stands for a ticket or a
-- response, by that id. Ids are name-based UUIDs, in no useful order: an
-- index on them takes each insert to a random page, and a transaction
-- that inserts thousands rewrites most of the index into SQLite's WAL. So
-- only the three tables that need their id unique (and that the readers
-- join on) are keyed by it; the event tables are keyed by sequence, whose
-- index grows at its end.

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
    sequence         BIGINT NOT NULL PRIMARY KEY,
    at               BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    owner_email      TEXT NOT NULL,
    root_cause_words BIGINT NOT NULL,
    actions_words    BIGINT NOT NULL,
    opportunity      INTEGER NOT NULL
);

-- Every revision of every response (superseded ones included, marked), with
-- the answers views read.
CREATE TABLE analytics_responses (
    feedback_id  TEXT NOT NULL,
    sequence     BIGINT NOT NULL PRIMARY KEY,
    at           BIGINT NOT NULL,
    applied      INTEGER NOT NULL,          -- 0: a superseded (older) revision
    revision_key BIGINT NOT NULL,           -- when the revision was made (µs)
    response_id  TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    answers      TEXT NOT NULL              -- JSON object of numeric answers
);
CREATE INDEX analytics_responses_by_submitted ON analytics_responses (submitted_at);

-- Every version of every account (region, segment, account team).
CREATE TABLE analytics_accounts (
    account_id TEXT NOT NULL,
    sequence   BIGINT NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL,
    region     TEXT NOT NULL,
    segment    TEXT NOT NULL,
    team       TEXT NOT NULL               -- JSON object: role -> e-mail
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
    sequence  BIGINT NOT NULL PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,     -- warned, breached, escalated
    clock     TEXT NOT NULL,     -- first_contact, closure; '' for escalations
    detail    BIGINT NOT NULL    -- a warning's percent, an escalation's level
);

-- The responses whose routing decision matched no workflow (the only ones
-- views read: installs from before 5002 also hold rows with unmatched = 0).
CREATE TABLE analytics_routing (
    feedback_id TEXT PRIMARY KEY,
    unmatched   INTEGER NOT NULL,
    at          BIGINT NOT NULL,
    sequence    BIGINT NOT NULL
);

-- Readers that keep the facts in memory fetch what is new by sequence (the
-- event tables' keys serve them there).
CREATE INDEX analytics_tickets_by_sequence ON analytics_tickets (sequence);
CREATE INDEX analytics_sla_due_by_sequence ON analytics_sla_due (sequence);
CREATE INDEX analytics_routing_by_sequence ON analytics_routing (sequence);
