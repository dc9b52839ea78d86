//! The till simulator end to end: the demo at a small size passes its exactly-once check (on the
//! embedded SQLite server, in both output modes), and CLI errors print one clear line and exit 1.

use std::process::{Command, Output};

fn till(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_possync-till"))
        .args(args)
        .env_remove("POSSYNC_TOKEN")
        .output()
        .expect("run possync-till")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SMALL: [&str; 8] = ["--tills", "3", "--sales", "30", "--offline-ms", "500", "--pace-ms", "5"];

#[test]
fn demo_on_sqlite_is_exactly_once() {
    let mut args = vec!["demo"];
    args.extend(SMALL);
    let out = till(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("OFFLINE"), "{stdout}");
    assert!(stdout.contains("Offline · unsent 10"), "sales pile up while offline:\n{stdout}");
    assert!(stdout.contains("online)"), "the Online trigger drains:\n{stdout}");
    assert!(stdout.contains("manual)"), "Sync now:\n{stdout}");
    assert!(stdout.contains(": sent · Idle"), "the first of the two sales under one id is stored:\n{stdout}");
    assert!(stdout.contains(": conflict · NeedsAttention"), "the deliberate conflict:\n{stdout}");
    assert!(stdout.contains("NeedsAttention (1 conflict"), "{stdout}");
    assert!(stdout.contains("rang up 92 sale(s) on 3 till(s): 91 sent, 91 on the server"), "{stdout}");
    assert!(stdout.trim_end().ends_with("exactly once: OK"), "{stdout}");
}

#[test]
fn demo_json_logs_are_json_lines_with_key_values() {
    let mut args = vec!["demo", "--json", "--seed", "7"];
    args.extend(SMALL);
    let out = till(&args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout).trim(), "exactly once: OK");
    let mut phases = std::collections::BTreeSet::new();
    let mut send_attempts = 0;
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(p) = v["phase"].as_str() {
            phases.insert(p.to_owned());
        }
        if v["message"] == "send attempt" {
            send_attempts += 1;
            for key in ["correlation_id", "client_tx_id", "attempt", "lease_token", "drain_reason", "result"]
            {
                assert!(v.get(key).is_some(), "{key} missing: {line}");
            }
        }
    }
    assert!(send_attempts >= 92, "{send_attempts} send attempts logged");
    for p in ["setup", "online", "offline", "sync_now", "conflict", "check"] {
        assert!(phases.contains(p), "phase {p} not logged: {phases:?}");
    }
    assert!(!stderr.contains("pst_"), "tokens are never logged");
}

/// One line on stderr starting with `possync-till: `, nothing on stdout, exit 1.
fn assert_one_line_error(out: &Output, expect: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("possync-till: ") && stderr.contains(expect), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

#[test]
fn bad_url_is_one_line() {
    let out = till(&["demo", "--server", "ftp://example", "--token", "pst_x"]);
    assert_one_line_error(&out, "invalid --server URL");
    let out = till(&["demo", "--server", "not a url", "--token", "pst_x"]);
    assert_one_line_error(&out, "invalid --server URL");
}

#[test]
fn unreachable_server_is_one_line() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = till(&["demo", "--server", &url, "--token", "pst_x"]);
    assert_one_line_error(&out, "cannot reach the server");
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("till.db");
    possync_core::outbox::Outbox::open(&outbox, Default::default()).expect("create outbox");
    let out = till(&[
        "sync-now",
        "--outbox",
        outbox.to_str().expect("utf-8"),
        "--server",
        &url,
        "--token",
        "pst_x",
    ]);
    assert_one_line_error(&out, "cannot reach the server");
}

#[test]
fn wrong_token_is_one_line() {
    use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("shop.db"), true, &SqliteOptions::default()).expect("open");
    store.migrate().expect("migrate");
    let config = possync_server::http::HttpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        workers: 2,
        ..Default::default()
    };
    let server = possync_server::http::start(std::sync::Arc::new(store), config).expect("start");
    let url = format!("http://{}", server.local_addr());
    let out = till(&["demo", "--server", &url, "--token", "pst_wrong"]);
    assert_one_line_error(&out, "refused the token");
    let outbox = dir.path().join("till.db");
    possync_core::outbox::Outbox::open(&outbox, Default::default()).expect("create outbox");
    let out = till(&[
        "sync-now",
        "--outbox",
        outbox.to_str().expect("utf-8"),
        "--server",
        &url,
        "--token",
        "pst_wrong",
    ]);
    assert_one_line_error(&out, "refused the token");
    server.shutdown();
}

#[test]
fn unreadable_outbox_is_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.db");
    let out = till(&["status", "--outbox", missing.to_str().expect("utf-8")]);
    assert_one_line_error(&out, "cannot read the outbox");
    assert_one_line_error(&out, "does not exist");
    assert!(text(&out.stderr).contains(missing.to_str().expect("utf-8")), "the path is named");
    assert!(!missing.exists(), "a missing outbox is never created");
    let out = till(&["list-attention", "--outbox", missing.to_str().expect("utf-8")]);
    assert_one_line_error(&out, "does not exist");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "status creates nothing");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, b"this is not a SQLite file, just some text that is long enough to matter")
        .expect("write");
    let out = till(&["list-attention", "--outbox", garbage.to_str().expect("utf-8")]);
    assert_one_line_error(&out, "cannot read the outbox");
}

#[test]
fn status_of_a_real_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.db");
    let outbox = possync_core::outbox::Outbox::open(&path, Default::default()).expect("outbox");
    let sale = possync_server_sale();
    outbox.enqueue(&sale).expect("enqueue");
    drop(outbox);
    let out = till(&["status", "--outbox", path.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Unsent sales waiting · unsent 1 (EUR 3.00)"), "{stdout}");
    let out = till(&["list-attention", "--outbox", path.to_str().expect("utf-8")]);
    assert_eq!(text(&out.stdout).trim(), "no sales need attention");
}

fn possync_server_sale() -> possync_core::protocol::SalePayload {
    use possync_core::protocol::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};
    SalePayload {
        header: SaleHeader {
            store_id: "store-1".into(),
            receipt_number: "R-1".into(),
            kind: SaleKind::Sale,
            occurred_at_ms: 1_764_000_000_000,
            currency: "EUR".into(),
            subtotal_minor: 300,
            tax_minor: 0,
            total_minor: 300,
            change_minor: 0,
            cashier_id: None,
        },
        items: vec![SaleItem {
            line_no: 1,
            sku: "1".into(),
            name: "Bread".into(),
            quantity_milli: 1_000,
            unit_price_minor: 300,
            discount_minor: 0,
            line_total_minor: 300,
            refund: false,
        }],
        payments: vec![SalePayment { method: "card".into(), amount_minor: 300, reference: None }],
    }
}

#[test]
fn help_never_prints_the_token_from_the_environment() {
    for command in ["sync-now", "demo"] {
        let out = Command::new(env!("CARGO_BIN_EXE_possync-till"))
            .args([command, "--help"])
            .env("POSSYNC_TOKEN", "pst_not_for_help")
            .output()
            .expect("run possync-till");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(!help.contains("pst_not_for_help"), "`{command} --help` prints the token:\n{help}");
    }
}

#[test]
fn demo_keep_leaves_outboxes_that_status_list_attention_and_sync_now_open() {
    use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
    use possync_server::store::{AdminStore, Device};
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = dir.path().join("demo-run");
    let kept_str = kept.to_str().expect("utf-8");
    let mut args = vec!["demo", "--keep", kept_str];
    args.extend(SMALL);
    let out = till(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains(&format!("outboxes in {kept_str} (kept after the demo)")), "{stdout}");
    let note = format!("kept in {kept_str}: shop.db, till-1.db, till-2.db, till-3.db (store id demo-");
    assert!(stdout.contains(&note), "{stdout}");
    assert!(stdout.contains(&format!("possync-till status --outbox {kept_str}/till-1.db")), "{stdout}");
    let store_id = stdout.split("(store id ").nth(1).and_then(|r| r.split(')').next()).expect("store id");

    let outbox = |name: &str| kept.join(name).to_str().expect("utf-8").to_owned();
    let out = till(&["status", "--outbox", &outbox("till-1.db")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("All sent · unsent 0"), "{}", text(&out.stdout));
    let out = till(&["list-attention", "--outbox", &outbox("till-2.db")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(" conflict attempt 1 code hash_differs "), "{}", text(&out.stdout));

    // The kept server file serves again, with a new token for till-1.
    let store = SqliteStore::open(kept.join("shop.db"), false, &SqliteOptions::default()).expect("open");
    let token = possync_server::auth::generate_token();
    let device = Device { store_id: store_id.to_owned(), device_id: "till-1".into() };
    store.create_token(&device, &possync_server::auth::token_sha256(&token), None).expect("token");
    let config = possync_server::http::HttpConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        workers: 2,
        ..Default::default()
    };
    let server = possync_server::http::start(std::sync::Arc::new(store), config).expect("start");
    let url = format!("http://{}", server.local_addr());
    let out = till(&["sync-now", "--outbox", &outbox("till-1.db"), "--server", &url, "--token", &token]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("remaining 0"), "{}", text(&out.stdout));
    server.shutdown();

    let out = till(&["demo", "--keep", kept_str]);
    assert_one_line_error(&out, "is not empty");
}
