-- Webhook delivery state. The audit chain is the outbox (each audit row is written in the
-- transaction of its change); per webhook, a cursor says how far the chain has been
-- scanned, and a delivery row is each event due to it and not yet delivered (deleted once
-- a 2xx answers; kept with failed_at once its retries are given up). A webhook is named by
-- a digest of its url, never the url.
CREATE TABLE notify_cursors (
    webhook TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL
);
CREATE TABLE notify_deliveries (
    webhook         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    failed_at       INTEGER,
    PRIMARY KEY (webhook, seq)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (webhook, next_attempt_at)
    WHERE failed_at IS NULL;
