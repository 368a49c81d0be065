-- Budget windows and holds (PostgreSQL dialect of migrations/sqlite/0011_holds_windows.sql).

ALTER TABLE budgets ADD COLUMN window_kind TEXT NOT NULL DEFAULT 'none'
    CHECK (window_kind IN ('none', 'day', 'week', 'month'));
ALTER TABLE budgets ADD COLUMN window_zone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE budgets ADD COLUMN window_start BIGINT;

-- A hold is placed with its chain's budget rows locked (FOR UPDATE, in the spend path's
-- order), so two instances never both reserve a cap's last room; a commit locks the hold
-- row first, then the budget rows, then the audit head.
CREATE TABLE holds (
    id              TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint     TEXT NOT NULL,
    agent_id        TEXT,
    mission_id      TEXT,
    team_id         TEXT,
    tenant_id       TEXT,
    run_id          TEXT,
    amount_micros   BIGINT NOT NULL CHECK (amount_micros >= 0),
    status          TEXT NOT NULL CHECK (status IN ('held', 'committed', 'released', 'expired')),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    resolved_at     BIGINT,
    spend_id        BIGINT REFERENCES spends (id),
    scopes          TEXT NOT NULL
);
CREATE INDEX holds_agent ON holds (agent_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_mission ON holds (mission_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_team ON holds (team_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_tenant ON holds (tenant_id, expires_at) WHERE status = 'held';
CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'held';

-- The reaper's question each sweep: is any running run past its lease?
CREATE INDEX runs_running_lease ON runs (lease_expires_at) WHERE status = 'running';
