-- possync reference server, schema v1.
-- Every child table carries client_tx_id so that all four tables can be distributed by it
-- (Citus, co-located) without changing the push transaction; see docs/scaling.md.

-- Device tokens: only the SHA-256 of a token is stored. A token is scoped to one store and device.
CREATE TABLE pos_devices (
    token_sha256 TEXT PRIMARY KEY CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    store_id     TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    label        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX pos_devices_store_device ON pos_devices (store_id, device_id);

-- Sale headers. client_tx_id is the idempotency key; payload_sha256 its fingerprint.
CREATE TABLE pos_transactions (
    client_tx_id         TEXT PRIMARY KEY,
    server_tx_id         BIGINT GENERATED ALWAYS AS IDENTITY,
    payload_sha256       TEXT NOT NULL CHECK (payload_sha256 ~ '^[0-9a-f]{64}$'),
    payload_hash_version INTEGER NOT NULL,
    store_id             TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    receipt_number       TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('sale', 'refund')),
    occurred_at          TIMESTAMPTZ NOT NULL,
    currency             TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal_minor       BIGINT NOT NULL,
    tax_minor            BIGINT NOT NULL,
    total_minor          BIGINT NOT NULL,
    change_minor         BIGINT NOT NULL CHECK (change_minor >= 0),
    cashier_id           TEXT,
    payload_canonical    TEXT NOT NULL,
    correlation_id       TEXT,
    received_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX pos_transactions_server_tx_id ON pos_transactions (server_tx_id);
CREATE INDEX pos_transactions_store_occurred ON pos_transactions (store_id, occurred_at);

CREATE TABLE pos_transaction_items (
    client_tx_id     TEXT NOT NULL REFERENCES pos_transactions (client_tx_id),
    line_no          INTEGER NOT NULL CHECK (line_no > 0),
    sku              TEXT NOT NULL,
    name             TEXT NOT NULL,
    quantity_milli   BIGINT NOT NULL CHECK (quantity_milli <> 0),
    unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    discount_minor   BIGINT NOT NULL CHECK (discount_minor >= 0),
    line_total_minor BIGINT NOT NULL,
    refund           BOOLEAN NOT NULL,
    PRIMARY KEY (client_tx_id, line_no)
);

CREATE TABLE pos_transaction_payments (
    client_tx_id TEXT NOT NULL REFERENCES pos_transactions (client_tx_id),
    payment_no   INTEGER NOT NULL CHECK (payment_no > 0),
    method       TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0),
    reference    TEXT,
    PRIMARY KEY (client_tx_id, payment_no)
);

-- One row per decided push attempt (OK, DUPLICATE, CONFLICT, INVALID): who pushed what, when,
-- with which correlation id and outcome. RETRY attempts stored nothing and are logged, not audited.
CREATE TABLE pos_transaction_audit (
    client_tx_id         TEXT NOT NULL,
    audit_id             BIGINT GENERATED ALWAYS AS IDENTITY,
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
    at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (client_tx_id, audit_id)
);
CREATE INDEX pos_transaction_audit_store_outcome ON pos_transaction_audit (store_id, outcome, at);
