//! `possync-peer-effectum`: the "peer queue" reference point of the possync outbox benchmark.
//!
//! Runs the same workload as the outbox benchmark on [`effectum`] 0.7.0, a well-known SQLite job
//! queue: enqueue N ~700-byte JSON sales one at a time (each `add_job` awaited, so each is its own
//! committed SQLite transaction), then drain them with a single worker (concurrency 1) whose
//! runner does nothing but mark the job succeeded. Prints one JSON line with both rates.
//!
//! Usage: `possync-peer-effectum [--jobs N] [--dir DIR]` (see `--help` and `README.md`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use effectum::{Job, JobRunner, Queue, RunningJob, Worker};
use serde_json::json;
use tokio::sync::Notify;

/// Version of effectum this binary is pinned to (`=0.7.0` in Cargo.toml); reported as `peer`.
const PEER: &str = "effectum 0.7.0";
/// The single job type used for every sale.
const JOB_TYPE: &str = "sale";
/// The drain phase fails if no job completes for this long (guards against a hung worker).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// `PRAGMA synchronous` effectum sets on its (private) writer connection: `local_queue.rs:76`.
/// It is per-connection state, so it cannot be read back from another connection.
const EFFECTUM_SYNCHRONOUS: &str = "normal";

/// The same enqueue / claim / complete workload as the possync outbox benchmark, on effectum.
/// Prints one JSON line: peer, jobs, enqueue_per_s, complete_per_s, sqlite_synchronous, journal_mode.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Number of jobs to enqueue, then complete.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
    /// Directory in which a fresh temporary directory holding the SQLite file is made (default: the
    /// system temp dir); removed at exit.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A realistic ~700-byte sale (store, receipt, 3 lines, 1 payment) as the job payload.
fn sale_payload(seq: u64) -> Vec<u8> {
    let sale = json!({
        "store_id": "store-0042",
        "register_id": "reg-03",
        "cashier_id": "cashier-117",
        "receipt_no": format!("0042-03-{seq:08}"),
        "sale_id": format!("01J9Z6K4M8Q2R5T7V9X1B3D5F{seq:07}"),
        "created_at": "2025-03-14T10:21:33.512Z",
        "currency": "EUR",
        "items": [
            {"line": 1, "sku": "4006381333931", "name": "Stabilo Boss highlighter yellow",
             "qty": 2, "unit_price_minor": 129, "total_minor": 258},
            {"line": 2, "sku": "5449000000996", "name": "Coca-Cola 0.5 l PET bottle",
             "qty": 1, "unit_price_minor": 149, "total_minor": 149},
            {"line": 3, "sku": "4311501443544", "name": "Whole-grain bread 500 g",
             "qty": 1, "unit_price_minor": 219, "total_minor": 219}
        ],
        "subtotal_minor": 626,
        "tax_minor": 61,
        "total_minor": 626,
        "payments": [
            {"method": "card", "amount_minor": 626, "card_brand": "visa", "auth_code": "A1B2C3"}
        ]
    });
    serde_json::to_vec(&sale).expect("serializing a JSON value cannot fail")
}

/// Worker context: completion counters plus a wake-up for the waiting main task.
#[derive(Debug, Default)]
struct Progress {
    /// Jobs whose `complete()` committed.
    completed: AtomicU64,
    /// Jobs whose `complete()` returned an error.
    failed: AtomicU64,
    /// Signalled after every counter change (permits are stored, so no lost wake-ups).
    changed: Notify,
}

/// Job runner: does no work, just marks the job succeeded.
///
/// It calls `complete` itself (rather than returning `Ok` and letting effectum's wrapper do it in
/// `job_registry.rs`) so the counter is bumped only after the completion is committed by
/// effectum's writer thread; effectum then sees the job as already finished and does nothing more.
async fn complete_sale(job: RunningJob, progress: Arc<Progress>) -> Result<(), effectum::Error> {
    let result = job.complete(()).await;
    let counter = if result.is_ok() { &progress.completed } else { &progress.failed };
    counter.fetch_add(1, Ordering::SeqCst);
    progress.changed.notify_one();
    result
}

/// Measured rates and the durability settings found.
struct Report {
    enqueue_per_s: f64,
    complete_per_s: f64,
    journal_mode: String,
}

/// Converts a count over an elapsed time into a rate, rounded to 0.1/s.
fn per_second(n: u64, elapsed: Duration) -> f64 {
    (n as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
}

/// Runs the whole benchmark against a fresh effectum database and checks the final state.
async fn run(args: &Args) -> Result<Report, String> {
    let tmp = match &args.dir {
        Some(dir) => tempfile::Builder::new().prefix("peer-effectum-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("peer-effectum-").tempdir(),
    }
    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let db_path = tmp.path().join("effectum.db");
    let n = args.jobs;

    let queue = Queue::new(&db_path).await.map_err(|e| format!("opening effectum queue: {e}"))?;

    // Phase 1: enqueue, one awaited add_job per sale (one writer-thread transaction each).
    let started = Instant::now();
    for seq in 0..n {
        let job = Job::builder(JOB_TYPE).payload(sale_payload(seq)).build();
        queue.add_job(job).await.map_err(|e| format!("add_job #{seq}: {e}"))?;
    }
    let enqueue_per_s = per_second(n, started.elapsed());

    // Phase 2: one worker, concurrency 1 (effectum's default, set explicitly), drains the queue.
    let progress = Arc::new(Progress::default());
    let runner = JobRunner::builder(JOB_TYPE, complete_sale).build();
    let started = Instant::now();
    let worker = Worker::builder(&queue, progress.clone())
        .max_concurrency(1)
        .min_concurrency(1)
        .jobs([runner])
        .build()
        .await
        .map_err(|e| format!("starting effectum worker: {e}"))?;
    let mut seen = 0;
    loop {
        let done = progress.completed.load(Ordering::SeqCst) + progress.failed.load(Ordering::SeqCst);
        if done >= n {
            break;
        }
        if done == seen {
            if tokio::time::timeout(STALL_TIMEOUT, progress.changed.notified()).await.is_err() {
                return Err(format!("worker stalled: {done}/{n} jobs finished, none in {STALL_TIMEOUT:?}"));
            }
        } else {
            seen = done;
        }
    }
    let complete_per_s = per_second(n, started.elapsed());

    let failed = progress.failed.load(Ordering::SeqCst);
    if failed > 0 {
        return Err(format!("{failed} of {n} jobs failed to complete"));
    }
    let active = queue.num_active_jobs().await.map_err(|e| format!("num_active_jobs: {e}"))?;
    if active.pending != 0 || active.running != 0 {
        return Err(format!("queue not drained: {} pending, {} running", active.pending, active.running));
    }
    worker.unregister(Some(Duration::from_secs(10))).await.map_err(|e| format!("stopping worker: {e}"))?;
    queue.close(Duration::from_secs(10)).await.map_err(|e| format!("closing queue: {e}"))?;

    let journal_mode = verify_db(&db_path, n)?;
    Ok(Report { enqueue_per_s, complete_per_s, journal_mode })
}

/// Re-opens the closed database: reads `PRAGMA journal_mode` (persistent for WAL, so this shows
/// what effectum's connection actually left in force) and checks every job ended `succeeded`.
fn verify_db(db_path: &std::path::Path, n: u64) -> Result<String, String> {
    let conn = rusqlite::Connection::open(db_path).map_err(|e| format!("re-opening database: {e}"))?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| format!("PRAGMA journal_mode: {e}"))?;
    let (total, succeeded): (u64, u64) = conn
        .query_row("SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'succeeded') FROM jobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| format!("counting jobs: {e}"))?;
    if total != n || succeeded != n {
        return Err(format!("expected {n} succeeded jobs, found {succeeded} succeeded of {total}"));
    }
    Ok(journal_mode)
}

/// The single stdout line, keys in the documented order (`json!` would sort them).
fn report_line(jobs: u64, r: &Report) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    format!(
        "{{\"peer\":{},\"jobs\":{jobs},\"enqueue_per_s\":{},\"complete_per_s\":{},\"sqlite_synchronous\":{},\"journal_mode\":{}}}",
        s(PEER),
        serde_json::Value::from(r.enqueue_per_s),
        serde_json::Value::from(r.complete_per_s),
        s(EFFECTUM_SYNCHRONOUS),
        s(&r.journal_mode),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(r) => match writeln!(std::io::stdout(), "{}", report_line(args.jobs, &r)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("possync-peer-effectum: error: writing the result to stdout: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("possync-peer-effectum: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_about_700_bytes_of_json() {
        let p = sale_payload(12345);
        assert!((650..=750).contains(&p.len()), "payload is {} bytes", p.len());
        serde_json::from_slice::<serde_json::Value>(&p).unwrap();
    }

    #[test]
    fn parses_flags() {
        let a = Args::try_parse_from(["peer", "--jobs", "5", "--dir=/x"]).expect("valid");
        assert_eq!((a.jobs, a.dir), (5, Some(PathBuf::from("/x"))));
        assert!(Args::try_parse_from(["peer", "--jobs", "0"]).is_err());
        assert!(Args::try_parse_from(["peer", "--jobs"]).is_err());
        assert!(Args::try_parse_from(["peer", "--bogus"]).is_err());
    }

    #[test]
    fn report_line_is_json_in_documented_order() {
        let r = Report { enqueue_per_s: 566.1, complete_per_s: 882.0, journal_mode: "delete".into() };
        let line = report_line(2000, &r);
        assert_eq!(
            line,
            r#"{"peer":"effectum 0.7.0","jobs":2000,"enqueue_per_s":566.1,"complete_per_s":882.0,"sqlite_synchronous":"normal","journal_mode":"delete"}"#
        );
        serde_json::from_str::<serde_json::Value>(&line).unwrap();
    }
}
