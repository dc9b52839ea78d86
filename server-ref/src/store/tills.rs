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
    /// Every sale numbered up to it was settled by the server as far as the till knows.
    pub acked_seq: Option<i64>,
    /// Lowest sequence number the till still keeps (older ones were pruned).
    pub kept_seq: Option<i64>,
    /// When the oldest sale the till keeps was recorded (Unix ms, from its reported age): how far
    /// back a restore of the server's database can be recovered from this till.
    pub kept_since_ms: Option<i64>,
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
    /// Sales of the device that occurred since `day_start_ms` (see [`super::AdminStore::tills`]).
    pub sales_today: i64,
}

/// What a run of missing sequence numbers means for the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Recorded on the till and never received, between received ones (or below them).
    NeverReceived,
    /// Past the last received sale, still in the till's outbox at its last report (a backlog).
    Unsent,
    /// Acknowledged to the till and not on the server (its database restored or failed over): the till
    /// still keeps them and sends them again by itself.
    Resending,
    /// No till keeps them any more and the server never got them (or lost them): an outbox wiped or
    /// replaced first ([`SeqGap::previous_outbox`]), or acknowledged sales the till had pruned past
    /// its retention. Lost for good, kept as a lasting record.
    Lost,
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
    /// What the run means ([`GapKind`]).
    pub kind: GapKind,
}

impl SeqGap {
    /// How many sequence numbers the run holds.
    pub fn len(&self) -> i64 {
        self.to - self.from + 1
    }

    /// Whether the run is empty (never: runs hold at least one number).
    pub fn is_empty(&self) -> bool {
        self.to < self.from
    }

    /// Whether the run counts as missing (everything but a backlog still on its way).
    pub fn is_missing(&self) -> bool {
        self.kind != GapKind::Unsent
    }
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

/// What a device's till last said of its acknowledged sales, to tell a run the server lost from one
/// the till never sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acknowledged {
    /// Every sale numbered up to it was settled by the server, as far as the till knows.
    pub acked_seq: Option<i64>,
    /// Lowest sequence number the till still keeps.
    pub kept_seq: Option<i64>,
}

/// [`gaps_of`] for one device, as the [`SeqGap`]s a store returns; and the new highest contiguous
/// sequence number. A run at or below the till's `acked_seq` was acknowledged and is not on the server:
/// [`GapKind::Resending`] where the till still keeps it, [`GapKind::Lost`] below its `kept_seq`.
pub fn device_gaps(
    store_id: &str,
    device_id: &str,
    seqs: &[i64],
    contiguous: i64,
    last_seq: Option<i64>,
    acked: Acknowledged,
) -> (Vec<SeqGap>, i64) {
    let (found, new_contiguous) = gaps_of(seqs, contiguous, last_seq.max(acked.acked_seq));
    let mut gaps = Vec::new();
    let gap = |from: i64, to: i64, after: bool, kind: GapKind| SeqGap {
        store_id: store_id.to_owned(),
        device_id: device_id.to_owned(),
        from,
        to,
        after_last_received: after,
        previous_outbox: None,
        kind,
    };
    for (from, to, after) in found {
        let acked_to = acked.acked_seq.map_or(from - 1, |a| a.min(to));
        let kept = acked.kept_seq.unwrap_or(i64::MIN);
        // The acknowledged part: lost below what the till keeps, being re-sent from there on.
        if from <= acked_to {
            if from < kept {
                gaps.push(gap(from, acked_to.min(kept - 1), false, GapKind::Lost));
            }
            if acked_to >= kept {
                gaps.push(gap(from.max(kept), acked_to, false, GapKind::Resending));
            }
        }
        if acked_to < to {
            let kind = if after { GapKind::Unsent } else { GapKind::NeverReceived };
            gaps.push(gap(from.max(acked_to + 1), to, after, kind));
        }
    }
    (gaps, new_contiguous)
}

/// Most settled sequence numbers one acknowledged-sales check reads; a check that reads this many
/// goes on from there with the till's next push.
pub const MAX_CHECK_SEQS: i64 = 20_000;

/// Most lost-for-good runs one check records.
pub const MAX_LOST_RUNS_PER_CHECK: usize = 100;

/// A till's word on its acknowledged sales, from a push's report, for
/// [`super::PushStore::check_acknowledged`]; owned, so that a database job can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckCheck {
    /// The till's outbox.
    pub outbox_id: String,
    /// Every sale numbered up to it was settled by the server, as far as the till knows.
    pub acked_seq: i64,
    /// Lowest sequence number the till still keeps (1 when it reported none).
    pub kept_seq: i64,
}

/// What one acknowledged-sales check found for a device ([`plan_recovery`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// Runs the till acknowledged and still keeps that the server lacks: asked for again.
    pub resend: Vec<(i64, i64)>,
    /// Runs the till acknowledged and no longer keeps that the server lacks: lost for good.
    pub lost: Vec<(i64, i64)>,
    /// The new end of the device's contiguous settled run (lost runs count as settled: nothing
    /// will ever fill them).
    pub contiguous: i64,
}

/// Compares what the server holds of a device's outbox with what its till acknowledged. `seqs` are
/// the settled numbers in (`contiguous`, `scanned_to`] (ascending, deduplicated); `acked` and `kept`
/// the till's report. Only numbers up to `scanned_to` (at most `acked`) are judged. Costs
/// O(`seqs`); the answer holds at most [`possync_core::protocol::MAX_RESEND_RANGES`] resend runs and
/// [`MAX_LOST_RUNS_PER_CHECK`] lost runs, and the contiguous run stops before anything left out.
pub fn plan_recovery(seqs: &[i64], contiguous: i64, scanned_to: i64, kept: i64) -> RecoveryPlan {
    let seqs = &seqs[..seqs.partition_point(|s| *s <= scanned_to)];
    let (gaps, _) = gaps_of(seqs, contiguous, Some(scanned_to));
    // gaps_of lists at most MAX_GAPS_PER_DEVICE runs: past them, nothing is known to be held.
    let listed_all = gaps.len() < MAX_GAPS_PER_DEVICE;
    let mut plan = RecoveryPlan { contiguous, ..RecoveryPlan::default() };
    // Set at the first run that stays missing: the contiguous run ends before it.
    let mut blocked = false;
    for (from, to, _) in gaps {
        if !blocked {
            plan.contiguous = from - 1; // everything between the runs is held
        }
        if from < kept {
            if plan.lost.len() < MAX_LOST_RUNS_PER_CHECK {
                plan.lost.push((from, to.min(kept - 1)));
                if !blocked {
                    plan.contiguous = to.min(kept - 1);
                }
            } else {
                blocked = true;
            }
        }
        if to >= kept {
            if plan.resend.len() < possync_core::protocol::MAX_RESEND_RANGES {
                plan.resend.push((from.max(kept), to));
            }
            blocked = true;
        }
    }
    if !blocked && listed_all {
        plan.contiguous = scanned_to;
    }
    plan
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
    fn a_check_asks_for_what_the_till_keeps_and_writes_off_what_it_pruned() {
        use super::{plan_recovery, RecoveryPlan};
        // Held 1-40 and 81-90; acknowledged up to 90; the till keeps everything.
        let held: Vec<i64> = (1..=40).chain(81..=90).collect();
        let plan = plan_recovery(&held, 0, 90, 1);
        assert_eq!(plan, RecoveryPlan { resend: vec![(41, 80)], lost: vec![], contiguous: 40 });
        // The till pruned everything below 60: 41-59 are lost for good, 60-80 come back.
        let plan = plan_recovery(&held, 0, 90, 60);
        assert_eq!(plan, RecoveryPlan { resend: vec![(60, 80)], lost: vec![(41, 59)], contiguous: 59 });
        // Nothing missing: the run moves up to the acknowledged end.
        let all: Vec<i64> = (11..=20).collect();
        assert_eq!(
            plan_recovery(&all, 10, 20, 1),
            RecoveryPlan { resend: vec![], lost: vec![], contiguous: 20 }
        );
        // A hostile acked_seq far above anything held: one run asked for, nothing else.
        let plan = plan_recovery(&[1, 2], 0, 1 << 53, 1);
        assert_eq!(plan.resend, vec![(3, 1 << 53)]);
        assert_eq!(plan.contiguous, 2);
        // Thousands of holes: the answer stays bounded.
        let sparse: Vec<i64> = (1..=10_000).map(|n| n * 2).collect();
        let plan = plan_recovery(&sparse, 0, 20_000, 1);
        assert_eq!(plan.resend.len(), possync_core::protocol::MAX_RESEND_RANGES);
        assert_eq!(plan.contiguous, 0);
    }

    #[test]
    fn acknowledged_runs_are_told_from_unsent_ones() {
        use super::{device_gaps, Acknowledged, GapKind};
        let held: Vec<i64> = (1..=40).chain(81..=90).collect();
        let acked = Acknowledged { acked_seq: Some(90), kept_seq: Some(50) };
        let (gaps, _) = device_gaps("s", "d", &held, 0, Some(95), acked);
        let kinds: Vec<(i64, i64, GapKind)> = gaps.iter().map(|g| (g.from, g.to, g.kind)).collect();
        assert_eq!(
            kinds,
            vec![(41, 49, GapKind::Lost), (50, 80, GapKind::Resending), (91, 95, GapKind::Unsent)]
        );
        let (gaps, _) = device_gaps("s", "d", &held, 0, Some(95), Acknowledged::default());
        let kinds: Vec<GapKind> = gaps.iter().map(|g| g.kind).collect();
        assert_eq!(kinds, vec![GapKind::NeverReceived, GapKind::Unsent]);
    }

    #[test]
    fn gaps_between_and_after_received_sequences() {
        assert_eq!(gaps_of(&[1, 2, 6, 7], 0, None), (vec![(3, 5, false)], 2));
        assert_eq!(gaps_of(&[1, 2, 3], 0, Some(3)), (vec![], 3));
        assert_eq!(gaps_of(&[1, 2, 3], 0, Some(5)), (vec![(4, 5, true)], 3));
        assert_eq!(gaps_of(&[3, 4], 0, None), (vec![(1, 2, false)], 0));
        assert_eq!(gaps_of(&[], 10, Some(12)), (vec![(11, 12, true)], 10));
    }
}
