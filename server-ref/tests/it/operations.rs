//! Health, readiness, metrics, correlation ids, routing errors and the admin CLI.

use std::process::Command;

use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::PushStore;
use possync_test_support::{envelope, new_id, request, sale, TestDb, TestServer};

#[test]
fn health_ready_and_metrics() {
    let server = TestServer::start();
    assert_eq!(server.get("/healthz").status, 200);
    let ready = server.get("/readyz");
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));

    server.push(&request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]));
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().expect("metrics are text");
    assert!(text.contains("possync_push_results_total{status=\"OK\"} 1"), "{text}");
    assert!(text.contains("possync_db_pool_max_connections 8"), "{text}");
    assert!(text.contains("possync_http_requests_total{code=\"200\",route=\"/sync/push\"} 1"), "{text}");
}

#[test]
fn readyz_is_503_on_an_unmigrated_database() {
    let db = TestDb::create();
    let store = PgStore::connect(db.config.clone(), &PgOptions::default()).expect("connect");
    let err = store.check_ready().expect_err("no schema yet");
    assert!(err.to_string().contains("possync-server migrate"), "{err}");
    store.migrate().expect("migrate");
    store.check_ready().expect("ready after migrate");
    assert!(store.migrate().expect("second migrate").is_empty(), "migrate is idempotent");
}

#[test]
fn correlation_id_is_echoed_or_made_and_errors_are_json() {
    let server = TestServer::start();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let resp = agent
        .post(format!("{}/sync/push", server.base))
        .header("Authorization", format!("Bearer {}", server.token))
        .header("X-Correlation-Id", "drain-42")
        .send(serde_json::to_vec(&request(vec![])).expect("json").as_slice())
        .expect("request");
    let reply = possync_test_support::Reply::from(resp);
    assert_eq!(reply.correlation_id.as_deref(), Some("drain-42"));
    assert_eq!(reply.body["results"], serde_json::json!([]));

    let not_found = server.get("/nope");
    assert_eq!((not_found.status, not_found.error_code()), (404, "not_found"));
    assert!(not_found.correlation_id.is_some_and(|c| c.len() == 36), "a fresh UUID when none was sent");
    let wrong_method = server.get("/sync/push");
    assert_eq!((wrong_method.status, wrong_method.error_code()), (405, "method_not_allowed"));
}

#[test]
fn cli_migrates_and_manages_tokens() {
    let db = TestDb::create();
    let url = {
        let admin = possync_test_support::admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
        format!("{base}/{}", db.name)
    };
    let bin = env!("CARGO_BIN_EXE_possync-server");
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("DATABASE_URL", &url)
            .env("POSSYNC_LOG", "warn")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("applied V1__init"), "{out}");
    let (ok, token, err) =
        run(&["token", "create", "--store", "s1", "--device", "d1", "--label", "front till"]);
    assert!(ok, "{err}");
    let token = token.trim();
    assert!(token.starts_with("pst_") && token.len() == 68, "{token}");
    let (ok, list, _) = run(&["token", "list", "--store", "s1"]);
    assert!(
        ok && list.contains("front till") && !list.contains(token),
        "the list never shows a token: {list}"
    );
    let (ok, out, _) = run(&["token", "revoke", "--store", "s1", "--device", "d1"]);
    assert!(ok && out.contains("revoked 1"), "{out}");
    let (ok, _, err) = run(&["token", "revoke", "--store", "s1", "--device", "d1"]);
    assert!(!ok && err.contains("no live token"), "{err}");
    let (ok, _, err) = run(&["serve", "--database-url", "not a url"]);
    assert!(!ok && err.contains("invalid --database-url"), "{err}");
}

/// Stopping the server does not wait on a client's idle keep-alive connection: it is closed at once.
/// Only a connection whose answer went out before its request was read lingers (up to 2 s) so that
/// the answer is not lost to a reset; an idle one has nothing to protect. Before, every stop with an
/// idle client took the whole linger.
#[test]
fn shutdown_does_not_wait_on_idle_keep_alive_connections() {
    let mut server = TestServer::start();
    // The test agent keeps this connection open and idle after the answer.
    assert_eq!(server.get("/healthz").status, 200);
    let started = std::time::Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_millis(1500), "shutdown waited {took:?} on an idle connection");
}
