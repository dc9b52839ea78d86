//! The reconnect storm: many tills come back online at once after an outage, each with a backlog.
//!
//! Set-up: `tills` real [`SyncEngine`]s in this process, each with its own outbox file and device
//! token, each holding `sales` sales recorded while the server was down (their `Startup` run found
//! the port closed). Then the server starts (its own process) and every till gets `Online` within
//! `window` (spread at random); each waits its own random hold (up to `online_jitter_ms`, 5 s by
//! default) before its first request. Measured until every outbox is empty (known first from the
//! answers the tills receive, every sale decided, then seen in each outbox: nothing polls the 500
//! outboxes while the storm runs):
//! - the time to drain everything;
//! - push requests as the tills saw them (send to answer), admitted (200) and shed (429/503) apart,
//!   and the server's own mean request time from `/metrics` to compare;
//! - the 503s, the peak of open connections, the server's peak RSS;
//! - whether `/healthz` and `/metrics` answered within 1 s all along, asked by a prober in its own
//!   process (`child-probe`) on the server's monitoring port, as a monitoring system would be set up.
//!
//! Then exactly-once is checked with `possync-server verify`'s logic: every outbox sale is on the
//! server once with its hash, and the server holds nothing else for these devices.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use possync_core::config::{Durability, OutboxConfig, SyncConfig};
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::Outbox;
use possync_core::protocol::{PushRequest, PushResponse, PushStatus};
use possync_core::reason::DrainReason;
use possync_core::transport::{HttpTransport, Transport, TransportError};
use possync_server::auth::{generate_token, token_sha256};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::{AdminStore, Device};
use rand::RngExt;

use crate::child::ServerProcess;
use crate::outbox::sample_sale;
use crate::server::BenchDb;
use crate::Target;

/// Size of a storm.
#[derive(Debug, Clone, Copy)]
pub struct StormSize {
    /// Tills coming back at once.
    pub tills: usize,
    /// Sales each till recorded during the outage.
    pub sales: usize,
    /// The tills get `Online` spread over this window.
    pub window: Duration,
    /// Database threads of the server (its pool has two connections more).
    pub workers: usize,
    /// The tills' [`EngineConfig::online_jitter_ms`].
    pub online_jitter_ms: u64,
}

/// One push request as a till saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    till: usize,
    sent: Instant,
    took: Duration,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Admitted,
    Shed,
    Failed,
}

/// Sales the server has decided (any answer but `RETRY`), counted from the answers as the tills
/// receive them: how the storm knows when to look at the outboxes without polling 500 of them (a
/// poll takes each till's outbox connection from its drain thread, and costs CPU the storm is
/// measuring).
struct Settled {
    /// Per till, the ids the server decided (a replay answered `DUPLICATE` counts once).
    ids: Vec<Mutex<std::collections::HashSet<String>>>,
    /// Sales each till holds.
    sales: usize,
    /// Tills whose every sale the server decided.
    tills_done: AtomicUsize,
    /// When each sale was first decided, since the storm's start (filled as answers arrive).
    times: Mutex<Vec<Instant>>,
}

impl Settled {
    fn new(tills: usize, sales: usize) -> Settled {
        Settled {
            ids: (0..tills).map(|_| Mutex::new(std::collections::HashSet::new())).collect(),
            sales,
            tills_done: AtomicUsize::new(0),
            times: Mutex::new(Vec::with_capacity(tills * sales)),
        }
    }

    fn note(&self, till: usize, response: &PushResponse, at: Instant) {
        let mut ids = self.ids[till].lock();
        let before = ids.len();
        for r in response.results.iter().filter(|r| r.status != PushStatus::Retry) {
            ids.insert(r.client_tx_id.clone());
        }
        let added = ids.len() - before;
        if added > 0 {
            self.times.lock().extend(std::iter::repeat_n(at, added));
            if before < self.sales && ids.len() >= self.sales {
                self.tills_done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Seconds from `start` until the given fraction of the sales was decided.
    fn seconds_to(&self, start: Instant, fraction: f64) -> f64 {
        let mut times = self.times.lock().clone();
        if times.is_empty() {
            return 0.0;
        }
        times.sort();
        let k = ((times.len() as f64 * fraction).ceil() as usize).clamp(1, times.len());
        times[k - 1].saturating_duration_since(start).as_secs_f64()
    }
}

/// The tills' HTTP transport, timing every request.
struct TimedTransport {
    till: usize,
    inner: HttpTransport,
    seen: Arc<Mutex<Vec<Seen>>>,
    settled: Arc<Settled>,
}

impl Transport for TimedTransport {
    fn push(&self, request: &PushRequest, correlation_id: &str) -> Result<PushResponse, TransportError> {
        let sent = Instant::now();
        let result = self.inner.push(request, correlation_id);
        let outcome = match &result {
            Ok(response) => {
                self.settled.note(self.till, response, Instant::now());
                Outcome::Admitted
            }
            Err(TransportError::Overloaded { .. }) => Outcome::Shed,
            Err(_) => Outcome::Failed,
        };
        self.seen.lock().push(Seen { till: self.till, sent, took: sent.elapsed(), outcome });
        result
    }
}

/// Latency percentiles of a set of requests, in ms.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Latency {
    /// Requests.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Latency {
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
        Latency {
            count: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
        }
    }
}

/// What a storm showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StormReport {
    /// Tills × sales.
    pub sales: usize,
    /// From the first `Online` to the last outbox empty, in seconds.
    pub drain_seconds: f64,
    /// From the first `Online` until half the sales were decided by the server, in seconds (from
    /// the answers the tills received).
    pub settled_half_s: f64,
    /// The same until 90 % were.
    pub settled_90_s: f64,
    /// Admitted push requests (200), at the tills.
    pub admitted: Latency,
    /// Shed push requests (429 / 503), at the tills.
    pub shed: Latency,
    /// Requests that failed otherwise (transport errors), at the tills.
    pub failed: usize,
    /// Mean time of a push as the server's histogram says, in ms (all answers).
    pub server_mean_ms: f64,
    /// Mean time of a push at the tills, in ms (all answers), to compare with `server_mean_ms`.
    pub tills_mean_ms: f64,
    /// 503 answers to pushes, as the server counted them.
    pub server_503: u64,
    /// Requests whose token the server accepted from its cache, without a database lookup.
    pub token_cache_hits: u64,
    /// Slowest `/healthz` or `/metrics` answer during the storm, in ms, and how many failed or took
    /// longer than 1 s.
    pub health_max_ms: f64,
    /// Health or metrics probes that failed or took over 1 s.
    pub health_slow: usize,
    /// `/healthz` and `/metrics` answers that took over 1 s by the server's own histogram (the rest
    /// of a slow probe is outside the handler: the accept queue, the network, the prober's CPU).
    pub health_slow_at_server: u64,
    /// Most open connections seen in `/metrics`.
    pub peak_open_connections: u64,
    /// Server process peak RSS, in KiB.
    pub server_peak_rss_kib: u64,
    /// Seconds from the first `Online` to each till's first request, spread (p10 .. p90).
    pub first_request_spread_s: (f64, f64),
    /// From each till's own `Online` to its first request, in ms: the hold (`count` is the tills
    /// that sent anything).
    pub online_hold: Latency,
    /// Every till's outbox empty, every sale on the server once with its hash, nothing extra.
    pub exactly_once: bool,
    /// CPU seconds by party from the first `Online` to the last outbox empty (`own`: the tills).
    pub cpu: crate::cpu::CpuUse,
}

/// A free loopback port, for a server that is started later (the tills know its address while it
/// is down).
fn reserve_port() -> u16 {
    let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// Plays the storm. `exe` is this benchmark binary (the server runs as `exe child-server`).
///
/// # Panics
/// When the set-up fails (database, files, threads): a storm that did not happen reports nothing.
pub fn run(exe: &Path, admin_url: &str, size: StormSize) -> StormReport {
    let db = BenchDb::create(admin_url, 50);
    let store = PgStore::connect(db.config.clone(), &PgOptions { pool_size: 2, ..PgOptions::default() })
        .expect("store");
    store.migrate().expect("migrate");
    let port = reserve_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let settled = Arc::new(Settled::new(size.tills, size.sales));
    let mut tills = Vec::with_capacity(size.tills);
    for t in 0..size.tills {
        let device = Device { store_id: "store-1".into(), device_id: format!("till-{t}") };
        let token = generate_token();
        store.create_token(&device, &token_sha256(&token), None).expect("token");
        let outbox_config = OutboxConfig { durability: Durability::Normal, ..OutboxConfig::default() };
        let outbox =
            Arc::new(Outbox::open(dir.path().join(format!("till-{t}.db")), outbox_config).expect("outbox"));
        for s in 0..size.sales {
            outbox.enqueue(&sample_sale((t * size.sales + s) as i64)).expect("enqueue");
        }
        let sync = SyncConfig::new(base.as_str(), token.as_str(), device.device_id.as_str());
        let transport = Arc::new(TimedTransport {
            till: t,
            inner: HttpTransport::new(&sync),
            seen: seen.clone(),
            settled: settled.clone(),
        });
        let mut config = EngineConfig::new(sync);
        config.online_jitter_ms = size.online_jitter_ms;
        let engine = SyncEngine::start(outbox, transport, config, None).expect("engine");
        tills.push((device, engine));
    }
    // The tills' Startup runs (after their own hold) find the server down; wait for all of them,
    // then forget those attempts.
    let setup_deadline = Instant::now() + Duration::from_secs(120);
    while tills.iter().any(|(_, e)| e.failed_runs_in_a_row() == 0) {
        assert!(Instant::now() < setup_deadline, "the tills' startup runs did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    seen.lock().clear();

    // Monitoring asks the server's monitoring port, as a shop's Prometheus would be set up to.
    let monitor_port = reserve_port();
    let server = ServerProcess::start_with_monitor(
        exe,
        &db.url,
        size.workers,
        size.workers as u32 + 2,
        port,
        Some(monitor_port),
    );
    let prober = Prober::start(exe, &format!("http://127.0.0.1:{monitor_port}"));
    db.checkpoint();

    let started = Instant::now();
    let cpu_at_start = crate::cpu::CpuSample::take(Some(server.pid()));
    let mut order: Vec<usize> = (0..tills.len()).collect();
    let mut rng = rand::rng();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let step = size.window.as_secs_f64() / tills.len().max(1) as f64;
    let mut online_at = vec![started; tills.len()];
    for (k, t) in order.iter().enumerate() {
        let due = started + Duration::from_secs_f64(step * k as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        online_at[*t] = Instant::now();
        tills[*t].1.trigger(DrainReason::Online);
    }
    let deadline = started + Duration::from_secs(900);
    // Until the server has decided every sale (known from the answers, without touching the
    // outboxes), then until every outbox is seen empty (each till finalizes an answer's sales just
    // after it arrives).
    while settled.tills_done.load(Ordering::SeqCst) < tills.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut waiting: Vec<usize> = (0..tills.len()).collect();
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|t| tills[*t].1.outbox().counts().map(|c| c.unsent() > 0).unwrap_or(true));
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let drain_seconds = started.elapsed().as_secs_f64();
    let settled_half_s = settled.seconds_to(started, 0.5);
    let settled_90_s = settled.seconds_to(started, 0.9);
    let cpu = cpu_at_start.until(&crate::cpu::CpuSample::take(Some(server.pid())));
    let (health_max_ms, health_slow, peak_open_connections) = prober.finish();
    let metrics = scrape(&base).unwrap_or_default();
    let server_peak_rss_kib = server.peak_rss_kib();
    for (_, engine) in &tills {
        engine.request_shutdown();
    }

    let seen = std::mem::take(&mut *seen.lock());
    let ms =
        |o: Outcome| seen.iter().filter(|s| s.outcome == o).map(|s| s.took.as_secs_f64() * 1e3).collect();
    let all: Vec<f64> = seen.iter().map(|s| s.took.as_secs_f64() * 1e3).collect();
    let mut firsts = vec![f64::INFINITY; tills.len()];
    for s in &seen {
        let at = s.sent.saturating_duration_since(started).as_secs_f64();
        firsts[s.till] = firsts[s.till].min(at);
    }
    let holds = firsts
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_finite())
        .map(|(t, f)| (f - online_at[t].saturating_duration_since(started).as_secs_f64()).max(0.0) * 1e3)
        .collect();
    firsts.retain(|f| f.is_finite());
    firsts.sort_by(f64::total_cmp);
    let spread = if firsts.is_empty() {
        (0.0, 0.0)
    } else {
        (firsts[firsts.len() / 10], firsts[firsts.len() * 9 / 10])
    };

    let exactly_once = verify_all(&store, &tills, size.sales);
    for (_, engine) in &tills {
        engine.await_shutdown(Duration::from_secs(30));
    }
    server.stop();
    StormReport {
        sales: size.tills * size.sales,
        drain_seconds,
        settled_half_s,
        settled_90_s,
        cpu,
        admitted: Latency::of(ms(Outcome::Admitted)),
        shed: Latency::of(ms(Outcome::Shed)),
        failed: seen.iter().filter(|s| s.outcome == Outcome::Failed).count(),
        server_mean_ms: labelled(&metrics, "possync_http_request_seconds_sum", &["route=\"/sync/push\""])
            / labelled(&metrics, "possync_http_request_seconds_count", &["route=\"/sync/push\""]).max(1.0)
            * 1e3,
        tills_mean_ms: Latency::of(all).mean_ms,
        server_503: labelled(
            &metrics,
            "possync_http_requests_total",
            &["code=\"503\"", "route=\"/sync/push\""],
        ) as u64,
        token_cache_hits: metric(&metrics, "possync_token_cache_hits_total") as u64,
        health_max_ms,
        health_slow,
        health_slow_at_server: ["/healthz", "/metrics"]
            .iter()
            .map(|route| {
                let route = format!("route=\"{route}\"");
                let count = labelled(&metrics, "possync_http_request_seconds_count", &[&route]);
                let within = labelled(&metrics, "possync_http_request_seconds_bucket", &[&route, "le=\"1\""]);
                (count - within).max(0.0) as u64
            })
            .sum(),
        peak_open_connections,
        server_peak_rss_kib,
        first_request_spread_s: spread,
        online_hold: Latency::of(holds),
        exactly_once,
    }
}

/// Every till's outbox empty and each of its sales on the server once, with its hash; nothing else
/// on the server for the device.
fn verify_all(store: &PgStore, tills: &[(Device, SyncEngine)], sales: usize) -> bool {
    tills.iter().all(|(device, engine)| {
        let report = match possync_server::verify::verify(store, engine.outbox(), None, Some(device)) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("storm: verify {}: {e}", device.device_id);
                return false;
            }
        };
        let clean = report.is_clean()
            && report.sent_ok == sales
            && report.extra.is_empty()
            && report.unsent_on_server.is_empty()
            && report.unsent_not_on_server == 0;
        if !clean {
            eprintln!("storm: {} not exactly once: {report:?}", device.device_id);
        }
        clean
    })
}

/// The `child-probe` process: polls the server as a monitoring system would, from a process of its
/// own.
struct Prober(std::process::Child);

impl Prober {
    fn start(exe: &Path, base: &str) -> Prober {
        let child = std::process::Command::new(exe)
            .args(["child-probe", "--base", base])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the prober process");
        Prober(child)
    }

    /// Stops the prober (closes its stdin) and returns what it saw: the slowest answer (ms), how
    /// many failed or took over 1 s, and the most open connections seen.
    fn finish(mut self) -> (f64, usize, u64) {
        drop(self.0.stdin.take());
        let out = self.0.wait_with_output().expect("the prober's report");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace();
        let mut next = || fields.next().unwrap_or("");
        match (next().parse(), next().parse(), next().parse()) {
            (Ok(worst), Ok(slow), Ok(peak)) => (worst, slow, peak),
            _ => panic!("the prober reported nothing usable: {text:?}"),
        }
    }
}

/// `child-probe`: polls `/healthz` and `/metrics` every 250 ms until stdin closes, then prints the
/// slowest answer (ms), how many failed or took over 1 s, and the most open connections seen.
pub fn probe_until_stdin_closes(base: &str) {
    let probing = Arc::new(AtomicBool::new(true));
    let watcher = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            probing.store(false, Ordering::SeqCst);
        })
    };
    let (worst, slow, peak) = probe(base, &probing);
    let _ = watcher.join();
    println!("{worst} {slow} {peak}");
}

/// Polls `/healthz` and `/metrics` every 250 ms until told to stop; returns the slowest answer (ms),
/// how many failed or took over 1 s, and the most open connections seen.
fn probe(base: &str, probing: &AtomicBool) -> (f64, usize, u64) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(1))).build().into();
    let (mut worst, mut slow, mut peak) = (0.0_f64, 0, 0_u64);
    while probing.load(Ordering::SeqCst) {
        for path in ["/healthz", "/metrics"] {
            let t = Instant::now();
            let answer = agent.get(format!("{base}{path}")).call();
            let took = t.elapsed().as_secs_f64() * 1e3;
            worst = worst.max(took);
            match answer {
                Ok(mut r) if took <= 1000.0 => {
                    if path == "/metrics" {
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        peak = peak.max(metric(&text, "possync_http_connections_open") as u64);
                    }
                }
                _ => slow += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (worst, slow, peak)
}

fn scrape(base: &str) -> Option<String> {
    ureq::get(format!("{base}/metrics")).call().ok()?.body_mut().read_to_string().ok()
}

/// The value of one series of a Prometheus text exposition (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series).filter(|rest| rest.starts_with(' ')).and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// The value of a labelled series, whatever the order of its labels (0 when absent).
fn labelled(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The storm's rows: drain time vs pgbench's time for as many per-sale transactions at concurrency 16
/// (measured just before, on a database of its own), and the storm's targets as ratios.
pub fn storm_rows(
    exe: &Path,
    admin_url: &str,
    size: StormSize,
    seconds: u64,
) -> (StormReport, Vec<crate::Row>) {
    let baseline_db = BenchDb::create(admin_url, 51);
    PgStore::connect(baseline_db.config.clone(), &PgOptions { pool_size: 1, ..PgOptions::default() })
        .and_then(|s| s.migrate())
        .expect("migrate the baseline database");
    // pgbench stores as many sales as the storm does, into tables of its own that grow as the
    // storm's do; the simple protocol's rate is context, on another database.
    let sales = size.tills * size.sales;
    baseline_db.checkpoint();
    let cpu_before = crate::cpu::CpuSample::take(None);
    let baseline_s = crate::server::pgbench_seconds_for(&baseline_db, 16, sales);
    let pgbench_cpu = cpu_before.until(&crate::cpu::CpuSample::take(None));
    drop(baseline_db);
    let simple_db = BenchDb::create(admin_url, 52);
    PgStore::connect(simple_db.config.clone(), &PgOptions { pool_size: 1, ..PgOptions::default() })
        .and_then(|s| s.migrate())
        .expect("migrate the simple protocol's database");
    let tps16_simple = crate::server::pgbench_rate_simple(&simple_db, 16, seconds);
    drop(simple_db);
    let report = run(exe, admin_url, size);
    let name = format!("storm {}×{}", size.tills, size.sales);
    let row = |what: &str, value: f64, baseline: f64, unit: &'static str| {
        crate::Row::measured(format!("{name}: {what}"), value, baseline, unit)
    };
    let against = |what: &str, value: f64, bound: f64, unit: &'static str| {
        crate::Row::against(format!("{name}: {what}"), value, bound, unit)
    };
    let mean_ratio = report.server_mean_ms / report.tills_mean_ms.max(f64::MIN_POSITIVE);
    // Where the time went: each party's CPU per 1,000 sales, the storm's against pgbench's.
    let per_k = |s: f64, sales: f64| s * 1000.0 / sales.max(1.0);
    let pgbench_sales = sales.div_ceil(16) as f64 * 16.0;
    let storm_sales = report.sales as f64;
    let cpu_note = format!(
        "CPU s per 1,000 sales: storm PostgreSQL {:.2}, server {:.2}, tills {:.2} (machine busy {:.0} %); \
         pgbench -M prepared PostgreSQL {:.2}, pgbench {:.2} (busy {:.0} %)",
        per_k(report.cpu.postgres, storm_sales),
        per_k(report.cpu.server, storm_sales),
        per_k(report.cpu.own, storm_sales),
        100.0 * report.cpu.total() / (report.drain_seconds * cores()),
        per_k(pgbench_cpu.postgres, pgbench_sales),
        per_k(pgbench_cpu.own, pgbench_sales),
        100.0 * pgbench_cpu.total() / (baseline_s * cores()),
    );
    let rows = vec![
        row("time until every till is drained", report.drain_seconds, baseline_s, "s")
            .target(Target::RatioAtMost(1.25))
            .note(format!(
                "baseline: pgbench -M prepared storing as many sales ({}) at concurrency 16 ({:.0}/s); \
                 exactly once: {}; against pgbench's simple protocol ({tps16_simple:.0}/s over {seconds} s): {:.2}; \
                 {cpu_note}",
                pgbench_sales,
                pgbench_sales / baseline_s,
                report.exactly_once,
                report.drain_seconds * tps16_simple / report.sales as f64
            )),
        against("p99 of admitted pushes at the tills", report.admitted.p99_ms, 1000.0, "ms")
            .target(Target::RatioBelow(1.0))
            .note(format!(
                "{} admitted, p50 {:.0} ms, max {:.0} ms",
                report.admitted.count, report.admitted.p50_ms, report.admitted.max_ms
            )),
        against("p99 of shed pushes (503) at the tills", report.shed.p99_ms, 50.0, "ms")
            .target(Target::RatioBelow(1.0))
            .note(format!(
                "{} shed at the tills, p50 {:.0} ms, max {:.0} ms; {} 503 counted by the server",
                report.shed.count, report.shed.p50_ms, report.shed.max_ms, report.server_503
            )),
        row("server's mean push time vs the tills'", report.server_mean_ms, report.tills_mean_ms, "ms")
            .target(Target::RatioWithin(0.8, 1.2))
            .note(format!("ratio {mean_ratio:.2}: the server's numbers do not hide a wait")),
        against("slowest /healthz or /metrics answer", report.health_max_ms, 1000.0, "ms")
            .target(Target::RatioBelow(1.0))
            .note(format!(
                "{} probes failed or took over 1 s at the prober, {} over 1 s by the server's histogram",
                report.health_slow, report.health_slow_at_server
            )),
        against("server peak RSS", report.server_peak_rss_kib as f64 / 1024.0, 200.0, "MiB")
            .target(Target::RatioBelow(1.0))
            .note(format!("peak open connections {}", report.peak_open_connections)),
    ];
    (report, rows)
}

/// CPUs this process may use.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
