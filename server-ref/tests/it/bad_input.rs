//! Bad input gets the documented status and code, stores nothing, and the server keeps serving.

use possync_test_support::{envelope, new_id, request, sale, TestServer};
use serde_json::json;

fn assert_nothing_stored(server: &TestServer) {
    for table in ["pos_transactions", "pos_transaction_items", "pos_transaction_payments"] {
        assert_eq!(server.total(table), 0, "{table} must stay empty");
    }
}

fn assert_still_serving(server: &TestServer) {
    let id = new_id();
    let reply = server.push(&request(vec![envelope(&id, &sale("store-1", 99, 1))]));
    assert_eq!(reply.status_of(0), "OK", "server still serves after bad input: {}", reply.body);
    assert_eq!(server.sale_rows(&id), (1, 1, 2));
}

#[test]
fn malformed_json_is_400_malformed_json() {
    let server = TestServer::start();
    for body in [&b"{not json"[..], b"", b"[]", b"{\"device_id\":\"till-1\"}", b"\xff\xfe"] {
        let reply = server.push_raw(Some(&server.token), body.to_vec());
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(reply.error_code(), "malformed_json");
        assert!(reply.correlation_id.is_some(), "every answer carries a correlation id");
    }
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

#[test]
fn wrong_hash_is_invalid_hash_mismatch() {
    let server = TestServer::start();
    let id = new_id();
    let mut env = envelope(&id, &sale("store-1", 1, 2));
    env["payload_sha256"] = json!("0".repeat(64));
    let reply = server.push(&request(vec![env]));
    assert_eq!((reply.status, reply.status_of(0), reply.code_of(0)), (200, "INVALID", "hash_mismatch"));

    let mut env = envelope(&id, &sale("store-1", 1, 2));
    env["payload"]["header"]["receipt_number"] = json!("R-tampered");
    let reply = server.push(&request(vec![env]));
    assert_eq!(reply.code_of(0), "hash_mismatch", "a payload changed after hashing is refused");

    let mut env = envelope(&id, &sale("store-1", 1, 2));
    env["payload_hash_version"] = json!(2);
    assert_eq!(server.push(&request(vec![env])).code_of(0), "unsupported_hash_version");
    assert_nothing_stored(&server);
    assert_eq!(server.count("pos_transaction_audit", &id), 3, "refused attempts are audited");
    assert_still_serving(&server);
}

#[test]
fn negative_money_and_bad_totals_are_invalid() {
    let server = TestServer::start();
    let mut negative = sale("store-1", 1, 2);
    negative.items[0].unit_price_minor = -negative.items[0].unit_price_minor;
    let mut totals = sale("store-1", 2, 2);
    totals.header.subtotal_minor += 1;
    totals.header.total_minor += 1;
    let mut unpaid = sale("store-1", 3, 2);
    unpaid.payments.pop();
    let mut no_items = sale("store-1", 4, 1);
    no_items.items.clear();
    let cases = [
        (negative, "negative_money"),
        (totals, "totals_mismatch"),
        (unpaid, "totals_mismatch"),
        (no_items, "no_items"),
    ];
    for (payload, code) in cases {
        let reply = server.push(&request(vec![envelope(&new_id(), &payload)]));
        assert_eq!(
            (reply.status, reply.status_of(0), reply.code_of(0)),
            (200, "INVALID", code),
            "{}",
            reply.body
        );
    }
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

#[test]
fn malformed_entries_fail_alone() {
    let server = TestServer::start();
    let good = new_id();
    let mut float_money = envelope(&new_id(), &sale("store-1", 1, 1));
    float_money["payload"]["header"]["total_minor"] = json!(12.5);
    let mut unknown_field = envelope(&new_id(), &sale("store-1", 2, 1));
    unknown_field["payload"]["header"]["surprise"] = json!(true);
    let no_id = json!({"payload_hash_version": 1, "payload": {}});
    let mut bad_id = envelope("has spaces", &sale("store-1", 3, 1));
    bad_id["attempt"] = json!(2);
    let huge =
        envelope(&new_id(), &sale("store-1", 4, 1)).to_string().replace("\"attempt\":1", "\"attempt\":1e400");
    let huge: serde_json::Value = serde_json::from_str(&huge).unwrap_or(json!({}));
    let batch = request(vec![
        float_money,
        unknown_field,
        no_id,
        bad_id,
        huge,
        envelope(&good, &sale("store-1", 5, 2)),
    ]);
    let reply = server.push(&batch);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let codes: Vec<&str> = (0..6).map(|i| reply.code_of(i)).collect();
    let statuses: Vec<&str> = (0..6).map(|i| reply.status_of(i)).collect();
    assert_eq!(statuses, ["INVALID", "INVALID", "INVALID", "INVALID", "INVALID", "OK"], "codes {codes:?}");
    // Hashes are recomputed before the shape is checked, so a float or an unknown field whose hash
    // matches is refused as a malformed sale.
    assert_eq!(&codes[..4], ["hash_mismatch", "hash_mismatch", "malformed_transaction", "bad_client_tx_id"]);
    assert_eq!(server.total("pos_transactions"), 1);
    assert_eq!(server.sale_rows(&good), (1, 2, 2));
}

#[test]
fn unknown_fields_with_a_matching_hash_are_malformed_sale() {
    let server = TestServer::start();
    let payload = serde_json::to_value(sale("store-1", 1, 1)).expect("json");
    let mut payload = payload;
    payload["header"]["surprise"] = json!(true);
    let canonical = possync_core::protocol::canonical_json(&payload).expect("canonical");
    let env = json!({
        "client_tx_id": new_id(), "payload_hash_version": 1, "attempt": 1,
        "payload_sha256": possync_core::protocol::payload_sha256(&canonical), "payload": payload,
    });
    let reply = server.push(&request(vec![env]));
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "malformed_sale"));
    assert_nothing_stored(&server);
}

#[test]
fn huge_body_is_413_and_too_many_transactions_is_413() {
    let mut http = possync_test_support::test_http_config();
    http.max_body_bytes = 256 * 1024;
    http.push_limits.max_transactions = 10;
    let server = TestServer::start_with(http, possync_test_support::test_pg_options());

    let mut big = vec![b' '; 300 * 1024];
    big[0] = b'{';
    let reply = server.push_raw(Some(&server.token), big);
    assert_eq!((reply.status, reply.error_code()), (413, "body_too_large"));

    let many = request((0..11).map(|i| envelope(&new_id(), &sale("store-1", i, 1))).collect());
    let reply = server.push(&many);
    assert_eq!((reply.status, reply.error_code()), (413, "too_many_transactions"));
    assert_nothing_stored(&server);

    let mut long = sale("store-1", 1, 600);
    long.items.truncate(600);
    let reply = server.push(&request(vec![envelope(&new_id(), &long)]));
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "too_many_items"));
    assert_still_serving(&server);
}

#[test]
fn missing_wrong_and_revoked_tokens_are_401() {
    let server = TestServer::start();
    let body = serde_json::to_vec(&request(vec![envelope(&new_id(), &sale("store-1", 1, 1))])).expect("json");
    let reply = server.push_raw(None, body.clone());
    assert_eq!((reply.status, reply.error_code()), (401, "missing_token"));
    let reply = server.push_raw(Some("pst_not-a-real-token"), body.clone());
    assert_eq!((reply.status, reply.error_code()), (401, "invalid_token"));

    let token = server.add_token("store-1", "till-1");
    let device = possync_server::store::Device { store_id: "store-1".into(), device_id: "till-1".into() };
    use possync_server::store::AdminStore;
    assert_eq!(server.store.revoke_tokens(&device).expect("revoke"), 2);
    let reply = server.push_raw(Some(&token), body);
    assert_eq!((reply.status, reply.error_code()), (401, "token_revoked"));
    assert_nothing_stored(&server);
}

/// An accepted token is trusted for `token_cache_ttl` without a lookup; once revoked it is refused
/// when that time is up (at once with the cache off), and the refused request stores nothing.
/// A revocation reaches every instance within a second, whatever the token cache's TTL: PostgreSQL
/// announces it (`NOTIFY`) and each instance empties its cache.
#[test]
fn a_revoked_token_is_refused_by_every_instance_within_a_second() {
    use possync_server::store::AdminStore;
    use std::time::{Duration, Instant};
    let config = possync_server::http::HttpConfig {
        token_cache_ttl: Duration::from_secs(600),
        ..possync_test_support::test_http_config()
    };
    let first = TestServer::start_with(config.clone(), possync_test_support::test_pg_options());
    let store = possync_server::store::postgres::PgStore::connect(
        first.db.config.clone(),
        &possync_test_support::test_pg_options(),
    )
    .expect("second store");
    let second = possync_server::http::start(std::sync::Arc::new(store), config).expect("second server");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let bases = [first.base.clone(), format!("http://{}", second.local_addr())];
    let push = |base: &str, n: i64| -> (u16, serde_json::Value) {
        let mut r = agent
            .post(format!("{base}/sync/push"))
            .header("Authorization", &format!("Bearer {}", first.token))
            .send_json(request(vec![envelope(&new_id(), &sale("store-1", n, 1))]))
            .expect("push");
        (r.status().as_u16(), r.body_mut().read_json().unwrap_or_default())
    };
    let cache_hits = |base: &str| -> f64 {
        let text = agent
            .get(format!("{base}/metrics"))
            .call()
            .expect("metrics")
            .body_mut()
            .read_to_string()
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("possync_token_cache_hits_total ")?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    // Both instances serve the token from their cache (once their revocation listener is up).
    for base in &bases {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache_hits(base) < 1.0 {
            assert_eq!(push(base, 1).0, 200);
            assert!(Instant::now() < deadline, "{base}: the token was never served from the cache");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let device = possync_server::store::Device { store_id: "store-1".into(), device_id: "till-1".into() };
    assert_eq!(first.store.revoke_tokens(&device).expect("revoke"), 1);
    let revoked = Instant::now();
    for base in &bases {
        loop {
            let (status, body) = push(base, 2);
            if status == 401 {
                assert_eq!(body["code"], "token_revoked", "{base}");
                break;
            }
            assert!(revoked.elapsed() < Duration::from_secs(1), "{base} still accepts a revoked token");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    second.shutdown();
}

#[test]
fn device_of_another_store_is_403() {
    let server = TestServer::start();
    let other = server.add_token("store-2", "till-9");
    // A store-2 device pushing a store-1 sale.
    let mut body = request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]);
    body["device_id"] = json!("till-9");
    let reply = server.push_raw(Some(&other), serde_json::to_vec(&body).expect("json"));
    assert_eq!((reply.status, reply.error_code()), (403, "store_forbidden"));
    // A token of till-9 claiming to be till-1.
    let body = request(vec![envelope(&new_id(), &sale("store-2", 1, 1))]);
    let reply = server.push_raw(Some(&other), serde_json::to_vec(&body).expect("json"));
    assert_eq!((reply.status, reply.error_code()), (403, "device_mismatch"));
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

#[test]
fn many_refused_sales_are_audited_in_one_transaction_and_messages_are_capped() {
    let server = TestServer::start();
    // 500 sales with a wrong hash: 500 INVALID answers, 500 audit rows written by one transaction
    // (PostgreSQL's now() is the transaction's start, so they share one timestamp).
    let refused: Vec<_> = (0..500)
        .map(|i| {
            let mut e = envelope(&format!("bad-{i}"), &sale("store-1", i, 1));
            e["payload_sha256"] = json!("0".repeat(64));
            e
        })
        .collect();
    let reply = server.push(&request(refused));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!((0..500).all(|i| reply.code_of(i) == "hash_mismatch"), "{}", reply.body);
    let mut c = server.db.client();
    let (rows, stamps): (i64, i64) = {
        let row = c
            .query_one(
                "SELECT count(*), count(DISTINCT at) FROM pos_transaction_audit WHERE outcome = 'INVALID'",
                &[],
            )
            .expect("audit");
        (row.get(0), row.get(1))
    };
    assert_eq!((rows, stamps), (500, 1), "500 audit rows from one transaction");

    // An unknown field named by 3 MB: the answer and the audit row quote at most 1 KiB of it.
    let mut e = envelope(&new_id(), &sale("store-1", 1, 1));
    e["payload"]["header"][&"x".repeat(3 * 1024 * 1024)] = json!(1);
    let canonical = possync_core::protocol::canonical_json(&e["payload"]).expect("canonical");
    e["payload_sha256"] = json!(possync_core::protocol::payload_sha256(&canonical));
    let reply = server.push(&request(vec![e]));
    let message = reply.result(0)["message"].as_str().unwrap_or_default().to_owned();
    assert_eq!(reply.status_of(0), "INVALID", "{message}");
    assert!(
        message.len() <= 1024 && message.ends_with("(cut)"),
        "{} bytes: {}",
        message.len(),
        &message[..80]
    );
    let longest: i32 = c
        .query_one("SELECT max(octet_length(message)) FROM pos_transaction_audit", &[])
        .expect("audit")
        .get(0);
    assert!(longest <= 1024, "audit message of {longest} bytes");
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

#[test]
fn a_key_named_twice_is_invalid_duplicate_key() {
    let server = TestServer::start();
    let good = envelope(&new_id(), &sale("store-1", 3, 1));
    let payload = serde_json::to_string(&good["payload"]).expect("json");
    // The same hash a till would send for the first value; the second value names another store.
    let twice = payload.replacen("\"store_id\":", "\"store_id\":\"store-2\",\"store_id\":", 1);
    let body = format!(
        r#"{{"device_id":"till-1","transactions":[{{"client_tx_id":{},"payload_hash_version":1,"payload_sha256":{},"attempt":1,"payload":{twice}}}]}}"#,
        good["client_tx_id"], good["payload_sha256"]
    );
    let reply = server.push_raw(Some(&server.token), body.into_bytes());
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "duplicate_key"), "{}", reply.body);
    // A bidi override in a text field is bad text.
    let mut bidi = sale("store-1", 4, 1);
    bidi.items[0].name = "Cola \u{202E}gnp.exe".into();
    let reply = server.push(&request(vec![envelope(&new_id(), &bidi)]));
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "bad_text"), "{}", reply.body);
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}
