//! Scenario 7: a peer queue as a reference point. The same workload (enqueue N jobs one committed
//! transaction each, then claim and complete them one at a time) on the outbox and on `effectum`, a
//! well-known SQLite job queue. effectum links its own SQLite, so it is built as a separate crate
//! (`bench/peer-effectum`, its own workspace) and run as a child process that prints its rates as JSON.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use possync_core::config::{Durability, OutboxConfig};
use possync_core::outbox::{Finalized, Outbox, Outcome};
use serde::Deserialize;

use crate::outbox::sample_sale;
use crate::Row;

/// What the peer binary prints.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerResult {
    /// Crate and version.
    pub peer: String,
    /// Jobs run.
    pub jobs: u64,
    /// Jobs enqueued per second.
    pub enqueue_per_s: f64,
    /// Jobs claimed and completed per second.
    pub complete_per_s: f64,
    /// The `synchronous` setting the peer runs SQLite with.
    pub sqlite_synchronous: String,
    /// The peer's journal mode.
    pub journal_mode: String,
}

/// Runs the peer binary at `peer_bin` with `jobs` jobs in `dir`.
///
/// # Errors
/// A message when the binary cannot run or prints something else than its JSON line.
pub fn run_peer(peer_bin: &Path, dir: &Path, jobs: usize) -> Result<PeerResult, String> {
    let out = Command::new(peer_bin)
        .args(["--jobs", &jobs.to_string(), "--dir"])
        .arg(dir)
        .output()
        .map_err(|e| format!("{}: {e}", peer_bin.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", peer_bin.display(), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("peer output {:?}: {e}", String::from_utf8_lossy(&out.stdout)))
}

/// The outbox side of the workload: (enqueues/s, claim+finalize/s) for `jobs` sales, claimed one at a
/// time, at `durability`.
pub fn outbox_workload(dir: &Path, jobs: usize, durability: Durability) -> (f64, f64) {
    let path = dir.join("peer-workload.db");
    let _ = std::fs::remove_file(&path);
    let outbox = Outbox::open(&path, OutboxConfig { durability, ..OutboxConfig::default() }).expect("outbox");
    let sales: Vec<_> = (0..jobs as i64).map(sample_sale).collect();
    let start = Instant::now();
    for sale in &sales {
        outbox.enqueue(sale).expect("enqueue");
    }
    let enqueue = jobs as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut done = 0;
    loop {
        let claimed = outbox.claim("bench", 1, 60_000).expect("claim");
        let Some(c) = claimed.into_iter().next() else { break };
        let written = outbox
            .finalize(&c.lease, &Outcome::Sent { duplicate: false, server_tx_id: None })
            .expect("finalize");
        assert_eq!(written, Finalized::Written, "a fresh lease is ours");
        done += 1;
    }
    assert_eq!(done, jobs, "every enqueued sale was claimed and completed once");
    let complete = jobs as f64 / start.elapsed().as_secs_f64();
    drop(outbox);
    let _ = std::fs::remove_file(&path);
    (enqueue, complete)
}

/// Scenario 7: rows comparing the outbox with the peer on the same workload, at the peer's
/// durability: a committed job survives power loss in both (outbox: WAL with synchronous=FULL, unless
/// the peer runs WAL with synchronous=NORMAL).
///
/// # Errors
/// A message when the peer cannot run.
pub fn compare(peer_bin: &Path, dir: &Path, jobs: usize) -> Result<Vec<Row>, String> {
    let peer = run_peer(peer_bin, dir, jobs)?;
    // Same durability per commit: in a rollback journal (effectum's actual mode) every commit is
    // fsynced even at synchronous=NORMAL, which in WAL mode only synchronous=FULL does.
    let wal = peer.journal_mode.eq_ignore_ascii_case("wal");
    let durability = if !wal || peer.sqlite_synchronous.eq_ignore_ascii_case("full") {
        Durability::Full
    } else {
        Durability::Normal
    };
    let (enqueue, complete) = outbox_workload(dir, jobs, durability);
    let setting = format!(
        "outbox: WAL, synchronous={}; {}: journal_mode={}, synchronous={}",
        if durability == Durability::Full { "FULL" } else { "NORMAL" },
        peer.peer,
        peer.journal_mode,
        peer.sqlite_synchronous
    );
    Ok(vec![
        Row::measured(
            format!("peer queue: enqueue, outbox vs {}", peer.peer),
            enqueue,
            peer.enqueue_per_s,
            "jobs/s",
        )
        .note(format!("{jobs} jobs, one committed transaction each; {setting}; reference point")),
        Row::measured(
            format!("peer queue: claim+complete one at a time, outbox vs {}", peer.peer),
            complete,
            peer.complete_per_s,
            "jobs/s",
        )
        .note(format!("{jobs} jobs; {} runs a no-op job per claim; reference point", peer.peer)),
    ])
}
