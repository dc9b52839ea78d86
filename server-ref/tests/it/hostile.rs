//! Hostile clients against the real `possync-server serve` process, over raw TCP.
//!
//! Each case attacks a bound of the HTTP front (lengths that lie, bodies and heads that never come,
//! clients that never read, smuggling, huge heads, connection floods, file-descriptor exhaustion) and
//! asserts, during and after the attack, that a normal push on a fresh connection is answered within
//! 2 s, that the process is alive, that nothing smuggled is stored and that RSS stays bounded. Every
//! case is bounded in time; the server runs with short timeouts so the suite stays quick.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use possync_test_support::{cli, db_url, envelope, new_id, request, run_cli, sale, TestDb};

/// Largest RSS accepted during and after an attack.
const MAX_RSS_KIB: u64 = 200 * 1024;
/// A normal push must be answered within this, during and after every attack.
const NORMAL_PUSH_WITHIN: Duration = Duration::from_secs(2);

struct Hostile {
    child: std::process::Child,
    addr: String,
    token: String,
    db: TestDb,
    log: PathBuf,
    agent: ureq::Agent,
}

impl Hostile {
    /// A migrated database, a token for `store-1` / `till-1`, and `serve` with short bounds plus
    /// `extra` options; `nofile` runs it under that `RLIMIT_NOFILE` (soft and hard).
    fn start(extra: &[&str], nofile: Option<u64>) -> Hostile {
        let db = TestDb::create();
        let url = db_url(&db);
        let (ok, _, err) = run_cli(&url, &["migrate"]);
        assert!(ok, "migrate: {err}");
        let (ok, token, err) =
            run_cli(&url, &["token", "create", "--store", "store-1", "--device", "till-1"]);
        assert!(ok, "token create: {err}");
        let log = std::env::temp_dir().join(format!("possync-hostile-{}.log", new_id()));
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = std::process::Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(cli().get_program());
                for (k, v) in cli().get_envs() {
                    match v {
                        Some(v) => c.env(k, v),
                        None => c.env_remove(k),
                    };
                }
                c
            }
            None => cli(),
        };
        cmd.args(["serve", "--database-url", &url, "--listen", "127.0.0.1:0", "--log-level", "info"]);
        // Short bounds, unless `extra` sets the same option.
        for (flag, value) in [
            ("--header-read-timeout-ms", "1500"),
            ("--body-read-timeout-ms", "1500"),
            ("--write-timeout-ms", "1500"),
            ("--request-deadline-ms", "4000"),
            ("--idle-timeout-ms", "5000"),
            ("--max-body-bytes", "65536"),
            ("--max-header-bytes", "16384"),
        ] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let child = cmd.spawn().expect("spawn possync-server serve");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(NORMAL_PUSH_WITHIN))
            .max_idle_connections(0)
            .build()
            .into();
        let mut h = Hostile { child, addr: String::new(), token: token.trim().to_owned(), db, log, agent };
        h.addr = h.wait_listening();
        h
    }

    /// The address from the "listening" log line (port 0 was bound by the server itself).
    fn wait_listening(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited with {status}: {}", self.log_text());
            }
            let text = self.log_text();
            if let Some(addr) = possync_test_support::listening_address(&text) {
                return addr;
            }
            assert!(Instant::now() < deadline, "serve did not listen within 30 s: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    }

    /// A push of one fresh sale on a fresh connection: answered 200 / OK within 2 s.
    fn assert_normal_push(&self, when: &str) {
        let id = new_id();
        let body = request(vec![envelope(&id, &sale("store-1", 1, 2))]);
        let started = Instant::now();
        let reply = self
            .agent
            .post(self.url("/sync/push"))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(&body);
        let elapsed = started.elapsed();
        let mut reply =
            reply.unwrap_or_else(|e| panic!("{when}: a normal push failed after {elapsed:?}: {e}"));
        let status = reply.status().as_u16();
        let json: serde_json::Value = reply.body_mut().read_json().expect("push answer is JSON");
        assert_eq!(status, 200, "{when}: {json}");
        assert_eq!(json["results"][0]["status"], "OK", "{when}: {json}");
        assert!(elapsed <= NORMAL_PUSH_WITHIN, "{when}: a normal push took {elapsed:?}");
    }

    /// The process is alive and its RSS bounded.
    fn assert_healthy(&mut self, when: &str) {
        assert!(matches!(self.child.try_wait(), Ok(None)), "{when}: the server died: {}", self.log_text());
        let rss = rss_kib(self.child.id());
        assert!(rss < MAX_RSS_KIB, "{when}: RSS {rss} KiB");
    }

    /// A counter of `/metrics`, e.g. `possync_http_limit_hits_total{limit="body_timeout"}` (0 when
    /// absent).
    fn metric(&self, series: &str) -> f64 {
        let mut reply = self.agent.get(self.url("/metrics")).call().expect("metrics");
        let text = reply.body_mut().read_to_string().expect("metrics text");
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
    }

    fn limit_hits(&self, limit: &str) -> f64 {
        self.metric(&format!("possync_http_limit_hits_total{{limit=\"{limit}\"}}"))
    }

    fn sales_stored(&self, client_tx_id: &str) -> i64 {
        let mut c = self.db.client();
        c.query_one("SELECT count(*) FROM pos_transactions WHERE client_tx_id = $1", &[&client_tx_id])
            .expect("count")
            .get(0)
    }

    /// A token for another till of `store-1`, inserted as `token create` would.
    fn add_till(&self, device_id: &str) -> String {
        let token = possync_server::auth::generate_token();
        let sha = possync_server::auth::token_sha256(&token);
        self.db
            .client()
            .execute(
                "INSERT INTO pos_devices (token_sha256, store_id, device_id) VALUES ($1, 'store-1', $2)",
                &[&sha, &device_id],
            )
            .expect("token");
        token
    }

    /// The push request bytes of one sale, with `token` (if any).
    fn push_request(&self, client_tx_id: &str, token: Option<&str>) -> Vec<u8> {
        let body =
            serde_json::to_vec(&request(vec![envelope(client_tx_id, &sale("store-1", 7, 1))])).expect("json");
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let mut out = format!(
            "POST /sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What came back on a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one answer (head and `Content-Length` body); `None` when the connection closed or timed out
/// before a whole head came.
fn read_answer(s: &mut TcpStream) -> Option<RawAnswer> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&byte[..n]),
        }
    }
    Some(RawAnswer { status, head, body: String::from_utf8_lossy(&body).into_owned() })
}

/// Whether the server closes `s` within `within` (EOF or reset), reading and discarding what comes.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// The JSON error code of an answer.
fn code_of(a: &RawAnswer) -> String {
    serde_json::from_str::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Heads that declare a body and never send a byte of it. A push declaring more than the body limit
/// is answered 413 `body_too_large` and closed without its body being read (a read would have ended
/// in 408 after the 1.5 s body timeout); a length that is no number or no `u64` is refused by the
/// parser (400, or 431 for `u64::MAX`); the other routes answer without reading the body. Every one
/// is answered and closed.
#[test]
fn lying_content_lengths_get_a_bounded_answer_and_kill_nothing() {
    let mut h = Hostile::start(&[], None);
    let mut open = Vec::new();
    for len in ["9223372036854775807", "18446744073709551615", "99999999999999999999999", "-1", "12abc"] {
        for (method, path, token) in [
            ("GET", "/healthz", None),
            ("POST", "/sync/push", None),
            ("POST", "/sync/push", Some(&h.token)),
            ("GET", "/x", None),
        ] {
            for _ in 0..4 {
                let mut s = h.connect();
                let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
                let req =
                    format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len}\r\n\r\n");
                s.write_all(req.as_bytes()).expect("send");
                open.push((len, path, s));
            }
        }
    }
    h.assert_normal_push("with 80 lying lengths open");
    for (len, path, s) in &mut open {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let a = read_answer(s).unwrap_or_else(|| panic!("Content-Length {len} on {path}: no answer"));
        let expected = match (len.parse::<u64>(), *path) {
            (Err(_), _) => 400,
            // hyper keeps u64::MAX for "delimited by the close": its parser refuses it as a length.
            (Ok(u64::MAX), _) => 431,
            (Ok(_), "/sync/push") => 413,
            (Ok(_), "/healthz") => 200,
            (Ok(_), _) => 404,
        };
        assert_eq!(a.status, expected, "Content-Length {len} on {path}: {a:?}");
        if expected == 413 {
            // Not 408 `body_timeout`, which a server waiting for the body would answer after 1.5 s.
            assert_eq!(code_of(&a), "body_too_large", "{a:?}");
            assert!(a.head.to_ascii_lowercase().contains("connection: close"), "{}", a.head);
        }
        assert!(closed_within(s, Duration::from_secs(8)), "Content-Length {len} on {path}: never closed");
    }
    h.assert_healthy("after the lying lengths");
    h.assert_normal_push("after the lying lengths");
}

#[test]
fn bodies_and_heads_that_never_come_do_not_freeze_the_server() {
    let mut h = Hostile::start(&[], None);
    // Each stalled push from a till of its own (one till's second push would be 429 at once).
    let stallers: Vec<String> = (0..8).map(|i| h.add_till(&format!("till-stall-{i}"))).collect();
    let mut never = Vec::new();
    for i in 0..24 {
        let mut s = h.connect();
        let req = match i % 3 {
            0 => "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n".to_owned(),
            1 => format!(
                "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 2000\r\n\r\n{{",
                stallers[i / 3]
            ),
            _ => "POST /sync/push HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_owned(),
        };
        s.write_all(req.as_bytes()).expect("send");
        never.push((i % 3, s));
    }
    h.assert_normal_push("with 24 stalled requests open");
    let healthz = h.agent.get(h.url("/healthz")).call().expect("healthz during the stall");
    assert_eq!(healthz.status().as_u16(), 200);
    assert_eq!(h.metric("possync_push_in_flight"), 0.0, "a body being read holds no push slot");
    for (kind, s) in &mut never {
        // A stalled push body gets 408 and close; a stalled head is closed; /healthz is answered
        // and then closed when its body never comes.
        if *kind == 1 {
            let a = read_answer(s).expect("a stalled push body is answered");
            assert_eq!((a.status, code_of(&a).as_str()), (408, "body_timeout"), "{a:?}");
        }
        assert!(closed_within(s, Duration::from_secs(8)), "stalled request kind {kind} never closed");
    }
    assert!(h.limit_hits("body_timeout") >= 8.0, "body timeouts counted");
    assert!(h.limit_hits("header_timeout") >= 8.0, "head timeouts counted");
    h.assert_healthy("after the stalls");
    h.assert_normal_push("after the stalls");
}

#[test]
fn slow_bodies_and_slow_heads_are_cut_off() {
    let mut h = Hostile::start(&[], None);
    let token = h.add_till("till-slow");
    let addr = h.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut results = Vec::new();
        for head_only in [false, true] {
            let mut s = TcpStream::connect(&addr).expect("connect");
            let started = Instant::now();
            let prefix = if head_only {
                "POST /sync/push HTTP/1.1\r\nHost: x\r\nX-A: ".to_owned()
            } else {
                format!("POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 500\r\n\r\n")
            };
            s.write_all(prefix.as_bytes()).expect("send");
            // One byte every 200 ms until the server gives up (or 10 s).
            let cut = loop {
                std::thread::sleep(Duration::from_millis(200));
                if s.write_all(b"a").is_err() || started.elapsed() > Duration::from_secs(10) {
                    break started.elapsed();
                }
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 1024];
                // Data (the 408) or EOF: the server gave up on us.
                let gone = s.read(&mut b).is_ok();
                let _ = s.set_nonblocking(false);
                if gone {
                    break started.elapsed();
                }
            };
            results.push((head_only, cut));
        }
        results
    });
    std::thread::sleep(Duration::from_millis(500));
    h.assert_normal_push("during a slow body");
    for (head_only, cut) in slow.join().expect("slow client") {
        assert!(
            cut < Duration::from_secs(6),
            "slow {} ran for {cut:?}",
            if head_only { "head" } else { "body" }
        );
    }
    h.assert_healthy("after the slow clients");
    h.assert_normal_push("after the slow clients");
}

#[test]
fn a_client_that_pipelines_without_reading_is_cut_off() {
    let mut h = Hostile::start(&[], None);
    let addr = h.addr.clone();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
        // Requests in batches of 1,000, never reading an answer, until the server closes the
        // connection (a write fails) or 30 s pass. Once the kernel buffers are full of answers, the
        // server's writes stall and its write timeout must cut the connection.
        let batch = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1000);
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(30) {
            if s.write_all(&batch).is_err() {
                return (sent, true);
            }
            sent += 1000;
        }
        (sent, false)
    });
    std::thread::sleep(Duration::from_millis(500));
    h.assert_normal_push("while a client pipelines without reading");
    h.assert_healthy("while a client pipelines without reading");
    let (sent, cut) = writer.join().expect("writer");
    assert!(cut, "a client that never reads was not cut off ({sent} requests sent in 30 s)");
    assert!(sent >= 20_000, "cut off after {sent} requests only");
    assert!(h.limit_hits("idle_or_write_timeout") >= 1.0, "the write timeout is counted");
    h.assert_healthy("after the pipelining client");
    h.assert_normal_push("after the pipelining client");
}

#[test]
fn nothing_hidden_in_a_refused_body_is_parsed_as_a_request() {
    let mut h = Hostile::start(&[], None);
    // 1. A chunked body over the limit, whose tail is a whole push request: 413, close, not stored.
    let smuggled = new_id();
    let hidden = h.push_request(&smuggled, Some(&h.token));
    let mut s = h.connect();
    let head = format!(
        "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        h.token
    );
    let filler = vec![b' '; 70_000];
    let mut req = head.into_bytes();
    req.extend_from_slice(format!("{:x}\r\n", filler.len()).as_bytes());
    req.extend_from_slice(&filler);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    req.extend_from_slice(&hidden);
    let _ = s.write_all(&req);
    let a = read_answer(&mut s).expect("answer to the oversized chunked body");
    assert_eq!((a.status, code_of(&a).as_str()), (413, "body_too_large"), "{a:?}");
    assert!(a.head.to_ascii_lowercase().contains("connection: close"), "{}", a.head);
    assert!(read_answer(&mut s).is_none(), "no second answer: the hidden request was not parsed");

    // 2. The same after a 401: an unauthenticated request whose body hides an authenticated push.
    let smuggled_401 = new_id();
    let hidden = h.push_request(&smuggled_401, Some(&h.token));
    let mut s = h.connect();
    let mut req = format!("POST /sync/push HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", hidden.len())
        .into_bytes();
    req.extend_from_slice(&hidden);
    req.extend_from_slice(&hidden);
    let _ = s.write_all(&req);
    let a = read_answer(&mut s).expect("answer to the unauthenticated push");
    assert_eq!((a.status, code_of(&a).as_str()), (401, "missing_token"), "{a:?}");
    assert!(read_answer(&mut s).is_none(), "no second answer after a 401");

    // 3. Ambiguous framing. Content-Length with Transfer-Encoding (either order), around a valid
    // chunked push, on a connection that first served a normal request: 400 `ambiguous_framing`,
    // the push not stored, the connection closed.
    for framing in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    ] {
        let (framed, smuggled_framing) = (new_id(), new_id());
        let body =
            serde_json::to_vec(&request(vec![envelope(&framed, &sale("store-1", 3, 1))])).expect("json");
        let hidden = h.push_request(&smuggled_framing, Some(&h.token));
        let mut s = h.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let a = read_answer(&mut s).expect("the health check is answered");
        assert_eq!(a.status, 200, "{framing:?}: {a:?}");
        let mut req = Vec::new();
        req.extend_from_slice(
            format!(
                "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\n{framing}\r\n{:x}\r\n",
                h.token,
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(&body);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        req.extend_from_slice(&hidden);
        let _ = s.write_all(&req);
        let a = read_answer(&mut s).expect("the ambiguous push is answered");
        assert_eq!((a.status, code_of(&a).as_str()), (400, "ambiguous_framing"), "{framing:?}: {a:?}");
        assert!(read_answer(&mut s).is_none(), "{framing:?}: nothing after the refusal");
        assert_eq!(h.sales_stored(&framed), 0, "{framing:?}: the ambiguous push was stored");
        assert_eq!(h.sales_stored(&smuggled_framing), 0, "{framing:?}: the hidden push was stored");
    }
    assert!(h.limit_hits("ambiguous_framing") >= 2.0);
    // Two different Content-Lengths, or a malformed one: hyper refuses the head (400, or closed
    // without an answer); either way nothing after it is parsed.
    for framing in
        ["Content-Length: 5\r\nContent-Length: 6\r\n", "Content-Length: 5\r\nContent-Length: 5x\r\n"]
    {
        let smuggled_framing = new_id();
        let hidden = h.push_request(&smuggled_framing, Some(&h.token));
        let mut s = h.connect();
        let mut req = format!(
            "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{framing}\r\n",
            h.token
        )
        .into_bytes();
        req.extend_from_slice(b"0\r\n\r\n");
        req.extend_from_slice(&hidden);
        let _ = s.write_all(&req);
        if let Some(a) = read_answer(&mut s) {
            assert_eq!(a.status, 400, "{framing:?}: {a:?}");
        }
        assert!(read_answer(&mut s).is_none(), "{framing:?}: nothing after the refusal");
        assert_eq!(h.sales_stored(&smuggled_framing), 0, "{framing:?}: the hidden push was stored");
    }
    assert_eq!(h.sales_stored(&smuggled), 0, "the push hidden after the 413 was stored");
    assert_eq!(h.sales_stored(&smuggled_401), 0, "the push hidden after the 401 was stored");
    assert!(h.limit_hits("body_too_large") >= 1.0);
    h.assert_healthy("after the smuggling attempts");
    h.assert_normal_push("after the smuggling attempts");
}

/// A header line that never ends: the server stops it at its head limit (16 KiB here) with 431 and
/// closes the connection, at once. A server that merely stopped reading would pass a check of the
/// bytes it took; here the client's writes must end on the server's close (a reset or a broken
/// pipe, not a timed-out write), and what it then reads is the 431 or the end of the connection,
/// well within the 1.5 s head timeout.
#[test]
fn a_huge_header_is_refused_early_and_memory_stays_bounded() {
    let mut h = Hostile::start(&[], None);
    let mut s = h.connect();
    s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ").expect("send");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    // Up to 200 MB: the server must stop us long before.
    let stopped = loop {
        if sent >= 200 * 1024 * 1024 {
            break None;
        }
        match s.write_all(&chunk) {
            Ok(()) => sent += chunk.len(),
            Err(e) => break Some(e),
        }
    };
    let took = started.elapsed();
    let e = stopped.unwrap_or_else(|| panic!("the server read {sent} bytes of one header line"));
    assert!(
        !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        "the server stopped reading without closing: the write timed out after {took:?} ({sent} bytes)"
    );
    assert!(sent < 8 * 1024 * 1024, "the server read {sent} bytes of one header line");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    // The 431 may be lost to the reset of the bytes still in flight; then the connection is closed.
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    match read_answer(&mut s) {
        Some(a) => assert_eq!(a.status, 431, "{a:?}"),
        None => assert!(closed_within(&mut s, Duration::from_secs(2)), "neither 431 nor closed"),
    }
    assert!(h.limit_hits("header_too_large") >= 1.0, "the refusal is counted");
    h.assert_healthy("after a huge header");
    h.assert_normal_push("after a huge header");
}

#[test]
fn thousands_of_idle_connections_and_a_low_fd_limit_keep_the_server_serving() {
    let _ = rlimit::increase_nofile_limit(8192);
    // Under 128 descriptors the server caps its connections and evicts the longest idle.
    let mut h = Hostile::start(&[], Some(128));
    let mut idle = Vec::new();
    for _ in 0..600 {
        match TcpStream::connect(&h.addr) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    h.assert_normal_push("with 600 idle connections under RLIMIT_NOFILE 128");
    h.assert_healthy("with 600 idle connections under RLIMIT_NOFILE 128");
    let cap = h.metric("possync_http_connections_max");
    assert!(cap > 0.0 && cap < 128.0, "the connection cap fits the fd limit: {cap}");
    assert!(
        h.limit_hits("max_connections") >= 1.0,
        "connections past the cap evicted idle ones: accept errors {}, open {}",
        h.limit_hits("accept_error"),
        h.metric("possync_http_connections_open")
    );
    drop(idle);
    // Without the fd limit, 2,000 connections at once.
    let mut h2 = Hostile::start(&[], None);
    let mut flood = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(&h2.addr) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
    }
    assert!(flood.len() >= 1500, "only {} connections opened", flood.len());
    h2.assert_normal_push("with 2,000 idle connections");
    h2.assert_healthy("with 2,000 idle connections");
    drop(flood);
    h.assert_normal_push("after the idle connections");
    h2.assert_normal_push("after the flood");
}

/// The case: the token is cached, the database refuses connections, and a push names 40
/// sales. The revocation listener's connection is left alive (a database that refuses *new*
/// connections keeps the open ones), so the token cache stays on and the request really reaches the
/// sales; the pool's connections are killed, so every sale would need a new one.
#[test]
fn an_unreachable_database_answers_503_within_one_pool_timeout() {
    let mut h = Hostile::start(&["--pool-timeout-ms", "1000", "--token-cache-secs", "60"], None);
    // The token is cached once the revocation listener is up (it starts with the server): push until
    // a push was served from the cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metric("possync_token_cache_hits_total") < 1.0 {
        h.assert_normal_push("before the database goes away");
        assert!(Instant::now() < deadline, "the token was never served from the cache");
    }
    let mut admin = h.db.config.clone();
    admin.dbname("postgres");
    let mut c = admin.connect(postgres::NoTls).expect("admin connection");
    c.batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", h.db.name)).expect("refuse");
    let killed: i64 = c
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND query NOT ILIKE 'LISTEN%'",
            &[&h.db.name],
        )
        .expect("terminate the pool's connections")
        .get(0);
    assert!(killed >= 1, "the pool held no connection to kill");
    let hits_before = h.metric("possync_token_cache_hits_total");
    let ids: Vec<String> = (0..40).map(|_| new_id()).collect();
    let body =
        request(ids.iter().enumerate().map(|(i, id)| envelope(id, &sale("store-1", i as i64, 1))).collect());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let started = Instant::now();
    let reply = agent
        .post(h.url("/sync/push"))
        .header("Authorization", &format!("Bearer {}", h.token))
        .send_json(&body)
        .expect("answered");
    let mut reply = reply;
    let elapsed = started.elapsed();
    let retry_after = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = reply.status().as_u16();
    let answer = reply.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after.is_some(), "503 carries Retry-After");
    assert!(
        h.metric("possync_token_cache_hits_total") > hits_before,
        "the token was not taken from the cache: the push never reached its sales: {answer}"
    );
    // One pool timeout (1 s) for each of the 4 lanes at once. One timeout per sale would be 10 s
    // (40 sales over 4 lanes); the bound leaves a loaded 2-core machine 3 s of scheduling.
    assert!(
        elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}: not within one pool timeout (1 s), more like one per sale: {answer}"
    );
    c.batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", h.db.name)).expect("allow");
    h.assert_healthy("after the database came back");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = agent
            .post(h.url("/sync/push"))
            .header("Authorization", &format!("Bearer {}", h.token))
            .send_json(&body);
        if r.is_ok_and(|r| r.status().as_u16() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not recover when the database came back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pooled connections are tested at checkout only once they have been idle past
/// `pg_pool::TRUSTED_FOR` (1 s), so connections the database closed while they sat idle (a restart,
/// an administrator, a proxy) are replaced before any sale uses them: the next push is all `OK`.
#[test]
fn connections_killed_while_idle_are_replaced_before_use() {
    let h = Hostile::start(&["--workers", "4", "--pool-size", "4", "--token-cache-secs", "60"], None);
    // Four sales over four lanes open the pool's four connections.
    let warm: Vec<String> = (0..4).map(|_| new_id()).collect();
    let (status, _) = push_in_thread(&h, &h.till_1(), &warm).join().expect("warm-up push");
    assert_eq!(status, 200);
    let mut c = h.db.client();
    let killed: i64 = c
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND query NOT ILIKE 'LISTEN%'",
            &[],
        )
        .expect("terminate the pool's idle connections")
        .get(0);
    assert!(killed >= 1, "the pool held no connection to kill");
    // Idle past the trust window (1 s): the next checkout of each connection tests it.
    std::thread::sleep(Duration::from_millis(1500));
    let ids: Vec<String> = (0..12).map(|_| new_id()).collect();
    let (status, answer) = push_in_thread(&h, &h.till_1(), &ids).join().expect("push after the kill");
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().expect("results");
    let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap_or("?")).collect();
    assert!(statuses.iter().all(|s| *s == "OK"), "every sale stored on a fresh connection: {statuses:?}");
    for id in &ids {
        assert_eq!(h.sales_stored(id), 1, "sale {id} stored once");
    }
}

/// A push whose sales cannot all be settled before the request deadline: the sale already waiting
/// on a lock ends with its lock timeout, every sale not started by the deadline answers `RETRY`
/// `deadline_exceeded` untouched, nothing is stored, and the same push succeeds once the lock is gone.
#[test]
fn sales_not_settled_by_the_request_deadline_answer_retry_and_store_nothing() {
    let h = Hostile::start(
        &["--request-deadline-ms", "600", "--lock-timeout-ms", "1500", "--sale-lanes", "1"],
        None,
    );
    h.assert_normal_push("before the table is locked");
    let ids: Vec<String> = (0..10).map(|_| new_id()).collect();
    let body =
        request(ids.iter().enumerate().map(|(i, id)| envelope(id, &sale("store-1", i as i64, 1))).collect());
    // The sale already waiting on the lock is answered after its 1.5 s lock timeout: the client
    // waits for the answer as long as a till would (30 s), not the suite's 2 s.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let push = || {
        let mut reply = agent
            .post(h.url("/sync/push"))
            .header("Authorization", &format!("Bearer {}", h.token))
            .send_json(&body)
            .expect("answered");
        assert_eq!(reply.status().as_u16(), 200);
        reply.body_mut().read_json::<serde_json::Value>().expect("JSON answer")
    };
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let answer = push();
    tx.rollback().expect("unlock");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), ids.len(), "{answer}");
    assert!(results.iter().all(|r| r["status"] == "RETRY"), "{answer}");
    let late = results.iter().filter(|r| r["code"] == "deadline_exceeded").count();
    assert!(late >= ids.len() - 1, "only {late} sales answered deadline_exceeded: {answer}");
    assert!(ids.iter().all(|id| h.sales_stored(id) == 0), "a sale was stored past the deadline");
    assert!(h.limit_hits("request_deadline") >= late as f64);
    let again = push();
    assert!(again["results"].as_array().expect("results").iter().all(|r| r["status"] == "OK"), "{again}");
    assert!(ids.iter().all(|id| h.sales_stored(id) == 1));
}

#[test]
fn another_stores_ids_are_neither_blocked_nor_revealed() {
    let mut h = Hostile::start(&[], None);
    let url = db_url(&h.db);
    let (ok, token_b, err) = run_cli(&url, &["token", "create", "--store", "store-2", "--device", "till-9"]);
    assert!(ok, "{err}");
    let push = |token: &str, device: &str, store: &str, seed: i64| -> serde_json::Value {
        let mut body = request(vec![envelope("R-0001", &sale(store, seed, 1))]);
        body["device_id"] = serde_json::json!(device);
        let mut r = h
            .agent
            .post(h.url("/sync/push"))
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .send_json(&body)
            .expect("push");
        r.body_mut().read_json().expect("json")
    };
    let a = push(&h.token, "till-1", "store-1", 1);
    let b = push(&token_b, "till-9", "store-2", 2);
    assert_eq!(
        (a["results"][0]["status"].as_str(), b["results"][0]["status"].as_str()),
        (Some("OK"), Some("OK"))
    );
    let conflict_a = push(&h.token, "till-1", "store-1", 3);
    assert_eq!(conflict_a["results"][0]["status"], "CONFLICT");
    let stored: Vec<(String, String)> =
        h.db.client()
            .query("SELECT store_id, payload_sha256 FROM pos_transactions WHERE client_tx_id = 'R-0001'", &[])
            .expect("rows")
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(stored.len(), 2, "both stores keep their own sale: {stored:?}");
    let b_hash = stored.iter().find(|(s, _)| s == "store-2").map(|(_, h)| h.clone()).expect("store-2 sale");
    assert!(!conflict_a.to_string().contains(&b_hash), "store-1's answer names store-2's sale: {conflict_a}");
    assert_ne!(a["results"][0]["server_tx_id"], b["results"][0]["server_tx_id"]);
    // A wrong method is told which one the route takes.
    let mut s = h.connect();
    s.write_all(b"DELETE /sync/push HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let a = read_answer(&mut s).expect("answer");
    assert_eq!(a.status, 405);
    assert!(a.head.to_ascii_lowercase().contains("allow: post"), "{}", a.head);
    h.assert_healthy("after the cross-store pushes");
}

/// Polls `/metrics` until `possync_push_in_flight` reads `n`.
fn wait_pushes_in_flight(h: &Hostile, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = format!("possync_push_in_flight {n}");
    loop {
        let text = h
            .agent
            .get(h.url("/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default();
        if text.lines().any(|l| l.trim() == wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "never {wanted}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A push shed by admission: 503 `overloaded` with a `Retry-After` of 1 or 2 s, and nothing stored.
fn assert_shed(h: &Hostile, reply: &mut ureq::http::Response<ureq::Body>, ids: &[String], when: &str) {
    assert_eq!(reply.status().as_u16(), 503, "{when}");
    let retry_after = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let secs: u64 = retry_after.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=2).contains(&secs), "{when}: Retry-After {retry_after:?} in [base, 2 × base]");
    let body: serde_json::Value = reply.body_mut().read_json().expect("a JSON error body");
    assert_eq!(body["code"], "overloaded", "{when}: {body}");
    let mut c = h.db.client();
    for id in ids {
        let stored: i64 = c
            .query_one("SELECT count(*) FROM pos_transactions WHERE client_tx_id = $1", &[id])
            .expect("count")
            .get(0);
        assert_eq!(stored, 0, "{when}: a shed sale is not stored");
    }
}

/// A till of `store-1`: its device id and token.
#[derive(Clone)]
struct Till {
    device: String,
    token: String,
}

impl Hostile {
    /// Till `till-1`, whose token the server started with.
    fn till_1(&self) -> Till {
        Till { device: "till-1".into(), token: self.token.clone() }
    }

    /// Another till of `store-1`.
    fn till(&self, device: &str) -> Till {
        Till { device: device.into(), token: self.add_till(device) }
    }
}

/// A push body of `ids` (one sale each) from `till`.
fn push_body(till: &Till, ids: &[String], seed: i64) -> serde_json::Value {
    let mut body = request(ids.iter().map(|id| envelope(id, &sale("store-1", seed, 1))).collect());
    body["device_id"] = serde_json::json!(till.device);
    body
}

/// A push of `ids` (one sale each) from `till` with the suite's 2 s agent.
fn push_now(h: &Hostile, till: &Till, ids: &[String]) -> ureq::http::Response<ureq::Body> {
    h.agent
        .post(h.url("/sync/push"))
        .header("Authorization", &format!("Bearer {}", till.token))
        .send_json(push_body(till, ids, 4))
        .expect("answered while pushes are held")
}

/// A push of `ids` (one sale each) from `till` on its own connection, in a thread, waiting up to 30 s.
fn push_in_thread(
    h: &Hostile,
    till: &Till,
    ids: &[String],
) -> std::thread::JoinHandle<(u16, serde_json::Value)> {
    let body = push_body(till, ids, 3);
    let (url, auth) = (h.url("/sync/push"), format!("Bearer {}", till.token));
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut reply = agent.post(&url).header("Authorization", &auth).send_json(&body).expect("answered");
        let status = reply.status().as_u16();
        (status, reply.body_mut().read_json::<serde_json::Value>().expect("json"))
    })
}

/// Pushes of several tills past the limits on pushes and sales in flight are shed at once with 503
/// `overloaded` when the server keeps no line (`--sales-wait-ms 0`; their bodies read first: a body
/// never holds a slot), a second push of a till whose push is in hand is refused at once with 429
/// `push_in_flight`, and the admitted pushes complete.
#[test]
fn pushes_past_the_admission_limits_are_shed_at_once_and_the_admitted_ones_complete() {
    // Two pushes and three sales in flight at most, no line.
    let mut h = Hostile::start(
        &[
            "--max-inflight-pushes",
            "2",
            "--max-inflight-sales",
            "3",
            "--sales-wait-ms",
            "0",
            "--lock-timeout-ms",
            "20000",
            "--retry-after-secs",
            "1",
        ],
        None,
    );
    h.assert_normal_push("before");
    let (till_1, till_a, till_b, till_c) = (h.till_1(), h.till("till-a"), h.till("till-b"), h.till("till-c"));
    // Hold the sales table: admitted pushes wait on the lock with their sales in flight.
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let first_ids = [new_id(), new_id()];
    let first = push_in_thread(&h, &till_1, &first_ids);
    wait_pushes_in_flight(&h, 1);

    // Till-1 again while its push is in hand: 429 at once, before its body is read.
    let again_ids = [new_id()];
    let mut reply = push_now(&h, &till_1, &again_ids);
    assert_eq!(reply.status().as_u16(), 429);
    let header = |r: &ureq::http::Response<ureq::Body>, name: &str| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(header(&reply, "retry-after").as_deref(), Some("1"), "the configured Retry-After");
    assert_eq!(header(&reply, "connection").as_deref(), Some("close"), "its unread body is never parsed");
    let body: serde_json::Value = reply.body_mut().read_json().expect("a JSON error body");
    assert_eq!(body["code"], "push_in_flight", "{body}");
    assert_eq!(h.sales_stored(&again_ids[0]), 0);

    // Two sales do not fit the one left in the budget: shed (its body read and counted, not checked).
    let shed_ids = [new_id(), new_id()];
    assert_shed(&h, &mut push_now(&h, &till_a, &shed_ids), &shed_ids, "over the sales budget");

    // One sale fits: admitted, and it waits on the lock too. Now two pushes are in flight: the next
    // is shed once its body is read.
    let second_ids = [new_id()];
    let second = push_in_thread(&h, &till_b, &second_ids);
    wait_pushes_in_flight(&h, 2);
    assert_shed(&h, &mut push_now(&h, &till_c, &shed_ids), &shed_ids, "over the pushes in flight");

    // Monitoring still answers while the database is held.
    h.assert_healthy("while the lock is held");
    tx.rollback().expect("release the lock");
    for (pushed, ids) in [(first, &first_ids[..]), (second, &second_ids[..])] {
        let (status, answer) = pushed.join().expect("thread");
        assert_eq!(status, 200, "{answer}");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), ids.len());
        assert!(results.iter().all(|r| r["status"] == "OK"), "{answer}");
    }
    // Sent again after the Retry-After, the shed and refused sales are stored.
    for (till, ids) in [(&till_a, &shed_ids[..]), (&till_1, &again_ids[..])] {
        let mut reply = push_now(&h, till, ids);
        assert_eq!(reply.status().as_u16(), 200);
        let answer: serde_json::Value = reply.body_mut().read_json().expect("json");
        assert!(
            answer["results"].as_array().expect("results").iter().all(|r| r["status"] == "OK"),
            "{answer}"
        );
    }
}

/// Shed pushes are told to come back at the rate the server admits pushes, not all in the same
/// second: with one push slot (and one push admitted), eight tills shed one after another are given
/// one second each, so their `Retry-After`s climb (a fixed `Retry-After` spread over [1, 2] s, as
/// before, tops out at 2). A till that comes back at once, again and again, is told its own second
/// again and pushes nobody's second away. Shed pushes store nothing.
#[test]
fn shed_pushes_are_told_seconds_of_their_own_to_come_back_in() {
    let h = Hostile::start(
        &[
            "--max-inflight-pushes",
            "1",
            "--sales-wait-ms",
            "0",
            "--lock-timeout-ms",
            "20000",
            "--retry-after-secs",
            "1",
        ],
        None,
    );
    let till_1 = h.till_1();
    let tills: Vec<Till> = (0..9).map(|n| h.till(&format!("till-{n}-shed"))).collect();
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let held_ids = [new_id()];
    let held = push_in_thread(&h, &till_1, &held_ids);
    wait_pushes_in_flight(&h, 1);

    let shed_secs = |till: &Till| -> u64 {
        let ids = [new_id()];
        let mut reply = push_now(&h, till, &ids);
        assert_eq!(reply.status().as_u16(), 503);
        let body: serde_json::Value = reply.body_mut().read_json().expect("a JSON error body");
        assert_eq!(body["code"], "overloaded", "{body}");
        let retry_after = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(h.sales_stored(&ids[0]), 0, "a shed sale is not stored");
        retry_after.and_then(|v| v.parse::<u64>().ok()).expect("a Retry-After in seconds")
    };
    let started = Instant::now();
    let seconds: Vec<u64> = tills[..8].iter().map(shed_secs).collect();
    // The first till, back at once twenty times, ignoring its Retry-After.
    let hammered: Vec<u64> = (0..20).map(|_| shed_secs(&tills[0])).collect();
    let next = shed_secs(&tills[8]);
    // Sheds that straddle the server's second boundaries lose at most one second each.
    let straddled = started.elapsed().as_secs() + 1;
    assert_eq!(seconds[0], 1, "the first shed push comes back after a second: {seconds:?}");
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]), "later pushes are told later seconds: {seconds:?}");
    assert!(
        seconds[7] + straddled >= 8,
        "eight pushes at one admitted per second are spread over eight seconds: {seconds:?} ({straddled} s straddled)"
    );
    // Back before its second, a till is told it again: it takes a new one only when its second has
    // come, at most once per second of the server's clock.
    let mut distinct = hammered.clone();
    distinct.dedup();
    assert!(distinct.len() as u64 <= straddled + 1, "a till back early keeps its own second: {hammered:?}");
    assert!(
        next <= seconds[7] + straddled,
        "the hammering took no second of the others: the next till gets {next} after {seconds:?} ({straddled} s straddled)"
    );
    tx.rollback().expect("release the lock");
    let (status, answer) = held.join().expect("thread");
    assert_eq!(status, 200, "{answer}");
}

/// A push whose sales do not fit the sales budget waits in line, holding its push slot, and is stored
/// when room comes; pushes past the push slots are shed at once; and a push that waits longer than
/// `--sales-wait-ms` is shed, its sales not stored.
#[test]
fn a_push_over_the_sales_budget_waits_in_line_and_one_past_the_slots_is_shed() {
    // Three pushes and three sales in flight at most; a long line wait.
    let h = Hostile::start(
        &[
            "--max-inflight-pushes",
            "3",
            "--max-inflight-sales",
            "3",
            "--sales-wait-ms",
            "20000",
            "--lock-timeout-ms",
            "20000",
            "--retry-after-secs",
            "1",
        ],
        None,
    );
    h.assert_normal_push("before");
    let (till_a, till_b, till_c, till_d) =
        (h.till("till-a"), h.till("till-b"), h.till("till-c"), h.till("till-d"));
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    // A takes two of the three sales and waits on the lock; B (two sales) does not fit: it waits in
    // line with its slot; C (one sale) fits the one left but comes after B: first come, first served.
    let ids_a = [new_id(), new_id()];
    let a = push_in_thread(&h, &till_a, &ids_a);
    wait_pushes_in_flight(&h, 1);
    let ids_b = [new_id(), new_id()];
    let b = push_in_thread(&h, &till_b, &ids_b);
    wait_pushes_in_flight(&h, 2);
    let ids_c = [new_id()];
    let c = push_in_thread(&h, &till_c, &ids_c);
    wait_pushes_in_flight(&h, 3);
    // Every slot is held: D is shed at once.
    let ids_d = [new_id()];
    assert_shed(&h, &mut push_now(&h, &till_d, &ids_d), &ids_d, "past the push slots");
    assert_eq!(h.sales_stored(&ids_b[0]) + h.sales_stored(&ids_c[0]), 0, "the line holds its sales back");
    tx.rollback().expect("release the lock");
    for (pushed, ids) in [(a, &ids_a[..]), (b, &ids_b[..]), (c, &ids_c[..])] {
        let (status, answer) = pushed.join().expect("thread");
        assert_eq!(status, 200, "{answer}");
        let results = answer["results"].as_array().expect("results");
        assert_eq!(results.len(), ids.len());
        assert!(results.iter().all(|r| r["status"] == "OK"), "{answer}");
        for id in ids {
            assert_eq!(h.sales_stored(id), 1, "stored once after its wait in line");
        }
    }
    drop(locker);
    drop(h);

    // A line wait that runs out: shed, nothing stored.
    let h = Hostile::start(
        &[
            "--max-inflight-sales",
            "1",
            "--sales-wait-ms",
            "300",
            "--lock-timeout-ms",
            "20000",
            "--retry-after-secs",
            "1",
        ],
        None,
    );
    h.assert_normal_push("before");
    let (till_a, till_b) = (h.till("till-a"), h.till("till-b"));
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let ids_a = [new_id()];
    let a = push_in_thread(&h, &till_a, &ids_a);
    wait_pushes_in_flight(&h, 1);
    let ids_b = [new_id()];
    assert_shed(&h, &mut push_now(&h, &till_b, &ids_b), &ids_b, "after its line wait ran out");
    tx.rollback().expect("release the lock");
    let (status, answer) = a.join().expect("thread");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(h.sales_stored(&ids_a[0]), 1);
}

/// The monitoring port answers `/healthz`, `/readyz` and `/metrics` on a thread of its own, and
/// nothing else: a push there is a 404 and stores nothing.
#[test]
fn the_monitoring_port_serves_the_monitoring_routes_only() {
    let mut h = Hostile::start(&["--monitor-listen", "127.0.0.1:0"], None);
    let monitor = possync_test_support::listening_field(&h.log_text(), "monitor")
        .filter(|m| !m.is_empty())
        .expect("the listening line names the monitoring port");
    assert_ne!(monitor, h.addr, "a port of its own");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let reply = h.agent.get(format!("http://{monitor}{path}")).call().expect("answered");
        assert_eq!(reply.status().as_u16(), 200, "{path} on the monitoring port");
    }
    let id = new_id();
    let mut reply = h
        .agent
        .post(format!("http://{monitor}/sync/push"))
        .header("Authorization", &format!("Bearer {}", h.token))
        .send_json(request(vec![envelope(&id, &sale("store-1", 1, 1))]))
        .expect("answered");
    assert_eq!(reply.status().as_u16(), 404);
    let body: serde_json::Value = reply.body_mut().read_json().expect("JSON error body");
    assert_eq!(body["code"], "not_found", "{body}");
    assert_eq!(h.sales_stored(&id), 0);
    h.assert_normal_push("with the monitoring port open");
    h.assert_healthy("with the monitoring port open");
}

/// `/metrics` does not wait behind the pushes: with the only database connection held by a push
/// waiting on a lock, a scrape still answers at once, with the last per-device gauges. The scrape
/// is taken once the push is admitted and its sale's statement is seen waiting on the lock in
/// PostgreSQL; the push is then answered `OK` once the lock goes.
#[test]
fn metrics_answer_while_every_database_connection_is_busy() {
    let h = Hostile::start(&["--workers", "1", "--pool-size", "1", "--lock-timeout-ms", "6000"], None);
    h.assert_normal_push("before the lock");
    let scrape = || {
        let started = Instant::now();
        let mut reply = h.agent.get(h.url("/metrics")).call().expect("metrics answered");
        let text = reply.body_mut().read_to_string().expect("metrics text");
        (started.elapsed(), text)
    };
    let (_, before) = scrape();
    assert!(before.contains("possync_device_"), "per-device gauges after a push: {before}");
    std::thread::sleep(Duration::from_millis(1100)); // past the gauges' freshness
    let mut locker = h.db.client();
    let mut tx = locker.transaction().expect("begin");
    tx.batch_execute("LOCK TABLE pos_transactions IN SHARE ROW EXCLUSIVE MODE").expect("lock");
    let id = new_id();
    std::thread::scope(|s| {
        let pusher = s.spawn(|| {
            let body = request(vec![envelope(&id, &sale("store-1", 2, 1))]);
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into();
            let mut reply = agent
                .post(h.url("/sync/push"))
                .header("Authorization", &format!("Bearer {}", h.token))
                .send_json(&body)
                .expect("the push is answered");
            let status = reply.status().as_u16();
            (status, reply.body_mut().read_json::<serde_json::Value>().expect("JSON answer"))
        });
        // The push holds the only connection: admitted, and its statement waits on the lock.
        wait_pushes_in_flight(&h, 1);
        wait_for_a_lock_wait(&h);
        let (took, during) = scrape();
        assert!(during.contains("possync_device_"), "the last per-device gauges: {during}");
        assert!(during.contains("possync_push_in_flight 1"), "scraped with the push in hand: {during}");
        // The gauges' wait is 0.5 s; a scrape queued behind the push would take its 6 s lock wait.
        assert!(took < Duration::from_secs(3), "a scrape waited {took:?} behind the push");
        tx.rollback().expect("unlock");
        let (status, answer) = pusher.join().expect("pusher");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["results"][0]["status"], "OK", "{answer}");
    });
    assert_eq!(h.sales_stored(&id), 1);
}

/// Waits until a statement of the test database waits on a lock (the push's, behind the test's
/// `LOCK TABLE`).
fn wait_for_a_lock_wait(h: &Hostile) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = h.db.client();
    loop {
        let waiting: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                &[],
            )
            .expect("pg_stat_activity")
            .get(0);
        if waiting >= 1 {
            return;
        }
        assert!(Instant::now() < deadline, "no statement ever waited on the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens a connection and sends an authorized push head declaring a body of `len` bytes, and
/// `first` of its bytes.
fn slow_push(h: &Hostile, till: &Till, len: usize, first: &[u8]) -> TcpStream {
    let mut s = h.connect();
    let head = format!(
        "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n",
        till.token
    );
    s.write_all(head.as_bytes()).expect("send the head");
    s.write_all(first).expect("send the first bytes");
    s
}

/// The attack: sixteen authorized pushes that declare 10,000 bytes and send one a second,
/// first all from one till, then one from each of sixteen tills, with sixteen push slots in all.
/// A till has one push in hand at most (its other fifteen are answered 429 `push_in_flight` at
/// once), and a body being read holds no push slot: while the bodies trickle, another till's
/// normal push is `OK` every time, and no push is counted in flight.
#[test]
fn slow_bodies_of_one_till_or_of_sixteen_never_hold_up_another_tills_push() {
    let mut h = Hostile::start(&["--max-inflight-pushes", "16", "--body-read-timeout-ms", "8000"], None);
    let slow_one = h.till("till-slow");
    let slow_many: Vec<Till> = (0..16).map(|i| h.till(&format!("till-slow-{i}"))).collect();
    for (case, tills) in [("one till", vec![slow_one; 16]), ("sixteen tills", slow_many)] {
        let mut slow: Vec<TcpStream> = tills.iter().map(|t| slow_push(&h, t, 10_000, b"{")).collect();
        if case == "one till" {
            // One push holds the till (whichever the server took first); each of the other fifteen
            // is refused at once, unread.
            let mut held = Vec::new();
            for s in slow {
                let mut s = s;
                s.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
                match read_answer(&mut s) {
                    None => held.push(s),
                    Some(a) => {
                        assert_eq!((a.status, code_of(&a).as_str()), (429, "push_in_flight"), "{a:?}");
                        let head = a.head.to_ascii_lowercase();
                        assert!(
                            head.contains("retry-after: ") && head.contains("connection: close"),
                            "{head}"
                        );
                    }
                }
            }
            assert_eq!(held.len(), 1, "{case}: one push of the till is in hand");
            slow = held;
        }
        // One byte a second on each for 4 s, with a normal push of till-1 between the bytes.
        for second in 0..4 {
            for s in &mut slow {
                let _ = s.write_all(b" ");
            }
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(1) {
                h.assert_normal_push(&format!("{case}: slow bodies trickling, second {second}"));
                std::thread::sleep(Duration::from_millis(200));
            }
            assert_eq!(h.metric("possync_push_in_flight"), 0.0, "{case}: a slow body holds no slot");
        }
        let reading = h.metric("possync_http_body_bytes_reading");
        let bodies = if case == "one till" { 1.0 } else { 16.0 };
        assert_eq!(reading, bodies * 10_000.0, "{case}: the bodies being read hold their declared bytes");
        drop(slow);
    }
    assert!(h.limit_hits("push_in_flight") >= 15.0, "the refusals are counted");
    assert_eq!(h.limit_hits("inflight_pushes"), 0.0, "no push was shed for want of a slot");
    h.assert_healthy("after the slow bodies");
    h.assert_normal_push("after the slow bodies");
}

/// A report-only request (no sales) is a push like any other: a till's second one while its first
/// is in hand is refused 429 `push_in_flight`.
#[test]
fn a_report_only_request_is_one_push_of_its_till() {
    let h = Hostile::start(&[], None);
    let till = h.till_1();
    let report_only =
        serde_json::json!({"device_id": "till-1", "transactions": [], "report": {"unsent_count": 0}})
            .to_string();
    // The first report-only request sends all but its last byte: once its bytes are counted, it is
    // in hand.
    let mut first = slow_push(&h, &till, report_only.len(), &report_only.as_bytes()[..report_only.len() - 1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metric("possync_http_body_bytes_reading") != report_only.len() as f64 {
        assert!(Instant::now() < deadline, "the first request's body is never read");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = slow_push(&h, &till, report_only.len(), report_only.as_bytes());
    let a = read_answer(&mut second).expect("the second report-only request is answered");
    assert_eq!((a.status, code_of(&a).as_str()), (429, "push_in_flight"), "{a:?}");
    first.write_all(&report_only.as_bytes()[report_only.len() - 1..]).expect("the last byte");
    let a = read_answer(&mut first).expect("the first one is answered");
    assert_eq!(a.status, 200, "{a:?}");
    let mut third = slow_push(&h, &till, report_only.len(), report_only.as_bytes());
    let a = read_answer(&mut third).expect("answered");
    assert_eq!(a.status, 200, "the till is free once its push is answered: {a:?}");
}

/// The amplification case: a request of 1 KiB whose `transactions` holds 500 bare numbers. Each is
/// answered `INVALID malformed_transaction` as before, but they name no sale, so the request writes
/// one audit row for all of them (how many, which codes), not 500; sales that carry an id keep a
/// row each.
#[test]
fn five_hundred_bare_numbers_write_one_audit_row() {
    let h = Hostile::start(&[], None);
    let numbers: Vec<serde_json::Value> = (0..500).map(|n| serde_json::json!(n)).collect();
    let mut body = request(numbers);
    let reply = push_bytes(&h, serde_json::to_vec(&body).expect("json"));
    assert_eq!(reply.0, 200, "{}", reply.1);
    let results = reply.1["results"].as_array().expect("results");
    assert_eq!(results.len(), 500);
    assert!(results.iter().all(|r| r["status"] == "INVALID" && r["code"] == "malformed_transaction"));
    let rows = audit_rows(&h, &reply.2);
    assert_eq!(rows.len(), 1, "one audit row for the request; the first: {:?}", rows.first());
    let (id, code, message) = &rows[0];
    assert_eq!((id.as_str(), code.as_str()), ("", "unidentified_entries"));
    assert!(message.starts_with("500 transaction entries without a client_tx_id"), "{message}");
    assert!(message.contains("malformed_transaction × 500"), "{message}");

    // Mixed: three refused sales with an id each, and 497 entries without one: 3 + 1 rows.
    let ids: Vec<String> = (0..3).map(|_| new_id()).collect();
    let transactions = body["transactions"].as_array_mut().expect("transactions");
    for (i, id) in ids.iter().enumerate() {
        let mut e = envelope(id, &sale("store-1", i as i64, 1));
        e["payload_sha256"] = serde_json::json!("0".repeat(64));
        transactions[i] = e;
    }
    let reply = push_bytes(&h, serde_json::to_vec(&body).expect("json"));
    assert_eq!(reply.0, 200, "{}", reply.1);
    let rows = audit_rows(&h, &reply.2);
    assert_eq!(rows.len(), 4, "{rows:?}");
    for id in &ids {
        assert!(rows.iter().any(|(i, c, _)| i == id && c == "hash_mismatch"), "{id}: {rows:?}");
    }
    assert!(rows.iter().any(|(i, _, m)| i.is_empty() && m.starts_with("497 ")), "{rows:?}");
    h.assert_normal_push("after the bare numbers");
}

/// A push of raw body bytes from till-1: status, JSON answer, correlation id.
fn push_bytes(h: &Hostile, body: Vec<u8>) -> (u16, serde_json::Value, String) {
    let mut reply = h
        .agent
        .post(h.url("/sync/push"))
        .header("Authorization", &format!("Bearer {}", h.token))
        .header("Content-Type", "application/json")
        .send(&body[..])
        .expect("answered");
    let cid = reply.headers().get("x-correlation-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (reply.status().as_u16(), reply.body_mut().read_json().expect("JSON answer"), cid)
}

/// The audit rows of a request: (client_tx_id, code, message).
fn audit_rows(h: &Hostile, correlation_id: &str) -> Vec<(String, String, String)> {
    h.db.client()
        .query(
            "SELECT client_tx_id, coalesce(code, ''), coalesce(message, '') FROM pos_transaction_audit \
             WHERE correlation_id = $1 ORDER BY audit_id",
            &[&correlation_id],
        )
        .expect("audit rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// The byte budget of bodies being read: with room for four bodies of the largest size, twelve
/// tills each send a largest body but its last byte. Four are read (their bytes held), the other
/// eight are answered 503 `overloaded` + `Retry-After` at once and closed, unread; a chunked push
/// whose first chunk does not fit is refused the same way. Memory holds four bodies, not twelve;
/// once the held bodies end, pushes are served again.
#[test]
fn bodies_past_the_byte_budget_are_shed_at_once() {
    const BODY: usize = 1024 * 1024;
    // The held bodies stay held until the test lets them go (no body, idle or deadline cut).
    let (body, budget) = (BODY.to_string(), (4 * BODY).to_string());
    let mut h = Hostile::start(
        &[
            "--max-body-bytes",
            &body,
            "--max-body-bytes-reading",
            &budget,
            "--body-read-timeout-ms",
            "30000",
            "--idle-timeout-ms",
            "60000",
            "--request-deadline-ms",
            "40000",
        ],
        None,
    );
    let rss_before = rss_kib(h.child.id());
    let tills: Vec<Till> = (0..12).map(|i| h.till(&format!("till-big-{i}"))).collect();
    let filler = vec![b' '; BODY - 1];
    let mut held = Vec::new();
    let mut shed = 0;
    for till in &tills {
        let mut s = slow_push(&h, till, BODY, b"");
        s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        match read_answer(&mut s) {
            None => {
                s.write_all(&filler).expect("a held body's bytes");
                held.push(s);
            }
            Some(a) => {
                assert_eq!((a.status, code_of(&a).as_str()), (503, "overloaded"), "{a:?}");
                let head = a.head.to_ascii_lowercase();
                assert!(head.contains("retry-after: ") && head.contains("connection: close"), "{}", a.head);
                shed += 1;
            }
        }
    }
    assert_eq!((held.len(), shed), (4, 8), "four bodies fit the budget");
    assert_eq!(h.metric("possync_http_body_bytes_reading"), (4 * BODY) as f64);
    // A chunked body takes its bytes chunk by chunk: its first chunk does not fit.
    let chunked_till = h.till("till-chunked");
    let mut s = h.connect();
    let head = format!(
        "POST /sync/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         400\r\n{}\r\n",
        chunked_till.token,
        " ".repeat(1024)
    );
    s.write_all(head.as_bytes()).expect("send");
    let a = read_answer(&mut s).expect("the chunked push is answered");
    assert_eq!((a.status, code_of(&a).as_str()), (503, "overloaded"), "{a:?}");
    let grown = rss_kib(h.child.id()).saturating_sub(rss_before);
    assert!(grown < 12 * 1024, "RSS grew by {grown} KiB for 4 MiB of bodies held");
    assert!(h.limit_hits("body_bytes") >= 9.0);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.metric("possync_http_body_bytes_reading") > 0.0 {
        assert!(Instant::now() < deadline, "the held bytes were never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
    h.assert_healthy("after the byte budget attack");
    h.assert_normal_push("after the byte budget attack");
}

/// `accept` really sees EMFILE: the server's connection cap was set at start under a generous
/// descriptor limit; the limit is then lowered under its feet (prlimit on the running process) to a
/// few descriptors above what it has open, and idle connections are opened past it. The accept loop
/// logs the failure (errno 24), closes the longest-idle connection, and goes on: the server
/// survives, serves a push meanwhile, and serves after.
#[test]
fn accept_survives_emfile_and_serves_after() {
    let mut h = Hostile::start(&["--workers", "2", "--pool-size", "2"], None);
    h.assert_normal_push("before the limit is lowered");
    let pid = h.child.id();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the server's fds").count() as u64;
    let limit = open_fds + 8;
    let lowered = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit");
    assert!(lowered.success(), "prlimit --pid {pid} --nofile={limit}");
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(&h.addr).expect("connect (the kernel queues it)"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !h.log_text().contains("accepting a connection failed; going on") {
        assert!(Instant::now() < deadline, "accept never failed: {}", h.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let warning =
        h.log_text().lines().find(|l| l.contains("accepting a connection failed")).map(str::to_owned);
    assert!(warning.as_deref().is_some_and(|w| w.contains("os error 24")), "EMFILE: {warning:?}");
    // The queue of idle connections drains (each accept evicts the longest idle one), then a push.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let id = new_id();
        let reply = h
            .agent
            .post(h.url("/sync/push"))
            .header("Authorization", &format!("Bearer {}", h.token))
            .send_json(request(vec![envelope(&id, &sale("store-1", 1, 1))]));
        if let Ok(mut r) = reply {
            let answer: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
            if r.status().as_u16() == 200 && answer["results"][0]["status"] == "OK" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "no push served under the lowered limit");
    }
    assert!(h.limit_hits("accept_error") >= 1.0, "the failed accepts are counted");
    drop(idle);
    h.assert_healthy("after EMFILE");
    h.assert_normal_push("after EMFILE");
}
