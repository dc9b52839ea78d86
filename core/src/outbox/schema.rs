//! The outbox schema and its migrations (`rusqlite_migration`, version in `PRAGMA user_version`).
//!
//! Migrations only ever add; a file whose version is newer than this build is refused with
//! `IncompatibleVersion` and left untouched. Times are integer Unix milliseconds; tables are `STRICT`.

use rusqlite_migration::{Migrations, M};

/// Version 1: the outbox table and the indexes of claim, lease expiry and status queries.
///
/// Every index is partial, by state, so that `enqueue` (a `pending` row) touches only the table, the
/// `client_tx_id` index and the due-time index: each extra index costs a page write per commit.
const V1: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq                  INTEGER PRIMARY KEY,
    client_tx_id         TEXT NOT NULL UNIQUE,
    payload              TEXT NOT NULL,
    payload_sha256       TEXT NOT NULL,
    payload_hash_version INTEGER NOT NULL,
    currency             TEXT NOT NULL,
    total_minor          INTEGER NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'sent', 'conflict', 'invalid')),
    attempt              INTEGER NOT NULL DEFAULT 0,
    created_at_ms        INTEGER NOT NULL,
    next_attempt_at_ms   INTEGER NOT NULL,
    last_attempt_at_ms   INTEGER,
    last_result          TEXT,
    last_code            TEXT,
    last_error           TEXT,
    server_tx_id         INTEGER,
    sent_at_ms           INTEGER,
    lease_owner_id       TEXT,
    lease_token          TEXT,
    lease_expires_at_ms  INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_pending_due ON outbox (next_attempt_at_ms, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_lease_expiry ON outbox (lease_expires_at_ms) WHERE state = 'in_flight';
CREATE INDEX IF NOT EXISTS outbox_attention ON outbox (seq) WHERE state IN ('conflict', 'invalid');
CREATE INDEX IF NOT EXISTS outbox_sent_at ON outbox (sent_at_ms) WHERE state = 'sent';
";

/// Version 2: resolving sales that need a person without losing them. A conflict or invalid sale keeps
/// its state and payload; `resolution` says what a person decided (`rekeyed`, `replaced`, `voided`), and
/// `linked_client_tx_id` links it with the new sale that carries it on (both ways).
const V2: &str = "
ALTER TABLE outbox ADD COLUMN resolution TEXT CHECK (resolution IN ('rekeyed', 'replaced', 'voided'));
ALTER TABLE outbox ADD COLUMN resolved_at_ms INTEGER;
ALTER TABLE outbox ADD COLUMN resolution_note TEXT;
ALTER TABLE outbox ADD COLUMN linked_client_tx_id TEXT;
";

/// Version 3: `server_retries`, the `RETRY` answers the server gave a sale. Per-sale backoff grows with
/// it, not with `attempt` (every send, the protocol's field): a failed request is the link's fault, not
/// the sale's, and must not make the sale wait longer once the link is fine.
const V3: &str = "
ALTER TABLE outbox ADD COLUMN server_retries INTEGER NOT NULL DEFAULT 0;
";

/// Version 4: `outbox_meta`, facts about the outbox file itself. `outbox_id` is a random identity
/// made once with the outbox (or when an older file is upgraded) and sent in the backlog report, so
/// the server can tell a till whose outbox was wiped or replaced (a new identity, its sequence numbers
/// starting again at 1) from the same outbox going on.
const V4: &str = "
CREATE TABLE outbox_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
INSERT INTO outbox_meta (key, value) VALUES ('outbox_id', lower(hex(randomblob(16))));
";

/// All migrations, oldest first.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1), M::up(V2), M::up(V3), M::up(V4)])
}

/// The newest schema version this build knows.
pub const LATEST_VERSION: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn a_version_1_file_upgrades_to_the_latest_and_keeps_its_sales() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        migrations().to_version(&mut conn, 1).expect("v1");
        conn.execute(
            "INSERT INTO outbox (client_tx_id, payload, payload_sha256, payload_hash_version, currency, \
             total_minor, state, created_at_ms, next_attempt_at_ms) VALUES ('a', '{}', 'h', 1, 'EUR', 5, 'conflict', 1, 1)",
            [],
        )
        .expect("insert v1 row");
        migrations().to_latest(&mut conn).expect("upgrade");
        let (state, resolution): (String, Option<String>) = conn
            .query_row("SELECT state, resolution FROM outbox WHERE client_tx_id = 'a'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row kept");
        assert_eq!((state.as_str(), resolution), ("conflict", None));
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version as usize, LATEST_VERSION);
    }

    fn outbox_id(conn: &rusqlite::Connection) -> String {
        conn.query_row("SELECT value FROM outbox_meta WHERE key = 'outbox_id'", [], |r| r.get(0))
            .expect("outbox_id")
    }

    #[test]
    fn a_version_3_file_gets_an_identity_and_keeps_its_sales_and_numbers() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        migrations().to_version(&mut conn, 3).expect("v3");
        conn.execute(
            "INSERT INTO outbox (seq, client_tx_id, payload, payload_sha256, payload_hash_version, currency, \
             total_minor, state, created_at_ms, next_attempt_at_ms) VALUES (41, 'a', '{}', 'h', 1, 'EUR', 5, 'pending', 1, 1)",
            [],
        )
        .expect("insert v3 row");
        migrations().to_latest(&mut conn).expect("upgrade");
        let (seq, state): (i64, String) = conn
            .query_row("SELECT seq, state FROM outbox WHERE client_tx_id = 'a'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row kept");
        assert_eq!((seq, state.as_str()), (41, "pending"));
        let id = outbox_id(&conn);
        assert_eq!(id.len(), 32, "128 random bits in hex: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    }

    #[test]
    fn two_outboxes_have_two_identities() {
        let mut a = rusqlite::Connection::open_in_memory().expect("open");
        let mut b = rusqlite::Connection::open_in_memory().expect("open");
        migrations().to_latest(&mut a).expect("a");
        migrations().to_latest(&mut b).expect("b");
        assert_ne!(outbox_id(&a), outbox_id(&b));
    }
}
