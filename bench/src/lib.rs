//! possync benchmarks. Each scenario runs beside its baseline in the same process, interleaved, and
//! reports the ratio: absolute numbers on a shared 2-core machine mean little, ratios mean more.
//!
//! - [`outbox::enqueue`]: `Outbox::enqueue` vs a raw rusqlite `INSERT` of the same canonical bytes at
//!   the same durability (WAL, one transaction per sale), for `synchronous=FULL` and `NORMAL`.
//! - [`outbox::claim_finalize`]: claim + finalize per sale with 10k and with 1M pending sales.
//! - [`server::push_vs_pgbench`]: server push throughput vs `pgbench` running the same per-sale SQL.
//! - [`server::duplicate_storm`]: concurrent pushes of one sale: exactly one `OK`, p50/p99 latency
//!   against one pusher alone.
//! - [`till::drain_vs_pgbench`]: one till draining a large backlog end to end vs pgbench on one
//!   connection.
//! - [`till::till_memory`], [`till::server_memory`]: peak RSS of a till draining 1M sales, and of the
//!   server under load.
//! - [`storm::run`]: the reconnect storm: many real tills back online at once with a backlog.
//! - [`lossy::lossy_rows`], [`lossy::resend_after_kill`]: an unattended till on a lossy link vs a
//!   clean one (goodput, oldest unsent sale, exactly once), and the resend after a SIGKILL.
//! - [`restore::restore_rows`]: the server's database restored to a backup older than the tills'
//!   pushes; the time for the tills to bring every acknowledged sale back vs pushing them fresh.
//! - [`peer::compare`]: the same queue workload on the outbox and on a peer queue (effectum).
//!
//! The server and the till run in their own processes ([`child`]).

pub mod child;
pub mod cpu;
pub mod lossy;
pub mod outbox;
pub mod peer;
pub mod report;
pub mod restore;
pub mod server;
pub mod storm;
pub mod till;

/// One measured line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// The measured value.
    pub value: f64,
    /// The baseline measured beside it, or the target itself when [`Row::against_target`].
    pub baseline: f64,
    /// Unit of both.
    pub unit: &'static str,
    /// `true` when `baseline` is a constant (the target's bound) rather than a measurement: the table
    /// then labels the ratio "vs target".
    pub against_target: bool,
    /// What the row is held to.
    pub target: Target,
    /// What was measured, and the context (other baselines, counts).
    pub note: String,
}

impl Row {
    /// A row whose baseline was measured in the same run.
    pub fn measured(scenario: impl Into<String>, value: f64, baseline: f64, unit: &'static str) -> Row {
        Row {
            scenario: scenario.into(),
            value,
            baseline,
            unit,
            against_target: false,
            target: Target::None,
            note: String::new(),
        }
    }

    /// A row divided by a constant: the target's own bound.
    pub fn against(scenario: impl Into<String>, value: f64, bound: f64, unit: &'static str) -> Row {
        Row { against_target: true, ..Row::measured(scenario, value, bound, unit) }
    }

    /// The row held to `target`.
    pub fn target(mut self, target: Target) -> Row {
        self.target = target;
        self
    }

    /// The row's note.
    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// `value / baseline`.
    pub fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            0.0
        } else {
            self.value / self.baseline
        }
    }

    /// Whether the row meets its target (`None` without one).
    pub fn met(&self) -> Option<bool> {
        self.target.met(self.ratio(), self.value)
    }
}

/// A row's target: a bound on its ratio, or on its value in the row's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// No target: a reference point.
    None,
    /// ratio ≥ bound.
    RatioAtLeast(f64),
    /// ratio ≤ bound.
    RatioAtMost(f64),
    /// ratio < bound.
    RatioBelow(f64),
    /// low ≤ ratio ≤ high.
    RatioWithin(f64, f64),
    /// value < bound, in the row's unit.
    ValueBelow(f64),
}

impl Target {
    /// Whether `ratio` (or `value`) meets the target.
    pub fn met(self, ratio: f64, value: f64) -> Option<bool> {
        match self {
            Target::None => None,
            Target::RatioAtLeast(b) => Some(ratio >= b),
            Target::RatioAtMost(b) => Some(ratio <= b),
            Target::RatioBelow(b) => Some(ratio < b),
            Target::RatioWithin(lo, hi) => Some((lo..=hi).contains(&ratio)),
            Target::ValueBelow(b) => Some(value < b),
        }
    }

    /// The target as the table shows it.
    pub fn describe(self, unit: &str) -> String {
        match self {
            Target::None => "none".into(),
            Target::RatioAtLeast(b) => format!("≥ {b}"),
            Target::RatioAtMost(b) => format!("≤ {b}"),
            Target::RatioBelow(b) => format!("< {b}"),
            Target::RatioWithin(lo, hi) => format!("{lo} .. {hi}"),
            Target::ValueBelow(b) => format!("value < {b} {unit}"),
        }
    }
}

/// The rows as a Markdown table: the ratio against the baseline measured in the same run, or "vs
/// target" where the baseline is the target's constant, and whether each target is met.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | value | baseline | ratio | target | met | note |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let (baseline, ratio) = if r.against_target {
            (format!("{:.1} {} (the target)", r.baseline, r.unit), format!("{:.2} vs target", r.ratio()))
        } else {
            (format!("{:.1} {}", r.baseline, r.unit), format!("{:.2}", r.ratio()))
        };
        let met = match r.met() {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {:.1} {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.value,
            r.unit,
            baseline,
            ratio,
            r.target.describe(r.unit),
            met,
            r.note
        ));
    }
    out
}

/// One line under the table, generated from it: how many targets are met, and which are not.
pub fn targets_summary(rows: &[Row]) -> String {
    let held: Vec<&Row> = rows.iter().filter(|r| r.met().is_some()).collect();
    let missed: Vec<String> = held
        .iter()
        .filter(|r| r.met() == Some(false))
        .map(|r| format!("{} ({:.2}, target {})", r.scenario, r.ratio(), r.target.describe(r.unit)))
        .collect();
    let met = held.len() - missed.len();
    if missed.is_empty() {
        format!("Targets met: {met} of {}.", held.len())
    } else {
        format!("Targets met: {met} of {}. Not met: {}.", held.len(), missed.join("; "))
    }
}

/// Median of the samples (0 for none): the middle one, or the mean of the two middle ones.
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let mid = samples.len() / 2;
    if samples.len() % 2 == 0 {
        (samples[mid - 1] + samples[mid]) / 2.0
    } else {
        samples[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn a_row_says_whether_its_target_is_met() {
        let push = Row::measured("push", 80.0, 100.0, "sales/s").target(Target::RatioAtLeast(0.8));
        assert_eq!(push.met(), Some(true));
        let slow = Row::measured("push", 79.0, 100.0, "sales/s").target(Target::RatioAtLeast(0.8));
        assert_eq!(slow.met(), Some(false));
        let shed = Row::against("shed p99", 50.5, 50.0, "ms").target(Target::RatioBelow(1.0));
        assert_eq!(shed.met(), Some(false));
        assert_eq!(Row::measured("peer", 1.0, 2.0, "jobs/s").met(), None);
        let table = markdown(&[shed]);
        assert!(table.contains("1.01 vs target"), "{table}");
        assert!(table.contains("**not met**"), "{table}");
    }
}
