//! Acknowledged sales the server lost come back: a till's report says how far its acknowledged sales
//! reach (`acked_seq`) and what it still keeps (`kept_seq`); the push answer asks for what the server
//! lacks (`resend`), the detector counts it as missing until it is back, and what the till no longer
//! keeps is lost for good. Hostile reports stay bounded and touch only the reporting till's own
//! outbox.

use possync_core::protocol::MAX_RESEND_RANGES;
use possync_server::store::{AdminStore, GapKind};
use possync_test_support::{cli, db_url, envelope, new_id, request, run, sale, TestServer};
use serde_json::{json, Value};

const OUTBOX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A request of `device` with sales numbered `seqs` and a report acknowledging up to `acked`,
/// keeping from `kept`.
fn numbered(
    device: &str,
    store: &str,
    seqs: std::ops::RangeInclusive<i64>,
    acked: i64,
    kept: i64,
) -> (Value, Vec<String>) {
    let mut ids = Vec::new();
    let envs = seqs
        .clone()
        .map(|seq| {
            let id = new_id();
            ids.push(id.clone());
            let mut env = envelope(&id, &sale(store, seq, 1));
            env["outbox_seq"] = json!(seq);
            env
        })
        .collect();
    let mut body = request(envs);
    body["device_id"] = json!(device);
    body["report"] = json!({"outbox_id": OUTBOX, "acked_seq": acked, "kept_seq": kept,
                            "last_seq": (*seqs.end()).max(acked), "oldest_kept_age_ms": 86_400_000});
    (body, ids)
}

fn report_only(device: &str, acked: i64, kept: i64, last: i64) -> Value {
    json!({"device_id": device, "transactions": [],
           "report": {"outbox_id": OUTBOX, "acked_seq": acked, "kept_seq": kept, "last_seq": last,
                      "oldest_kept_age_ms": 86_400_000}})
}

fn metric(s: &TestServer, name: &str, device: &str) -> Option<f64> {
    let text = s.get("/metrics").body.as_str().map(str::to_owned).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("device_id=\"{device}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `metric` once the server's per-device gauges (computed off the scrape, at most 0.5 s old when
/// answered) show `want`; the last value seen after 10 s otherwise.
fn metric_settles(s: &TestServer, name: &str, device: &str, want: f64) -> Option<f64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = metric(s, name, device);
        if got == Some(want) || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn acknowledged_sales_the_server_lost_are_asked_for_counted_missing_and_land_once() {
    let s = TestServer::start();
    let (body, ids) = numbered("till-1", "store-1", 1..=10, 0, 1);
    let r = s.push(&body);
    assert!((0..10).all(|i| r.status_of(i) == "OK"), "{:?}", r.body);
    assert!(r.body.get("resend").is_none(), "nothing acknowledged yet: {:?}", r.body);
    let rows: Vec<_> = ids.iter().map(|id| s.sale_rows(id)).collect();
    // Everything acknowledged and held: nothing to ask for.
    let r = s.push(&report_only("till-1", 10, 1, 10));
    assert!(r.body.get("resend").is_none(), "{:?}", r.body);
    // The database loses sales 4-6 (as a restore to an older backup would).
    let lost = &ids[3..6];
    let mut c = s.db.client();
    for table in
        ["pos_transaction_items", "pos_transaction_payments", "pos_transaction_audit", "pos_transactions"]
    {
        c.execute(&format!("DELETE FROM {table} WHERE client_tx_id = ANY($1)"), &[&lost]).expect("lose");
    }
    c.execute("UPDATE pos_device_status SET seq_contiguous = 3", &[]).expect("an older backup's run");
    let r = s.push(&report_only("till-1", 10, 1, 10));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["resend"], json!({"outbox_id": OUTBOX, "ranges": [[4, 6]]}), "{:?}", r.body);
    s.flush_activity();
    let gaps = s.store.seq_gaps(None).expect("gaps");
    let got: Vec<_> = gaps.iter().map(|g| (g.from, g.to, g.kind)).collect();
    assert_eq!(got, vec![(4, 6, GapKind::Resending)]);
    let (ok, out, err) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert!(!ok, "acknowledged sales missing fail the command: {out}");
    assert!(
        out.contains("store-1 till-1: sales 4–6 acknowledged to till-1 and not on the server; being re-sent"),
        "{out}"
    );
    assert!(err.contains("3 sale(s)") && err.contains("3 of them being re-sent"), "{err}");
    let (cookie, _) = crate::console_server::login(&s);
    let (_, page, _) = crate::console_server::get(&s, "/console", &[("Cookie", &cookie)]);
    assert!(
        page.contains(r#"<div class="resending">sales 4–6 acknowledged to till-1 and not on the server; being re-sent</div>"#),
        "{page}"
    );
    assert!(page.contains("back to ") && page.contains("(from sale 1)"), "the recovery window: {page}");
    assert!(!page.contains("nothing needs you"), "never all clear while sales are missing");
    assert_eq!(metric_settles(&s, "possync_device_resending_sales", "till-1", 3.0), Some(3.0));
    assert_eq!(metric_settles(&s, "possync_device_missing_sales", "till-1", 3.0), Some(3.0));
    // The till sends them again under their own ids and hashes: they land once.
    let mut again = Vec::new();
    for (i, id) in lost.iter().enumerate() {
        let seq = 4 + i as i64;
        let mut env = envelope(id, &sale("store-1", seq, 1));
        env["outbox_seq"] = json!(seq);
        again.push(env);
    }
    let mut body = request(again);
    body["report"] = json!({"outbox_id": OUTBOX, "acked_seq": 3, "kept_seq": 1, "last_seq": 10});
    let r = s.push(&body);
    assert!((0..3).all(|i| r.status_of(i) == "OK"), "{:?}", r.body);
    let r = s.push(&report_only("till-1", 10, 1, 10));
    assert!(r.body.get("resend").is_none(), "all back: {:?}", r.body);
    s.flush_activity();
    assert!(s.store.seq_gaps(None).expect("gaps").is_empty());
    for (id, rows) in ids.iter().zip(&rows) {
        assert_eq!(s.sale_rows(id), *rows, "{id} exactly once, whole");
        assert_eq!(rows.0, 1);
    }
    assert_eq!(metric_settles(&s, "possync_device_missing_sales", "till-1", 0.0), Some(0.0));
    let (ok, out, _) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert!(ok, "{out}");
    assert!(out.starts_with("no gaps"), "{out}");
}

#[test]
fn a_resent_sale_with_another_hash_is_a_conflict_never_an_overwrite() {
    let s = TestServer::start();
    let (body, ids) = numbered("till-1", "store-1", 1..=2, 0, 1);
    assert_eq!(s.push(&body).status_of(1), "OK");
    let rows = s.sale_rows(&ids[1]);
    let mut env = envelope(&ids[1], &sale("store-1", 99, 2));
    env["outbox_seq"] = json!(2);
    let r = s.push(&request(vec![env]));
    assert_eq!(r.status_of(0), "CONFLICT");
    assert_eq!(s.sale_rows(&ids[1]), rows, "the stored sale is untouched");
}

#[test]
fn acknowledged_sales_the_till_pruned_are_lost_for_good_never_all_clear() {
    let s = TestServer::start();
    let (body, _) = numbered("till-1", "store-1", 1..=3, 0, 1);
    assert_eq!(s.push(&body).status_of(2), "OK");
    // The server holds 1-3; the till acknowledged up to 20 but keeps only 15 and up.
    let r = s.push(&report_only("till-1", 20, 15, 20));
    assert_eq!(r.body["resend"]["ranges"], json!([[15, 20]]), "{:?}", r.body);
    s.flush_activity();
    let gaps = s.store.seq_gaps(None).expect("gaps");
    let got: Vec<_> = gaps.iter().map(|g| (g.from, g.to, g.kind)).collect();
    assert_eq!(got, vec![(4, 14, GapKind::Lost), (15, 20, GapKind::Resending)]);
    let (ok, out, _) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert!(!ok);
    assert!(
        out.contains(
            "sales 4–14 acknowledged to till-1 and not on the server; no longer kept on the till: lost for good"
        ),
        "{out}"
    );
    assert_eq!(metric_settles(&s, "possync_device_lost_sales", "till-1", 11.0), Some(11.0));
    // The lost run is a lasting record: asked again, it is not re-asked and stays on the page.
    let r = s.push(&report_only("till-1", 20, 15, 20));
    assert_eq!(r.body["resend"]["ranges"], json!([[15, 20]]), "{:?}", r.body);
    let lost_rows: i64 =
        s.db.client().query_one("SELECT count(*) FROM pos_device_lost_runs", &[]).expect("count").get(0);
    assert_eq!(lost_rows, 1);
    let (_, out, _) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert_eq!(out.matches("lost for good").count(), 1, "{out}");
}

#[test]
fn hostile_reports_are_bounded_and_touch_only_the_tills_own_outbox() {
    let s = TestServer::start();
    let other = s.add_token("store-2", "till-9");
    let (body, _) = numbered("till-1", "store-1", 1..=5, 0, 1);
    assert_eq!(s.push(&body).status_of(4), "OK");
    s.flush_activity();
    let status_before: i64 =
        s.db.client().query_one("SELECT count(*) FROM pos_device_status", &[]).expect("n").get(0);

    // A huge acked_seq: one run asked for, within the till's own outbox, nothing stored but the run's
    // start of the device's own bookkeeping.
    let huge = 1i64 << 53;
    let r = s.push(&report_only("till-1", huge, 1, huge));
    assert_eq!(r.body["resend"], json!({"outbox_id": OUTBOX, "ranges": [[6, huge]]}), "{:?}", r.body);
    // Out of range: the report is ignored as a whole, the push is served.
    let r = s.push(&report_only("till-1", huge + 1, 1, 1));
    assert_eq!(r.status, 200);
    assert!(r.body.get("resend").is_none(), "{:?}", r.body);

    // Thousands of holes: the answer stays bounded.
    let envs: Vec<Value> = (1..=400)
        .map(|n| {
            let seq = 10 + n * 2;
            let mut env = envelope(&new_id(), &sale("store-1", seq, 1));
            env["outbox_seq"] = json!(seq);
            env
        })
        .collect();
    let mut body = request(envs);
    body["report"] = json!({"outbox_id": OUTBOX, "last_seq": 900});
    assert_eq!(s.push(&body).status, 200);
    let r = s.push(&report_only("till-1", 900, 1, 900));
    let ranges = r.body["resend"]["ranges"].as_array().expect("ranges").len();
    assert_eq!(ranges, MAX_RESEND_RANGES, "{:?}", r.body["resend"]);
    // Every pruned hole at once: at most one row per hole of its own, recorded once.
    let r = s.push(&report_only("till-1", 900, 900, 900));
    assert_eq!(r.status, 200);
    let mut c = s.db.client();
    let lost: Vec<(String, String)> = c
        .query("SELECT DISTINCT store_id, device_id FROM pos_device_lost_runs", &[])
        .expect("lost")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(lost, vec![("store-1".to_owned(), "till-1".to_owned())]);
    let rows: i64 = c.query_one("SELECT count(*) FROM pos_device_lost_runs", &[]).expect("n").get(0);
    assert!(rows <= 100, "{rows} lost runs from one report");

    // Another store's till naming the same outbox identity and numbers: asked only for its own
    // device's numbers; store-1's bookkeeping is untouched and nothing of it shows.
    let contiguous_before: Option<i64> = c
        .query_one("SELECT seq_contiguous FROM pos_device_status WHERE device_id = 'till-1'", &[])
        .expect("row")
        .get(0);
    let mut body = report_only("till-9", 5, 1, 5);
    body["device_id"] = json!("till-9");
    let r = s.push_raw(Some(&other), serde_json::to_vec(&body).expect("json"));
    assert_eq!(r.body["resend"]["ranges"], json!([[1, 5]]), "till-9 holds nothing: {:?}", r.body);
    let contiguous_after: Option<i64> = c
        .query_one("SELECT seq_contiguous FROM pos_device_status WHERE device_id = 'till-1'", &[])
        .expect("row")
        .get(0);
    assert_eq!(contiguous_before, contiguous_after);
    let stored: i64 = c.query_one("SELECT count(*) FROM pos_transactions", &[]).expect("n").get(0);
    assert_eq!(stored, 405, "reports store no sale");
    s.flush_activity();
    let status_after: i64 = c.query_one("SELECT count(*) FROM pos_device_status", &[]).expect("n").get(0);
    assert_eq!(status_after, status_before + 1, "one status row for till-9, none for anyone else");
}

#[test]
fn after_a_mistaken_delete_gaps_recheck_finds_the_hole_and_the_till_is_asked_again() {
    let s = TestServer::start();
    let (body, ids) = numbered("till-1", "store-1", 1..=10, 0, 1);
    assert_eq!(s.push(&body).status_of(9), "OK");
    assert!(s.push(&report_only("till-1", 10, 1, 10)).body.get("resend").is_none());
    s.flush_activity();
    // Sale 5 is deleted by mistake, below the run already checked: the next check does not see it.
    let mut c = s.db.client();
    for table in
        ["pos_transaction_items", "pos_transaction_payments", "pos_transaction_audit", "pos_transactions"]
    {
        c.execute(&format!("DELETE FROM {table} WHERE client_tx_id = $1"), &[&ids[4]]).expect("delete");
    }
    assert!(s.push(&report_only("till-1", 10, 1, 10)).body.get("resend").is_none());
    let (ok, out, err) = run(cli().args(["gaps", "--recheck", "--database-url", &db_url(&s.db)]));
    assert!(!ok, "{out}{err}");
    assert!(err.contains("checking the numbers of 1 till(s) again"), "{err}");
    assert!(out.contains("sale 5 acknowledged to till-1 and not on the server; being re-sent"), "{out}");
    let r = s.push(&report_only("till-1", 10, 1, 10));
    assert_eq!(r.body["resend"]["ranges"], json!([[5, 5]]), "{:?}", r.body);
}
