-- The action gate's stored documents: guardrail policies and their versions, the tool
-- registry, tool policies, role overrides, and the generation counter that tells a
-- daemon its compiled copy of them is stale.

-- One row per policy: what does not mint a version (description, status) and where
-- its history stands. A deleted policy keeps its row (deleted_at set) so its versions
-- still answer; its name stays taken, so a receipt's name never means two policies.
CREATE TABLE guardrail_policies (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT,
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    version         INTEGER NOT NULL CHECK (version >= 1),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    deleted_at      BIGINT,
    idempotency_key TEXT UNIQUE,
    fingerprint     TEXT
);

-- Every version's rules as written (JSON text, numbers exactly as sent); never updated.
CREATE TABLE guardrail_versions (
    policy_id  TEXT NOT NULL REFERENCES guardrail_policies (id),
    version    INTEGER NOT NULL,
    rules      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    message    TEXT,
    PRIMARY KEY (policy_id, version)
);
CREATE FUNCTION guardrail_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'guardrail versions are immutable'; END $$;
CREATE TRIGGER guardrail_versions_immutable BEFORE UPDATE ON guardrail_versions
FOR EACH ROW EXECUTE FUNCTION guardrail_versions_immutable();

-- The tool registry: active -> deprecated -> archived, never back.
CREATE TABLE tools (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    categories  TEXT NOT NULL,
    description TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'deprecated', 'archived')),
    reason      TEXT,
    replacement TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- One policy per tool.
CREATE TABLE tool_policies (
    seq                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    tool_name            TEXT NOT NULL UNIQUE REFERENCES tools (name),
    allowed              BOOLEAN NOT NULL,
    allowed_domains      TEXT,
    max_response_size_kb INTEGER,
    created_at           BIGINT NOT NULL
);

-- One override per (role, tool).
CREATE TABLE role_policy_overrides (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    tool_name  TEXT NOT NULL REFERENCES tools (name),
    allowed    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (role, tool_name)
);

-- Moved by every write above, in its transaction: a daemon compares it with the
-- generation its compiled policy set and access table were built from.
CREATE TABLE gate_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO gate_generation (id, generation) VALUES (1, 0);
