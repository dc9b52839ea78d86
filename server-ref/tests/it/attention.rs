//! `possync-server attention list | show | export`: CONFLICT and INVALID attempts of a store, with
//! both hashes, read from the audit trail.

use possync_server::attention::{self, CSV_HEADER};
use possync_server::store::AdminStore;
use possync_test_support::{age_audit, db_url, envelope, new_id, request, run_cli, sale, TestServer};
use serde_json::{json, Value};

/// A server with, in store-1: a sale stored and replayed (OK + DUPLICATE), a sale stored then
/// conflicted (OK + CONFLICT), a sale refused (INVALID); and in store-2 a conflict of its own.
struct Fixture {
    server: TestServer,
    replayed: String,
    conflicted: String,
    invalid: String,
    other_store: String,
    stored_sha: String,
    conflicting_sha: String,
    invalid_sha: String,
}

fn sha_of(envelope: &Value) -> String {
    envelope["payload_sha256"].as_str().expect("hash").to_owned()
}

fn fixture() -> Fixture {
    let server = TestServer::start();
    let (replayed, conflicted, invalid, other_store) = (new_id(), new_id(), new_id(), new_id());
    let replay = envelope(&replayed, &sale("store-1", 1, 2));
    assert_eq!(server.push(&request(vec![replay.clone()])).status_of(0), "OK");
    assert_eq!(server.push(&request(vec![replay])).status_of(0), "DUPLICATE");

    let original = envelope(&conflicted, &sale("store-1", 2, 2));
    let conflicting = envelope(&conflicted, &sale("store-1", 3, 3));
    assert_eq!(server.push(&request(vec![original.clone()])).status_of(0), "OK");
    assert_eq!(server.push(&request(vec![conflicting.clone()])).status_of(0), "CONFLICT");

    let mut bad = envelope(&invalid, &sale("store-1", 4, 1));
    bad["payload_sha256"] = json!("0".repeat(64));
    let reply = server.push(&request(vec![bad]));
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "hash_mismatch"));

    let token2 = server.add_token("store-2", "till-2");
    for seed in [5, 6] {
        let body = json!({"device_id": "till-2", "transactions": [envelope(&other_store, &sale("store-2", seed, 1))]});
        let reply = server.push_raw(Some(&token2), serde_json::to_vec(&body).expect("json"));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    Fixture {
        server,
        replayed,
        conflicted,
        invalid,
        other_store,
        stored_sha: sha_of(&original),
        conflicting_sha: sha_of(&conflicting),
        invalid_sha: "0".repeat(64),
    }
}

#[test]
fn attention_list_shows_conflict_and_invalid_of_the_store_with_both_hashes() {
    let f = fixture();
    let items = f.server.store.attention_items("store-1", None).expect("items");
    let summary: Vec<_> = items.iter().map(|r| (r.client_tx_id.as_str(), r.outcome.as_str())).collect();
    assert_eq!(summary, vec![(f.conflicted.as_str(), "CONFLICT"), (f.invalid.as_str(), "INVALID")]);
    assert_eq!(items[0].payload_sha256.as_deref(), Some(f.conflicting_sha.as_str()));
    assert_eq!(items[0].stored_sha256.as_deref(), Some(f.stored_sha.as_str()));
    assert_eq!((items[0].device_id.as_str(), items[0].code.as_deref()), ("till-1", Some("hash_differs")));
    assert_eq!(items[1].stored_sha256, None, "nothing is stored for an INVALID sale");
    assert_eq!(items[1].code.as_deref(), Some("hash_mismatch"));

    let (ok, out, err) = run_cli(&db_url(&f.server.db), &["attention", "list", "--store", "store-1"]);
    assert!(ok, "{err}");
    for expected in [&f.conflicted, &f.invalid, &f.conflicting_sha, &f.stored_sha, &f.invalid_sha] {
        assert!(out.contains(expected.as_str()), "{expected} missing from:\n{out}");
    }
    assert!(out.contains("till-1") && out.contains("hash_differs") && out.contains("hash_mismatch"), "{out}");
    assert!(!out.contains(&f.replayed), "OK and DUPLICATE need no attention:\n{out}");
    assert!(!out.contains(&f.other_store), "another store's attempts are not listed:\n{out}");
    assert!(out.contains("2 attempt(s) need attention"), "{out}");

    let (ok, out, _) = run_cli(&db_url(&f.server.db), &["attention", "list", "--store", "store-9"]);
    assert!(ok && out.contains("no CONFLICT or INVALID attempts for store store-9"), "{out}");
}

#[test]
fn attention_show_prints_every_attempt_and_the_stored_hash() {
    let f = fixture();
    let url = db_url(&f.server.db);
    let (ok, out, err) =
        run_cli(&url, &["attention", "show", "--store", "store-1", "--client-tx-id", &f.conflicted]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("payload_sha256 {} (v1)", f.stored_sha)), "stored hash shown:\n{out}");
    assert!(out.contains("attempts: 2"), "{out}");
    let ok_line = out.find(": OK").expect("the OK attempt");
    let conflict_line = out.find(": CONFLICT (hash_differs)").expect("the CONFLICT attempt");
    assert!(ok_line < conflict_line, "oldest first:\n{out}");
    assert!(out.contains(&format!("sent_sha256   {} (v1)", f.conflicting_sha)), "{out}");
    assert!(out.contains(&format!("stored_sha256 {}", f.stored_sha)), "{out}");

    let (ok, out, err) =
        run_cli(&url, &["attention", "show", "--store", "store-1", "--client-tx-id", &f.invalid]);
    assert!(ok, "{err}");
    assert!(out.contains("stored: no") && out.contains("INVALID (hash_mismatch)"), "{out}");

    let (ok, _, err) =
        run_cli(&url, &["attention", "show", "--store", "store-2", "--client-tx-id", &f.conflicted]);
    assert!(!ok && err.contains("no audit row and no stored sale"), "scoped to the store: {err}");
}

#[test]
fn attention_export_writes_csv_with_a_header_row_and_honours_since() {
    let f = fixture();
    let url = db_url(&f.server.db);
    let dir = std::env::temp_dir().join(format!("possync-attention-{}", new_id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("attention.csv");
    let path = file.to_str().expect("utf-8 path");
    let (ok, _, err) = run_cli(&url, &["attention", "export", "--store", "store-1", "--output", path]);
    assert!(ok && err.contains("wrote 2 row(s)"), "{err}");
    let read = |text: &[u8]| -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text)
            .records()
            .collect::<Result<_, _>>()
            .expect("valid CSV")
    };
    let rows = read(&std::fs::read(&file).expect("exported file"));
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(rows.len(), 3, "header and two rows");
    assert_eq!(rows[0].iter().collect::<Vec<_>>(), CSV_HEADER.to_vec());
    let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).expect("column");
    assert_eq!(&rows[1][col("client_tx_id")], f.conflicted.as_str());
    assert_eq!(&rows[1][col("outcome")], "CONFLICT");
    assert_eq!(&rows[1][col("sent_sha256")], f.conflicting_sha.as_str());
    assert_eq!(&rows[1][col("stored_sha256")], f.stored_sha.as_str());
    assert_eq!(&rows[1][col("device_id")], "till-1");
    assert!(rows[1][col("message")].contains(&f.stored_sha), "messages with commas survive quoting");
    assert_eq!((&rows[2][col("outcome")], &rows[2][col("stored_sha256")]), ("INVALID", ""));

    // The conflict happened ten days ago: `--since 5` leaves only the INVALID attempt.
    age_audit(&f.server.db, &f.conflicted, 10);
    let (ok, out, err) = run_cli(&url, &["attention", "export", "--store", "store-1", "--since", "5d"]);
    assert!(ok, "{err}");
    let rows = read(out.as_bytes());
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(&rows[1][col("client_tx_id")], f.invalid.as_str());
    let (ok, out, _) =
        run_cli(&url, &["attention", "list", "--store", "store-1", "--since", "2000-01-01T00:00:00Z"]);
    assert!(ok && out.contains(&f.conflicted) && out.contains(&f.invalid), "{out}");
    let (ok, _, err) = run_cli(&url, &["attention", "list", "--store", "store-1", "--since", "last week"]);
    assert!(!ok && err.contains("invalid --since"), "{err}");
}

#[test]
fn attention_functions_write_text_and_csv() {
    let f = fixture();
    let mut text = Vec::new();
    let n = attention::list(&*f.server.store, "store-2", None, &mut text).expect("list");
    let text = String::from_utf8(text).expect("utf-8");
    assert_eq!(n, 1, "{text}");
    assert!(text.contains(&f.other_store) && text.contains("till-2"), "{text}");
    let mut csv_out = Vec::new();
    let n = attention::export_csv(&*f.server.store, "store-9", None, &mut csv_out).expect("export");
    assert_eq!((n, String::from_utf8(csv_out).expect("utf-8")), (0, format!("{}\n", CSV_HEADER.join(","))));
}

/// The console's "Export CSV" as the logged-in manager: its rows, header first.
fn console_csv(server: &TestServer, query: &str) -> Vec<Vec<String>> {
    use possync_server::console::session::{hash_secret, new_secret};
    let secret = new_secret();
    assert!(server.store.create_admin("manager", &hash_secret(&secret).expect("hash")).expect("admin"));
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let cookie = |resp: &ureq::http::Response<ureq::Body>, name: &str| -> String {
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")).and_then(|v| v.split(';').next()))
            .expect("cookie")
            .to_owned()
    };
    let form = agent.get(format!("{}/console/login", server.base)).call().expect("login form");
    let csrf = cookie(&form, "possync_login_csrf");
    let login = agent
        .post(format!("{}/console/login", server.base))
        .header("Cookie", &format!("possync_login_csrf={csrf}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!("name=manager&secret={secret}&csrf={csrf}"))
        .expect("login");
    assert_eq!(login.status(), 303);
    let session = cookie(&login, "possync_console");
    let mut csv = agent
        .get(format!("{}/console/attention.csv?{query}", server.base))
        .header("Cookie", &format!("possync_console={session}"))
        .call()
        .expect("CSV");
    assert_eq!(csv.status(), 200);
    let text = csv.body_mut().read_to_string().expect("body");
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn attention_export_and_the_consoles_csv_are_one_format() {
    let f = fixture();
    let entries = f.server.store.attention_entries(Some("store-1"), true, 100).expect("entries");
    let conflict = entries.iter().find(|e| e.record.client_tx_id == f.conflicted).expect("the conflict");
    assert!(f
        .server
        .store
        .mark_reviewed(&f.conflicted, conflict.record.audit_id, "manager", "checked with the till")
        .expect("settle"));

    let (ok, out, err) = run_cli(&db_url(&f.server.db), &["attention", "export", "--store", "store-1"]);
    assert!(ok, "{err}");
    let cli: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(out.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_owned).collect())
        .collect();
    let console = console_csv(&f.server, "store=store-1");
    assert_eq!(cli[0], CSV_HEADER.to_vec(), "attention export's header");
    assert_eq!(console[0], CSV_HEADER.to_vec(), "the console's header");
    let col = |name: &str| CSV_HEADER.iter().position(|h| *h == name).expect("column");
    let row_of = |rows: &[Vec<String>]| {
        rows.iter().find(|r| r[col("client_tx_id")] == f.conflicted).expect("the conflict's row").clone()
    };
    let (from_cli, from_console) = (row_of(&cli), row_of(&console));
    assert_eq!(from_cli, from_console, "one row, whichever exports it");
    assert_eq!(
        (from_cli[col("settled_by")].as_str(), from_cli[col("settled_note")].as_str()),
        ("manager", "checked with the till")
    );
    let (time, settled_at) = (&from_cli[col("time")], &from_cli[col("settled_at")]);
    for t in [time, settled_at] {
        assert!(t.len() == 24 && t.as_bytes()[10] == b'T' && t.ends_with('Z'), "RFC 3339 with ms: {t}");
    }
    assert!(settled_at >= time, "{settled_at} >= {time}");
}
