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

/// All migrations, oldest first.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1)])
}

/// The newest schema version this build knows.
pub const LATEST_VERSION: usize = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        assert!(migrations().validate().is_ok());
    }
}
