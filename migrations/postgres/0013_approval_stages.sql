-- Approvals with stages (README: Approvals, gates and quorum).
--
-- stages: JSON [{name, gates: [{group, count, votes: [...]}], status}], fixed when
-- the approval opens; each vote rewrites it in the same conditional UPDATE on the
-- locked pending row that decides. NULL: Clawboo's one-decision approval.
-- An approved approval with stages keeps the status column's values: allow_once,
-- or allow_always when it made a sticky grant; it reads `approved`.
-- sticky: false when no live grant satisfies it and its approval makes none.
-- waiver: JSON {reason, keyId, keyName, waivedAt} of an admin's waiver.
ALTER TABLE approvals ADD COLUMN stages TEXT;
ALTER TABLE approvals ADD COLUMN sticky BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE approvals ADD COLUMN waiver TEXT;
