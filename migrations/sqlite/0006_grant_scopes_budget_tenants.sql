-- Sticky grants scoped to exact arguments, and the tenant a budget belongs to
-- (README: Approvals, Budgets).

-- The canonical fingerprint of a request's masked arguments (core.approvals),
-- written when it opens; NULL on rows opened before this migration.
ALTER TABLE approvals ADD COLUMN args_fingerprint TEXT;

-- A grant covers the tool with any arguments ('tool', Clawboo's grant) or only
-- the arguments with its fingerprint ('args'). Rows before this were all 'tool'.
ALTER TABLE approval_grants ADD COLUMN grant_scope TEXT NOT NULL DEFAULT 'tool'
    CHECK (grant_scope IN ('tool', 'args'));
ALTER TABLE approval_grants ADD COLUMN args_fingerprint TEXT;
ALTER TABLE approval_grants ADD COLUMN args_summary TEXT;
-- At most one unrevoked grant per (agent, tool, scope, arguments): a pair may
-- hold one 'tool' grant and one 'args' grant per fingerprint.
DROP INDEX approval_grants_unrevoked;
CREATE UNIQUE INDEX approval_grants_unrevoked
    ON approval_grants (agent_id, tool_name, grant_scope, coalesce(args_fingerprint, ''))
    WHERE revoked_at IS NULL;

-- Clawboo's budget rows carry the tenant they belong to (nullable).
ALTER TABLE budgets ADD COLUMN tenant_id TEXT;
