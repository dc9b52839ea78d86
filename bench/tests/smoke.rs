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
