-- possync reference server, embedded SQLite store, schema v3 (PRAGMA user_version = 3): the shop
-- console, as in server-ref/migrations/V3__console.sql. Times are integer Unix milliseconds.

ALTER TABLE pos_transactions ADD COLUMN outbox_seq INTEGER;
CREATE INDEX pos_transactions_device_seq ON pos_transactions (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL;

ALTER TABLE pos_transaction_audit ADD COLUMN outbox_seq INTEGER;
ALTER TABLE pos_transaction_audit ADD COLUMN attempted_payload TEXT;
ALTER TABLE pos_transaction_audit ADD COLUMN settled_at INTEGER;
ALTER TABLE pos_transaction_audit ADD COLUMN settled_by TEXT;
ALTER TABLE pos_transaction_audit ADD COLUMN settled_note TEXT;
CREATE INDEX pos_transaction_audit_device_seq ON pos_transaction_audit (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL AND outcome IN ('CONFLICT', 'INVALID');

CREATE TABLE pos_device_status (
    store_id             TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    first_seen_at        INTEGER NOT NULL,
    last_seen_at         INTEGER NOT NULL,
    last_push_at         INTEGER,
    reported_at          INTEGER,
    library_version      TEXT,
    unsent_count         INTEGER,
    oldest_unsent_age_ms INTEGER,
    unsent_minor         TEXT,
    last_seq             INTEGER,
    seq_start            INTEGER,
    seq_contiguous       INTEGER,
    PRIMARY KEY (store_id, device_id)
) STRICT;

CREATE TABLE pos_device_retired_seqs (
    store_id  TEXT NOT NULL,
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL CHECK (seq > 0),
    PRIMARY KEY (store_id, device_id, seq)
) STRICT;

CREATE TABLE pos_console_admins (
    name        TEXT PRIMARY KEY,
    secret_phc  TEXT NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

CREATE TABLE pos_console_sessions (
    session_sha256 TEXT PRIMARY KEY,
    admin_name     TEXT NOT NULL REFERENCES pos_console_admins (name) ON DELETE CASCADE,
    csrf_token     TEXT NOT NULL,
    created_at     INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    expires_at     INTEGER NOT NULL
) STRICT;
