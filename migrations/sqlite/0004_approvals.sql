-- Approvals: the live requests of the handshake, sticky grants, and the decision history.

-- One row per approval request. A row is decided exactly once: the only
-- transition is pending -> (allow_once | allow_always | deny | expired), made
-- by one conditional UPDATE on a pending row. A pending row past expires_at
-- is read as expired even before the reaper writes it.
CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    tool_name    TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    args_summary TEXT,
    reason       TEXT,
    status       TEXT NOT NULL CHECK (
                     status IN ('pending', 'allow_once', 'allow_always', 'deny', 'expired')),
    task_id      TEXT,
    tenant_id    TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    resolved_at  INTEGER,
    resolved_by  TEXT,
    CHECK ((status = 'pending') = (resolved_at IS NULL))
);
-- The pending queue and the reaper's sweep both read pending rows by expiry.
CREATE INDEX approvals_status_expiry ON approvals (status, expires_at);

-- A sticky allow_always for (agent_id, tool_name); delegation uses tool_name
-- 'delegate:<kind>' with the leader as agent_id. Live: not revoked and
-- (expires_at IS NULL or expires_at > now). At most one unrevoked grant per pair.
CREATE TABLE approval_grants (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    tool_name   TEXT NOT NULL,
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    revoked_by  TEXT
);
CREATE UNIQUE INDEX approval_grants_unrevoked
    ON approval_grants (agent_id, tool_name) WHERE revoked_at IS NULL;

-- Clawboo's approval_history: a log of decisions, newest first by id.
CREATE TABLE approval_history (
    id         INTEGER PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('allow-once', 'allow-always', 'deny')),
    tool_name  TEXT NOT NULL,
    details    TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX approval_history_agent ON approval_history (agent_id, id);
