//! `possync-till demo`: simulated tills against a server, with an offline period, "back online",
//! "Sync now", a deliberate CONFLICT, and a final exactly-once check.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use possync_core::config::OutboxConfig;
use possync_core::drain::DrainReport;
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::{Outbox, SaleState};
use possync_core::reason::DrainReason;
use possync_core::status::{StatusListener, SyncStatus};
use possync_core::transport::HttpTransport;
use possync_server::auth::{generate_token, token_sha256};
use possync_server::http::{self, HttpConfig, RunningServer};
use possync_server::store::postgres::{PgOptions, PgStore};
use possync_server::store::sqlite::{SqliteOptions, SqliteStore};
use possync_server::store::{Device, Store};
use rand::{Rng, SeedableRng};

use crate::inspect::{self, banner, status_line};
use crate::sales::Register;
use crate::TillError;

/// Options of `possync-till demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Simulated tills.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    tills: u16,
    /// Sales rung up per till (plus one for the deliberate conflict).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(3..=100_000))]
    sales: u32,
    /// Seed of the random baskets and pacing.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// How long the server stays down, in ms.
    #[arg(long, default_value_t = 3_000)]
    offline_ms: u64,
    /// Mean time between two sales of a till, in ms.
    #[arg(long, default_value_t = 60)]
    pace_ms: u64,
    /// JSON-lines logs on stderr (the log crate's key-values) instead of progress bars.
    #[arg(long)]
    json: bool,
    /// Run the in-process server on this PostgreSQL database instead of a SQLite file.
    #[arg(long, conflicts_with = "server")]
    postgres: Option<String>,
    /// Run the tills against this real server instead of an in-process one (with --token).
    #[arg(long, requires = "token")]
    server: Option<String>,
    /// The device token for --server.
    #[arg(long, requires = "server")]
    token: Option<String>,
    /// With --server: the token's device id (every simulated till sends as this device).
    #[arg(long, default_value = "till-1")]
    device: String,
    /// With --server: the token's store id.
    #[arg(long, default_value = "store-1")]
    store: String,
}

/// The server the tills talk to.
enum Backend {
    /// In this process, on a store we can read for the final check.
    InProcess { store: Arc<dyn Store>, server: Option<Box<RunningServer>>, addr: SocketAddr, kind: String },
    /// Somewhere else.
    Remote { url: String },
}

impl Backend {
    fn url(&self) -> String {
        match self {
            Backend::InProcess { addr, .. } => format!("http://{addr}"),
            Backend::Remote { url } => url.clone(),
        }
    }

    fn start_in_process(store: Arc<dyn Store>, kind: String) -> Result<Backend, TillError> {
        let config = http_config("127.0.0.1:0".parse().map_err(|e| TillError::Demo(format!("{e}")))?);
        let server = http::start(store.clone(), config).map_err(|e| TillError::Demo(e.to_string()))?;
        let addr = server.local_addr();
        Ok(Backend::InProcess { store, server: Some(Box::new(server)), addr, kind })
    }

    /// Stops the in-process server: connections are refused until [`Backend::restart`].
    fn stop(&mut self) {
        if let Backend::InProcess { server, addr, .. } = self {
            if let Some(s) = server.take() {
                s.shutdown();
                // The listener is closed when shutdown returns; knock until the port refuses, so the
                // tills see "connection refused" at once, as with a stopped server.
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline
                    && std::net::TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// Starts the in-process server again on the same port.
    fn restart(&mut self) -> Result<(), TillError> {
        if let Backend::InProcess { store, server, addr, .. } = self {
            let mut last = String::new();
            for _ in 0..50 {
                match http::start(store.clone(), http_config(*addr)) {
                    Ok(s) => {
                        *server = Some(Box::new(s));
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Err(TillError::Demo(format!("cannot restart the server on {addr}: {last}")));
        }
        Ok(())
    }
}

fn http_config(listen: SocketAddr) -> HttpConfig {
    // A three-till shop: admission control never sheds them (the storm benchmark shows it shedding).
    let limits = possync_server::http::FrontLimits { max_inflight_sales: 1_000, ..Default::default() };
    HttpConfig { listen, workers: 4, limits, ..HttpConfig::default() }
}

/// Run reports of one till, as its status listener receives them.
#[derive(Default)]
struct Reports(Mutex<Vec<DrainReport>>);

impl StatusListener for Reports {
    fn on_status(&self, _status: SyncStatus) {}
    fn on_report(&self, report: DrainReport) {
        self.0.lock().push(report);
    }
}

/// One simulated till: its engine (and outbox), its register and what it rang up.
struct Till {
    name: String,
    device: Device,
    engine: SyncEngine,
    register: Mutex<Register>,
    reports: Arc<Reports>,
    rung_up: AtomicU64,
}

impl Till {
    fn outbox(&self) -> &Arc<Outbox> {
        self.engine.outbox()
    }
}

/// Bars, or JSON-lines logs.
struct Ui {
    json: bool,
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    last: Mutex<Vec<String>>,
}

impl Ui {
    fn new(json: bool, names: &[String]) -> Ui {
        let multi = MultiProgress::with_draw_target(if json {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr_with_hz(10)
        });
        let style =
            ProgressStyle::with_template("{prefix:>7} [{bar:24.green/white}] {pos:>4}/{len:<4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bars = names
            .iter()
            .map(|n| {
                let bar = multi.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(n.clone());
                bar
            })
            .collect();
        Ui { json, multi, bars, last: Mutex::new(vec![String::new(); names.len()]) }
    }

    /// A headline of the story (stdout, above the bars; or a log record).
    fn say(&self, phase: &str, text: &str) {
        if self.json {
            log::info!(target: "possync_till", phase = phase; "{text}");
        } else {
            self.multi.suspend(|| println!("== {text}"));
        }
    }

    /// A line of detail (stdout; or a log record).
    fn detail(&self, phase: &str, till: &str, text: &str) {
        if self.json {
            log::info!(target: "possync_till", phase = phase, till = till; "{text}");
        } else {
            self.multi.suspend(|| println!("   {till}: {text}"));
        }
    }

    fn update(&self, i: usize, till: &Till) {
        let Ok(s) = till.engine.status() else { return };
        let handled = s.counts.sent + s.counts.conflict + s.counts.invalid;
        let line = status_line(&s);
        if self.json {
            let key = format!("{} {}", banner(&s.status), s.counts.unsent());
            let mut last = self.last.lock();
            if last[i] != key {
                last[i] = key;
                log::info!(target: "possync_till", till = till.name.as_str(), status = banner(&s.status).as_str(),
                    unsent = s.counts.unsent(), unsent_amounts = inspect::amounts(&s.unsent_by_currency).as_str(),
                    oldest_unsent_ms = s.oldest_unsent_age_ms.unwrap_or(0); "status");
            }
        } else if let Some(bar) = self.bars.get(i) {
            bar.set_length(till.rung_up.load(Ordering::SeqCst));
            bar.set_position(handled);
            bar.set_message(line);
        }
    }

    fn finish(&self) {
        for bar in &self.bars {
            bar.finish();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Each till rings up `n` sales at about `pace_ms` apart, all tills at once.
fn ring_up(tills: &[Till], n: u32, pace_ms: u64, seed: u64) -> Result<(), TillError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = tills
            .iter()
            .enumerate()
            .map(|(i, till)| {
                scope.spawn(move || -> Result<(), TillError> {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (i as u64 + 1) << 32);
                    for _ in 0..n {
                        let sale = till.register.lock().ring_up(now_ms());
                        till.outbox().enqueue(&sale)?;
                        till.rung_up.fetch_add(1, Ordering::SeqCst);
                        if pace_ms > 0 {
                            std::thread::sleep(Duration::from_millis(rng.random_range(0..=2 * pace_ms)));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| Err(TillError::Demo("a till thread panicked".into())))
        })
    })
}

/// Waits until no till has unsent sales.
fn wait_drained(tills: &[Till], within: Duration) -> Result<(), TillError> {
    let deadline = Instant::now() + within;
    loop {
        let mut unsent = 0;
        for t in tills {
            unsent += t.outbox().counts()?.unsent();
        }
        if unsent == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(TillError::Demo(format!(
                "{unsent} sale(s) still unsent after {} s",
                within.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn report_line(r: &DrainReport) -> String {
    format!(
        "drain ({}): sent {}, duplicate {}, conflict {}, retry {}, remaining {} in {} ms",
        r.reasons, r.sent, r.duplicate, r.conflict, r.retry, r.remaining_pending, r.duration_ms
    )
}

/// `possync-till demo`.
///
/// # Errors
/// A setup failure, or [`TillError::CheckFailed`] when a sale is missing or doubled.
pub fn run(args: DemoArgs) -> Result<(), TillError> {
    if args.json {
        possync_server::logging::init("info");
    }
    let dir = tempfile::tempdir().map_err(|e| TillError::Demo(format!("cannot create a temp dir: {e}")))?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut backend = open_backend(&args, dir.path(), &run_id)?;
    let store_id = match &backend {
        Backend::InProcess { .. } => format!("demo-{}", &run_id[run_id.len() - 8..]),
        Backend::Remote { .. } => args.store.clone(),
    };
    let url = backend.url();
    let names: Vec<String> = (1..=args.tills).map(|i| format!("till-{i}")).collect();
    let ui = Ui::new(args.json, &names);
    let where_ = match &backend {
        Backend::InProcess { kind, .. } => format!("in-process server on {kind} at {url}"),
        Backend::Remote { url } => format!("real server at {url}"),
    };
    ui.say(
        "setup",
        &format!(
            "{} till(s), {} sales each, {where_}; outboxes in {}",
            args.tills,
            args.sales,
            dir.path().display()
        ),
    );

    let mut tills = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (device, token) = match &backend {
            Backend::InProcess { store, .. } => {
                let device = Device { store_id: store_id.clone(), device_id: name.clone() };
                let token = generate_token();
                store.create_token(&device, &token_sha256(&token), Some("possync-till demo"))?;
                (device, token)
            }
            Backend::Remote { .. } => (
                Device { store_id: store_id.clone(), device_id: args.device.clone() },
                args.token.clone().unwrap_or_default(),
            ),
        };
        let outbox = Arc::new(Outbox::open(dir.path().join(format!("{name}.db")), OutboxConfig::default())?);
        let mut config = EngineConfig::new(inspect::sync_config(&url, &token, &device.device_id));
        config.interval_ms = 500;
        config.offline_backoff.base_ms = 300;
        config.offline_backoff.cap_ms = 2_000;
        let transport = Arc::new(HttpTransport::new(&config.sync));
        let reports = Arc::new(Reports::default());
        let engine = SyncEngine::start(outbox, transport, config, Some(reports.clone()))?;
        let register = Register::new(args.seed.wrapping_add(i as u64), &store_id, name);
        tills.push(Till {
            name: name.clone(),
            device,
            engine,
            register: Mutex::new(register),
            reports,
            rung_up: AtomicU64::new(0),
        });
    }

    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                for (i, t) in tills.iter().enumerate() {
                    ui.update(i, t);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for (i, t) in tills.iter().enumerate() {
                ui.update(i, t);
            }
        });
        let result = story(&args, &mut backend, &tills, &ui, &store_id);
        stop.store(true, Ordering::SeqCst);
        result
    });
    ui.finish();
    for t in &tills {
        t.engine.shutdown();
    }
    backend.stop();
    result
}

fn open_backend(args: &DemoArgs, dir: &Path, run_id: &str) -> Result<Backend, TillError> {
    if let Some(server) = &args.server {
        let url = inspect::check_url(server)?;
        inspect::check_ready(&url)?;
        inspect::check_token(&url, args.token.as_deref().unwrap_or_default(), &args.device)?;
        return Ok(Backend::Remote { url });
    }
    if let Some(pg) = &args.postgres {
        let config: postgres::Config =
            pg.parse().map_err(|e| TillError::Demo(format!("invalid --postgres URL: {e}")))?;
        let store = PgStore::connect(config, &PgOptions { pool_size: 4, ..PgOptions::default() })?;
        store.migrate()?;
        return Backend::start_in_process(Arc::new(store), "PostgreSQL".into());
    }
    let path = dir.join(format!("shop-{}.db", &run_id[run_id.len() - 8..]));
    let store = SqliteStore::open(&path, true, &SqliteOptions::default())?;
    store.migrate()?;
    Backend::start_in_process(Arc::new(store), format!("SQLite ({})", path.display()))
}

fn story(
    args: &DemoArgs,
    backend: &mut Backend,
    tills: &[Till],
    ui: &Ui,
    store_id: &str,
) -> Result<(), TillError> {
    let drain_wait = Duration::from_secs(120);
    let first = args.sales / 3;
    let second = args.sales / 3;
    let third = args.sales - first - second;

    ui.say("online", &format!("ringing up {first} sales per till; the tills drain every 500 ms"));
    ring_up(tills, first, args.pace_ms, args.seed)?;
    wait_drained(tills, drain_wait)?;

    let remote = matches!(backend, Backend::Remote { .. });
    if remote {
        ui.say("offline", "a real server cannot be stopped from here: no offline period; ringing up on");
        ring_up(tills, second, args.pace_ms, args.seed.wrapping_add(1))?;
    } else {
        ui.say("offline", "OFFLINE: the server stops (new connections are refused, a kept-alive one times out); sales pile up");
        backend.stop();
        let until = Instant::now() + Duration::from_millis(args.offline_ms);
        ring_up(tills, second, args.pace_ms, args.seed.wrapping_add(1))?;
        for t in tills {
            t.engine.trigger(DrainReason::Focus);
        }
        // Until each till has tried and seen the server gone, and the offline period is over.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut all_offline = true;
            for t in tills {
                all_offline &= matches!(t.engine.status()?.status, SyncStatus::Offline { .. });
            }
            if (all_offline && Instant::now() >= until) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for t in tills {
            ui.detail("offline", &t.name, &status_line(&t.engine.status()?));
        }
        ui.say(
            "online",
            "BACK ONLINE: the server is up again on the same port; each till gets an Online trigger",
        );
        backend.restart()?;
    }
    let seen: Vec<usize> = tills.iter().map(|t| t.reports.0.lock().len()).collect();
    for t in tills {
        t.engine.trigger(DrainReason::Online);
    }
    wait_drained(tills, drain_wait)?;
    for (t, seen) in tills.iter().zip(seen) {
        let reports = t.reports.0.lock();
        let online = reports[seen.min(reports.len())..]
            .iter()
            .find(|r| r.reasons.contains(DrainReason::Online) && r.settled() > 0)
            .or_else(|| {
                reports[seen.min(reports.len())..].iter().find(|r| r.reasons.contains(DrainReason::Online))
            });
        let text = online.map_or_else(|| "the backlog went with an interval drain".to_owned(), report_line);
        ui.detail("online", &t.name, &text);
    }

    ui.say("sync_now", &format!("ringing up {third} more sales per till, then \"Sync now\" on each till"));
    ring_up(tills, third, 0, args.seed.wrapping_add(2))?;
    for t in tills {
        let report = t.engine.sync_now(Duration::from_secs(60))?;
        ui.detail("sync_now", &t.name, &report_line(&report));
    }

    let mut expected_conflicts = 0;
    if tills.len() >= 2 {
        ui.say(
            "conflict",
            "a deliberate CONFLICT: till-1 and till-2 record different sales under the same client_tx_id",
        );
        let id = uuid::Uuid::now_v7().to_string();
        for t in &tills[..2] {
            let sale = t.register.lock().ring_up(now_ms());
            t.outbox().enqueue_with_id(&id, &sale)?;
            t.rung_up.fetch_add(1, Ordering::SeqCst);
            let report = t.engine.sync_now(Duration::from_secs(60))?;
            ui.detail(
                "conflict",
                &t.name,
                &format!("{} · {}", report_line(&report), status_line(&t.engine.status()?)),
            );
        }
        expected_conflicts = 1;
        if let Backend::InProcess { store, .. } = backend {
            let items = store.attention_items(store_id, None)?;
            ui.detail(
                "conflict",
                "server",
                &format!("{} attempt(s) need a person (possync-server attention list)", items.len()),
            );
        }
    } else {
        ui.say("conflict", "one till only: no deliberate conflict (it needs two tills)");
    }

    wait_drained(tills, drain_wait)?;
    final_check(backend, tills, ui, expected_conflicts)
}

fn final_check(backend: &Backend, tills: &[Till], ui: &Ui, expected_conflicts: u64) -> Result<(), TillError> {
    let mut problems = Vec::new();
    let (mut rung, mut sent, mut conflicts, mut on_server) = (0u64, 0u64, 0u64, 0u64);
    for t in tills {
        let c = t.outbox().counts()?;
        let n = t.rung_up.load(Ordering::SeqCst);
        rung += n;
        sent += c.sent;
        conflicts += c.conflict;
        if c.unsent() != 0 || c.invalid != 0 || c.sent + c.conflict != n {
            problems.push(format!(
                "{}: rang up {n}, sent {}, conflict {}, invalid {}, unsent {}",
                t.name,
                c.sent,
                c.conflict,
                c.invalid,
                c.unsent()
            ));
        }
        if let Backend::InProcess { store, .. } = backend {
            let report = possync_server::verify::verify(&**store, t.outbox(), None, Some(&t.device))
                .map_err(|e| TillError::Demo(e.to_string()))?;
            let server_ids: HashSet<String> = store.device_sales(&t.device)?.into_iter().collect();
            let sent_ids: HashSet<String> = t
                .outbox()
                .summaries()?
                .into_iter()
                .filter(|e| e.state == SaleState::Sent)
                .map(|e| e.client_tx_id)
                .collect();
            on_server += server_ids.len() as u64;
            if !report.is_clean() || !report.extra.is_empty() || server_ids != sent_ids {
                problems.push(format!(
                    "{}: {} missing, {} mismatched, {} extra on the server; {} on the server vs {} sent",
                    t.name,
                    report.missing.len(),
                    report.mismatched.len(),
                    report.extra.len(),
                    server_ids.len(),
                    sent_ids.len()
                ));
            }
        }
    }
    if conflicts != expected_conflicts {
        problems.push(format!("{conflicts} conflict(s), expected {expected_conflicts}"));
    }
    let summary = match backend {
        Backend::InProcess { .. } => {
            if on_server != sent {
                problems.push(format!("{on_server} sale(s) on the server, {sent} sent by the tills"));
            }
            format!(
                "rang up {rung} sale(s) on {} till(s): {sent} sent, {on_server} on the server (each once), \
                 {conflicts} conflict(s) kept on the till for a person, 0 unsent",
                tills.len()
            )
        }
        Backend::Remote { url } => {
            inspect::check_ready(url)?;
            format!(
                "rang up {rung} sale(s) on {} till(s): {sent} sent (OK or DUPLICATE), {conflicts} conflict(s), \
                 0 unsent; {url}/readyz is 200. Not checked from here: the server's rows (run \
                 `possync-server verify --outbox FILE` where the database is)",
                tills.len()
            )
        }
    };
    ui.say("check", &summary);
    if problems.is_empty() {
        if ui.json {
            log::info!(target: "possync_till", phase = "check", result = "ok"; "exactly once: OK");
        }
        println!("exactly once: OK");
        Ok(())
    } else {
        Err(TillError::CheckFailed(problems.join("; ")))
    }
}
