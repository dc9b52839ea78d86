-- possync reference server, schema v4: a till's outbox identity.
--
-- * A till sends the random identity of its outbox in the backlog report (`outbox_id`). Each stored
--   sale and each audit row keeps the identity of the outbox it came from (NULL from older tills), so
--   the sequence numbers of a wiped or replaced outbox, which start again at 1, never mix with the old
--   ones.
-- * pos_device_status keeps the device's current outbox identity; outbox_replaced is set once a
--   device's outbox was replaced (from then on only sales of the current outbox count for its gaps).
-- * pos_device_lost_runs: what an outbox that was replaced had recorded and the server never received
--   (its gaps and the run past its last received sale up to its last report), kept for good.

ALTER TABLE pos_transactions ADD COLUMN outbox_id TEXT;
ALTER TABLE pos_transaction_audit ADD COLUMN outbox_id TEXT;

ALTER TABLE pos_device_status
    ADD COLUMN outbox_id TEXT,
    ADD COLUMN outbox_replaced BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE pos_device_lost_runs (
    store_id    TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    outbox_id   TEXT NOT NULL,
    from_seq    BIGINT NOT NULL CHECK (from_seq > 0),
    to_seq      BIGINT NOT NULL CHECK (to_seq >= from_seq),
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, device_id, outbox_id, from_seq)
);
