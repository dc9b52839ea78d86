//! Every SQL statement of the embedded SQLite store, in one place.
//!
//! The same statements as [`super::postgres_sql`] in SQLite's dialect: times are integer Unix
//! milliseconds (formatted as RFC 3339 UTC on the way out), items and payments are inserted one
//! prepared (cached) statement per row, arrays become `json_each`. Those of the flows written once
//! are gathered in [`STATEMENTS`] by the names PostgreSQL's use, with the same parameters.

use super::driver::Statements;

/// The schema, as versioned migrations run by `rusqlite_migration` (`PRAGMA user_version`).
pub const MIGRATION_V1: &str = include_str!("../../migrations-sqlite/V1__init.sql");

/// Schema v2: the idempotency key scoped to the store.
pub const MIGRATION_V2: &str = include_str!("../../migrations-sqlite/V2__store_scoped_ids.sql");

/// Schema v3: the shop console (device status, outbox sequence numbers, admins, sessions).
pub const MIGRATION_V3: &str = include_str!("../../migrations-sqlite/V3__console.sql");

/// Schema v4: a till's outbox identity (on sales, audit rows and device status) and the runs a
/// replaced outbox never delivered.
pub const MIGRATION_V4: &str = include_str!("../../migrations-sqlite/V4__outbox_identity.sql");

/// Schema v5: acknowledged sales the server lost come back (`migrations-sqlite/V5__acknowledged_recovery.sql`).
pub const MIGRATION_V5: &str = include_str!("../../migrations-sqlite/V5__acknowledged_recovery.sql");

/// Inserts a header with the server's new `server_tx_id` (`?17`) unless the store already has its
/// `client_tx_id`; returns the `server_tx_id` when it was inserted. (The only UNIQUE constraint it
/// can then violate is `server_tx_id`'s.)
pub const INSERT_HEADER: &str = "INSERT INTO pos_transactions (client_tx_id, payload_sha256, \
     payload_hash_version, store_id, device_id, receipt_number, kind, occurred_at, currency, \
     subtotal_minor, tax_minor, total_minor, change_minor, cashier_id, payload_canonical, correlation_id, \
     server_tx_id, outbox_seq, outbox_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) \
     ON CONFLICT (store_id, client_tx_id) DO NOTHING RETURNING server_tx_id";

/// The stored identity of a store's (`?1`) header (`?2`), to tell a replay from a conflict.
pub const SELECT_STORED_HASH: &str = "SELECT server_tx_id, payload_sha256, payload_hash_version \
     FROM pos_transactions WHERE store_id = ?1 AND client_tx_id = ?2";

/// One item of a sale.
pub const INSERT_ITEM: &str = "INSERT INTO pos_transaction_items (store_id, client_tx_id, line_no, sku, \
     name, quantity_milli, unit_price_minor, discount_minor, line_total_minor, refund) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// One payment of a sale.
pub const INSERT_PAYMENT: &str = "INSERT INTO pos_transaction_payments (store_id, client_tx_id, \
     payment_no, method, amount_minor, reference) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// One audit row (`?12` the outbox sequence number, `?13` the attempted payload of a refused sale).
pub const INSERT_AUDIT: &str = "INSERT INTO pos_transaction_audit (client_tx_id, store_id, device_id, \
     correlation_id, attempt, payload_hash_version, payload_sha256, stored_sha256, outcome, code, message, \
     outbox_seq, attempted_payload, outbox_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// Resolves a token hash to its device.
pub const SELECT_TOKEN: &str = "SELECT store_id, device_id, revoked_at IS NOT NULL \
     FROM pos_devices WHERE token_sha256 = ?1";

/// Registers a token hash.
pub const INSERT_TOKEN: &str =
    "INSERT INTO pos_devices (token_sha256, store_id, device_id, label) VALUES (?1, ?2, ?3, ?4)";

/// Revokes every live token of a device.
pub const REVOKE_TOKENS: &str = "UPDATE pos_devices \
     SET revoked_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) \
     WHERE store_id = ?1 AND device_id = ?2 AND revoked_at IS NULL";

/// Lists tokens, of one store (`?1`) or all (`?1` NULL).
pub const LIST_TOKENS: &str = "SELECT substr(token_sha256, 1, 12), store_id, device_id, label, \
     strftime('%Y-%m-%dT%H:%M:%SZ', created_at / 1000, 'unixepoch'), \
     strftime('%Y-%m-%dT%H:%M:%SZ', revoked_at / 1000, 'unixepoch') \
     FROM pos_devices WHERE ?1 IS NULL OR store_id = ?1 ORDER BY store_id, device_id, created_at";

/// Makes SQLite check the file is a database and readable (a cheap read of the schema page).
pub const PING: &str = "SELECT count(*) FROM sqlite_schema";

/// An RFC 3339 UTC time with milliseconds from a Unix-ms column.
macro_rules! rfc3339_ms {
    ($col:literal) => {
        concat!(
            "strftime('%Y-%m-%dT%H:%M:%S', ",
            $col,
            " / 1000, 'unixepoch') || '.' || printf('%03d', ",
            $col,
            " % 1000) || 'Z'"
        )
    };
}

/// The columns of an audit row, in the order of [`super::AuditRecord`]'s fields.
macro_rules! audit_columns {
    () => {
        concat!(
            "audit_id, ",
            rfc3339_ms!("at"),
            ", store_id, device_id, client_tx_id, correlation_id, attempt, outcome, code, message, \
             payload_hash_version, payload_sha256, stored_sha256"
        )
    };
}

/// Attention items of a store (`?1`): CONFLICT and INVALID attempts at or after `?2` (Unix ms; NULL: all).
pub const SELECT_ATTENTION: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = ?1 AND outcome IN ('CONFLICT', 'INVALID') \
     AND (?2 IS NULL OR at >= ?2) ORDER BY at, audit_id"
);

/// Every audit row of one sale (`?2`) pushed by devices of a store (`?1`).
pub const SELECT_AUDIT_TRAIL: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM pos_transaction_audit WHERE store_id = ?1 AND client_tx_id = ?2 ORDER BY at, audit_id"
);

/// The stored header identity of a sale (`?2`) of a store (`?1`).
pub const SELECT_STORED_SALE: &str = concat!(
    "SELECT server_tx_id, payload_sha256, payload_hash_version, device_id, ",
    rfc3339_ms!("received_at"),
    " FROM pos_transactions WHERE store_id = ?1 AND client_tx_id = ?2"
);

/// Deletes up to `?2` audit rows older than `?1` days; run until it deletes fewer than `?2`, so each
/// write transaction stays short.
pub const PRUNE_AUDIT_BATCH: &str = "DELETE FROM pos_transaction_audit WHERE audit_id IN \
     (SELECT audit_id FROM pos_transaction_audit \
     WHERE at < CAST(unixepoch('subsec') * 1000 AS INTEGER) - ?1 * 86400000 LIMIT ?2)";

/// Stored hashes of a set of sales (`?1` is a JSON array of client_tx_ids) of one store (`?2`), or
/// of any store (`?2` NULL).
pub const SELECT_HASHES: &str = "SELECT client_tx_id, payload_sha256 FROM pos_transactions \
     WHERE client_tx_id IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR store_id = ?2)";

/// Every sale a device pushed to a store.
pub const SELECT_DEVICE_SALES: &str = "SELECT client_tx_id FROM pos_transactions \
     WHERE store_id = ?1 AND device_id = ?2";

/// Now, in Unix milliseconds.
macro_rules! now_ms {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}

/// Sequence numbers a device (`?1`, `?2`) retired (`?3`, a JSON array of integers).
pub const INSERT_RETIRED_SEQS: &str = "INSERT INTO pos_device_retired_seqs (store_id, device_id, seq) \
     SELECT ?1, ?2, value FROM json_each(?3) WHERE value > 0 ON CONFLICT DO NOTHING";

/// The incoming report is at least as new as the stored one.
macro_rules! newer_report {
    () => {
        "(excluded.reported_at IS NOT NULL AND (d.reported_at IS NULL OR excluded.reported_at >= d.reported_at))"
    };
}

/// The later of two nullable times.
macro_rules! later {
    ($a:literal, $b:literal) => {
        concat!("max(COALESCE(", $a, ", ", $b, "), COALESCE(", $b, ", ", $a, "))")
    };
}

/// Records news of a device (`?1`, `?2`): last seen at `?4`, last push at `?5`, the backlog report
/// (`?7`..`?16`: `?13` the outbox identity, `?14`..`?16` the acknowledged run and the recovery
/// window) received at `?6` (ms; NULL: none). `?3` (the retired numbers) is bound and unused: they
/// were recorded before by [`INSERT_RETIRED_SEQS`], so the parameters are those of PostgreSQL's
/// statement. Older news never overwrites newer; a newer report's outbox identity is adopted (a
/// replaced outbox was dealt with before, by [`SELECT_OUTBOX_STATE`] and [`REPLACE_OUTBOX`]).
pub const RECORD_ACTIVITY: &str = concat!(
    "INSERT INTO pos_device_status AS d (store_id, device_id, first_seen_at, last_seen_at, last_push_at, \
     reported_at, library_version, unsent_count, oldest_unsent_age_ms, unsent_minor, last_seq, seq_start, \
     outbox_id, acked_seq, kept_seq, kept_since_ms) \
     VALUES (?1, ?2, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
     ON CONFLICT (store_id, device_id) DO UPDATE SET \
     last_seen_at = max(d.last_seen_at, excluded.last_seen_at), \
     last_push_at = ",
    later!("d.last_push_at", "excluded.last_push_at"),
    ", reported_at = ",
    later!("d.reported_at", "excluded.reported_at"),
    ", library_version = CASE WHEN ",
    newer_report!(),
    " THEN excluded.library_version ELSE d.library_version END, \
     unsent_count = CASE WHEN ",
    newer_report!(),
    " THEN excluded.unsent_count ELSE d.unsent_count END, \
     oldest_unsent_age_ms = CASE WHEN ",
    newer_report!(),
    " THEN excluded.oldest_unsent_age_ms ELSE d.oldest_unsent_age_ms END, \
     unsent_minor = CASE WHEN ",
    newer_report!(),
    " THEN excluded.unsent_minor ELSE d.unsent_minor END, \
     last_seq = CASE WHEN ",
    newer_report!(),
    " THEN excluded.last_seq ELSE d.last_seq END, \
     seq_start = COALESCE(d.seq_start, excluded.seq_start), \
     acked_seq = CASE WHEN ",
    newer_report!(),
    " THEN excluded.acked_seq ELSE d.acked_seq END, \
     kept_seq = CASE WHEN ",
    newer_report!(),
    " THEN excluded.kept_seq ELSE d.kept_seq END, \
     kept_since_ms = CASE WHEN ",
    newer_report!(),
    " THEN excluded.kept_since_ms ELSE d.kept_since_ms END, \
     outbox_id = CASE WHEN ",
    newer_report!(),
    " AND excluded.outbox_id IS NOT NULL THEN excluded.outbox_id ELSE d.outbox_id END"
);

/// A device's (`?1`, `?2`) outbox bookkeeping: its outbox identity, where its contiguous run ends, its
/// last reported sequence number, whether its outbox was replaced before, and whether a report
/// received at `?3` (ms) is at least as new as the stored one. Read inside the writing transaction.
pub const SELECT_OUTBOX_STATE: &str = "SELECT outbox_id, \
     COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), last_seq, outbox_replaced, \
     (reported_at IS NULL OR reported_at <= ?3) FROM pos_device_status WHERE store_id = ?1 AND device_id = ?2";

/// Keeps a run (`?4`..=`?5`) of an outbox (`?3`) of a device (`?1`, `?2`) that the server never got
/// and no till keeps any more, lost for good: `?6` says why (`replaced` or `pruned`).
pub const INSERT_LOST_RUN: &str = "INSERT INTO pos_device_lost_runs (store_id, device_id, outbox_id, \
     from_seq, to_seq, cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING";

/// Forgets the checked settled run of every device of a store (`?1`, NULL: all): checked again from
/// each device's first number.
pub const RESET_CONTIGUOUS: &str = "UPDATE pos_device_status SET seq_contiguous = NULL \
     WHERE ?1 IS NULL OR store_id = ?1";

/// Where a device's (`?1`, `?2`) acknowledged-sales check starts: its outbox identity, the end of its
/// contiguous settled run, and whether its outbox was replaced before.
pub const SELECT_RECOVERY_STATE: &str = "SELECT outbox_id, \
     COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), outbox_replaced \
     FROM pos_device_status WHERE store_id = ?1 AND device_id = ?2";

/// Moves a device's (`?1`, `?2`) contiguous settled run up to `?3` (never down), creating its status
/// row (first seen `?5` ms, outbox `?4`) when it has none yet; not when its outbox is no longer `?4`.
pub const UPSERT_CONTIGUOUS: &str = "INSERT INTO pos_device_status AS d (store_id, device_id, \
     first_seen_at, last_seen_at, seq_contiguous, outbox_id) VALUES (?1, ?2, ?5, ?5, ?3, ?4) \
     ON CONFLICT (store_id, device_id) DO UPDATE SET \
     seq_contiguous = max(COALESCE(d.seq_contiguous, 0), excluded.seq_contiguous) \
     WHERE d.outbox_id IS NULL OR d.outbox_id = excluded.outbox_id";

/// A device's (`?1`, `?2`) outbox was replaced by `?3`: its sequence bookkeeping starts from scratch.
pub const REPLACE_OUTBOX: &str = "UPDATE pos_device_status SET outbox_id = ?3, outbox_replaced = 1, \
     seq_contiguous = NULL, seq_start = NULL, last_seq = NULL WHERE store_id = ?1 AND device_id = ?2";

/// Forgets the retired sequence numbers of a device's (`?1`, `?2`) replaced outbox.
pub const DELETE_RETIRED_SEQS: &str =
    "DELETE FROM pos_device_retired_seqs WHERE store_id = ?1 AND device_id = ?2";

/// Runs that replaced outboxes never delivered, of one store (`?1`) or all, oldest first per device.
pub const SELECT_LOST_RUNS: &str = "SELECT store_id, device_id, outbox_id, from_seq, to_seq, cause \
     FROM pos_device_lost_runs WHERE ?1 IS NULL OR store_id = ?1 \
     ORDER BY store_id, device_id, recorded_at, from_seq";

/// Every device with a token or activity, its status, and its sales that occurred since `?1` (ms).
pub const SELECT_TILLS: &str = "WITH devs AS (SELECT store_id, device_id FROM pos_devices UNION \
     SELECT store_id, device_id FROM pos_device_status), \
     tok AS (SELECT store_id, device_id, \
     (SELECT label FROM pos_devices p WHERE p.store_id = x.store_id AND p.device_id = x.device_id \
      ORDER BY created_at DESC LIMIT 1) AS label, max(revoked_at IS NULL) AS active \
     FROM pos_devices x GROUP BY store_id, device_id) \
     SELECT d.store_id, d.device_id, tok.label, COALESCE(tok.active, 0), s.last_seen_at, s.last_push_at, \
     s.reported_at, s.library_version, s.unsent_count, s.oldest_unsent_age_ms, s.unsent_minor, s.last_seq, \
     s.seq_start, (SELECT count(*) FROM pos_transactions t WHERE t.store_id = d.store_id \
     AND t.device_id = d.device_id AND t.occurred_at >= ?1), s.outbox_id, s.acked_seq, s.kept_seq, s.kept_since_ms \
     FROM devs d LEFT JOIN tok ON tok.store_id = d.store_id AND tok.device_id = d.device_id \
     LEFT JOIN pos_device_status s ON s.store_id = d.store_id AND s.device_id = d.device_id \
     ORDER BY d.store_id, d.device_id";

/// Devices with sequence bookkeeping, of one store (`?1`) or all (with their outbox identity and
/// whether it replaced another).
pub const SELECT_SEQ_STATES: &str = "SELECT store_id, device_id, \
     COALESCE(seq_contiguous, COALESCE(seq_start, 1) - 1), last_seq, outbox_id, outbox_replaced, \
     acked_seq, kept_seq FROM pos_device_status \
     WHERE ?1 IS NULL OR store_id = ?1 ORDER BY store_id, device_id";

/// Settled sequence numbers of a device (`?1`, `?2`) in (`?3`, `?6`], ascending, at most `?7`: stored
/// sales, CONFLICT, INVALID and DUPLICATE attempts, retired numbers; only those of its outbox `?4`
/// (sales without an identity count too until the device's outbox was first replaced, `?5`).
pub const SELECT_SETTLED_SEQS: &str = "SELECT outbox_seq FROM pos_transactions \
     WHERE store_id = ?1 AND device_id = ?2 AND outbox_seq > ?3 AND outbox_seq <= ?6 \
     AND (outbox_id = ?4 OR (NOT ?5 AND (outbox_id IS NULL OR ?4 IS NULL))) \
     UNION SELECT outbox_seq FROM pos_transaction_audit WHERE store_id = ?1 AND device_id = ?2 \
     AND outbox_seq > ?3 AND outbox_seq <= ?6 AND outcome IN ('CONFLICT', 'INVALID', 'DUPLICATE') \
     AND (outbox_id = ?4 OR (NOT ?5 AND (outbox_id IS NULL OR ?4 IS NULL))) \
     UNION SELECT seq FROM pos_device_retired_seqs WHERE store_id = ?1 AND device_id = ?2 AND seq > ?3 \
     AND seq <= ?6 ORDER BY 1 LIMIT ?7";

/// Advances a device's highest contiguous sequence number to `?3`, unless its outbox is no longer `?4`.
pub const ADVANCE_CONTIGUOUS: &str = "UPDATE pos_device_status SET seq_contiguous = ?3 \
     WHERE store_id = ?1 AND device_id = ?2 AND (seq_contiguous IS NULL OR seq_contiguous < ?3) \
     AND outbox_id IS ?4";

/// Attention items of a store (`?1`, NULL: all), settled too when `?2`, newest first, at most `?3`.
pub const SELECT_ATTENTION_ENTRIES: &str = concat!(
    "SELECT a.audit_id, ",
    rfc3339_ms!("a.at"),
    ", a.store_id, a.device_id, a.client_tx_id, a.correlation_id, a.attempt, a.outcome, a.code, \
     a.message, a.payload_hash_version, a.payload_sha256, a.stored_sha256, a.outbox_seq, \
     a.attempted_payload, t.payload_canonical, a.settled_at, a.settled_by, a.settled_note \
     FROM pos_transaction_audit a LEFT JOIN pos_transactions t \
     ON t.store_id = a.store_id AND t.client_tx_id = a.client_tx_id \
     WHERE a.outcome IN ('CONFLICT', 'INVALID') AND (?1 IS NULL OR a.store_id = ?1) \
     AND (?2 OR a.settled_at IS NULL) ORDER BY a.at DESC, a.audit_id DESC LIMIT ?3"
);

/// Marks the attention item `?2` of sale `?1` reviewed by `?3` with note `?4`.
pub const MARK_REVIEWED: &str = concat!(
    "UPDATE pos_transaction_audit SET settled_at = ",
    now_ms!(),
    ", settled_by = ?3, settled_note = ?4 WHERE client_tx_id = ?1 AND audit_id = ?2 \
     AND outcome IN ('CONFLICT', 'INVALID') AND settled_at IS NULL"
);

/// Stored sales by store (`?1`), id (`?2`) and occurrence in [`?3`, `?4`) ms; newest first, at most `?5`.
pub const FIND_SALES: &str = "SELECT server_tx_id, store_id, client_tx_id, device_id, outbox_seq, \
     occurred_at, received_at, payload_canonical FROM pos_transactions \
     WHERE (?1 IS NULL OR store_id = ?1) AND (?2 IS NULL OR client_tx_id = ?2) \
     AND (?3 IS NULL OR occurred_at >= ?3) AND (?4 IS NULL OR occurred_at < ?4) \
     ORDER BY occurred_at DESC, server_tx_id DESC LIMIT ?5";

/// Adds a console admin unless the name exists.
pub const INSERT_ADMIN: &str =
    "INSERT INTO pos_console_admins (name, secret_phc) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING";

/// Removes a console admin's sessions.
pub const DELETE_ADMIN_SESSIONS: &str = "DELETE FROM pos_console_sessions WHERE admin_name = ?1";

/// Removes a console admin.
pub const DELETE_ADMIN: &str = "DELETE FROM pos_console_admins WHERE name = ?1";

/// The PHC string of an admin's secret.
pub const SELECT_ADMIN_SECRET: &str = "SELECT secret_phc FROM pos_console_admins WHERE name = ?1";

/// Whether any admin exists.
pub const HAS_ADMIN: &str = "SELECT EXISTS (SELECT 1 FROM pos_console_admins)";

/// Deletes sessions expired before `?1` (ms).
pub const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM pos_console_sessions WHERE expires_at < ?1";

/// Stores a session valid until `?4` (ms).
pub const INSERT_SESSION: &str = "INSERT INTO pos_console_sessions (session_sha256, admin_name, csrf_token, \
     expires_at) VALUES (?1, ?2, ?3, ?4)";

/// A live session at `?2` (ms).
pub const SELECT_SESSION: &str =
    "SELECT admin_name, csrf_token FROM pos_console_sessions WHERE session_sha256 = ?1 AND expires_at > ?2";

/// Ends a session.
pub const DELETE_SESSION: &str = "DELETE FROM pos_console_sessions WHERE session_sha256 = ?1";

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
    notify_revoked: None,
    insert_retired_seqs: Some(INSERT_RETIRED_SEQS),
};
