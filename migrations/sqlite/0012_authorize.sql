-- The authorize call's approval settings and receipts (README "Authorize").

-- One row at most (id 1): the approval settings as last patched, a JSON object in
-- seed 000's shape. No row reads as the defaults. A write also moves
-- gate_generation, so daemons holding the compiled gate reload it.
CREATE TABLE governance_settings (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    document   TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per verdict, append-only. The scope ids, tool and decision are columns so
-- that reports and the enforcement check aggregate in SQL; `document` holds the
-- rest of what reconstructs the verdict (request, reasons, cited policy versions,
-- the access rule, the settings in force, the approval's stages). idempotency_key
-- is the caller's key prefixed with the id of the API key that sent it.
CREATE TABLE receipts (
    seq             INTEGER PRIMARY KEY,
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
    created_at      INTEGER NOT NULL
);
CREATE INDEX receipts_created ON receipts (created_at);
CREATE INDEX receipts_approval ON receipts (approval_id) WHERE approval_id IS NOT NULL;

-- A PENDING receipt's final outcome once its approval is decided: at most one,
-- appended, never changed.
CREATE TABLE receipt_outcomes (
    receipt_id TEXT PRIMARY KEY REFERENCES receipts (id),
    decision   TEXT NOT NULL CHECK (decision IN ('ALLOW', 'BLOCK')),
    document   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TRIGGER receipts_no_update BEFORE UPDATE ON receipts
BEGIN
    SELECT RAISE(ABORT, 'receipts are append-only');
END;
CREATE TRIGGER receipts_no_delete BEFORE DELETE ON receipts
BEGIN
    SELECT RAISE(ABORT, 'receipts are append-only');
END;
CREATE TRIGGER receipt_outcomes_no_update BEFORE UPDATE ON receipt_outcomes
BEGIN
    SELECT RAISE(ABORT, 'receipts are append-only');
END;
CREATE TRIGGER receipt_outcomes_no_delete BEFORE DELETE ON receipt_outcomes
BEGIN
    SELECT RAISE(ABORT, 'receipts are append-only');
END;
