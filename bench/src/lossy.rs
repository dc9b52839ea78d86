//! Issue 14's targets for an unattended till on a bad link (scenario 9):
//!
//! - [`lossy_rows`]: one till records 10 sales/s through a seeded fault proxy failing 30 % of its
//!   requests (drops, cuts after the server committed, 503s, stalls past the request timeout), beside
//!   the same till on a clean link in the same run (`possync_tests::lossy`). Goodput is the sales each
//!   had acknowledged by the end of the window; the oldest unsent sale is sampled every second; every
//!   sale is checked on the server exactly once at the end.
//! - [`resend_after_kill`]: a till process is killed with SIGKILL while it holds the leases of a
//!   batch the link swallowed, and started again at once; measured is the time from the restart until
//!   the server holds every leased sale, against the lease (60 s) a till would wait out otherwise.
//!
//! The server runs in its own process ([`ServerProcess`]), the tills of the second part too
//! (`exe child-till`).

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::Outbox;
use possync_core::transport::HttpTransport;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};
use possync_tests::lossy::{run, LossyReport, LossyRun};
use possync_tests::proxy::{FaultProxy, Mode};

use crate::child::ServerProcess;
use crate::outbox::sample_sale;
use crate::server::BenchDb;
use crate::{Row, Target};

fn token(store: &PgStore, device_id: &str) -> String {
    let token = generate_token();
    let device = Device { store_id: "store-1".into(), device_id: device_id.into() };
    store.create_token(&device, &token_sha256(&token), None).expect("token");
    token
}

/// Plays the lossy-link scenario for `seconds` with the proxy seeded by `seed`; returns the report
/// and its rows (goodput ratio, oldest unsent sale against 60 s).
///
/// # Panics
/// When the set-up fails (database, server process, files).
pub fn lossy_rows(exe: &Path, admin_url: &str, seconds: u64, seed: u64) -> (LossyReport, Vec<Row>) {
    let db = BenchDb::create(admin_url, 90);
    let store = PgStore::connect(db.config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
        .expect("store");
    store.migrate().expect("migrate");
    let server = ServerProcess::start(exe, &db.url, 4, 6);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LossyRun {
        server: server.base.trim_start_matches("http://").parse().expect("server address"),
        lossy_token: token(&store, "till-lossy"),
        clean_token: token(&store, "till-clean"),
        seed,
        duration: Duration::from_secs(seconds),
        sales_per_second: 10,
        fail_percent: 30,
        dir: dir.path().to_path_buf(),
    };
    let report = run(&config, &store);
    server.stop();
    let once = if report.exactly_once.is_ok() { "exactly once checked" } else { "NOT exactly once" };
    let failed: u64 = report.proxy.iter().filter(|(k, _)| **k != "pass").map(|(_, v)| v).sum();
    let proxied: u64 = report.proxy.values().sum();
    let rows = vec![
        Row::measured(
            format!("lossy link, one unattended till, 10 sales/s for {seconds} s, goodput"),
            report.sent_in_window.0 as f64 / seconds as f64,
            report.sent_in_window.1 as f64 / seconds as f64,
            "sales/s",
        )
        .target(Target::RatioAtLeast(0.5))
        .note(format!(
            "sales acknowledged in the window through a proxy failing 30 % ({failed} of {proxied} \
             requests: {:?}), vs the same till on a clean link at the same time; {once}; seed {seed}",
            report.proxy
        )),
        Row::against(
            "lossy link, oldest unsent sale (max of per-second samples)",
            report.max_oldest_unsent_ms.0 as f64 / 1000.0,
            60.0,
            "s",
        )
        .target(Target::RatioAtMost(1.0))
        .note(format!(
            "the lossy till's worst age vs the 60 s bound (the clean till's worst: {:.1} s; \
             interval 60 s, request timeout 5 s)",
            report.max_oldest_unsent_ms.1 as f64 / 1000.0
        )),
    ];
    (report, rows)
}

/// The till of [`resend_after_kill`] in its own process: a [`SyncEngine`] with production defaults
/// (sole user of its outbox, 60 s lease) draining `outbox` until killed.
///
/// # Errors
/// A message when the outbox cannot be opened or the engine cannot start.
pub fn till_until_killed(outbox: &Path, server: &str, token: &str, device: &str) -> Result<(), String> {
    let outbox = Outbox::open(outbox, OutboxConfig::default()).map_err(|e| e.to_string())?;
    let sync = SyncConfig::new(server, token, device);
    let transport = Arc::new(HttpTransport::new(&sync));
    let _engine = SyncEngine::start(Arc::new(outbox), transport, EngineConfig::new(sync), None)
        .map_err(|e| e.to_string())?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

struct TillProcess(Child);

impl Drop for TillProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a till process holding the leases of a 50-sale batch (the link swallowed the request, so the
/// server has none of them), restarts it at once, and measures the time until the server holds all
/// 50; `rounds` times. The row's value is the slowest round, against the 60 s lease.
///
/// # Panics
/// When the set-up fails, or the sales do not arrive within 120 s.
pub fn resend_after_kill(exe: &Path, admin_url: &str, rounds: usize) -> Row {
    let db = BenchDb::create(admin_url, 91);
    let store = PgStore::connect(db.config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
        .expect("store");
    store.migrate().expect("migrate");
    let server = ServerProcess::start(exe, &db.url, 4, 6);
    let proxy = FaultProxy::start(server.base.trim_start_matches("http://").parse().expect("server address"));
    let token = token(&store, "till-k");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut client = db.config.connect(postgres::NoTls).expect("connect");
    let mut times = Vec::new();
    let lease_s = SyncConfig::new("", "", "x").lease_ms as f64 / 1000.0;
    for round in 0..rounds {
        let path = dir.path().join(format!("till-{round}.db"));
        let outbox = Outbox::open(&path, OutboxConfig::default()).expect("outbox");
        for s in 0..50 {
            outbox.enqueue(&sample_sale((round * 1000 + s) as i64)).expect("enqueue");
        }
        drop(outbox);
        let start = || {
            TillProcess(
                Command::new(exe)
                    .args(["child-till", "--outbox"])
                    .arg(&path)
                    .args(["--server", &proxy.url(), "--token", &token, "--device", "till-k"])
                    .spawn()
                    .expect("start till process"),
            )
        };
        proxy.set_mode(Mode::StallAll(Duration::from_secs(120)));
        let mut till = start();
        let leased = possync_tests::leases::kill_while_leased(&mut till.0, &path, 50);
        proxy.set_mode(Mode::Pass);
        let before: i64 =
            client.query_one("SELECT count(*) FROM pos_transactions", &[]).expect("count").get(0);
        let restarted = Instant::now();
        let mut till = start();
        loop {
            let n: i64 =
                client.query_one("SELECT count(*) FROM pos_transactions", &[]).expect("count").get(0);
            if n >= before + leased.rows as i64 {
                break;
            }
            if restarted.elapsed() > Duration::from_secs(120) {
                let alive = till.0.try_wait().map(|s| s.is_none()).unwrap_or(false);
                let outbox = Outbox::open_read_only(&path).expect("open the till's outbox");
                let entry = outbox
                    .summaries()
                    .expect("summaries")
                    .first()
                    .and_then(|e| outbox.get(&e.client_tx_id).ok().flatten());
                panic!(
                    "round {round}: {} of {} leased sales on the server 120 s after the restart; till process \
                     alive: {alive}; proxy {:?}; outbox {:?}; first sale {entry:?}",
                    n - before,
                    leased.rows,
                    proxy.stats(),
                    outbox.counts()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(restarted.elapsed().as_secs_f64());
    }
    server.stop();
    let slowest = times.iter().copied().fold(0.0, f64::max);
    Row::against(
        format!("SIGKILL mid-send and immediate restart, {rounds} rounds, time until the leased sales are on the server (slowest)"),
        slowest,
        5.0,
        "s",
    )
    .target(Target::RatioAtMost(1.0))
    .note(format!(
        "50 leased sales per round, the link had swallowed their request; from the restart (process \
         start included), against the 5 s target (the lease is {lease_s:.0} s); rounds: {}",
        times.iter().map(|t| format!("{t:.2} s")).collect::<Vec<_>>().join(", ")
    ))
}
