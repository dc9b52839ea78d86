-- possync reference server, embedded SQLite store, schema v4 (PRAGMA user_version = 4): a till's
-- outbox identity, as in server-ref/migrations/V4__outbox_identity.sql. Times are integer Unix
-- milliseconds.

ALTER TABLE pos_transactions ADD COLUMN outbox_id TEXT;
ALTER TABLE pos_transaction_audit ADD COLUMN outbox_id TEXT;
ALTER TABLE pos_device_status ADD COLUMN outbox_id TEXT;
ALTER TABLE pos_device_status ADD COLUMN outbox_replaced INTEGER NOT NULL DEFAULT 0;

CREATE TABLE pos_device_lost_runs (
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    outbox_id   TEXT NOT NULL,
    from_seq    INTEGER NOT NULL CHECK (from_seq > 0),
    to_seq      INTEGER NOT NULL CHECK (to_seq >= from_seq),
    recorded_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (store_id, device_id, outbox_id, from_seq)
) STRICT;
