-- The authorize call's approval settings and receipts (README "Authorize";
-- PostgreSQL dialect of migrations/sqlite/0012_authorize.sql).

CREATE TABLE governance_settings (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    document   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE receipts (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    agent_id        TEXT NOT NULL,
    mission_id      TEXT,
    team_id         TEXT,
    tenant_id       TEXT,
    run_id          TEXT,
    tool_name       TEXT NOT NULL,
    categories      TEXT NOT NULL,
    decision        TEXT NOT NULL CHECK (decision IN ('ALLOW', 'BLOCK', 'PENDING')),
    approval_id     TEXT,
    idempotency_key TEXT UNIQUE,
    fingerprint     TEXT NOT NULL,
    document        TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX receipts_created ON receipts (created_at);
CREATE INDEX receipts_approval ON receipts (approval_id) WHERE approval_id IS NOT NULL;

CREATE TABLE receipt_outcomes (
    receipt_id TEXT PRIMARY KEY REFERENCES receipts (id),
    decision   TEXT NOT NULL CHECK (decision IN ('ALLOW', 'BLOCK')),
    document   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE FUNCTION receipts_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'receipts are append-only';
END;
$$;
CREATE TRIGGER receipts_no_change BEFORE UPDATE OR DELETE ON receipts
    FOR EACH ROW EXECUTE FUNCTION receipts_append_only();
CREATE TRIGGER receipts_no_truncate BEFORE TRUNCATE ON receipts
    FOR EACH STATEMENT EXECUTE FUNCTION receipts_append_only();
CREATE TRIGGER receipt_outcomes_no_change BEFORE UPDATE OR DELETE ON receipt_outcomes
    FOR EACH ROW EXECUTE FUNCTION receipts_append_only();
CREATE TRIGGER receipt_outcomes_no_truncate BEFORE TRUNCATE ON receipt_outcomes
    FOR EACH STATEMENT EXECUTE FUNCTION receipts_append_only();
