//! [`Outbox::resolve`]: what a person decides for a conflict or invalid sale, written in one
//! transaction; the original row is always kept.

use rusqlite::{named_params, OptionalExtension};

use super::{sql, Outbox, Resolution, SaleState};
use crate::error::SaleError;
use crate::protocol::{canonical_json_string, payload_sha256, validate_sale, Limits};

impl Outbox {
    /// Resolves a conflict or invalid sale as a person decided, in one transaction: `Rekey` and
    /// `Replace` add a new pending sale under a new id (returned) linked with the old one; `Void` only
    /// marks it. The original row, its payload and its server answer are kept; it leaves the attention
    /// list.
    ///
    /// # Errors
    /// [`SaleError::NotResolvable`] when the sale does not exist, is not a conflict or invalid, or was
    /// resolved already; [`SaleError::Invalid`] for an invalid replacement; [`SaleError::Storage`].
    pub fn resolve(
        &self,
        client_tx_id: &str,
        resolution: &Resolution,
        note: Option<&str>,
    ) -> Result<Option<String>, SaleError> {
        let replacement = match resolution {
            Resolution::Replace(sale) => {
                validate_sale(sale, &Limits::default())?;
                let canonical = canonical_json_string(sale)?;
                let sha = payload_sha256(canonical.as_bytes());
                Some((canonical, sha, sale.header.currency.clone(), sale.header.total_minor))
            }
            _ => None,
        };
        let now = self.clock.now_ms();
        // `Err(reason)` inside: the sale is not resolvable, and nothing was written.
        let written: Result<Option<String>, String> = self.with_tx(|tx| {
            let row = tx
                .query_row(sql::SELECT_FOR_RESOLVE, named_params! {":id": client_tx_id}, |r| {
                    Ok((
                        r.get::<_, SaleState>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .optional()?;
            let Some((state, resolved, payload, sha, version, currency, total)) = row else {
                return Ok(Err("no such sale".to_owned()));
            };
            if !matches!(state, SaleState::Conflict | SaleState::Invalid) {
                let state = state.as_str();
                return Ok(Err(format!("it is {state}, only conflict and invalid sales are resolved")));
            }
            if let Some(r) = resolved {
                return Ok(Err(format!("it was resolved already ({r})")));
            }
            let new_id = match resolution {
                Resolution::Void => None,
                Resolution::Rekey | Resolution::Replace(_) => {
                    let id = uuid::Uuid::now_v7().to_string();
                    let (payload, sha, currency, total) =
                        replacement.unwrap_or((payload, sha, currency, total));
                    tx.execute(
                        sql::INSERT_LINKED,
                        named_params! {
                            ":id": id, ":payload": payload, ":sha": sha, ":version": version,
                            ":currency": currency, ":total": total, ":now": now, ":linked": client_tx_id,
                        },
                    )?;
                    Some(id)
                }
            };
            tx.execute(
                sql::MARK_RESOLVED,
                named_params! {
                    ":resolution": resolution.as_str(), ":now": now, ":note": note, ":linked": new_id,
                    ":id": client_tx_id,
                },
            )?;
            Ok(Ok(new_id))
        })?;
        let new_id = written
            .map_err(|reason| SaleError::NotResolvable { client_tx_id: client_tx_id.to_owned(), reason })?;
        log::info!(client_tx_id = client_tx_id, resolution = resolution.as_str(),
            new_client_tx_id = new_id.as_deref().unwrap_or(""); "sale resolved");
        Ok(new_id)
    }
}
