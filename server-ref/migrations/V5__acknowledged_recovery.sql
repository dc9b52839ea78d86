-- possync reference server, schema v5: sales the server acknowledged and then lost come back.
--
-- * A till reports how far its acknowledged sales reach (acked_seq: every sale numbered up to it was
--   settled by the server), the oldest sale it still keeps (kept_seq) and when that one was recorded
--   (kept_since_ms, Unix ms): the till's recovery window. After a restore from a backup or a promoted
--   standby that lagged, the sales between the server's contiguous run and acked_seq that the server
--   lacks are asked for again in the push answer, and the loss detector counts them as missing until
--   they are back.
-- * pos_device_lost_runs.cause: 'replaced' (an outbox wiped or replaced before delivering them, as in
--   v4) or 'pruned' (acknowledged sales the server lost that the till no longer keeps): lost for good.
-- * A DUPLICATE answer to a sale sent again proves the server holds that sequence number (under a sale
--   stored before the till sent numbers): its audit row is indexed like CONFLICT and INVALID ones.

ALTER TABLE pos_device_status
    ADD COLUMN acked_seq BIGINT,
    ADD COLUMN kept_seq BIGINT,
    ADD COLUMN kept_since_ms BIGINT;

ALTER TABLE pos_device_lost_runs
    ADD COLUMN cause TEXT NOT NULL DEFAULT 'replaced' CHECK (cause IN ('replaced', 'pruned'));

DROP INDEX pos_transaction_audit_device_seq;
CREATE INDEX pos_transaction_audit_device_seq ON pos_transaction_audit (store_id, device_id, outbox_seq)
    WHERE outbox_seq IS NOT NULL AND outcome IN ('CONFLICT', 'INVALID', 'DUPLICATE');
