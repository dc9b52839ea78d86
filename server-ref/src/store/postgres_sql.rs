//! Every SQL statement of the PostgreSQL store, in one place: those of the flows written once are
//! gathered in [`STATEMENTS`] by their shared names.
//!
//! Times are `timestamptz`; money and quantities `bigint`. Items and payments are inserted with one
//! multi-row `INSERT .. SELECT .. FROM UNNEST(..)` each, whatever their count.

use super::driver::Statements;

/// Per-transaction timeouts, in milliseconds (`SET LOCAL` through `set_config(.., true)`).
pub const SET_LOCAL_TIMEOUTS: &str = "SELECT set_config('lock_timeout', $1, true), \
     set_config('statement_timeout', $2, true)";

/// Inserts a header with the server's new `server_tx_id` (`$17`), its outbox sequence number (`$18`)
/// and outbox identity (`$19`) unless the store already has its `client_tx_id`; returns the
/// `server_tx_id` when it was inserted.
pub const INSERT_HEADER: &str = "INSERT INTO pos_transactions (client_tx_id, payload_sha256, \
     payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, \
     subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id, \
     server_tx_id, outbox_seq, outbox_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, timestamptz 'epoch' + $8::int8 * interval '1 millisecond', $9, \
     $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
     ON CONFLICT (store_id, client_tx_id) DO NOTHING RETURNING server_tx_id";

/// The unique index whose violation means two sales drew the same new `server_tx_id`.
pub const SERVER_TX_ID_INDEX: &str = "pos_transactions_server_tx_id";

/// The stored identity of a store's (`$1`) header (`$2`), to tell a replay from a conflict.
pub const SELECT_STORED_HASH: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version \
     FROM pos_transactions WHERE store_id = $1 AND client_tx_id = $2";

/// All items of a sale in one statement.
pub const INSERT_ITEMS: &str = "INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, \
     name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) \
     SELECT $1, $2, * FROM UNNEST($3::int4[], $4::text[], $5::text[], $6::int8[], $7::int8[], \
     $8::int8[], $9::int8[], $10::bool[])";

/// All payments of a sale in one statement.
pub const INSERT_PAYMENTS: &str = "INSERT INTO pos_transaction_payments (store_id, client_tx_id, \
     payment_no, method, amount_minor, reference) \
     SELECT $1, $2, * FROM UNNEST($3::int4[], $4::text[], $5::int8[], $6::text[])";

/// One audit row (`$12` the outbox sequence number, `$13` the attempted payload of a refused sale,
/// `$14` the outbox identity).
pub const INSERT_AUDIT: &str = "INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, \
     correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message, \
     outbox_seq, attempted_payload, outbox_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

/// Resolves a token hash to its device.
pub const SELECT_TOKEN: &str = "SELECT store_id, device_id, revoked_at IS NOT NULL \
     FROM pos_devices WHERE token_sha256 = $1";

/// Registers a token hash.
pub const INSERT_TOKEN: &str =
    "INSERT INTO pos_devices (token_sha256, store_id, device_id, label) VALUES ($1, $2, $3, $4)";

/// Revokes every live token of a device.
pub const REVOKE_TOKENS: &str = "UPDATE pos_devices SET revoked_at = now() \
     WHERE store_id = $1 AND device_id = $2 AND revoked_at IS NULL";

/// The channel on which revocations are announced to every server instance.
pub const REVOCATION_CHANNEL: &str = "possync_token_revoked";

/// Announces a revocation (delivered when the revoking transaction commits).
pub const NOTIFY_REVOKED: &str = "SELECT pg_notify('possync_token_revoked', $1)";

/// Subscribes a connection to [`REVOCATION_CHANNEL`].
pub const LISTEN_REVOKED: &str = "LISTEN possync_token_revoked";

/// Lists tokens, of one store (`$1`) or all (`$1` NULL).
pub const LIST_TOKENS: &str = "SELECT left(token_sha256, 12), store_id, device_id, label, \
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
     to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
     FROM pos_devices WHERE $1::text IS NULL OR store_id = $1 ORDER BY store_id, device_id, created_at";

/// Whether the migration history table exists.
pub const HAS_SCHEMA_HISTORY: &str = "SELECT to_regclass('refinery_schema_history') IS NOT NULL";

/// Highest applied migration version (NULL when none ran).
pub const SELECT_SCHEMA_VERSION: &str = "SELECT max(version)::int4 FROM refinery_schema_history";

/// Serializes concurrent `migrate` runs of several server instances.
pub const LOCK_MIGRATIONS: &str = "SELECT pg_advisory_lock(7270420001)";

/// Releases [`LOCK_MIGRATIONS`].
pub const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock(7270420001)";

/// The columns of an audit row, in the order of [`super::AuditRecord`]'s fields.
macro_rules! audit_columns {
    () => {
        "audit_id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), store_id, \
         device_id, client_tx_id, correlation_id, attempt, outcome, code, message, payload_hash_version, \
         payload_sha256, stored_sha256"
    };
}

/// Attention items of a store (`$1`): CONFLICT and INVALID attempts at or after `$2` (Unix ms; NULL:
/// all).
pub const SELECT_ATTENTION: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = $1 AND outcome IN ('CONFLICT', 'INVALID') \
     AND ($2::int8 IS NULL OR at >= timestamptz 'epoch' + $2::int8 * interval '1 millisecond') \
     ORDER BY at, audit_id"
);

/// Every audit row of one sale (`$2`) pushed by devices of a store (`$1`).
pub const SELECT_AUDIT_TRAIL: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = $1 AND client_tx_id = $2 ORDER BY at, audit_id"
);

/// The stored header identity of a sale (`$2`) of a store (`$1`).
pub const SELECT_STORED_SALE: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version, \
     device_id, to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
     FROM pos_transactions WHERE store_id = $1 AND client_tx_id = $2";

/// Deletes up to `$2` audit rows older than `$1` days; run until it deletes fewer than `$2`, so each
/// transaction stays short. Keyed by the primary key (not `ctid`), which also works on Citus.
pub const PRUNE_AUDIT_BATCH: &str = "DELETE FROM pos_transaction_audit \
     WHERE (client_tx_id, audit_id) IN (SELECT client_tx_id, audit_id FROM pos_transaction_audit \
     WHERE at < now() - make_interval(days => $1::int4) LIMIT $2::int8)";

/// Stored hashes of a set of sales (`$1` is a text array of client_tx_ids) of one store (`$2`), or of
/// any store (`$2` NULL).
pub const SELECT_HASHES: &str = "SELECT client_tx_id, payload_sha256 FROM pos_transactions \
     WHERE client_tx_id = ANY($1) AND ($2::text IS NULL OR store_id = $2)";

/// Every sale a device pushed to a store.
pub const SELECT_DEVICE_SALES: &str = "SELECT client_tx_id FROM pos_transactions \
     WHERE store_id = $1 AND device_id = $2";

/// Unix milliseconds of a `timestamptz` column.
macro_rules! ms {
    ($col:literal) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::int8")
    };
}

/// Unix milliseconds (`$n`) as a `timestamptz`.
macro_rules! ts {
    ($param:literal) => {
        concat!("(timestamptz 'epoch' + ", $param, "::int8 * interval '1 millisecond')")
    };
}

/// The incoming report is at least as new as the stored one.
macro_rules! newer_report {
    () => {
        "(EXCLUDED.reported_at IS NOT NULL AND (d.reported_at IS NULL OR EXCLUDED.reported_at >= d.reported_at))"
    };
}

/// Records news of a device (`$1`, `$2`): retired sequence numbers (`$3`), last seen at `$4`, last push
/// at `$5`, the backlog report (`$7`..`$16`: `$13` the outbox identity, `$14`..`$16` the acknowledged
/// run and the recovery window) received at `$6` (ms; NULL: none). A newer report's outbox identity is adopted (a replaced outbox was dealt with before, by
/// [`SELECT_OUTBOX_STATE`] and [`REPLACE_OUTBOX`]). Older news never
/// overwrites newer. One statement, committed without waiting for the WAL flush
/// (`synchronous_commit = off` for this transaction only): it is a till's latest status, written again
/// by its next request.
pub const RECORD_ACTIVITY: &str = concat!(
    "WITH retired AS (INSERT INTO pos_device_retired_seqs (store_id, \
     device_id, seq) SELECT $1, $2, s FROM UNNEST($3::int8[]) s WHERE s > 0 ON CONFLICT DO NOTHING) \
     INSERT INTO pos_device_status AS d (store_id, device_id, first_seen_at, last_seen_at, last_push_at, \
     reported_at, library_version, unsent_count, oldest_unsent_age_ms, unsent_minor, last_seq, seq_start, \
     outbox_id, acked_seq, kept_seq, kept_since_ms) SELECT $1, $2, ",
    ts!("$4"),
    ", ",
    ts!("$4"),
    ", ",
    ts!("$5"),
    ", ",
    ts!("$6"),
    ", $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit \
     ON CONFLICT (store_id, device_id) DO UPDATE SET \
     last_seen_at = GREATEST(d.last_seen_at, EXCLUDED.last_seen_at), \
     last_push_at = GREATEST(d.last_push_at, EXCLUDED.last_push_at), \
     reported_at = GREATEST(d.reported_at, EXCLUDED.reported_at), \
     library_version = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.library_version ELSE d.library_version END, \
     unsent_count = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.unsent_count ELSE d.unsent_count END, \
     oldest_unsent_age_ms = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.oldest_unsent_age_ms ELSE d.oldest_unsent_age_ms END, \
     unsent_minor = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.unsent_minor ELSE d.unsent_minor END, \
     last_seq = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.last_seq ELSE d.last_seq END, \
     seq_start = COALESCE(d.seq_start, EXCLUDED.seq_start), \
     acked_seq = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.acked_seq ELSE d.acked_seq END, \
     kept_seq = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.kept_seq ELSE d.kept_seq END, \
     kept_since_ms = CASE WHEN ",
    newer_report!(),
    " THEN EXCLUDED.kept_since_ms ELSE d.kept_since_ms END, \
     outbox_id = CASE WHEN ",
    newer_report!(),
    " AND EXCLUDED.outbox_id IS NOT NULL THEN EXCLUDED.outbox_id ELSE d.outbox_id END"
);

/// A device's (`$1`, `$2`) outbox bookkeeping, locked until the transaction ends: its outbox identity,
/// where its contiguous run ends, its last reported sequence number, whether its outbox was replaced
/// before, and whether a report received at `$3` (ms) is at least as new as the stored one.
pub const SELECT_OUTBOX_STATE: &str = concat!(
    "SELECT outbox_id, COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), last_seq, outbox_replaced, \
     (reported_at IS NULL OR reported_at <= ",
    ts!("$3"),
    ") FROM pos_device_status WHERE store_id = $1 AND device_id = $2 FOR UPDATE"
);

/// Keeps a run (`$4`..=`$5`) of an outbox (`$3`) of a device (`$1`, `$2`) that the server never got
/// and no till keeps any more, lost for good: `$6` says why (`replaced`: the outbox was wiped or
/// replaced first; `pruned`: acknowledged sales the server lost after the till pruned them).
pub const INSERT_LOST_RUN: &str = "INSERT INTO pos_device_lost_runs (store_id, device_id, outbox_id, \
     from_seq, to_seq, cause) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";

/// Forgets the checked settled run of every device of a store (`$1`, NULL: all): checked again from
/// each device's first number.
pub const RESET_CONTIGUOUS: &str = "UPDATE pos_device_status SET seq_contiguous = NULL \
     WHERE $1::text IS NULL OR store_id = $1";

/// Where a device's (`$1`, `$2`) acknowledged-sales check starts: its outbox identity, the end of its
/// contiguous settled run, and whether its outbox was replaced before.
pub const SELECT_RECOVERY_STATE: &str = "SELECT outbox_id, \
     COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), outbox_replaced \
     FROM pos_device_status WHERE store_id = $1 AND device_id = $2";

/// Moves a device's (`$1`, `$2`) contiguous settled run up to `$3` (never down), creating its status
/// row (first seen `$5` ms, outbox `$4`) when it has none yet; not when its outbox is no longer `$4`.
pub const UPSERT_CONTIGUOUS: &str = concat!(
    "INSERT INTO pos_device_status AS d (store_id, device_id, first_seen_at, last_seen_at, seq_contiguous, \
     outbox_id) VALUES ($1, $2, ",
    ts!("$5"),
    ", ",
    ts!("$5"),
    ", $3, $4) ON CONFLICT (store_id, device_id) DO UPDATE SET \
     seq_contiguous = GREATEST(COALESCE(d.seq_contiguous, 0), EXCLUDED.seq_contiguous) \
     WHERE d.outbox_id IS NULL OR d.outbox_id = EXCLUDED.outbox_id"
);

/// A device's (`$1`, `$2`) outbox was replaced by `$3`: its sequence bookkeeping starts from scratch.
pub const REPLACE_OUTBOX: &str = "UPDATE pos_device_status SET outbox_id = $3, outbox_replaced = true, \
     seq_contiguous = NULL, seq_start = NULL, last_seq = NULL WHERE store_id = $1 AND device_id = $2";

/// Forgets the retired sequence numbers of a device's (`$1`, `$2`) replaced outbox.
pub const DELETE_RETIRED_SEQS: &str =
    "DELETE FROM pos_device_retired_seqs WHERE store_id = $1 AND device_id = $2";

/// Runs that replaced outboxes never delivered, of one store (`$1`) or all, oldest first per device.
pub const SELECT_LOST_RUNS: &str = "SELECT store_id, device_id, outbox_id, from_seq, to_seq, cause \
     FROM pos_device_lost_runs WHERE $1::text IS NULL OR store_id = $1 \
     ORDER BY store_id, device_id, recorded_at, from_seq";

/// Every device with a token or activity, its status, and its sales that occurred since `$1` (ms).
pub const SELECT_TILLS: &str = concat!(
    "WITH devs AS (SELECT store_id, device_id FROM pos_devices UNION \
     SELECT store_id, device_id FROM pos_device_status), \
     tok AS (SELECT store_id, device_id, (array_agg(label ORDER BY created_at DESC))[1] AS label, \
     bool_or(revoked_at IS NULL) AS active FROM pos_devices GROUP BY store_id, device_id) \
     SELECT d.store_id, d.device_id, tok.label, COALESCE(tok.active, false), ",
    ms!("s.last_seen_at"),
    ", ",
    ms!("s.last_push_at"),
    ", ",
    ms!("s.reported_at"),
    ", s.library_version, s.unsent_count, s.oldest_unsent_age_ms, s.unsent_minor, s.last_seq, s.seq_start, \
     (SELECT count(*) FROM pos_transactions t WHERE t.store_id = d.store_id AND t.device_id = d.device_id \
     AND t.occurred_at >= ",
    ts!("$1"),
    "), s.outbox_id, s.acked_seq, s.kept_seq, s.kept_since_ms FROM devs d LEFT JOIN tok USING (store_id, device_id) \
     LEFT JOIN pos_device_status s USING (store_id, device_id) ORDER BY d.store_id, d.device_id"
);

/// Devices with sequence bookkeeping, of one store (`$1`) or all: where their contiguous run ends, the
/// last sequence number they reported, their outbox identity and whether it replaced another.
pub const SELECT_SEQ_STATES: &str = "SELECT store_id, device_id, \
     COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), last_seq, outbox_id, outbox_replaced, \
     acked_seq, kept_seq FROM pos_device_status \
     WHERE $1::text IS NULL OR store_id = $1 ORDER BY store_id, device_id";

/// Sequence numbers of a device (`$1`, `$2`) in (`$3`, `$6`] that are settled: stored sales, CONFLICT,
/// INVALID and DUPLICATE attempts (a DUPLICATE proves the sale is held, perhaps stored before the till
/// sent numbers), and retired numbers; ascending, at most `$7`. Only those of its outbox `$4`: sales
/// without an identity (older tills) count too until the device's outbox was first replaced (`$5`).
pub const SELECT_SETTLED_SEQS: &str = "SELECT outbox_seq FROM pos_transactions \
     WHERE store_id = $1 AND device_id = $2 AND outbox_seq > $3 AND outbox_seq <= $6 AND (outbox_id = $4::text \
     OR (NOT $5::bool AND (outbox_id IS NULL OR $4::text IS NULL))) \
     UNION SELECT outbox_seq FROM pos_transaction_audit WHERE store_id = $1 AND device_id = $2 \
     AND outbox_seq > $3 AND outbox_seq <= $6 AND outcome IN ('CONFLICT', 'INVALID', 'DUPLICATE') \
     AND (outbox_id = $4::text OR (NOT $5::bool AND (outbox_id IS NULL OR $4::text IS NULL))) \
     UNION SELECT seq FROM pos_device_retired_seqs WHERE store_id = $1 AND device_id = $2 AND seq > $3 \
     AND seq <= $6 ORDER BY 1 LIMIT $7";

/// Advances a device's (`$1`, `$2`) highest contiguous sequence number to `$3`, unless its outbox is
/// no longer `$4` (replaced meanwhile).
pub const ADVANCE_CONTIGUOUS: &str = "UPDATE pos_device_status SET seq_contiguous = $3 \
     WHERE store_id = $1 AND device_id = $2 AND (seq_contiguous IS NULL OR seq_contiguous < $3) \
     AND outbox_id IS NOT DISTINCT FROM $4::text";

/// Attention items of a store (`$1`, NULL: all), settled ones too when `$2`, newest first, at most `$3`,
/// with the stored sale's payload.
pub const SELECT_ATTENTION_ENTRIES: &str = concat!(
    "SELECT a.audit_id, to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), a.store_id, \
     a.device_id, a.client_tx_id, a.correlation_id, a.attempt, a.outcome, a.code, a.message, \
     a.payload_hash_version, a.payload_sha256, a.stored_sha256, a.outbox_seq, a.attempted_payload, \
     t.payload_canonical, ",
    ms!("a.settled_at"),
    ", a.settled_by, a.settled_note FROM pos_transaction_audit a LEFT JOIN pos_transactions t \
     ON t.store_id = a.store_id AND t.client_tx_id = a.client_tx_id \
     WHERE a.outcome IN ('CONFLICT', 'INVALID') AND ($1::text IS NULL OR a.store_id = $1) \
     AND ($2::bool OR a.settled_at IS NULL) ORDER BY a.at DESC, a.audit_id DESC LIMIT $3::int8"
);

/// Marks the attention item `$2` of sale `$1` reviewed by `$3` with note `$4`.
pub const MARK_REVIEWED: &str = "UPDATE pos_transaction_audit \
     SET settled_at = now(), settled_by = $3, settled_note = $4 \
     WHERE client_tx_id = $1 AND audit_id = $2 AND outcome IN ('CONFLICT', 'INVALID') AND settled_at IS NULL";

/// Stored sales by store (`$1`), id (`$2`) and occurrence in [`$3`, `$4`) ms, each NULL for any; newest
/// first, at most `$5`.
pub const FIND_SALES: &str = concat!(
    "SELECT server_tx_id, store_id, client_tx_id, device_id, outbox_seq, ",
    ms!("occurred_at"),
    ", ",
    ms!("received_at"),
    ", payload_canonical FROM pos_transactions \
     WHERE ($1::text IS NULL OR store_id = $1) AND ($2::text IS NULL OR client_tx_id = $2) \
     AND ($3::int8 IS NULL OR occurred_at >= ",
    ts!("$3"),
    ") AND ($4::int8 IS NULL OR occurred_at < ",
    ts!("$4"),
    ") ORDER BY occurred_at DESC, server_tx_id DESC LIMIT $5::int8"
);

/// Adds a console admin unless the name exists.
pub const INSERT_ADMIN: &str =
    "INSERT INTO pos_console_admins (name, secret_phc) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";

/// Removes a console admin's sessions.
pub const DELETE_ADMIN_SESSIONS: &str = "DELETE FROM pos_console_sessions WHERE admin_name = $1";

/// Removes a console admin (after their sessions, deleted explicitly by [`DELETE_ADMIN_SESSIONS`]).
pub const DELETE_ADMIN: &str = "DELETE FROM pos_console_admins WHERE name = $1";

/// The PHC string of an admin's secret.
pub const SELECT_ADMIN_SECRET: &str = "SELECT secret_phc FROM pos_console_admins WHERE name = $1";

/// Whether any admin exists.
pub const HAS_ADMIN: &str = "SELECT EXISTS (SELECT 1 FROM pos_console_admins)";

/// Deletes sessions expired before `$1` (ms, the app's clock).
pub const DELETE_EXPIRED_SESSIONS: &str =
    concat!("DELETE FROM pos_console_sessions WHERE expires_at < ", ts!("$1"));

/// Stores a session valid until `$4` (ms).
pub const INSERT_SESSION: &str = concat!(
    "INSERT INTO pos_console_sessions (session_sha256, admin_name, csrf_token, expires_at) \
     VALUES ($1, $2, $3, ",
    ts!("$4"),
    ")"
);

/// A live session at `$2` (ms).
pub const SELECT_SESSION: &str = concat!(
    "SELECT admin_name, csrf_token FROM pos_console_sessions WHERE session_sha256 = $1 AND expires_at > ",
    ts!("$2")
);

/// Ends a session.
pub const DELETE_SESSION: &str = "DELETE FROM pos_console_sessions WHERE session_sha256 = $1";

/// The statements of the flows written once (`flows.rs`), by their shared names.
pub static STATEMENTS: Statements = Statements {
    insert_token: INSERT_TOKEN,
    revoke_tokens: REVOKE_TOKENS,
    list_tokens: LIST_TOKENS,
    select_attention: SELECT_ATTENTION,
    select_audit_trail: SELECT_AUDIT_TRAIL,
    select_stored_sale: SELECT_STORED_SALE,
    prune_audit_batch: PRUNE_AUDIT_BATCH,
    select_hashes: SELECT_HASHES,
    select_device_sales: SELECT_DEVICE_SALES,
    select_tills: SELECT_TILLS,
    select_lost_runs: SELECT_LOST_RUNS,
    select_seq_states: SELECT_SEQ_STATES,
    select_settled_seqs: SELECT_SETTLED_SEQS,
    advance_contiguous: ADVANCE_CONTIGUOUS,
    reset_contiguous: RESET_CONTIGUOUS,
    select_attention_entries: SELECT_ATTENTION_ENTRIES,
    mark_reviewed: MARK_REVIEWED,
    find_sales: FIND_SALES,
    insert_admin: INSERT_ADMIN,
    delete_admin_sessions: DELETE_ADMIN_SESSIONS,
    delete_admin: DELETE_ADMIN,
    select_admin_secret: SELECT_ADMIN_SECRET,
    has_admin: HAS_ADMIN,
    delete_expired_sessions: DELETE_EXPIRED_SESSIONS,
    insert_session: INSERT_SESSION,
    select_session: SELECT_SESSION,
    delete_session: DELETE_SESSION,
    select_outbox_state: SELECT_OUTBOX_STATE,
    insert_lost_run: INSERT_LOST_RUN,
    replace_outbox: REPLACE_OUTBOX,
    delete_retired_seqs: DELETE_RETIRED_SEQS,
    record_activity: RECORD_ACTIVITY,
    select_recovery_state: SELECT_RECOVERY_STATE,
    upsert_contiguous: UPSERT_CONTIGUOUS,
    notify_revoked: Some(NOTIFY_REVOKED),
    insert_retired_seqs: None,
};
