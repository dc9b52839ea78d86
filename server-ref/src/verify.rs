//! Compares a till's outbox file with the server, sale by sale (by `client_tx_id` and hash): the tool a
//! shop runs after an incident to know that nothing was lost or doubled.
//!
//! | finding | meaning |
//! |---|---|
//! | `missing` | the till marked the sale sent, the server does not have it: **a lost sale** |
//! | `mismatched` | the server holds another payload under the id, and the till does not know it as a conflict |
//! | `unsent_on_server` | the till has not seen the answer yet; its next drain gets `DUPLICATE` |
//! | `unsent_not_on_server` | not sent yet; its next drain sends it |
//! | `conflicts` | conflicts the till already shows as needing a person |
//! | `extra` | the server has a sale of this device that the outbox does not (e.g. pruned after retention) |
//!
//! A report is clean when nothing is missing or mismatched.

use std::collections::HashSet;

use possync_core::outbox::{Outbox, SaleState};
use serde::Serialize;

use crate::store::{AdminStore, Device, StoreError};

/// The id, the till's hash and the server's hash of a sale stored with another payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The sale's id.
    pub client_tx_id: String,
    /// Hash in the outbox.
    pub outbox_sha256: String,
    /// Hash on the server.
    pub server_sha256: String,
}

/// What [`verify`] found; see the module docs for each list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Sales in the outbox.
    pub checked: usize,
    /// Sent in the outbox and on the server with the same hash.
    pub sent_ok: usize,
    /// Sent in the outbox, absent on the server.
    pub missing: Vec<String>,
    /// On the server with another hash, not known to the till as a conflict.
    pub mismatched: Vec<Mismatch>,
    /// Unsent in the outbox, already on the server with the same hash.
    pub unsent_on_server: Vec<String>,
    /// Unsent in the outbox and not on the server.
    pub unsent_not_on_server: usize,
    /// Conflicts the till shows.
    pub conflicts: usize,
    /// Invalid sales the till shows.
    pub invalid: usize,
    /// On the server for the device, not in the outbox (only with a device given).
    pub extra: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is missing or mismatched.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

/// Why verification could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The outbox file could not be read.
    #[error("cannot read the outbox: {0}")]
    Outbox(#[from] possync_core::StorageError),
    /// The server's database could not be read.
    #[error("cannot read the server's database: {0}")]
    Store(#[from] StoreError),
}

/// Compares `outbox` with the server's sales of `store_id` (or of the device's store; of any store when
/// neither is given, which is ambiguous only when two stores share sale ids); with `device`, also lists
/// the device's sales on the server that the outbox lacks.
///
/// # Errors
/// [`VerifyError`] when either side cannot be read.
pub fn verify(
    store: &dyn AdminStore,
    outbox: &Outbox,
    store_id: Option<&str>,
    device: Option<&Device>,
) -> Result<VerifyReport, VerifyError> {
    let store_id = store_id.or(device.map(|d| d.store_id.as_str()));
    let entries = outbox.summaries()?;
    let ids: Vec<String> = entries.iter().map(|e| e.client_tx_id.clone()).collect();
    let server = store.sale_hashes(store_id, &ids)?;
    let mut report = VerifyReport { checked: entries.len(), ..VerifyReport::default() };
    for e in &entries {
        let on_server = server.get(&e.client_tx_id);
        match (e.state, on_server) {
            (SaleState::Conflict, _) => report.conflicts += 1,
            (SaleState::Invalid, _) => report.invalid += 1,
            (_, Some(hash)) if *hash != e.payload_sha256 => report.mismatched.push(Mismatch {
                client_tx_id: e.client_tx_id.clone(),
                outbox_sha256: e.payload_sha256.clone(),
                server_sha256: hash.clone(),
            }),
            (SaleState::Sent, Some(_)) => report.sent_ok += 1,
            (SaleState::Sent, None) => report.missing.push(e.client_tx_id.clone()),
            (SaleState::Pending | SaleState::InFlight, Some(_)) => {
                report.unsent_on_server.push(e.client_tx_id.clone())
            }
            (SaleState::Pending | SaleState::InFlight, None) => report.unsent_not_on_server += 1,
        }
    }
    if let Some(device) = device {
        let known: HashSet<&str> = ids.iter().map(String::as_str).collect();
        report.extra =
            store.device_sales(device)?.into_iter().filter(|id| !known.contains(id.as_str())).collect();
        report.extra.sort();
    }
    Ok(report)
}
