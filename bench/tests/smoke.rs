//! Each benchmark scenario runs at a tiny size (no timing is asserted: benchmarks are not tests).

use possync_bench::outbox;
use possync_core::config::Durability;

#[test]
fn outbox_scenarios_run_at_a_tiny_size() {
    let dir = tempfile::tempdir().expect("tmp");
    for durability in [Durability::Full, Durability::Normal] {
        let row = outbox::enqueue(dir.path(), durability, 20, 1);
        assert!(row.value > 0.0 && row.baseline > 0.0, "{row:?}");
    }
    let row = outbox::claim_finalize(dir.path(), 50, 200, 40, 5);
    assert!(row.value > 0.0 && row.baseline > 0.0, "{row:?}");
    assert!(possync_bench::markdown(&[row]).contains("claim+finalize"));
}

#[test]
fn server_scenarios_run_at_a_tiny_size() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let row = possync_bench::server::push_vs_pgbench(&url, 2, 5, 1);
    assert!(row.value > 0.0 && row.baseline > 0.0, "{row:?}");
    let (p50, p99) = possync_bench::server::duplicate_storm(&url, 4, 3);
    assert!(p50 > 0.0 && p99 >= p50);
}
