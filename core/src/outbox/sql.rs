//! Every SQL statement of the outbox, in one place, with `:named` parameters.

/// Adds a sale unless its `client_tx_id` exists.
pub const INSERT: &str = "INSERT INTO outbox (client_tx_id, payload, payload_sha256, payload_hash_version, \
     currency, total_minor, state, attempt, created_at_ms, next_attempt_at_ms) \
     VALUES (:id, :payload, :sha, :version, :currency, :total, 'pending', 0, :now, :now) \
     ON CONFLICT (client_tx_id) DO NOTHING";

/// The hash stored under an id.
pub const SELECT_HASH: &str = "SELECT payload_sha256 FROM outbox WHERE client_tx_id = :id";

/// Claims up to `:n` due sales in one statement: expired leases first, then pending sales due by
/// `:due` (oldest due first). Sets owner, fencing token and expiry, bumps `attempt`. `INDEXED BY` pins
/// each half to its partial index, whose order is the `ORDER BY`: a claim reads `:n` index entries and
/// never sorts the backlog (the benchmark caught a plan that sorted all pending sales).
pub const CLAIM: &str =
    "UPDATE outbox SET state = 'in_flight', lease_owner_id = :owner, lease_token = :token, \
     lease_expires_at_ms = :expires, attempt = attempt + 1, last_attempt_at_ms = :now \
     WHERE seq IN ( \
       SELECT seq FROM (SELECT seq FROM outbox INDEXED BY outbox_lease_expiry \
                        WHERE state = 'in_flight' AND lease_expires_at_ms <= :now \
                        ORDER BY lease_expires_at_ms LIMIT :n) \
       UNION ALL \
       SELECT seq FROM (SELECT seq FROM outbox INDEXED BY outbox_pending_due \
                        WHERE state = 'pending' AND next_attempt_at_ms <= :due \
                        ORDER BY next_attempt_at_ms, seq LIMIT :n) \
       LIMIT :n) \
     RETURNING seq, client_tx_id, attempt, payload, payload_sha256, payload_hash_version, server_retries";

/// Extends one lease if it is still ours (CAS on the token).
pub const HEARTBEAT: &str = "UPDATE outbox SET lease_expires_at_ms = :expires \
     WHERE seq = :seq AND lease_token = :token AND state = 'in_flight'";

/// Settles one claimed sale if its lease is still ours (CAS on the token).
pub const FINALIZE: &str = "UPDATE outbox SET state = :state, last_result = :result, last_code = :code, \
     last_error = :error, server_tx_id = coalesce(:server_tx_id, server_tx_id), sent_at_ms = :sent_at, \
     next_attempt_at_ms = coalesce(:next_attempt_at, next_attempt_at_ms), \
     server_retries = server_retries + :server_retry, \
     lease_owner_id = NULL, lease_token = NULL, lease_expires_at_ms = NULL \
     WHERE seq = :seq AND lease_token = :token AND state = 'in_flight'";

/// Sales by state, each counted through its state's partial index: pending, in flight, sent, conflict,
/// invalid.
pub const COUNT_BY_STATE: &str = "SELECT \
     (SELECT count(*) FROM outbox WHERE state = 'pending'), \
     (SELECT count(*) FROM outbox WHERE state = 'in_flight'), \
     (SELECT count(*) FROM outbox WHERE state = 'sent'), \
     (SELECT count(*) FROM outbox WHERE state IN ('conflict', 'invalid') AND state = 'conflict' \
        AND resolution IS NULL), \
     (SELECT count(*) FROM outbox WHERE state IN ('conflict', 'invalid') AND state = 'invalid' \
        AND resolution IS NULL)";

/// Unsent sales per currency: count and amount.
pub const UNSENT_BY_CURRENCY: &str = "SELECT currency, count(*), sum(total_minor) FROM outbox \
     WHERE state IN ('pending', 'in_flight') GROUP BY currency ORDER BY currency";

/// Creation time of the oldest unsent sale (sales are stored in enqueue order, so the first unsent row
/// in rowid order is the oldest; only not-yet-pruned sent rows are skipped).
pub const OLDEST_UNSENT: &str =
    "SELECT created_at_ms FROM outbox WHERE state IN ('pending', 'in_flight') ORDER BY seq LIMIT 1";

/// Sales that need a person: unresolved conflicts and invalid ones, oldest first.
pub const ATTENTION: &str =
    "SELECT client_tx_id, state, last_code, last_error, payload_sha256, created_at_ms, \
     attempt FROM outbox WHERE state IN ('conflict', 'invalid') AND resolution IS NULL ORDER BY seq";

/// What a resolution needs to know of a sale.
pub const SELECT_FOR_RESOLVE: &str =
    "SELECT state, resolution, payload, payload_sha256, payload_hash_version, \
     currency, total_minor FROM outbox WHERE client_tx_id = :id";

/// A new sale carrying on a resolved one (linked to it).
pub const INSERT_LINKED: &str =
    "INSERT INTO outbox (client_tx_id, payload, payload_sha256, payload_hash_version, \
     currency, total_minor, state, attempt, created_at_ms, next_attempt_at_ms, linked_client_tx_id) \
     VALUES (:id, :payload, :sha, :version, :currency, :total, 'pending', 0, :now, :now, :linked)";

/// Records a person's decision on a conflict or invalid sale; its payload is kept.
pub const MARK_RESOLVED: &str = "UPDATE outbox SET resolution = :resolution, resolved_at_ms = :now, \
     resolution_note = :note, linked_client_tx_id = :linked \
     WHERE client_tx_id = :id AND state IN ('conflict', 'invalid') AND resolution IS NULL";

/// The columns of an outbox entry, in the order `entry_of_row` reads them.
macro_rules! entry_columns {
    () => {
        "SELECT client_tx_id, state, attempt, payload, payload_sha256, created_at_ms, \
         next_attempt_at_ms, last_result, last_code, last_error, server_tx_id, lease_owner_id, lease_token, \
         lease_expires_at_ms, resolution, resolution_note, linked_client_tx_id, seq, currency, total_minor, \
         sent_at_ms, server_retries FROM outbox "
    };
}

/// One sale's full row.
pub const SELECT_ONE: &str = concat!(entry_columns!(), "WHERE client_tx_id = :id");

/// A page of sales, newest first, older than `:before` (a `seq`), at most `:n`.
pub const RECENT: &str = concat!(entry_columns!(), "WHERE seq < :before ORDER BY seq DESC LIMIT :n");

/// Removes sent sales older than `:cutoff`; never touches unsent ones, nor the newest row: `seq` is the
/// rowid, and an emptied table would hand out sequence number 1 again (the server counts on them
/// never repeating to find lost sales).
pub const PRUNE_SENT: &str = "DELETE FROM outbox WHERE state = 'sent' AND sent_at_ms <= :cutoff \
     AND seq < (SELECT max(seq) FROM outbox)";

/// The outbox's random identity (schema v4).
pub const OUTBOX_ID: &str = "SELECT value FROM outbox_meta WHERE key = 'outbox_id'";

/// The highest sequence number assigned, the first one the server should expect (the oldest
/// unsent sale's, else the next to be assigned; every sale below it was settled by the server), and
/// the oldest sale kept (its number and creation time; older sent sales were pruned).
pub const SEQ_BOUNDS: &str = "SELECT (SELECT max(seq) FROM outbox), \
     COALESCE((SELECT min(seq) FROM outbox WHERE state IN ('pending', 'in_flight')), \
              (SELECT COALESCE(max(seq), 0) + 1 FROM outbox)), \
     (SELECT seq FROM outbox ORDER BY seq LIMIT 1), \
     (SELECT created_at_ms FROM outbox ORDER BY seq LIMIT 1)";

/// Puts the sales the server acknowledged and no longer holds (`:from`..=`:to`) back in the queue,
/// due at once: sent ones, and conflict or invalid ones no person has resolved (the server lost their
/// attention record too). Their `client_tx_id` and hash are unchanged, so they land once.
pub const REQUEUE_ACKNOWLEDGED: &str = "UPDATE outbox SET state = 'pending', \
     next_attempt_at_ms = min(created_at_ms, :now), server_retries = 0 \
     WHERE seq BETWEEN :from AND :to AND (state = 'sent' OR (state IN ('conflict', 'invalid') \
     AND resolution IS NULL))";

/// Sequence numbers in `:from`..=`:to` that a person resolved (voided, re-keyed, replaced): the
/// server lacks their record and hears of them again as retired, never as a sale.
pub const RESOLVED_IN: &str = "SELECT seq FROM outbox INDEXED BY outbox_attention \
     WHERE seq BETWEEN :from AND :to AND state IN ('conflict', 'invalid') AND resolution IS NOT NULL \
     ORDER BY seq LIMIT :n";

/// Sequence numbers retired by a person (voided, re-keyed, replaced) since `:since`, newest first
/// (resolved sales keep their conflict / invalid state, so the attention index finds them).
pub const RETIRED_SEQS: &str = "SELECT seq FROM outbox INDEXED BY outbox_attention \
     WHERE state IN ('conflict', 'invalid') AND resolution IS NOT NULL AND resolved_at_ms >= :since \
     ORDER BY seq DESC LIMIT :n";

/// Makes every pending sale due now (a manual "Sync now" or the network coming back skips backoff).
pub const MAKE_ALL_DUE: &str = "UPDATE outbox SET next_attempt_at_ms = :now \
     WHERE state = 'pending' AND next_attempt_at_ms > :now";

/// Every sale's id, state, hash and attempt count, in enqueue order (for verification).
pub const SUMMARIES: &str = "SELECT client_tx_id, state, payload_sha256, attempt FROM outbox ORDER BY seq";

/// When the next unsent sale is due: the earliest due time of a pending sale or lease expiry of an
/// in-flight one (NULL when nothing is unsent). Each half reads one entry of its partial index.
pub const NEXT_DUE: &str = "SELECT min(t) FROM ( \
     SELECT min(next_attempt_at_ms) AS t FROM outbox WHERE state = 'pending' \
     UNION ALL \
     SELECT min(lease_expires_at_ms) AS t FROM outbox WHERE state = 'in_flight')";

/// Takes back the leases of an owner's earlier lives (a crashed or killed process): its in-flight sales
/// become pending and due at `:now`, with no owner or token, so a returning process cannot finalize
/// them (its token no longer matches). Leases of other owners are not touched.
pub const RECLAIM_OWN_LEASES: &str = "UPDATE outbox SET state = 'pending', next_attempt_at_ms = :now, \
     lease_owner_id = NULL, lease_token = NULL, lease_expires_at_ms = NULL \
     WHERE state = 'in_flight' AND lease_owner_id = :owner";

/// Checkpoints the write-ahead log and truncates it; the first column is 1 when a reader held part
/// of it back.
pub const CHECKPOINT_TRUNCATE: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

/// Writes a consistent copy of the database to the file `:dest`.
pub const VACUUM_INTO: &str = "VACUUM INTO :dest";
