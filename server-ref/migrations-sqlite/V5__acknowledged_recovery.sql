-- possync reference server, embedded SQLite store, schema v5 (PRAGMA user_version = 5): sales the
-- server acknowledged and then lost come back, as in server-ref/migrations/V5__acknowledged_recovery.sql.
-- Times are integer Unix milliseconds.

ALTER TABLE pos_device_status ADD COLUMN acked_seq INTEGER;
ALTER TABLE pos_device_status ADD COLUMN kept_seq INTEGER;
ALTER TABLE pos_device_status ADD COLUMN kept_since_ms INTEGER;

ALTER TABLE pos_device_lost_runs
    ADD COLUMN cause TEXT NOT NULL DEFAULT 'replaced' CHECK (cause IN ('replaced', 'pruned'));

DROP INDEX pos_transaction_audit_device_seq;
CREATE INDEX pos_transaction_audit_device_seq ON pos_transaction_audit (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL AND outcome IN ('CONFLICT', 'INVALID', 'DUPLICATE');
