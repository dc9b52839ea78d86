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
    /// The baseline measured beside it.
    pub baseline: f64,
    /// Unit of both.
    pub unit: &'static str,
    /// What the ratio means and its target.
    pub note: String,
}

impl Row {
    /// `value / baseline`.
    pub fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            0.0
        } else {
            self.value / self.baseline
        }
    }
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| scenario | value | baseline | ratio | note |\n|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {:.1} {} | {:.1} {} | {:.2} | {} |\n",
            r.scenario,
            r.value,
            r.unit,
            r.baseline,
            r.unit,
            r.ratio(),
            r.note
        ));
    }
    out
}

/// Median of the samples (0 for none).
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}
