-- possync reference server, schema v3: the shop console.
--
-- * Each pushed sale may carry its till's outbox sequence number (outbox_seq, outside the payload hash);
--   refused attempts keep theirs in the audit row, with the attempted payload for CONFLICT and INVALID
--   (the console shows it beside the stored one). Old tills send none: the columns stay NULL.
-- * pos_device_status: per device the latest activity and the latest backlog report, and the highest
--   contiguous outbox sequence known to be settled (advanced when gaps are read).
-- * pos_device_retired_seqs: sequence numbers a till voided or re-keyed; they will never arrive.
-- * Settling an attention item is kept in its audit row (who, when, note).
-- * pos_console_admins / pos_console_sessions: console logins (argon2 PHC strings) and sessions (only the
--   SHA-256 of the session cookie is stored).

ALTER TABLE pos_transactions ADD COLUMN outbox_seq BIGINT;
CREATE INDEX pos_transactions_device_seq ON pos_transactions (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL;

ALTER TABLE pos_transaction_audit
    ADD COLUMN outbox_seq BIGINT,
    ADD COLUMN attempted_payload TEXT,
    ADD COLUMN settled_at TIMESTAMPTZ,
    ADD COLUMN settled_by TEXT,
    ADD COLUMN settled_note TEXT;
CREATE INDEX pos_transaction_audit_device_seq ON pos_transaction_audit (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL AND outcome IN ('CONFLICT', 'INVALID');

CREATE TABLE pos_device_status (
    store_id             TEXT NOT NULL,
    device_id            TEXT NOT NULL,
    first_seen_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_push_at         TIMESTAMPTZ,
    reported_at          TIMESTAMPTZ,
    library_version      TEXT,
    unsent_count         BIGINT,
    oldest_unsent_age_ms BIGINT,
    unsent_minor         TEXT,
    last_seq             BIGINT,
    seq_start            BIGINT,
    seq_contiguous       BIGINT,
    PRIMARY KEY (store_id, device_id)
);

CREATE TABLE pos_device_retired_seqs (
    store_id  TEXT NOT NULL,
    device_id TEXT NOT NULL,
    seq       BIGINT NOT NULL CHECK (seq > 0),
    PRIMARY KEY (store_id, device_id, seq)
);

CREATE TABLE pos_console_admins (
    name        TEXT PRIMARY KEY,
    secret_phc  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE pos_console_sessions (
    session_sha256 TEXT PRIMARY KEY CHECK (session_sha256 ~ '^[0-9a-f]{64}$'),
    admin_name     TEXT NOT NULL REFERENCES pos_console_admins (name) ON DELETE CASCADE,
    csrf_token     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL
);
