-- possync reference server, embedded SQLite store, schema v2 (PRAGMA user_version = 2): the
-- idempotency key is scoped to the store, as in server-ref/migrations/V2__store_scoped_ids.sql.
-- SQLite cannot change a primary key in place: the three sale tables are rebuilt and their rows
-- copied. server_tx_id is assigned by the server (time-ordered, random low bits) and kept unique.

ALTER TABLE pos_transaction_items RENAME TO pos_transaction_items_v1;
ALTER TABLE pos_transaction_payments RENAME TO pos_transaction_payments_v1;
ALTER TABLE pos_transactions RENAME TO pos_transactions_v1;

CREATE TABLE pos_transactions (
    server_tx_id         INTEGER NOT NULL UNIQUE,
    client_tx_id         TEXT NOT NULL,
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
    received_at          INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (store_id, client_tx_id)
) STRICT;

CREATE TABLE pos_transaction_items (
    store_id         TEXT NOT NULL,
    client_tx_id     TEXT NOT NULL,
    line_no          INTEGER NOT NULL CHECK (line_no > 0),
    sku              TEXT NOT NULL,
    name             TEXT NOT NULL,
    quantity_milli   INTEGER NOT NULL CHECK (quantity_milli <> 0),
    unit_price_minor INTEGER NOT NULL CHECK (unit_price_minor >= 0),
    discount_minor   INTEGER NOT NULL CHECK (discount_minor >= 0),
    line_total_minor INTEGER NOT NULL,
    refund           INTEGER NOT NULL CHECK (refund IN (0, 1)),
    PRIMARY KEY (store_id, client_tx_id, line_no),
    FOREIGN KEY (store_id, client_tx_id) REFERENCES pos_transactions (store_id, client_tx_id)
) STRICT;

CREATE TABLE pos_transaction_payments (
    store_id     TEXT NOT NULL,
    client_tx_id TEXT NOT NULL,
    payment_no   INTEGER NOT NULL CHECK (payment_no > 0),
    method       TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor <> 0),
    reference    TEXT,
    PRIMARY KEY (store_id, client_tx_id, payment_no),
    FOREIGN KEY (store_id, client_tx_id) REFERENCES pos_transactions (store_id, client_tx_id)
) STRICT;

INSERT INTO pos_transactions (server_tx_id, client_tx_id, payload_sha256, payload_hash_version, store_id,
    device_id, receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor,
    change_minor, cashier_id, payload_canonical, correlation_id, received_at)
SELECT server_tx_id, client_tx_id, payload_sha256, payload_hash_version, store_id, device_id,
    receipt_number, kind, occurred_at, currency, subtotal_minor, tax_minor, total_minor, change_minor,
    cashier_id, payload_canonical, correlation_id, received_at
FROM pos_transactions_v1;

INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, name, quantity_milli,
    unit_price_minor, discount_minor, line_total_minor, refund)
SELECT t.store_id, i.client_tx_id, i.line_no, i.sku, i.name, i.quantity_milli, i.unit_price_minor,
    i.discount_minor, i.line_total_minor, i.refund
FROM pos_transaction_items_v1 i JOIN pos_transactions_v1 t ON t.client_tx_id = i.client_tx_id;

INSERT INTO pos_transaction_payments (store_id, client_tx_id, payment_no, method, amount_minor, reference)
SELECT t.store_id, p.client_tx_id, p.payment_no, p.method, p.amount_minor, p.reference
FROM pos_transaction_payments_v1 p JOIN pos_transactions_v1 t ON t.client_tx_id = p.client_tx_id;

DROP TABLE pos_transaction_items_v1;
DROP TABLE pos_transaction_payments_v1;
DROP TABLE pos_transactions_v1;

CREATE INDEX pos_transactions_store_device ON pos_transactions (store_id, device_id);
CREATE INDEX pos_transactions_store_occurred ON pos_transactions (store_id, occurred_at);
DROP INDEX pos_transaction_audit_sale;
CREATE INDEX pos_transaction_audit_sale ON pos_transaction_audit (store_id, client_tx_id);
