//! The lossy-link scenario of issue 14, shared by the CI-size soak (`tests/tests/it/lossy_link.rs`) and
//! the benchmark (`possync-bench lossy`).
//!
//! Two unattended tills (real [`SyncEngine`]s with production defaults, no trigger but their own
//! scheduling) record sales at a fixed rate for a while, at the same time, against the same server:
//! one through a seeded [`FaultProxy`] in [`Mode::Lossy`] (a share of requests dropped, cut after the
//! server committed, answered 503, or stalled past the request timeout), the other straight to the
//! server. Every second the age of each till's oldest unsent sale is sampled. At the end of the
//! window the sales each till has had acknowledged give its goodput; then the faults stop, both tills
//! converge, and every sale is checked on the server exactly once with `possync-server verify`'s logic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use possync_core::config::{OutboxConfig, SyncConfig};
use possync_core::engine::{EngineConfig, SyncEngine};
use possync_core::outbox::Outbox;
use possync_core::transport::HttpTransport;
use possync_server::store::{Device, Store};

use crate::counting::{AnswerCounts, Answers, CountingTransport};
use crate::proxy::{FaultProxy, Mode};

/// How a lossy-link run is played.
#[derive(Debug, Clone)]
pub struct LossyRun {
    /// The server's address (the proxy forwards there; the clean till goes there directly).
    pub server: SocketAddr,
    /// Token of the lossy till, registered for `store-1` / `till-lossy`.
    pub lossy_token: String,
    /// Token of the clean till, registered for `store-1` / `till-clean`.
    pub clean_token: String,
    /// Seed of the proxy's decisions.
    pub seed: u64,
    /// How long the tills record.
    pub duration: Duration,
    /// Sales each till records per second.
    pub sales_per_second: u32,
    /// Share of the lossy till's requests that fail, in percent.
    pub fail_percent: u32,
    /// Directory for the two outbox files.
    pub dir: std::path::PathBuf,
}

/// What a lossy-link run showed.
#[derive(Debug, Clone)]
pub struct LossyReport {
    /// The proxy's seed.
    pub seed: u64,
    /// Sales recorded by each till (lossy, clean).
    pub recorded: (u64, u64),
    /// Sales acknowledged (`sent`) by the end of the recording window (lossy, clean).
    pub sent_in_window: (u64, u64),
    /// Largest age of the oldest unsent sale in the per-second samples, in ms (lossy, clean).
    pub max_oldest_unsent_ms: (i64, i64),
    /// Samples taken per till.
    pub samples: usize,
    /// The proxy's decisions.
    pub proxy: std::collections::BTreeMap<&'static str, u64>,
    /// What the lossy till was answered during the window.
    pub lossy_answers: AnswerCounts,
    /// Seconds from the end of the window until both tills had nothing unsent.
    pub converge_seconds: f64,
    /// Every sale of both outboxes on the server exactly once (verify clean, nothing extra, all
    /// sent), else what was wrong.
    pub exactly_once: Result<(), String>,
}

impl LossyReport {
    /// Goodput of the lossy till over the clean one's in the same window.
    pub fn goodput_ratio(&self) -> f64 {
        self.sent_in_window.0 as f64 / (self.sent_in_window.1.max(1)) as f64
    }
}

/// The unattended till's settings: production defaults (60 s interval, 60 s lease, batches of 50, a
/// recorded sale starting a run by itself, three failed requests in a row before the engine backs off
/// from 2 s up to 5 min), with a 5 s request timeout and a 2 s connect timeout, as for a till on the
/// shop's LAN (the server answers in milliseconds). Each stall past the timeout holds the till's one
/// request for the whole timeout: with the default 30 s two stalls in a row alone would take 60 s,
/// and with 10 s an unlucky minute of this link (five stalls) came to 51 s.
pub fn unattended_config(server_url: &str, token: &str, device_id: &str) -> EngineConfig {
    let mut sync = SyncConfig::new(server_url, token, device_id);
    sync.request_timeout_ms = 5_000;
    sync.connect_timeout_ms = 2_000;
    EngineConfig::new(sync)
}

/// Plays the scenario; `store` is the server's store, for the final check.
///
/// # Panics
/// When an outbox cannot be opened or written, or an engine cannot start: the run cannot go on.
pub fn run(config: &LossyRun, store: &dyn Store) -> LossyReport {
    let proxy = FaultProxy::start_seeded(config.server, config.seed);
    let request_timeout = Duration::from_millis(unattended_config("", "", "x").sync.request_timeout_ms);
    let answers = Answers::default();
    let till = |device: &str, url: &str, token: &str, counted: Option<&Answers>| {
        let outbox = Arc::new(
            Outbox::open(config.dir.join(format!("{device}.db")), OutboxConfig::default()).expect("outbox"),
        );
        let engine_config = unattended_config(url, token, device);
        let http = HttpTransport::new(&engine_config.sync);
        let engine = match counted {
            Some(a) => {
                let transport = Arc::new(CountingTransport::new(http, a.clone()));
                SyncEngine::start(outbox.clone(), transport, engine_config, None)
            }
            None => SyncEngine::start(outbox.clone(), Arc::new(http), engine_config, None),
        }
        .expect("start engine");
        (device.to_owned(), outbox, engine)
    };
    let clean_url = format!("http://{}", config.server);
    let tills = [
        till("till-lossy", &proxy.url(), &config.lossy_token, Some(&answers)),
        till("till-clean", &clean_url, &config.clean_token, None),
    ];
    proxy.set_mode(Mode::Lossy {
        fail_percent: config.fail_percent,
        stall: request_timeout + Duration::from_secs(1),
    });

    let recording = AtomicBool::new(true);
    let started = Instant::now();
    let period = Duration::from_secs(1) / config.sales_per_second.max(1);
    let total = (config.duration.as_secs_f64() * config.sales_per_second as f64) as u64;
    let mut max_age = [0i64; 2];
    let mut samples = 0usize;
    let mut sent_in_window = [0u64; 2];
    std::thread::scope(|s| {
        for (k, (_, outbox, _)) in tills.iter().enumerate() {
            let recording = &recording;
            s.spawn(move || {
                for n in 0..total {
                    let due = started + period * n as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let seed = (k as i64) * 10_000_000 + n as i64;
                    outbox.enqueue(&crate::till::sale(seed, 1 + (n % 3) as usize)).expect("enqueue");
                }
                recording.store(false, Ordering::SeqCst);
            });
        }
        let mut next = started + Duration::from_secs(1);
        while recording.load(Ordering::SeqCst) {
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            next += Duration::from_secs(1);
            for (k, (_, outbox, _)) in tills.iter().enumerate() {
                let age = outbox.oldest_unsent_age_ms().expect("oldest unsent").unwrap_or(0);
                max_age[k] = max_age[k].max(age);
            }
            samples += 1;
        }
    });
    for (k, (_, outbox, _)) in tills.iter().enumerate() {
        sent_in_window[k] = outbox.counts().expect("counts").sent;
    }
    let lossy_answers = answers.snapshot();
    let proxy_stats = proxy.stats();

    // The faults stop; both tills converge.
    proxy.set_mode(Mode::Pass);
    let window_end = Instant::now();
    let deadline = window_end + Duration::from_secs(120);
    let mut exactly_once = Ok(());
    loop {
        let unsent: u64 = tills.iter().map(|(_, o, _)| o.counts().expect("counts").unsent()).sum();
        if unsent == 0 {
            break;
        }
        if Instant::now() > deadline {
            exactly_once = Err(format!("{unsent} sale(s) still unsent 120 s after the window"));
            break;
        }
        for (_, _, engine) in &tills {
            let _ = engine.sync_now(Duration::from_secs(20));
        }
    }
    let converge_seconds = window_end.elapsed().as_secs_f64();
    for (_, _, engine) in &tills {
        engine.shutdown();
    }
    if exactly_once.is_ok() {
        exactly_once = check_exactly_once(&tills, total, store);
    }
    LossyReport {
        seed: config.seed,
        recorded: (total, total),
        sent_in_window: (sent_in_window[0], sent_in_window[1]),
        max_oldest_unsent_ms: (max_age[0], max_age[1]),
        samples,
        proxy: proxy_stats,
        lossy_answers,
        converge_seconds,
        exactly_once,
    }
}

type Till = (String, Arc<Outbox>, SyncEngine);

fn check_exactly_once(tills: &[Till; 2], total: u64, store: &dyn Store) -> Result<(), String> {
    for (device_id, outbox, _) in tills {
        let counts = outbox.counts().map_err(|e| e.to_string())?;
        if counts.sent != total || counts.unsent() != 0 {
            return Err(format!("{device_id}: {counts:?}, expected {total} sent"));
        }
        let device = Device { store_id: "store-1".into(), device_id: device_id.clone() };
        let report = possync_server::verify::verify(store, outbox.as_ref(), None, Some(&device))
            .map_err(|e| format!("{device_id}: verify: {e}"))?;
        if !report.is_clean() || !report.extra.is_empty() {
            return Err(format!("{device_id}: {report:?}"));
        }
    }
    Ok(())
}
