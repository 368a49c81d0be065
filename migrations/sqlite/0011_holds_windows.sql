-- Budget windows and holds (README: Budgets, Holds).

-- A budget's calendar window ('none': its spend never resets) and the IANA zone whose
-- midnights bound it. window_start is the start of the window spent_micros counts
-- (NULL for 'none'): a charge or a read in a later window starts again from 0, so the
-- row is right without a timer. spent_micros equals the sum of the charges to the row
-- whose spend was made at or after window_start.
ALTER TABLE budgets ADD COLUMN window_kind TEXT NOT NULL DEFAULT 'none'
    CHECK (window_kind IN ('none', 'day', 'week', 'month'));
ALTER TABLE budgets ADD COLUMN window_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE budgets ADD COLUMN window_start INTEGER;

-- A hold reserves an estimate against the scopes it names until it is committed (its
-- spend is spend_id), released, or past expires_at, when it stops counting at once (the
-- reaper writes 'expired' later). scopes is the answer its creation got.
CREATE TABLE holds (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint     TEXT NOT NULL,
    agent_id        TEXT,
    mission_id      TEXT,
    team_id         TEXT,
    tenant_id       TEXT,
    run_id          TEXT,
    amount_micros   INTEGER NOT NULL CHECK (amount_micros >= 0),
    status          TEXT NOT NULL CHECK (status IN ('held', 'committed', 'released', 'expired')),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    resolved_at     INTEGER,
    spend_id        INTEGER REFERENCES spends (id),
    scopes          TEXT NOT NULL
);
-- What each scope holds: only live holds are indexed, so the indexes stay small.
CREATE INDEX holds_agent ON holds (agent_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_mission ON holds (mission_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_team ON holds (team_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_tenant ON holds (tenant_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'held';

-- The reaper's question each sweep: is any running run past its lease?
CREATE INDEX runs_running_lease ON runs (lease_expires_at) WHERE status = 'running';
