//! Server side of the shop console: the optional backlog report and outbox sequence numbers of a push
//! (old tills without them still push), the gaps (a till whose outbox lost sales 3–5 shows exactly
//! that gap; a voided sale is no gap), the `gaps` command, the per-device gauges of `/metrics`, and
//! the console's doors (off without an admin, 401 without a session, 403 without a CSRF token), and
//! its declared pages (another path 404, another method 405 with `Allow`, both as pages). The
//! pages themselves are driven in a real browser by `server-ref/tests/browser/`.

use possync_server::console::session::{hash_secret, new_secret};
use possync_test_support::{cli, db_url, envelope, new_id, request, run, sale, TestServer};
use serde_json::{json, Value};

fn with_seq(mut env: Value, seq: i64) -> Value {
    env["outbox_seq"] = json!(seq);
    env
}

fn till(s: &TestServer, device: &str) -> possync_server::store::TillStatus {
    s.flush_activity();
    s.store
        .as_ref()
        .tills(0)
        .expect("tills")
        .into_iter()
        .find(|t| t.device_id == device)
        .expect("till listed")
}

use possync_server::store::AdminStore;

#[test]
fn an_old_till_without_report_or_sequence_numbers_still_pushes() {
    let s = TestServer::start();
    let r = s.push(&request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]));
    assert_eq!((r.status, r.status_of(0)), (200, "OK"), "{:?}", r.body);
    let t = till(&s, "till-1");
    assert!(t.last_seen_ms.is_some() && t.last_push_ms.is_some());
    assert_eq!(t.report.unsent_count, None, "no report: nothing invented");
    s.flush_activity();
    assert!(s.store.seq_gaps(None).expect("gaps").is_empty());
}

#[test]
fn the_backlog_report_is_kept_per_device_and_exported_as_gauges() {
    let s = TestServer::start();
    let mut body = request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]);
    body["report"] = json!({"library_version": "0.4.0", "unsent_count": 80, "oldest_unsent_age_ms": 5_400_000,
        "unsent_minor": {"EUR": 123450}, "last_seq": 1});
    assert_eq!(s.push(&body).status_of(0), "OK");
    let t = till(&s, "till-1");
    assert_eq!(t.report.unsent_count, Some(79), "the request's own settled sale is taken off");
    assert_eq!(t.report.library_version.as_deref(), Some("0.4.0"));
    // A heartbeat without sales or report keeps the report and moves only "last seen".
    let heartbeat = s.push(&json!({"device_id": "till-1", "transactions": []}));
    assert_eq!(heartbeat.status, 200);
    assert_eq!(till(&s, "till-1").report.unsent_count, Some(79));
    s.flush_activity();
    let metrics = s.get("/metrics");
    let text = metrics.body.as_str().expect("text");
    assert!(
        text.contains(r#"possync_device_unsent_sales{store_id="store-1",device_id="till-1"} 79"#),
        "{text}"
    );
    assert!(text.contains(r#"possync_device_behind{store_id="store-1",device_id="till-1"} 1"#), "{text}");
}

#[test]
fn a_malformed_report_is_ignored_and_the_sales_still_settle() {
    let s = TestServer::start();
    let mut body = request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]);
    body["report"] = json!({"unsent_count": -3, "unsent_minor": {"euro": "lots"}});
    let r = s.push(&body);
    assert_eq!((r.status, r.status_of(0)), (200, "OK"));
    assert_eq!(till(&s, "till-1").report.unsent_count, None);
}

#[test]
fn an_outbox_seq_out_of_range_makes_that_sale_invalid() {
    let s = TestServer::start();
    let body = request(vec![
        with_seq(envelope(&new_id(), &sale("store-1", 1, 1)), 0),
        with_seq(envelope(&new_id(), &sale("store-1", 2, 1)), 1),
    ]);
    let r = s.push(&body);
    assert_eq!((r.status_of(0), r.code_of(0)), ("INVALID", "malformed_transaction"));
    assert_eq!(r.status_of(1), "OK");
}

#[test]
fn a_till_that_lost_sales_3_to_5_shows_exactly_that_gap_and_a_voided_sale_is_none() {
    let s = TestServer::start();
    let envs: Vec<Value> =
        [1, 2, 6, 7].iter().map(|&n| with_seq(envelope(&new_id(), &sale("store-1", n, 1)), n)).collect();
    let r = s.push(&request(envs));
    assert!((0..4).all(|i| r.status_of(i) == "OK"), "{:?}", r.body);
    // Sale 8 was voided on the till; 9 arrives; the till's outbox has numbered up to 9.
    let mut body = request(vec![with_seq(envelope(&new_id(), &sale("store-1", 9, 1)), 9)]);
    body["report"] = json!({"unsent_count": 0, "last_seq": 9, "retired_seqs": [8]});
    assert_eq!(s.push(&body).status_of(0), "OK");
    s.flush_activity();
    let gaps = s.store.seq_gaps(Some("store-1")).expect("gaps");
    let got: Vec<_> =
        gaps.iter().map(|g| (g.device_id.as_str(), g.from, g.to, g.after_last_received)).collect();
    assert_eq!(got, vec![("till-1", 3, 5, false)]);
    let (ok, out, err) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert!(!ok, "missing sales fail the command: {out}{err}");
    assert_eq!(
        out.lines().next(),
        Some("store-1 till-1: sales 3–5 recorded on till-1, never received"),
        "{out}"
    );
    assert!(out.contains("store-1 till-1: has not reported how far back it keeps its sales"), "{out}");
    assert!(err.contains("3 sale(s)"), "{err}");
}

#[test]
fn sales_past_the_last_received_are_reported_as_still_on_the_till() {
    let s = TestServer::start();
    let mut body = request(vec![with_seq(envelope(&new_id(), &sale("store-1", 1, 1)), 1)]);
    body["report"] = json!({"unsent_count": 3, "oldest_unsent_age_ms": 1000, "last_seq": 4});
    assert_eq!(s.push(&body).status_of(0), "OK");
    s.flush_activity();
    let (ok, out, _) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
    assert!(ok, "a backlog still on the till is not a failure");
    assert_eq!(
        out.lines().next(),
        Some("store-1 till-1: sales 2–4 recorded on till-1, never received (still in its outbox at its last report)"),
        "{out}"
    );
}

pub(crate) fn get(s: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<String>) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let mut req = agent.get(format!("{}{path}", s.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    answer(req.call().expect("GET"))
}

fn post(s: &TestServer, path: &str, cookie: &str, form: &str) -> (u16, String, Vec<String>) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let resp = agent
        .post(format!("{}{path}", s.base))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(form)
        .expect("POST");
    answer(resp)
}

/// An answer's status, body and `Set-Cookie` values.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> (u16, String, Vec<String>) {
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap_or_default(), cookies)
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).and_then(|v| v.split(';').next()))
        .expect("cookie set")
        .to_owned()
}

#[test]
fn the_console_is_off_without_an_admin_and_closed_without_login_or_csrf() {
    let s = TestServer::start();
    let (status, body, _) = get(&s, "/console", &[]);
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "console_off");

    let secret = new_secret();
    assert!(s.store.create_admin("manager", &hash_secret(&secret).expect("hash")).expect("admin"));
    let (status, body, _) = get(&s, "/console", &[]);
    assert_eq!(status, 401);
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "login_required");
    let (status, body, _) = get(&s, "/console/attention.csv", &[("Accept", "text/html")]);
    assert_eq!(status, 401);
    assert!(body.contains("login_required"), "HTML answer names the code: {body}");

    // Login: the form's CSRF token must come back (cookie and field).
    let (status, page, cookies) = get(&s, "/console/login", &[]);
    assert_eq!(status, 200);
    let login_csrf = cookie_value(&cookies, "possync_login_csrf");
    assert!(page.contains(&login_csrf));
    let form = format!("name=manager&secret={secret}");
    let (status, _, _) = post(&s, "/console/login", &format!("possync_login_csrf={login_csrf}"), &form);
    assert_eq!(status, 403, "no CSRF field");
    let (status, _, _) = post(
        &s,
        "/console/login",
        &format!("possync_login_csrf={login_csrf}"),
        &format!("{form}x&csrf={login_csrf}"),
    );
    assert_eq!(status, 401, "wrong secret");
    let (status, _, cookies) = post(
        &s,
        "/console/login",
        &format!("possync_login_csrf={login_csrf}"),
        &format!("{form}&csrf={login_csrf}"),
    );
    assert_eq!(status, 303);
    let session = cookie_value(&cookies, "possync_console");
    assert!(cookies
        .iter()
        .any(|c| c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure")));
    let cookie = format!("possync_console={session}");
    let (status, page, _) = get(&s, "/console", &[("Cookie", &cookie)]);
    assert_eq!(status, 200);
    assert!(page.contains("till-1"));
    let (status, body, _) = post(&s, "/console/tokens", &cookie, "store=store-1&device=till-9");
    assert_eq!(status, 403, "a POST without the session's CSRF token is refused");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "csrf_invalid");
    let (status, _, _) =
        get(&s, &format!("/console/sales?store={}", "x".repeat(3000)), &[("Cookie", &cookie)]);
    assert_eq!(status, 400, "query strings are bounded");
}

/// A `method` request to `path` with `Accept`; its status, `Allow`, `Content-Type`,
/// `X-Correlation-Id` and body.
fn call(s: &TestServer, method: &str, path: &str, accept: &str) -> (u16, String, String, String, String) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", s.base))
        .header("Accept", accept)
        .body(())
        .expect("request");
    let mut resp = agent.run(req).expect("answer");
    let header =
        |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (allow, content_type, cid) = (header("allow"), header("content-type"), header("x-correlation-id"));
    (resp.status().as_u16(), allow, content_type, cid, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn each_route_takes_its_declared_methods_and_any_other_path_is_not_found() {
    let s = TestServer::start();
    assert!(s.store.create_admin("manager", &hash_secret(&new_secret()).expect("hash")).expect("admin"));
    // The JSON routes: another method is 405 with the error body, its correlation id the header's.
    for (method, path, allow) in [("DELETE", "/healthz", "GET,HEAD"), ("POST", "/metrics", "GET,HEAD")] {
        let (status, allowed, _, cid, body) = call(&s, method, path, "application/json");
        assert_eq!((status, allowed.as_str()), (405, allow), "{method} {path}");
        let body: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["code"], "method_not_allowed");
        assert_eq!(body["correlation_id"], cid.as_str(), "the body names the answer's correlation id");
    }
    // The console's pages: the same answers, as pages for a browser.
    let html = "text/html";
    let (status, allow, content_type, _, page) = call(&s, "DELETE", "/console/login", html);
    assert_eq!((status, allow.as_str()), (405, "GET,HEAD,POST"));
    assert!(content_type.starts_with("text/html") && page.contains("method_not_allowed"), "{page}");
    let (status, allow, _, _, _) = call(&s, "GET", "/console/attention/settle", html);
    assert_eq!((status, allow.as_str()), (405, "POST"), "a form's target is no page");
    for path in ["/console/nope", "/console/attention/settled", "/console/tokens/x"] {
        let (status, _, content_type, _, page) = call(&s, "POST", path, html);
        assert_eq!(status, 404, "{path}");
        assert!(content_type.starts_with("text/html") && page.contains("not_found"), "{path}: {page}");
        let (status, _, _, _, body) = call(&s, "GET", path, "application/json");
        assert_eq!(status, 404, "{path}");
        assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "not_found");
    }
}

/// Creates an admin and logs in; the session cookie and the session's CSRF token (from the page).
pub(crate) fn login(s: &TestServer) -> (String, String) {
    let secret = new_secret();
    assert!(s.store.create_admin("manager", &hash_secret(&secret).expect("hash")).expect("admin"));
    let (_, _, cookies) = get(s, "/console/login", &[]);
    let login_csrf = cookie_value(&cookies, "possync_login_csrf");
    let (status, _, cookies) = post(
        s,
        "/console/login",
        &format!("possync_login_csrf={login_csrf}"),
        &format!("name=manager&secret={secret}&csrf={login_csrf}"),
    );
    assert_eq!(status, 303, "logged in");
    let cookie = format!("possync_console={}", cookie_value(&cookies, "possync_console"));
    let (status, page, _) = get(s, "/console", &[("Cookie", &cookie)]);
    assert_eq!(status, 200);
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("a form with the CSRF token") + marker.len();
    let csrf = page[start..].split('"').next().expect("token").to_owned();
    (cookie, csrf)
}

/// The Tills page's summary sentence, as text.
fn summary(s: &TestServer, cookie: &str) -> String {
    s.flush_activity();
    let (status, page, _) = get(s, "/console", &[("Cookie", cookie)]);
    assert_eq!(status, 200);
    let start = page.find(r#"id="summary">"#).expect("summary") + r#"id="summary">"#.len();
    page[start..].split("</p>").next().expect("end").to_owned()
}

#[test]
fn a_revoked_token_is_refused_and_a_revoke_without_csrf_changes_nothing() {
    let s = TestServer::start();
    assert_eq!(s.push(&request(vec![envelope(&new_id(), &sale("store-1", 1, 1))])).status, 200);
    let (cookie, csrf) = login(&s);
    let (status, body, _) = post(&s, "/console/tokens/revoke", &cookie, "store=store-1&device=till-1");
    assert_eq!(status, 403, "no CSRF field");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "csrf_invalid");
    let r = s.push(&request(vec![envelope(&new_id(), &sale("store-1", 2, 1))]));
    assert_eq!((r.status, r.status_of(0)), (200, "OK"), "the token still works");
    let (status, _, _) =
        post(&s, "/console/tokens/revoke", &cookie, &format!("csrf={csrf}&store=store-1&device=till-1"));
    assert_eq!(status, 303, "revoked, back to the Tills page");
    let r = s.push(&request(vec![envelope(&new_id(), &sale("store-1", 3, 1))]));
    assert_eq!((r.status, r.error_code()), (401, "token_revoked"), "{:?}", r.body);
    let (_, page, _) = get(&s, "/console", &[("Cookie", &cookie)]);
    let row =
        page.split(r#"id="till-store-1-till-1""#).nth(1).expect("row").split("</tr>").next().expect("row");
    assert!(row.contains("revoked"), "{row}");
}

#[test]
fn the_all_clear_waits_until_no_till_holds_unsent_sales() {
    let s = TestServer::start();
    let (cookie, _) = login(&s);
    // One sale settled by this request, 3 more still on the till, the oldest a second old: under the
    // 1 h threshold, so nothing is flagged, but the money is not all on the server.
    let mut body = request(vec![envelope(&new_id(), &sale("store-1", 1, 1))]);
    body["report"] = json!({"unsent_count": 4, "oldest_unsent_age_ms": 1000, "unsent_minor": {"EUR": 400}});
    assert_eq!(s.push(&body).status_of(0), "OK");
    let text = summary(&s, &cookie);
    assert!(!text.contains("Every till's money is on the server"), "{text}");
    assert!(text.contains("3 sale(s) are still on 1 till(s), on their way"), "{text}");
    // The till has sent everything: now the all-clear is true.
    let mut body = request(vec![envelope(&new_id(), &sale("store-1", 2, 1))]);
    body["report"] = json!({"unsent_count": 1});
    assert_eq!(s.push(&body).status_of(0), "OK");
    let text = summary(&s, &cookie);
    assert!(text.contains("Every till's money is on the server"), "{text}");
}

#[test]
fn unsent_amounts_and_sales_today_are_exported_as_on_the_page() {
    let s = TestServer::start();
    let now_ms = possync_server::clock::now_ms();
    let mut today = sale("store-1", 1, 1);
    today.header.occurred_at_ms = now_ms;
    let mut body = request(vec![envelope(&new_id(), &today)]);
    body["report"] = json!({"unsent_count": 3, "oldest_unsent_age_ms": 1000,
        "unsent_minor": {"EUR": 123450, "JPY": 500}});
    assert_eq!(s.push(&body).status_of(0), "OK");
    s.flush_activity();
    let expected_eur = 123450 - today.header.total_minor;
    let day_start = now_ms - now_ms.rem_euclid(86_400_000);
    assert_eq!(s.store.tills(day_start).expect("tills")[0].sales_today, 1, "the sale occurred today");
    let (cookie, _) = login(&s);
    let (_, page, _) = get(&s, "/console", &[("Cookie", &cookie)]);
    let row =
        page.split(r#"id="till-store-1-till-1""#).nth(1).expect("row").split("</tr>").next().expect("row");
    let eur = possync_server::console::views::money(expected_eur, "EUR");
    assert!(row.contains(&eur) && row.contains("500 JPY"), "the page shows {eur}: {row}");
    assert!(row.contains(r#"<td class="today">1</td>"#), "{row}");
    let metrics = s.get("/metrics");
    let text = metrics.body.as_str().expect("text");
    let sample =
        |name: &str, labels: &str| format!("{name}{{store_id=\"store-1\",device_id=\"till-1\"{labels}}} ");
    assert!(
        text.contains(&format!(
            "{}{expected_eur}\n",
            sample("possync_device_unsent_minor", r#",currency="EUR""#)
        )),
        "the request's own sale is taken off, as on the page: {text}"
    );
    assert!(
        text.contains(&format!("{}500\n", sample("possync_device_unsent_minor", r#",currency="JPY""#))),
        "{text}"
    );
    assert!(text.contains(&format!("{}1\n", sample("possync_device_sales_today", ""))), "{text}");
}

#[test]
fn a_wiped_outbox_keeps_its_lost_run_on_the_page_in_gaps_and_metrics() {
    let s = TestServer::start();
    // The till's first outbox pushes 1..100 and reports it numbered up to 150 (101–150 unsent).
    let envs = (1..=100).map(|n| with_seq(envelope(&new_id(), &sale("store-1", n, 1)), n)).collect();
    let mut body = request(envs);
    body["report"] = json!({"unsent_count": 150, "last_seq": 150, "seq_start": 1, "outbox_id": "old-outbox"});
    let r = s.push(&body);
    assert!((0..100).all(|i| r.status_of(i) == "OK"), "{:?}", r.body);
    s.flush_activity();
    // Reinstalled: a new outbox numbers from 1 again.
    let envs = (1..=5).map(|n| with_seq(envelope(&new_id(), &sale("store-1", 1000 + n, 1)), n)).collect();
    let mut body = request(envs);
    body["report"] = json!({"unsent_count": 5, "last_seq": 5, "seq_start": 1, "outbox_id": "new-outbox"});
    let r = s.push(&body);
    assert!((0..5).all(|i| r.status_of(i) == "OK"), "{:?}", r.body);
    s.flush_activity();
    let expected = "store-1 till-1: sales 101–150 recorded on till-1 in its previous outbox, never received";
    for _ in 0..2 {
        let (ok, out, err) = run(cli().args(["gaps", "--database-url", &db_url(&s.db)]));
        assert!(!ok, "lost sales fail the command: {out}{err}");
        let gap_lines: Vec<&str> = out.lines().filter(|l| l.contains("sale")).collect();
        assert_eq!(
            gap_lines.first().copied(),
            Some(expected),
            "the new outbox's 1..5 are no gap, and the lost run stays: {out}"
        );
        assert_eq!(out.lines().filter(|l| l.contains("never received")).count(), 1, "{out}");
        assert!(err.contains("50 sale(s)"), "{err}");
    }
    let (cookie, _) = login(&s);
    let (_, page, _) = get(&s, "/console", &[("Cookie", &cookie)]);
    assert!(
        page.contains("sales 101–150 recorded on till-1 in its previous outbox, never received"),
        "{page}"
    );
    let metrics = s.get("/metrics");
    let text = metrics.body.as_str().expect("text");
    for (name, value) in [("possync_device_lost_sales", 50), ("possync_device_missing_sales", 50)] {
        let line = format!("{name}{{store_id=\"store-1\",device_id=\"till-1\"}} {value}\n");
        assert!(text.contains(&line), "{line} in {text}");
    }
}
