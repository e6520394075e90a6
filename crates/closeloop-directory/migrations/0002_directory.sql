-- The account directory (portable between SQLite and PostgreSQL).

CREATE TABLE accounts (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    region   TEXT NOT NULL,
    segment  TEXT NOT NULL,
    sequence BIGINT NOT NULL
);

CREATE TABLE account_team (
    account_id TEXT NOT NULL,
    role       TEXT NOT NULL,
    email      TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);

CREATE INDEX account_team_by_email ON account_team (email);

CREATE TABLE people (
    email         TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    manager_email TEXT,
    sequence      BIGINT NOT NULL
);

CREATE TABLE teams (
    id       TEXT PRIMARY KEY,
    name     TEXT NOT NULL,
    sequence BIGINT NOT NULL
);

-- Members in rotation order.
CREATE TABLE team_members (
    team_id  TEXT NOT NULL,
    position BIGINT NOT NULL,
    email    TEXT NOT NULL,
    PRIMARY KEY (team_id, position)
);
