//! What the server keeps about each till beside its sales, and what the shop console reads: the latest
//! activity and backlog report per device, the outbox sequence numbers received or retired (and the
//! gaps between them), console admins and sessions, settled attention items and sale search.
//!
//! Every time is Unix milliseconds (UTC) here; the stores convert.

/// The backlog a till reports with a push (`report` in the request body; every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TillReport {
    /// possync library version of the till.
    pub library_version: Option<String>,
    /// Sales in the till's outbox not yet settled by the server.
    pub unsent_count: Option<i64>,
    /// Age of the oldest of them when the report was sent, in milliseconds.
    pub oldest_unsent_age_ms: Option<i64>,
    /// Unsent amounts per currency, as a JSON object `{"EUR": 12345}` of minor units.
    pub unsent_minor: Option<String>,
    /// Highest outbox sequence number the till has assigned.
    pub last_seq: Option<i64>,
    /// First outbox sequence number the till numbered (sales before it predate numbering).
    pub seq_start: Option<i64>,
    /// Random identity of the till's outbox (`None`: an older till). A new one means the outbox was
    /// wiped or replaced: what the old one never delivered is kept as lost runs
    /// ([`SeqGap::previous_outbox`]) and the new one's numbers are tracked from scratch.
    pub outbox_id: Option<String>,
}

/// News about a device (of one or several requests), recorded in one statement.
#[derive(Debug, Clone, Copy)]
pub struct DeviceActivity<'a> {
    /// Its last request.
    pub seen_ms: i64,
    /// Its last request that carried sales.
    pub pushed_ms: Option<i64>,
    /// Its last backlog report.
    pub report: Option<&'a TillReport>,
    /// When that report arrived.
    pub reported_ms: Option<i64>,
    /// Outbox sequence numbers the till voided or re-keyed: they will never arrive.
    pub retired_seqs: &'a [i64],
}

/// One device as the Tills page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TillStatus {
    /// Store of the device.
    pub store_id: String,
    /// The device.
    pub device_id: String,
    /// Label of its newest token.
    pub label: Option<String>,
    /// Whether it has a live (not revoked) token.
    pub token_active: bool,
    /// Last request of the device.
    pub last_seen_ms: Option<i64>,
    /// Last request that carried sales.
    pub last_push_ms: Option<i64>,
    /// When the last backlog report arrived.
    pub reported_at_ms: Option<i64>,
    /// The last report (fields the till did not send stay `None`).
    pub report: TillReport,
    /// Sales of the device that occurred since `day_start_ms` (see [`super::Store::tills`]).
    pub sales_today: i64,
}

/// A run of outbox sequence numbers a till recorded that the server never received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqGap {
    /// Store of the device.
    pub store_id: String,
    /// The device.
    pub device_id: String,
    /// First missing sequence number.
    pub from: i64,
    /// Last missing sequence number (inclusive).
    pub to: i64,
    /// The run lies above every sequence received, up to the `last_seq` of the till's last report:
    /// still in its outbox then (a backlog), lost if the till never pushes again.
    pub after_last_received: bool,
    /// The run was recorded in an earlier outbox of the till, named by its identity, that was wiped
    /// or replaced before delivering it: lost for good, kept as a lasting record (never filled by the
    /// new outbox's sales, whose numbers start again). `None` for gaps of the current outbox.
    pub previous_outbox: Option<String>,
}

/// Most gaps listed per device; more are summed up in the last one.
pub const MAX_GAPS_PER_DEVICE: usize = 100;

/// The gaps in `seqs` (ascending, deduplicated, all above `contiguous`), then the run up to
/// `last_seq`; and the new highest contiguous sequence number.
pub fn gaps_of(seqs: &[i64], contiguous: i64, last_seq: Option<i64>) -> (Vec<(i64, i64, bool)>, i64) {
    let mut gaps = Vec::new();
    let mut expected = contiguous + 1;
    let mut new_contiguous = None;
    for &seq in seqs {
        if seq < expected {
            continue;
        }
        if seq > expected {
            if new_contiguous.is_none() {
                new_contiguous = Some(expected - 1);
            }
            if gaps.len() < MAX_GAPS_PER_DEVICE {
                gaps.push((expected, seq - 1, false));
            }
        }
        expected = seq + 1;
    }
    let highest = expected - 1;
    if let Some(last) = last_seq {
        if last > highest && gaps.len() < MAX_GAPS_PER_DEVICE {
            gaps.push((highest + 1, last, true));
        }
    }
    (gaps, new_contiguous.unwrap_or(highest))
}

/// [`gaps_of`] for one device, as the [`SeqGap`]s a store returns; and the new highest contiguous
/// sequence number.
pub fn device_gaps(
    store_id: &str,
    device_id: &str,
    seqs: &[i64],
    contiguous: i64,
    last_seq: Option<i64>,
) -> (Vec<SeqGap>, i64) {
    let (found, new_contiguous) = gaps_of(seqs, contiguous, last_seq);
    let gaps = found
        .into_iter()
        .map(|(from, to, after)| SeqGap {
            store_id: store_id.to_owned(),
            device_id: device_id.to_owned(),
            from,
            to,
            after_last_received: after,
            previous_outbox: None,
        })
        .collect();
    (gaps, new_contiguous)
}

/// An attention item (a CONFLICT or INVALID attempt) with what the console shows beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttentionEntry {
    /// The audit row.
    pub record: super::AuditRecord,
    /// Outbox sequence number of the attempt, if the till sent one.
    pub outbox_seq: Option<i64>,
    /// The attempted payload (canonical JSON for a CONFLICT; as received for an INVALID, cut at
    /// 64 KiB), if it was kept.
    pub attempted_payload: Option<String>,
    /// Canonical JSON of the sale stored under the same id, if any.
    pub stored_payload: Option<String>,
    /// When a manager settled it.
    pub settled_at_ms: Option<i64>,
    /// Who settled it.
    pub settled_by: Option<String>,
    /// Their note.
    pub settled_note: Option<String>,
}

/// What the Sales page searches by; every field narrows the search.
#[derive(Debug, Clone, Default)]
pub struct SaleQuery {
    /// Store of the sale.
    pub store_id: Option<String>,
    /// Exact `client_tx_id`.
    pub client_tx_id: Option<String>,
    /// Sales that occurred in `[from_ms, to_ms)`.
    pub occurred_ms: Option<(i64, i64)>,
    /// Most rows returned.
    pub limit: u32,
}

/// A stored sale as the Sales page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleRecord {
    /// Server id.
    pub server_tx_id: i64,
    /// Store.
    pub store_id: String,
    /// Idempotency key.
    pub client_tx_id: String,
    /// Device that stored it.
    pub device_id: String,
    /// Its outbox sequence number, if sent.
    pub outbox_seq: Option<i64>,
    /// When it occurred.
    pub occurred_ms: i64,
    /// When the server stored it.
    pub received_ms: i64,
    /// Canonical JSON of the payload (items and payments are read from it).
    pub payload_canonical: String,
}

/// A console session found by its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The admin logged in.
    pub admin_name: String,
    /// The session's CSRF token, carried by every form.
    pub csrf_token: String,
}

#[cfg(test)]
mod tests {
    use super::gaps_of;

    #[test]
    fn gaps_between_and_after_received_sequences() {
        assert_eq!(gaps_of(&[1, 2, 6, 7], 0, None), (vec![(3, 5, false)], 2));
        assert_eq!(gaps_of(&[1, 2, 3], 0, Some(3)), (vec![], 3));
        assert_eq!(gaps_of(&[1, 2, 3], 0, Some(5)), (vec![(4, 5, true)], 3));
        assert_eq!(gaps_of(&[3, 4], 0, None), (vec![(1, 2, false)], 0));
        assert_eq!(gaps_of(&[], 10, Some(12)), (vec![(11, 12, true)], 10));
    }
}
