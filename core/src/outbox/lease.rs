//! Sending under leases: [`Outbox::claim`] takes due sales in one statement inside
//! `BEGIN IMMEDIATE`, [`Outbox::heartbeat`] extends leases and [`Outbox::finalize`] writes results,
//! both by compare-and-swap on `(seq, lease_token)`.

use rand::Rng;
use rusqlite::named_params;

use super::{query_rows, sql, Claimed, Finalized, Lease, LeaseState, Outbox, Outcome, SaleState};
use crate::error::StorageError;

impl Outbox {
    /// Claims up to `max` sales that are due now (see the module docs) for `owner`, with a lease of
    /// `lease_ms`. Returns them in outbox order.
    ///
    /// # Errors
    /// A storage error; nothing is claimed then.
    pub fn claim(&self, owner: &str, max: usize, lease_ms: u64) -> Result<Vec<Claimed>, StorageError> {
        self.claim_due_by(owner, max, lease_ms, self.clock.now_ms())
    }

    /// Like [`Outbox::claim`], but takes only pending sales due at or before `due_by_ms` (a drain run
    /// passes its start time, so sales it retried are not taken again within the same run).
    ///
    /// # Errors
    /// A storage error; nothing is claimed then.
    pub fn claim_due_by(
        &self,
        owner: &str,
        max: usize,
        lease_ms: u64,
        due_by_ms: i64,
    ) -> Result<Vec<Claimed>, StorageError> {
        let token = new_token();
        let now = self.clock.now_ms();
        let expires = now.saturating_add(lease_ms as i64);
        let mut claimed = self.with_tx(|tx| {
            query_rows(
                tx,
                sql::CLAIM,
                named_params! {
                    ":owner": owner, ":token": token, ":expires": expires, ":now": now,
                    ":due": due_by_ms, ":n": max as i64,
                },
                |r| {
                    Ok(Claimed {
                        lease: Lease { seq: r.get(0)?, client_tx_id: r.get(1)?, token: token.clone() },
                        attempt: r.get(2)?,
                        payload: r.get(3)?,
                        payload_sha256: r.get(4)?,
                        payload_hash_version: r.get(5)?,
                        server_retries: r.get(6)?,
                    })
                },
            )
        })?;
        claimed.sort_by_key(|c| c.lease.seq);
        Ok(claimed)
    }

    /// Extends each lease to now + `lease_ms` if it is still ours; one transaction for all.
    ///
    /// # Errors
    /// A storage error; the leases keep their old expiry then.
    pub fn heartbeat(&self, leases: &[Lease], lease_ms: u64) -> Result<Vec<LeaseState>, StorageError> {
        let expires = self.clock.now_ms().saturating_add(lease_ms as i64);
        self.with_tx(|tx| {
            let mut stmt = tx.prepare_cached(sql::HEARTBEAT)?;
            leases
                .iter()
                .map(|lease| {
                    let n = stmt.execute(
                        named_params! {":expires": expires, ":seq": lease.seq, ":token": lease.token},
                    )?;
                    Ok(if n == 1 { LeaseState::Held } else { LeaseState::Lost })
                })
                .collect()
        })
    }

    /// Writes one outcome if the lease is still ours.
    ///
    /// # Errors
    /// A storage error; the sale stays in flight and is reclaimed after its lease expires.
    pub fn finalize(&self, lease: &Lease, outcome: &Outcome) -> Result<Finalized, StorageError> {
        Ok(self.finalize_all(&[(lease.clone(), outcome.clone())])?[0])
    }

    /// Writes many outcomes in one transaction, each by CAS on its lease.
    ///
    /// # Errors
    /// A storage error; nothing is written then.
    pub fn finalize_all(&self, outcomes: &[(Lease, Outcome)]) -> Result<Vec<Finalized>, StorageError> {
        let now = self.clock.now_ms();
        self.with_tx(|tx| {
            let mut stmt = tx.prepare_cached(sql::FINALIZE)?;
            let mut results = Vec::with_capacity(outcomes.len());
            for (lease, outcome) in outcomes {
                let (state, result, code, error, server_tx_id, sent_at, next) = match outcome {
                    Outcome::Sent { duplicate, server_tx_id } => {
                        let result = if *duplicate { "DUPLICATE" } else { "OK" };
                        (SaleState::Sent, result, None, None, *server_tx_id, Some(now), None)
                    }
                    Outcome::Conflict { code, message } => {
                        (SaleState::Conflict, "CONFLICT", Some(code), Some(message), None, None, None)
                    }
                    Outcome::Invalid { code, message } => {
                        (SaleState::Invalid, "INVALID", Some(code), Some(message), None, None, None)
                    }
                    Outcome::Retry { from_server, code, message, next_attempt_at_ms } => {
                        let result = if *from_server { "RETRY" } else { "TRANSPORT" };
                        (
                            SaleState::Pending,
                            result,
                            Some(code),
                            Some(message),
                            None,
                            None,
                            Some(*next_attempt_at_ms),
                        )
                    }
                };
                let n = stmt.execute(named_params! {
                    ":state": state.as_str(), ":result": result, ":code": code, ":error": error,
                    ":server_tx_id": server_tx_id, ":sent_at": sent_at, ":next_attempt_at": next,
                    ":server_retry": i64::from(matches!(outcome, Outcome::Retry { from_server: true, .. })),
                    ":seq": lease.seq, ":token": lease.token,
                })?;
                if n == 1 {
                    results.push(Finalized::Written);
                } else {
                    // The run logs one WARN for its batch's lost leases (drain.rs); this is per sale.
                    log::debug!(client_tx_id = lease.client_tx_id.as_str(), lease_token = lease.token.as_str(),
                        result = result; "stale finalize dropped: the lease was taken over");
                    results.push(Finalized::LeaseLost);
                }
            }
            Ok(results)
        })
    }
}

/// A fresh random fencing token: 128 bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
