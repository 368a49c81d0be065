-- API keys: only the SHA-256 of a key is stored, never the key itself.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('executor', 'leader', 'operator', 'admin')),
    key_hash   TEXT NOT NULL UNIQUE,
    leads      TEXT,  -- JSON list of agent ids a leader may decide for; NULL: all
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
