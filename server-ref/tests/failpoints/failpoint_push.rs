//! A failure injected between the header and the children of a sale leaves no rows at all, and a
//! later retry succeeds. Needs the `failpoints` feature (scripts/test enables it); failpoints are
//! process-global, so this file holds one test.

use possync_test_support::{envelope, new_id, request, sale, TestServer};

const FAILPOINT: &str = "push.after_header";

fn assert_no_rows(server: &TestServer, id: &str) {
    assert_eq!(server.sale_rows(id), (0, 0, 0), "no partial sale");
    assert_eq!(server.count("pos_transaction_audit", id), 0, "no audit row either");
}

#[test]
fn failure_between_header_and_items_leaves_zero_rows_and_retry_succeeds() {
    let _serial = crate::serial();
    let server = TestServer::start();
    let id = new_id();
    let body = request(vec![envelope(&id, &sale("store-1", 3, 4))]);

    // An error between header and children: the transaction rolls back, the sale answers RETRY.
    fail::cfg(FAILPOINT, "return(injected)").expect("configure failpoint");
    let reply = server.push(&body);
    assert_eq!((reply.status, reply.status_of(0), reply.code_of(0)), (200, "RETRY", "injected_failure"));
    assert_no_rows(&server, &id);

    // A crash (panic) at the same point: the worker answers 500 and the transaction is rolled back.
    fail::cfg(FAILPOINT, "panic(crash)").expect("configure failpoint");
    let reply = server.push(&body);
    assert_eq!((reply.status, reply.error_code()), (500, "internal_error"));
    assert_no_rows(&server, &id);

    fail::remove(FAILPOINT);
    let reply = server.push(&body);
    assert_eq!(reply.status_of(0), "OK", "{}", reply.body);
    assert_eq!(server.sale_rows(&id), (1, 4, 2));
    assert_eq!(server.count("pos_transaction_audit", &id), 1);
    assert_eq!(server.get("/healthz").status, 200, "server still serving");
}
