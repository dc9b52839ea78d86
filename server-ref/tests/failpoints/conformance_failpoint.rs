//! The conformance case that needs the `failpoints` feature: a failure injected between a sale's
//! header and its children (`push.after_header`, in both stores) leaves zero rows in all four tables,
//! and a retry then succeeds. Failpoints are process-global, so this file holds one test that runs
//! both stores one after the other.

use possync_core::protocol::PushStatus;
use possync_test_support::stores::{push, till1, Harness, Prepared};

const FAILPOINT: &str = "push.after_header";

fn injected_failure_leaves_zero_rows(h: &dyn Harness) {
    let s = Prepared::new(&possync_test_support::new_id(), possync_test_support::sale("store-1", 3, 4));
    fail::cfg(FAILPOINT, "return(injected)").expect("configure failpoint");
    let result = push(h, &till1(), "c", &s);
    fail::remove(FAILPOINT);
    assert_eq!(
        (result.status, result.code.as_deref()),
        (PushStatus::Retry, Some("injected_failure")),
        "{}",
        h.name()
    );
    assert_eq!(h.sale_rows(&s.id), (0, 0, 0), "{}: no partial sale", h.name());
    assert_eq!(h.count("pos_transaction_audit", &s.id), 0, "{}: no audit row either", h.name());
    let retried = push(h, &till1(), "c", &s);
    assert_eq!(retried.status, PushStatus::Ok, "{}: {retried:?}", h.name());
    assert_eq!(h.sale_rows(&s.id), (1, 4, 2), "{}", h.name());
}

#[test]
fn failure_between_header_and_children_leaves_zero_rows_in_both_stores() {
    let _serial = crate::serial();
    injected_failure_leaves_zero_rows(&possync_test_support::stores::Pg::new());
    injected_failure_leaves_zero_rows(&possync_test_support::stores::Lite::new());
}
