-- Which API key asked for an approval, and which key (and role) decided it:
-- a requester cannot decide its own request, and a decision names its maker.
ALTER TABLE approvals ADD COLUMN requested_by_key TEXT;
ALTER TABLE approvals ADD COLUMN resolved_by_key TEXT;
ALTER TABLE approvals ADD COLUMN resolved_by_role TEXT;
