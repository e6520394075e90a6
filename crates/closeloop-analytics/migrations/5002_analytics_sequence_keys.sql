-- The event tables of generation 0 keyed by stream sequence instead of
-- (id, sequence): ids are name-based UUIDs in no useful order, and an index
-- on them took each insert to a random page, so a projection's transaction
-- of thousands of rows rewrote most of the index into SQLite's WAL (a
-- rebuild of a million events wrote about 6 GB; a model of the same rows
-- in a database of its own made a file of about 200 MB).
-- Each event writes at most one row to each of these tables, so the
-- sequence alone is a key; its index grows at its end and also serves the
-- readers that fetch what is new by sequence (the separate `_by_sequence`
-- indexes go). Generations made later by a rebuild take their tables from
-- `src/fact_tables.sql`, which these statements bring generation 0 to.

CREATE TABLE analytics_ticket_events_v2 (
    ticket_id        TEXT NOT NULL,
    sequence         BIGINT NOT NULL PRIMARY KEY,
    at               BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    owner_email      TEXT NOT NULL,
    root_cause_words BIGINT NOT NULL,
    actions_words    BIGINT NOT NULL,
    opportunity      INTEGER NOT NULL
);
INSERT INTO analytics_ticket_events_v2
    (ticket_id, sequence, at, kind, owner_email, root_cause_words, actions_words, opportunity)
SELECT ticket_id, sequence, at, kind, owner_email, root_cause_words, actions_words, opportunity
FROM analytics_ticket_events;
DROP TABLE analytics_ticket_events;
ALTER TABLE analytics_ticket_events_v2 RENAME TO analytics_ticket_events;

CREATE TABLE analytics_responses_v2 (
    feedback_id  TEXT NOT NULL,
    sequence     BIGINT NOT NULL PRIMARY KEY,
    at           BIGINT NOT NULL,
    applied      INTEGER NOT NULL,
    revision_key BIGINT NOT NULL,
    response_id  TEXT NOT NULL,
    program_id   TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    answers      TEXT NOT NULL
);
INSERT INTO analytics_responses_v2
    (feedback_id, sequence, at, applied, revision_key, response_id, program_id, account_id,
     submitted_at, answers)
SELECT feedback_id, sequence, at, applied, revision_key, response_id, program_id, account_id,
       submitted_at, answers
FROM analytics_responses;
DROP TABLE analytics_responses;
ALTER TABLE analytics_responses_v2 RENAME TO analytics_responses;
CREATE INDEX analytics_responses_by_submitted ON analytics_responses (submitted_at);

CREATE TABLE analytics_accounts_v2 (
    account_id TEXT NOT NULL,
    sequence   BIGINT NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL,
    region     TEXT NOT NULL,
    segment    TEXT NOT NULL,
    team       TEXT NOT NULL
);
INSERT INTO analytics_accounts_v2 (account_id, sequence, at, region, segment, team)
SELECT account_id, sequence, at, region, segment, team FROM analytics_accounts;
DROP TABLE analytics_accounts;
ALTER TABLE analytics_accounts_v2 RENAME TO analytics_accounts;

CREATE TABLE analytics_sla_events_v2 (
    ticket_id TEXT NOT NULL,
    sequence  BIGINT NOT NULL PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    clock     TEXT NOT NULL,
    detail    BIGINT NOT NULL
);
INSERT INTO analytics_sla_events_v2 (ticket_id, sequence, at, kind, clock, detail)
SELECT ticket_id, sequence, at, kind, clock, detail FROM analytics_sla_events;
DROP TABLE analytics_sla_events;
ALTER TABLE analytics_sla_events_v2 RENAME TO analytics_sla_events;
