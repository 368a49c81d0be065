-- Budgets, the spend ledger, and the append-only audit log.

CREATE TABLE budgets (
    id           TEXT PRIMARY KEY,
    scope        TEXT NOT NULL CHECK (scope IN ('agent', 'mission', 'team', 'tenant')),
    scope_id     TEXT NOT NULL,
    limit_cents  INTEGER NOT NULL CHECK (limit_cents > 0),
    spent_micros INTEGER NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
    held_micros  INTEGER NOT NULL DEFAULT 0 CHECK (held_micros >= 0),
    status       TEXT NOT NULL CHECK (status IN ('active', 'soft_capped', 'paused')),
    mode         TEXT NOT NULL CHECK (mode IN ('warn', 'cap')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (scope, scope_id)
);
CREATE INDEX budgets_updated ON budgets (updated_at);

-- One row per spend; `scopes` is the answer the first call got, replayed to a retry.
CREATE TABLE spends (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT UNIQUE,
    fingerprint     TEXT NOT NULL,
    agent_id        TEXT,
    mission_id      TEXT,
    team_id         TEXT,
    tenant_id       TEXT,
    cost_micros     INTEGER NOT NULL CHECK (cost_micros >= 0),
    task_id         TEXT,
    model           TEXT,
    input_tokens    INTEGER,
    output_tokens   INTEGER,
    scopes          TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

-- Which budget rows a spend was charged to: a budget's spent is the sum of its charges.
CREATE TABLE spend_charges (
    budget_id TEXT NOT NULL,
    spend_id  INTEGER NOT NULL REFERENCES spends (id),
    micros    INTEGER NOT NULL,
    PRIMARY KEY (budget_id, spend_id)
) WITHOUT ROWID;

-- Append-only and hash-chained: each row's hash covers its content and the previous hash.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    event_type TEXT NOT NULL,
    action     TEXT NOT NULL,
    agent_id   TEXT,
    details    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_agent ON audit (agent_id, seq);
CREATE INDEX audit_event ON audit (event_type, seq);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
