//! Till benchmarks: the end-to-end drain rate of one till with a large backlog (scenario 4), and the
//! memory of a till draining a very large one (scenario 6). The till runs in its own process
//! ([`crate::child::run_drain`]), with the production defaults (batch 50, leases, heartbeats).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use possync_core::protocol::{PushRequest, PushResponse, PushResult, PushStatus};

use crate::child::{run_drain, DrainOutcome};
use crate::outbox::load_pending;
use crate::server::{pgbench_rate, pgbench_rate_simple, serve, BenchDb};
use crate::{Row, Target};

/// Scenario 4: one till drains `backlog` pending sales to the server over loopback (server in its own
/// process, PostgreSQL behind it), against pgbench running the server's per-sale SQL on one
/// connection for `seconds` on the same database: a till sends one request at a time and the server
/// stores its sales one transaction each, so one pgbench client is the limit it can approach.
/// Asserts that the server holds exactly `backlog` sales afterwards.
pub fn drain_vs_pgbench(exe: &Path, dir: &Path, admin_url: &str, backlog: usize, seconds: u64) -> Row {
    let path = dir.join(format!("drain-{backlog}.db"));
    let _ = std::fs::remove_file(&path);
    load_pending(&path, backlog);
    let db = BenchDb::create(admin_url, 30);
    // The server as shipped (its default database threads, a request's sales in up to 4 lanes): one till
    // should drain faster than one connection commits.
    let served = serve(exe, &db, usize::MAX);
    let outcome = run_drain(exe, &path, &served.server.base, &served.token);
    served.server.stop();
    check_complete(&outcome, backlog);
    let mut conn = db.config.connect(postgres::NoTls).expect("connect");
    let stored: i64 = conn.query_one("SELECT count(*) FROM pos_transactions", &[]).expect("count").get(0);
    assert_eq!(stored, backlog as i64, "the server holds every drained sale exactly once");
    drop(conn);
    let baseline = pgbench_rate(&db, 1, seconds);
    let simple = pgbench_rate_simple(&db, 1, seconds);
    let _ = std::fs::remove_file(&path);
    let rate = outcome.settled as f64 / outcome.seconds;
    Row::measured(format!("end-to-end drain, one till, {backlog} backlog"), rate, baseline, "sales/s")
        .target(Target::RatioAtLeast(1.5))
        .note(format!(
            "till process → loopback HTTP → server process (the default workers, 4 sale lanes) → PostgreSQL, vs \
             pgbench -M prepared with the server's per-sale SQL on one connection; exactly-once checked; \
             against pgbench's simple protocol ({simple:.0}/s): {:.2}",
            rate / simple
        ))
}

fn check_complete(outcome: &DrainOutcome, backlog: usize) {
    assert_eq!(
        (outcome.settled, outcome.remaining),
        (backlog as u64, 0),
        "the till drained its whole backlog: {outcome:?}"
    );
}

/// Scenario 6, till side: peak RSS of a till process draining `large` pending sales against the same
/// for `small`, both to a loopback server that acknowledges every sale without storing it (so the
/// run measures the till, and a 1M backlog drains in minutes, not hours).
pub fn till_memory(exe: &Path, dir: &Path, small: usize, large: usize) -> Row {
    let stub = AckServer::start();
    let peak = |n: usize| {
        let path = dir.join(format!("memory-{n}.db"));
        let _ = std::fs::remove_file(&path);
        load_pending(&path, n);
        let outcome = run_drain(exe, &path, &stub.base, "pst_bench");
        check_complete(&outcome, n);
        let _ = std::fs::remove_file(&path);
        (outcome.peak_rss_kib as f64 / 1024.0, outcome.settled as f64 / outcome.seconds)
    };
    let ((at_small, _), (at_large, rate)) = (peak(small), peak(large));
    stub.stop();
    Row::measured(format!("till peak RSS draining {large} vs {small} backlog"), at_large, at_small, "MiB")
        .target(Target::ValueBelow(30.0))
        .note(format!(
            "till process VmHWM, default settings, acknowledging loopback server (drained at {rate:.0} sales/s)"
        ))
}

/// Scenario 6, server side: the server's RSS after its start and its peak under scenario 3's load.
pub fn server_memory(cell: &crate::server::PushCell) -> Row {
    Row::measured(
        format!("server peak RSS under load ({})", cell.row.scenario.trim_start_matches("server push, ")),
        cell.server_peak_rss_kib as f64 / 1024.0,
        cell.server_idle_rss_kib as f64 / 1024.0,
        "MiB",
    )
    .note("server process VmHWM at the end of the load vs its RSS just after start")
}

/// A loopback HTTP server answering every push with `OK` for each sale, storing nothing.
struct AckServer {
    base: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl AckServer {
    fn start() -> AckServer {
        // TCP_NODELAY as the real server: tiny_http writes head and body in two writes, and with
        // Nagle's algorithm the body waits for the ACK of the head (up to 40 ms).
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind ack server");
        socket2::SockRef::from(&listener).set_tcp_nodelay(true).expect("TCP_NODELAY");
        let server = tiny_http::Server::from_listener(listener, None).expect("ack server");
        let base = format!("http://{}", server.server_addr().to_ip().expect("ip address"));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) {
                    acknowledge(request);
                }
            }
        });
        AckServer { base, stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

fn acknowledge(mut request: tiny_http::Request) {
    let mut body = String::new();
    let parsed = std::io::Read::read_to_string(request.as_reader(), &mut body)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<PushRequest>(&body).map_err(|e| e.to_string()));
    let (status, text) = match parsed {
        Ok(push) => {
            let results = push
                .transactions
                .into_iter()
                .map(|t| PushResult {
                    client_tx_id: t.client_tx_id,
                    status: PushStatus::Ok,
                    code: None,
                    message: None,
                    server_tx_id: None,
                })
                .collect();
            (200, serde_json::to_string(&PushResponse { results, resend: None }).unwrap_or_default())
        }
        Err(e) => (400, serde_json::json!({"code": "bad_request", "message": e}).to_string()),
    };
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header");
    let _ =
        request.respond(tiny_http::Response::from_string(text).with_status_code(status).with_header(header));
}
