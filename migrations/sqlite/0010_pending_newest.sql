-- The pending queue is read a page at a time, newest first, after a cursor
-- (created_at, id): this index serves each page in order, with no sort and no
-- scan of the rows before it, with 10,000 requests waiting.
CREATE INDEX approvals_pending_newest ON approvals (status, created_at, id);
