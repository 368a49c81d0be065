-- Keys made over HTTP: an optional expiry, the groups a leader answers gates for, and
-- when the key was last used (written from memory at most once a minute, never per call).
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_keys ADD COLUMN groups TEXT;  -- JSON list of group names; NULL: none
