//! Logging in to the console from a browser on plain HTTP: the form's `Secure` cookie never came
//! back, so the answer says so (TLS or `--console-insecure-cookie`), not "reload the form".

use possync_server::console::session::{hash_secret, new_secret};
use possync_server::store::AdminStore;
use possync_test_support::TestServer;
use serde_json::Value;

/// POSTs the login form without the form's cookie (as a browser that never stored it does), with
/// `headers`; the answer's status and JSON code and message.
fn login_without_cookie(s: &TestServer, headers: &[(&str, &str)]) -> (u16, String, String) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let mut req = agent
        .post(format!("{}/console/login", s.base))
        .header("Content-Type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send("name=manager&secret=x&csrf=0123").expect("POST");
    let body: Value = serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json");
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    (resp.status().as_u16(), text("code"), text("message"))
}

#[test]
fn a_login_over_plain_http_says_the_console_needs_tls() {
    let s = TestServer::start();
    let secret = new_secret();
    assert!(s.store.create_admin("manager", &hash_secret(&secret).expect("hash")).expect("admin"));
    let origin = s.base.clone();
    assert!(origin.starts_with("http://"));
    for headers in [
        vec![("Origin", origin.as_str())],
        vec![("Referer", &*format!("{origin}/console/login"))],
        vec![("X-Forwarded-Proto", "http"), ("Origin", "https://pos.example.shop")],
    ] {
        let (status, code, message) = login_without_cookie(&s, &headers);
        assert_eq!((status, code.as_str()), (403, "console_needs_tls"), "{headers:?}: {message}");
        assert!(message.contains("plain HTTP") && message.contains("--console-insecure-cookie"), "{message}");
    }
    // Over HTTPS (as the browser or the proxy tells) a missing cookie is the form's CSRF problem.
    for headers in [
        vec![("Origin", "https://pos.example.shop")],
        vec![("X-Forwarded-Proto", "https"), ("Origin", origin.as_str())],
        vec![],
    ] {
        let (status, code, _) = login_without_cookie(&s, &headers);
        assert_eq!((status, code.as_str()), (403, "csrf_invalid"), "{headers:?}");
    }
}
