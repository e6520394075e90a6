-- Generations of the analytics fact tables. Generation 0's tables are the
-- migrations'; `closeloop projections rebuild` adds a generation whose
-- tables are built from the start of the stream beside the active one, and
-- readers switch to it when it has caught up (no downtime). States:
-- building, active (exactly one), retired (no longer read; its tables are
-- dropped when the next rebuild starts), dropped.
CREATE TABLE analytics_generations (
    generation  BIGINT PRIMARY KEY,
    state       TEXT NOT NULL,
    started_at  BIGINT NOT NULL,     -- µs, the install's clock
    switched_at BIGINT NOT NULL      -- when it became active (0: not yet)
);
INSERT INTO analytics_generations (generation, state, started_at, switched_at)
VALUES (0, 'active', 0, 0);
