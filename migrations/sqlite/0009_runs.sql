-- Runs (one agent execution each), their breaker counters, and per-tenant quota overrides.

-- A running row past lease_expires_at reads as expired and holds no concurrency
-- slot, before anything writes it. tenant_id is the tenant the run counts
-- against ('default' when the start named none). breaker is the JSON of
-- core.runs.BreakerState, so the counters survive a restart.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    agent_id         TEXT NOT NULL,
    mission_id       TEXT,
    team_id          TEXT,
    tenant_id        TEXT NOT NULL,
    parent_run_id    TEXT REFERENCES runs (id),
    depth            INTEGER NOT NULL CHECK (depth >= 0),
    status           TEXT NOT NULL CHECK (status IN ('running', 'ended', 'expired', 'tripped')),
    started_at       INTEGER NOT NULL,
    lease_expires_at INTEGER NOT NULL,
    ended_at         INTEGER,
    idempotency_key  TEXT UNIQUE,
    fingerprint      TEXT NOT NULL,
    breaker          TEXT
);
-- Concurrent runs of a tenant, and its starts in the last hour.
CREATE INDEX runs_tenant_running ON runs (tenant_id, status, lease_expires_at);
CREATE INDEX runs_tenant_started ON runs (tenant_id, started_at);
-- Root starts of an agent in the delegation window; children of a parent.
CREATE INDEX runs_agent_started ON runs (agent_id, started_at) WHERE parent_run_id IS NULL;
CREATE INDEX runs_parent ON runs (parent_run_id);
CREATE INDEX runs_started ON runs (started_at);

-- Only the overrides are stored (JSON object); a plan's defaults come from the config.
CREATE TABLE tenant_quotas (
    tenant_id  TEXT PRIMARY KEY,
    overrides  TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
