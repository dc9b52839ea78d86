//! `possync-server verify`: a till's outbox compared with the server finds lost, mismatched and extra
//! sales, and exits non-zero when a sale the till marked sent is not on the server.

use std::process::Command;

use possync_core::config::OutboxConfig;
use possync_core::outbox::{Outbox, Outcome};
use possync_server::store::Device;
use possync_server::verify::verify;
use possync_test_support::{envelope, request, sale, TestServer};

#[test]
fn verify_reports_missing_mismatched_unsent_and_extra_sales() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("till.db");
    let outbox = Outbox::open(&path, OutboxConfig::default()).expect("outbox");
    let device = Device { store_id: "store-1".into(), device_id: "till-1".into() };

    // a: sent and on the server. b: unsent, already on the server. c: unsent, not on the server.
    // d: marked sent but never stored (a lost sale). e: another payload on the server under its id.
    let ids: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|k| format!("verify-{k}")).collect();
    for (i, id) in ids.iter().enumerate() {
        outbox.enqueue_with_id(id, &sale("store-1", i as i64, 1)).expect("enqueue");
    }
    let push = |id: &str, seed: i64| server.push(&request(vec![envelope(id, &sale("store-1", seed, 1))]));
    assert_eq!(push(&ids[0], 0).status_of(0), "OK");
    assert_eq!(push(&ids[1], 1).status_of(0), "OK");
    assert_eq!(push(&ids[4], 99).status_of(0), "OK");
    assert_eq!(push("verify-extra", 50).status_of(0), "OK");
    let claimed = outbox.claim("test", 10, 60_000).expect("claim");
    let sent = Outcome::Sent { duplicate: false, server_tx_id: None };
    let mark: Vec<_> = claimed
        .iter()
        .filter(|c| [&ids[0], &ids[3], &ids[4]].contains(&&c.lease.client_tx_id))
        .map(|c| (c.lease.clone(), sent.clone()))
        .collect();
    outbox.finalize_all(&mark).expect("finalize");
    let back: Vec<_> = claimed
        .iter()
        .filter(|c| [&ids[1], &ids[2]].contains(&&c.lease.client_tx_id))
        .map(|c| {
            (
                c.lease.clone(),
                Outcome::Retry {
                    from_server: false,
                    code: "timeout".into(),
                    message: String::new(),
                    next_attempt_at_ms: 0,
                },
            )
        })
        .collect();
    outbox.finalize_all(&back).expect("finalize");

    let report = verify(server.store.as_ref(), &outbox, None, Some(&device)).expect("verify");
    assert_eq!(report.checked, 5);
    assert_eq!(report.sent_ok, 1);
    assert_eq!(report.missing, vec![ids[3].clone()]);
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].client_tx_id, ids[4]);
    assert_eq!(report.unsent_on_server, vec![ids[1].clone()]);
    assert_eq!(report.unsent_not_on_server, 1);
    assert_eq!(report.extra, vec!["verify-extra".to_owned()]);
    assert!(!report.is_clean());
    drop(outbox);

    // The CLI says the same and exits non-zero.
    let url = {
        let admin = possync_test_support::admin_url();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
        format!("{base}/{}", server.db.name)
    };
    let out = Command::new(env!("CARGO_BIN_EXE_possync-server"))
        .args([
            "verify",
            "--outbox",
            path.to_str().expect("path"),
            "--store",
            "store-1",
            "--device",
            "till-1",
            "--json",
        ])
        .env("DATABASE_URL", &url)
        .env("POSSYNC_LOG", "warn")
        .output()
        .expect("run verify");
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(json["missing"], serde_json::json!([ids[3]]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 sale(s) missing on the server"));

    let clean_path = dir.path().join("clean.db");
    let clean = Outbox::open(&clean_path, OutboxConfig::default()).expect("outbox");
    clean.enqueue_with_id(&ids[0], &sale("store-1", 0, 1)).expect("enqueue");
    drop(clean);
    let out = Command::new(env!("CARGO_BIN_EXE_possync-server"))
        .args(["verify", "--outbox", clean_path.to_str().expect("path")])
        .env("DATABASE_URL", &url)
        .env("POSSYNC_LOG", "warn")
        .output()
        .expect("run verify");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unsent, already on the server:     1"));
}

#[test]
fn verify_of_a_missing_outbox_fails_naming_it_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let shop = dir.path().join("shop.db");
    let shop = shop.to_str().expect("path");
    let (ok, _, err) =
        possync_test_support::run(possync_test_support::cli().args(["migrate", "--sqlite", shop]));
    assert!(ok, "{err}");
    let missing = dir.path().join("till.db");
    let missing_str = missing.to_str().expect("path");
    let (ok, _, err) = possync_test_support::run(possync_test_support::cli().args([
        "verify",
        "--sqlite",
        shop,
        "--outbox",
        missing_str,
    ]));
    assert!(!ok, "verify of a missing outbox succeeded");
    assert!(err.contains("does not exist") && err.contains(missing_str), "{err}");
    assert!(!missing.exists(), "verify created the outbox");
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("till"))
        .collect();
    left.sort();
    assert!(left.is_empty(), "files created beside the missing outbox: {left:?}");
}
