-- Runs (one agent execution each), their breaker counters, and per-tenant quota overrides
-- (PostgreSQL dialect of migrations/sqlite/0009_runs.sql).

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
    started_at       BIGINT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    ended_at         BIGINT,
    idempotency_key  TEXT UNIQUE,
    fingerprint      TEXT NOT NULL,
    breaker          TEXT,
    row_seq          BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX runs_tenant_running ON runs (tenant_id, status, lease_expires_at);
CREATE INDEX runs_tenant_started ON runs (tenant_id, started_at);
CREATE INDEX runs_agent_started ON runs (agent_id, started_at) WHERE parent_run_id IS NULL;
CREATE INDEX runs_parent ON runs (parent_run_id);
CREATE INDEX runs_started ON runs (started_at);

-- One row per tenant that ever started a run or had overrides set. Every start locks
-- its tenant's row (FOR UPDATE, its first lock) before counting, so two instances
-- never both take a tenant's last slot; the audit head is still the last lock.
CREATE TABLE tenant_quotas (
    tenant_id  TEXT PRIMARY KEY,
    overrides  TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
