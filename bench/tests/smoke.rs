//! Each benchmark scenario runs at a tiny size. No timing is asserted (benchmarks are not tests); what
//! is asserted is what each scenario checks itself (every sale drained exactly once, one `OK` per
//! duplicate storm round) and that it produced measurements. PostgreSQL must be reachable.

use std::path::Path;

use possync_bench::{child, lossy, outbox, peer, report, restore, server, storm, till, Row, Target};
use possync_core::config::Durability;

const BENCH: &str = env!("CARGO_BIN_EXE_possync-bench");

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn measured(row: &Row) {
    assert!(row.value > 0.0 && row.baseline > 0.0, "{row:?}");
}

#[test]
fn outbox_scenarios_run_at_a_tiny_size() {
    let dir = tempfile::tempdir().expect("tmp");
    for durability in [Durability::Full, Durability::Normal] {
        measured(&outbox::enqueue(dir.path(), durability, 20, 1));
    }
    let row = outbox::claim_finalize(dir.path(), 50, 200, 40, 5);
    measured(&row);
    assert!(possync_bench::markdown(&[row]).contains("claim+finalize"));
}

#[test]
fn server_scenarios_run_at_a_tiny_size_with_the_server_in_its_own_process() {
    let cell = server::push_vs_pgbench(Path::new(BENCH), &database_url(), 2, 5, 1);
    measured(&cell.row);
    assert!(cell.server_peak_rss_kib >= cell.server_idle_rss_kib && cell.server_idle_rss_kib > 0);
    measured(&till::server_memory(&cell));
    let rows = server::duplicate_storm(Path::new(BENCH), &database_url(), 4, 3);
    assert_eq!(rows.len(), 2);
    rows.iter().for_each(measured);
}

/// The CI-size reconnect storm: 50 real tills with 40 sales each come back online within a second;
/// every till drains and every sale is on the server exactly once, and the tills did not all answer
/// `Online` at once: each held back a random part of its 5 s jitter window. No speed is asserted.
#[test]
fn a_storm_of_50_tills_drains_every_till_exactly_once() {
    let size = storm::StormSize {
        tills: 50,
        sales: 40,
        window: std::time::Duration::from_secs(1),
        workers: 4,
        online_jitter_ms: 5_000,
    };
    let report = storm::run(Path::new(BENCH), &database_url(), size);
    assert!(report.exactly_once, "{report:?}");
    assert_eq!(report.sales, 2000);
    assert!(report.admitted.count > 0, "{report:?}");
    assert!(report.server_peak_rss_kib > 0 && report.peak_open_connections > 0, "{report:?}");
    // Holds uniform in 0..=5 s: the median is near 2.5 s and the spread covers most of the window
    // (without the jitter every till would send within milliseconds of its Online).
    let hold = report.online_hold;
    assert_eq!(hold.count, 50, "every till sent: {report:?}");
    assert!(hold.p50_ms > 1_000.0 && hold.max_ms > 3_000.0, "the jitter spread the tills: {hold:?}");
    let (p10, p90) = report.first_request_spread_s;
    assert!(p90 - p10 > 2.0, "first requests spread over the window: {report:?}");
}

/// The restore scenario at a tiny size: 3 tills' sales lost by a restore come back exactly once.
#[test]
fn restore_scenario_brings_every_lost_sale_back_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let (report, row) = restore::restore_rows(Path::new(BENCH), dir.path(), &database_url(), 3, 20);
    assert!(report.exactly_once, "{report:?}");
    assert_eq!(report.resent, 60, "{report:?}");
    measured(&row);
}

#[test]
fn drain_scenario_drains_every_sale_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    // Asserts inside: the till settled all 120 and the server holds exactly 120.
    measured(&till::drain_vs_pgbench(Path::new(BENCH), dir.path(), &database_url(), 120, 1));
}

#[test]
fn memory_scenario_reads_the_till_process_peak_rss() {
    let dir = tempfile::tempdir().expect("tmp");
    let row = till::till_memory(Path::new(BENCH), dir.path(), 50, 300);
    measured(&row);
    assert!(row.value < 1024.0, "a till's peak RSS in MiB: {row:?}");
}

#[test]
fn peer_workload_claims_every_job_once_on_the_outbox() {
    let dir = tempfile::tempdir().expect("tmp");
    let (enqueue, complete) = peer::outbox_workload(dir.path(), 30, Durability::Normal);
    assert!(enqueue > 0.0 && complete > 0.0);
    // The peer binary is built outside the workspace (scripts/bench); a missing one is an error.
    let err = peer::compare(Path::new("/nonexistent/possync-peer-effectum"), dir.path(), 10).unwrap_err();
    assert!(err.contains("possync-peer-effectum"), "{err}");
}

#[test]
fn child_drain_reports_a_clear_error_for_an_unreachable_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("o.db");
    outbox::load_pending(&path, 3);
    let err = child::drain_all(&path, "http://127.0.0.1:9", "pst_x", "bench").unwrap_err();
    assert!(err.contains("stopped early"), "{err}");
}

#[test]
fn results_section_replaces_only_the_generated_part() {
    let dir = tempfile::tempdir().expect("tmp");
    let doc = dir.path().join("benchmarks.md");
    std::fs::write(&doc, "# Benchmarks\n\nintro\n").expect("write");
    let machine = report::Machine::detect(None);
    let rows = [Row::measured("s", 2.0, 4.0, "x/s").target(Target::RatioAtLeast(0.8)).note("n")];
    let first = report::section("2026-01-01", &machine, "abc", "possync-bench all", &rows, &[]);
    report::write_section(&doc, &first).expect("append");
    std::fs::write(&doc, std::fs::read_to_string(&doc).expect("read") + "\nanalysis\n").expect("write");
    let second =
        report::section("2026-01-02", &machine, "def", "possync-bench all", &rows, &["skipped".into()]);
    report::write_section(&doc, &second).expect("replace");
    let text = std::fs::read_to_string(&doc).expect("read");
    assert!(text.starts_with("# Benchmarks\n\nintro\n"), "{text}");
    assert!(text.contains("Results of 2026-01-02") && !text.contains("2026-01-01"), "{text}");
    assert!(
        text.contains("| s | 2.0 x/s | 4.0 x/s | 0.50 | ≥ 0.8 | **not met** | n |")
            && text.contains("skipped"),
        "{text}"
    );
    assert!(text.contains("Targets met: 0 of 1. Not met: s (0.50, target ≥ 0.8)."), "{text}");
    assert!(text.trim_end().ends_with("analysis"), "{text}");
    assert_eq!(text.matches(report::BEGIN).count(), 1);
}

/// Scenario 9 at a tiny size: the lossy and the clean till end exactly once; a killed till's leased
/// sales reach the server after its restart. No timing is asserted.
#[test]
fn lossy_link_scenario_runs_at_a_tiny_size_exactly_once() {
    let (report, rows) = lossy::lossy_rows(Path::new(BENCH), &database_url(), 5, 14);
    assert_eq!(report.exactly_once, Ok(()), "{report:?}");
    assert_eq!(rows.len(), 2);
    assert!(rows[1].baseline > 0.0);
    let row = lossy::resend_after_kill(Path::new(BENCH), &database_url(), 1);
    measured(&row);
}
