//! The backlog report a drain sends with each push ([`BacklogReport`]), kept cheap on a large
//! backlog: the full report (unsent count and amounts, oldest age, sequence bounds, retired sequence
//! numbers) is read from the outbox on a run's first batch and then at most every
//! [`REFRESH_MS`]; between refreshes the last report is sent with its unsent count lowered by the
//! sales settled since, and its oldest age raised by the time since. A 1M backlog is thus counted a
//! few times a minute, not once per batch.

use crate::outbox::Outbox;
use crate::protocol::BacklogReport;

/// Most time between two full reads of the backlog during a drain, in milliseconds.
pub const REFRESH_MS: i64 = 5_000;

/// The last full report of a drain run and what happened since.
#[derive(Debug, Default)]
pub(crate) struct BacklogCache {
    last: Option<(BacklogReport, i64)>,
    settled_since: u64,
}

impl BacklogCache {
    /// The report to send now; `None` when the outbox cannot be read (the push goes without one).
    pub(crate) fn current(&mut self, outbox: &Outbox, now_ms: i64) -> Option<BacklogReport> {
        let stale = self.last.as_ref().is_none_or(|(_, at)| now_ms - at >= REFRESH_MS);
        if stale {
            match outbox.backlog_report() {
                Ok(report) => {
                    self.last = Some((report, now_ms));
                    self.settled_since = 0;
                }
                Err(e) => {
                    log::warn!(error:% = e; "backlog report left out of this push");
                    return None;
                }
            }
        }
        let (report, at) = self.last.as_ref()?;
        let mut report = report.clone();
        report.unsent_count = report.unsent_count.map(|n| n.saturating_sub(self.settled_since));
        report.oldest_unsent_age_ms = report.oldest_unsent_age_ms.map(|ms| ms + (now_ms - at).max(0) as u64);
        Some(report)
    }

    /// `n` more sales were settled (sent, conflict, invalid) since the last full read.
    pub(crate) fn settled(&mut self, n: u64) {
        self.settled_since += n;
    }
}
