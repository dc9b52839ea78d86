-- possync reference server, embedded SQLite store, schema v1 (PRAGMA user_version = 1).
-- The same four tables and keys as the PostgreSQL schema (server-ref/migrations/V1__init.sql).
-- Times are integer Unix milliseconds (UTC); tables are STRICT; booleans are 0/1.

CREATE TABLE pos_devices (
    token_sha256 TEXT PRIMARY KEY
        CHECK (length(token_sha256) = 64 AND token_sha256 NOT GLOB '*[^0-9a-f]*'),
    store_id     TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    label        TEXT,
    created_at   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    revoked_at   INTEGER
) STRICT;
CREATE INDEX pos_devices_store_device ON pos_devices (store_id, device_id);

-- Sale headers. server_tx_id is the rowid (increasing, never reused: AUTOINCREMENT);
-- client_tx_id is the idempotency key, unique.
CREATE TABLE pos_transactions (
    server_tx_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_tx_id         TEXT NOT NULL UNIQUE,
    payload_sha256       TEXT NOT NULL
        CHECK (length(payload_sha256) = 64 AND payload_sha256 NOT GLOB '*[^0-9a-f]*'),
    payload_hash_version INTEGER NOT NULL,
    store_id             TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    receipt_number       TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('sale', 'refund')),
    occurred_at          INTEGER NOT NULL,
    currency             TEXT NOT NULL CHECK (currency GLOB '[A-Z][A-Z][A-Z]'),
    subtotal_minor       INTEGER NOT NULL,
    tax_minor            INTEGER NOT NULL,
    total_minor          INTEGER NOT NULL,
    change_minor         INTEGER NOT NULL CHECK (change_minor >= 0),
    cashier_id           TEXT,
    payload_canonical    TEXT NOT NULL,
    correlation_id       TEXT,
    received_at          INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;
CREATE INDEX pos_transactions_store_device ON pos_transactions (store_id, device_id);
CREATE INDEX pos_transactions_store_occurred ON pos_transactions (store_id, occurred_at);

CREATE TABLE pos_transaction_items (
    client_tx_id     TEXT NOT NULL REFERENCES pos_transactions (client_tx_id),
    line_no          INTEGER NOT NULL CHECK (line_no > 0),
    sku              TEXT NOT NULL,
    name             TEXT NOT NULL,
    quantity_milli   INTEGER NOT NULL CHECK (quantity_milli <> 0),
    unit_price_minor INTEGER NOT NULL CHECK (unit_price_minor >= 0),
    discount_minor   INTEGER NOT NULL CHECK (discount_minor >= 0),
    line_total_minor INTEGER NOT NULL,
    refund           INTEGER NOT NULL CHECK (refund IN (0, 1)),
    PRIMARY KEY (client_tx_id, line_no)
) STRICT;

CREATE TABLE pos_transaction_payments (
    client_tx_id TEXT NOT NULL REFERENCES pos_transactions (client_tx_id),
    payment_no   INTEGER NOT NULL CHECK (payment_no > 0),
    method       TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor <> 0),
    reference    TEXT,
    PRIMARY KEY (client_tx_id, payment_no)
) STRICT;

-- One row per decided push attempt (OK, DUPLICATE, CONFLICT, INVALID).
CREATE TABLE pos_transaction_audit (
    audit_id             INTEGER PRIMARY KEY AUTOINCREMENT,
    client_tx_id         TEXT NOT NULL,
    store_id             TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    correlation_id       TEXT,
    attempt              INTEGER,
    payload_hash_version INTEGER,
    payload_sha256       TEXT,
    stored_sha256        TEXT,
    outcome              TEXT NOT NULL CHECK (outcome IN ('OK', 'DUPLICATE', 'CONFLICT', 'INVALID')),
    code                 TEXT,
    message              TEXT,
    at                   INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;
CREATE INDEX pos_transaction_audit_store_outcome ON pos_transaction_audit (store_id, outcome, at);
CREATE INDEX pos_transaction_audit_sale ON pos_transaction_audit (client_tx_id);
CREATE INDEX pos_transaction_audit_at ON pos_transaction_audit (at);
