-- possync reference server, schema v2: the idempotency key is scoped to the store.
--
-- (store_id, client_tx_id) is unique instead of client_tx_id alone, so that two stores may use the same
-- id (receipt numbers like R-0001) and neither can learn of, or block, the other's sales. Child rows
-- carry store_id and reference the header by both columns. server_tx_id is no longer a global
-- sequence that every store sees: the server assigns a time-ordered id with random low bits (unique
-- index; see docs/decisions.md). Existing rows keep their ids.

ALTER TABLE pos_transaction_items DROP CONSTRAINT pos_transaction_items_client_tx_id_fkey;
ALTER TABLE pos_transaction_payments DROP CONSTRAINT pos_transaction_payments_client_tx_id_fkey;

ALTER TABLE pos_transaction_items ADD COLUMN store_id TEXT;
ALTER TABLE pos_transaction_payments ADD COLUMN store_id TEXT;
UPDATE pos_transaction_items i SET store_id = t.store_id
    FROM pos_transactions t WHERE t.client_tx_id = i.client_tx_id;
UPDATE pos_transaction_payments p SET store_id = t.store_id
    FROM pos_transactions t WHERE t.client_tx_id = p.client_tx_id;
ALTER TABLE pos_transaction_items ALTER COLUMN store_id SET NOT NULL;
ALTER TABLE pos_transaction_payments ALTER COLUMN store_id SET NOT NULL;

ALTER TABLE pos_transactions DROP CONSTRAINT pos_transactions_pkey,
    ADD CONSTRAINT pos_transactions_pkey PRIMARY KEY (store_id, client_tx_id);
ALTER TABLE pos_transaction_items DROP CONSTRAINT pos_transaction_items_pkey,
    ADD CONSTRAINT pos_transaction_items_pkey PRIMARY KEY (store_id, client_tx_id, line_no),
    ADD CONSTRAINT pos_transaction_items_sale_fkey FOREIGN KEY (store_id, client_tx_id)
        REFERENCES pos_transactions (store_id, client_tx_id);
ALTER TABLE pos_transaction_payments DROP CONSTRAINT pos_transaction_payments_pkey,
    ADD CONSTRAINT pos_transaction_payments_pkey PRIMARY KEY (store_id, client_tx_id, payment_no),
    ADD CONSTRAINT pos_transaction_payments_sale_fkey FOREIGN KEY (store_id, client_tx_id)
        REFERENCES pos_transactions (store_id, client_tx_id);

ALTER TABLE pos_transactions ALTER COLUMN server_tx_id DROP IDENTITY;
DROP INDEX pos_transactions_server_tx_id;
CREATE UNIQUE INDEX pos_transactions_server_tx_id ON pos_transactions (server_tx_id);

-- One sale's audit trail is read by store and id.
CREATE INDEX pos_transaction_audit_store_sale ON pos_transaction_audit (store_id, client_tx_id);
