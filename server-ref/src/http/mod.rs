//! The HTTP front: hyper (HTTP/1.1) through axum on a small tokio runtime, with every input bounded
//! in size and time, and the blocking database work on a bounded pool of pre-spawned threads.
//!
//! Routes: `POST /sync/push`, `GET /healthz` (process alive), `GET /readyz` (database reachable and
//! schema current), `GET /metrics` (Prometheus text), and the shop console under `/console`
//! ([`crate::console`]). Every answer carries `X-Correlation-Id` (the
//! request's, or a fresh UUID v7); every error routed to the application is a JSON
//! [`ErrorBody`](possync_core::protocol::ErrorBody) with a machine-readable `code` (the console
//! answers a browser with the same code on an HTML page).
//!
//! - [`accept`]: the accept loop (survives fd and thread exhaustion), the connection cap with eviction
//!   of the longest-idle connection, and the per-connection timeouts.
//! - [`routes`]: the router, the push handler (authentication, body limits, admission control,
//!   deadline) and the small routes.
//! - [`admission`]: one push in flight per device, and the byte budget of bodies being read.
//!
//! Answers and the one error type are [`crate::reply`]'s; the console is its own router
//! ([`crate::console::router`]), merged into this one.
//!
//! [`RunningServer::shutdown`] stops accepting, lets every connection finish the request in hand (so
//! in-flight sale transactions commit or roll back normally) and joins the database threads.

pub mod accept;
mod admission;
mod comeback;
mod framing;
mod gauges;
pub mod routes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::blocking::BlockingPool;
use crate::metrics::Metrics;
use crate::push::PushLimits;
use crate::store::Store;
use crate::token_cache::TokenCache;

/// Bounds of the transport: every input of a client is limited in size and in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontLimits {
    /// Time for a client to send a request's whole head (request line and headers).
    pub header_read_timeout: Duration,
    /// Time for a client to send a request's whole body, from the end of its head (then 408).
    pub body_read_timeout: Duration,
    /// Largest request head, in bytes (then 431 and close). At least 8 KiB.
    pub max_header_bytes: usize,
    /// A connection on which no byte arrives for this long is closed (keep-alive idle timeout).
    pub idle_timeout: Duration,
    /// A connection whose client does not take the answer for this long is closed.
    pub write_timeout: Duration,
    /// Open connections at most; past it the longest-idle connection is closed to admit the new
    /// one. Lowered at start to fit the process's file-descriptor limit.
    pub max_connections: usize,
    /// Push requests in hand at once (from the end of the body to the answer); past it a push is
    /// answered 503 `overloaded` + `Retry-After` at once. The body is read before a slot is taken,
    /// so a slow body never holds one. Zero: twice the database threads.
    pub max_inflight_pushes: usize,
    /// Bytes of push bodies being read at once, across all connections; a body that does not fit is
    /// answered 503 `overloaded` + `Retry-After` at once (a `Content-Length` is taken whole before
    /// the first byte is read, a chunked body chunk by chunk). Zero: 16 × the largest body.
    pub max_body_bytes_reading: usize,
    /// One push in flight per device (the protocol's single flight): a device's second push while
    /// one is in hand is answered 429 `push_in_flight` + `Retry-After` at once, before its body is
    /// read; a push holds its device until its last job ends or its deadline passes, whichever is
    /// first. Always on in `serve`; tests whose senders share one device's outbox on purpose (two
    /// processes draining one file) turn it off.
    pub one_push_per_device: bool,
    /// Time a push request may take from its head to its answer; sales not settled by then answer
    /// `RETRY` (`deadline_exceeded`). Below the tills' default request timeout (30 s).
    pub request_deadline: Duration,
    /// Sales being settled at once across all pushes; a push whose sales do not fit waits in line
    /// for room (see [`FrontLimits::sales_wait`]) and is answered 503 `overloaded` when none comes in
    /// time, before any of its sales is settled. It bounds the work an admitted push waits behind, so
    /// admitted pushes stay fast while the excess waits or is shed. Zero: 25 per database thread. A
    /// push larger than the whole budget takes all of it.
    pub max_inflight_sales: usize,
    /// How long a push whose sales do not fit the sales budget waits in line for room, first come
    /// first served, before it is answered 503 `overloaded`. It waits holding its push slot, so at
    /// most `max_inflight_pushes` pushes wait or run, and past them a push is shed at once. Waiting
    /// keeps the database threads fed when a push ends (a shed till comes back only after its
    /// `Retry-After`) and spares a till sending its batch again. Zero: shed at once.
    pub sales_wait: Duration,
    /// Sales of one request settled at once, each in its own transaction on its own connection, so
    /// that one till drains faster than one connection commits; at most this many database threads
    /// for one request, fewer when many pushes share the workers (`workers / pushes in flight`, at
    /// least 1). 1: one after another.
    pub sale_lanes: usize,
}

impl Default for FrontLimits {
    fn default() -> Self {
        FrontLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            max_header_bytes: 16 * 1024,
            idle_timeout: Duration::from_secs(45),
            write_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_inflight_pushes: 0,
            max_body_bytes_reading: 0,
            one_push_per_device: true,
            request_deadline: Duration::from_secs(20),
            sale_lanes: 4,
            max_inflight_sales: 0,
            sales_wait: Duration::from_secs(1),
        }
    }
}

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// A second address serving only `/healthz`, `/readyz` and `/metrics`, on a thread of its own, so
    /// that monitoring is answered at once while the main port's threads are busy with pushes (they
    /// stay on the main port too). `None`: no monitoring port.
    pub monitor_listen: Option<SocketAddr>,
    /// Threads doing database work (token lookups, sale transactions, readiness); size it like the
    /// database pool.
    pub workers: usize,
    /// Threads of the async runtime that parse requests and write answers.
    pub async_threads: usize,
    /// Largest accepted request body (more ⇒ 413 `body_too_large`, then close).
    pub max_body_bytes: usize,
    /// Per-request and per-sale limits.
    pub push_limits: PushLimits,
    /// `Retry-After` seconds sent with 503 answers (database unavailable, not ready, shutting down;
    /// spread between this and twice this when the database queue is full). A push shed by admission
    /// is told a second reserved for it instead, from 1 s on, so that shed tills come back at the
    /// rate the server admits pushes (see `comeback`).
    pub retry_after_secs: u32,
    /// How long an accepted device token is trusted without asking the store again (zero: every
    /// request asks). Revocations announced by the store empty the cache at once; a store that
    /// cannot announce them gets no cache.
    pub token_cache_ttl: Duration,
    /// Transport bounds.
    pub limits: FrontLimits,
    /// The shop console at `/console`.
    pub console: crate::console::ConsoleConfig,
    /// How often device activity (last seen, backlog reports) is written, off the push path.
    pub activity_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            monitor_listen: None,
            workers: crate::blocking::default_workers(),
            async_threads: 2,
            max_body_bytes: 4 * 1024 * 1024,
            push_limits: PushLimits::default(),
            retry_after_secs: 2,
            token_cache_ttl: Duration::from_secs(60),
            limits: FrontLimits::default(),
            console: crate::console::ConsoleConfig::default(),
            activity_interval: Duration::from_secs(1),
        }
    }
}

impl HttpConfig {
    /// Sales settled at once ([`FrontLimits::max_inflight_sales`], or its default).
    pub fn max_inflight_sales(&self) -> usize {
        match self.limits.max_inflight_sales {
            0 => self.workers.max(1) * 25,
            n => n,
        }
    }

    /// Bytes of bodies being read at once ([`FrontLimits::max_body_bytes_reading`], or its default),
    /// never less than one largest body.
    pub fn max_body_bytes_reading(&self) -> usize {
        match self.limits.max_body_bytes_reading {
            0 => self.max_body_bytes.saturating_mul(16),
            n => n.max(self.max_body_bytes),
        }
    }

    /// Push requests admitted at once ([`FrontLimits::max_inflight_pushes`], or its default).
    pub fn max_inflight_pushes(&self) -> usize {
        match self.limits.max_inflight_pushes {
            0 => self.workers.max(1) * 2,
            n => n,
        }
    }
}

/// What every handler shares.
pub(crate) struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tokens: Arc<TokenCache>,
    pub(crate) config: HttpConfig,
    pub(crate) pool: Arc<BlockingPool>,
    pub(crate) admission: Arc<tokio::sync::Semaphore>,
    /// The device of each push in hand (see [`FrontLimits::one_push_per_device`]).
    pub(crate) flights: Arc<admission::Flights>,
    /// Bytes of bodies being read (see [`FrontLimits::max_body_bytes_reading`]).
    pub(crate) body_budget: admission::BodyBudget,
    /// The shop console's state (its router is merged into the main one).
    pub(crate) console: Arc<crate::console::Console>,
    pub(crate) activity: crate::activity::ActivityRecorder,
    /// Sales being settled at once, across requests (see [`FrontLimits::max_inflight_sales`]).
    pub(crate) sales_budget: Arc<tokio::sync::Semaphore>,
    /// Pushes holding a share of the sales budget: those doing database work, not those in line.
    pub(crate) pushes_settling: Arc<std::sync::atomic::AtomicUsize>,
    /// The per-device gauges of `/metrics`, refreshed off the push threads.
    pub(crate) gauges: gauges::DeviceGauges,
    /// When each shed push is told to come back (its `Retry-After`).
    pub(crate) come_back: comeback::ComeBack,
}

impl crate::push::PushHost for App {
    fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
    fn pool(&self) -> &BlockingPool {
        &self.pool
    }
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
    fn activity(&self) -> &crate::activity::ActivityRecorder {
        &self.activity
    }
}

/// Why the server stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// [`ShutdownHandle::shutdown`] was called (SIGTERM, SIGINT, a test).
    Requested,
    /// The server stopped serving on its own; the binary exits non-zero so a supervisor restarts it.
    Failed(String),
}

/// A server accepting requests; dropping it without [`RunningServer::shutdown`] stops it abruptly.
pub struct RunningServer {
    addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    stop: Arc<watch::Sender<bool>>,
    main: tokio::task::JoinHandle<StopReason>,
    app: Arc<App>,
    watcher: Option<std::thread::JoinHandle<()>>,
    watch_stop: Arc<AtomicBool>,
    /// The monitoring port's address and thread, when there is one.
    monitor: Option<(SocketAddr, std::thread::JoinHandle<()>)>,
}

/// Asks a [`RunningServer`] to stop, from any thread (e.g. a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Stops taking new requests; connections finish the request in hand and close.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
    },
    /// A thread (runtime or database pool) could not be spawned.
    #[error("cannot start threads: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Binds `config.listen`, spawns the runtime and database threads, and starts serving.
///
/// # Errors
/// [`StartError`] when the address cannot be bound or threads cannot be spawned.
pub fn start(store: Arc<dyn Store>, config: HttpConfig) -> Result<RunningServer, StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.async_threads.max(1))
        .thread_name("possync-http")
        .enable_io()
        .enable_time()
        .build()?;
    let (listener, addr) = bind(config.listen, &runtime)?;
    // Every admitted push has at most `sale_lanes` jobs queued at once, token lookups and readiness
    // checks one each per request: admitted work always fits the queue.
    let queue = config.max_inflight_pushes() * config.limits.sale_lanes.max(1) + config.workers * 4;
    let pool = Arc::new(BlockingPool::start(config.workers.max(1), queue, "possync-db")?);
    let admission = Arc::new(tokio::sync::Semaphore::new(config.max_inflight_pushes()));
    let sales_budget = Arc::new(tokio::sync::Semaphore::new(config.max_inflight_sales()));
    let tokens = Arc::new(TokenCache::new(config.token_cache_ttl));
    let watch_stop = Arc::new(AtomicBool::new(false));
    let watcher = store.watch_revocations(tokens.clone(), watch_stop.clone())?;
    if watcher.is_none() && !config.token_cache_ttl.is_zero() {
        log::info!("this store cannot announce token revocations: tokens are looked up on every request");
    }
    let metrics = Arc::new(Metrics::new());
    let console = Arc::new(crate::console::Console::new(
        store.clone(),
        pool.clone(),
        metrics.clone(),
        tokens.clone(),
        crate::console::ConsoleLimits {
            config: config.console,
            retry_after_secs: config.retry_after_secs,
            body_read_timeout: config.limits.body_read_timeout,
        },
    ));
    let activity = crate::activity::ActivityRecorder::start(store.clone(), config.activity_interval)?;
    let body_budget = admission::BodyBudget::new(config.max_body_bytes_reading());
    let config_pushes = config.max_inflight_pushes();
    let app = Arc::new(App {
        store,
        metrics,
        tokens,
        config,
        pool,
        admission,
        flights: Arc::new(admission::Flights::default()),
        body_budget,
        console,
        activity,
        sales_budget,
        pushes_settling: Arc::default(),
        gauges: gauges::DeviceGauges::start()?,
        come_back: comeback::ComeBack::new(config_pushes),
    });
    let (stop, stop_rx) = watch::channel(false);
    let router = routes::router(app.clone());
    let max_connections = accept::connection_cap(&app.config);
    app.metrics.connections_max.set(i64::try_from(max_connections).unwrap_or(i64::MAX));
    let monitor = match app.config.monitor_listen {
        Some(at) => Some(start_monitor(at, &app, stop_rx.clone())?),
        None => None,
    };
    let main = runtime.spawn(accept::serve(listener, router, app.clone(), max_connections, stop_rx));
    let monitor_addr = monitor.as_ref().map(|(a, _)| a.to_string()).unwrap_or_default();
    log::info!(listen:% = addr, monitor = monitor_addr.as_str(), workers = app.config.workers,
        max_connections = max_connections; "possync-server listening");
    Ok(RunningServer { addr, runtime, stop: Arc::new(stop), main, app, watcher, watch_stop, monitor })
}

/// Open connections at most on the monitoring port (a scraper or two, a load balancer's checks).
const MONITOR_CONNECTIONS: usize = 64;

/// Binds the monitoring port and serves it on a thread of its own (a one-thread runtime), with the
/// same bounds as the main port, until `stop`.
fn start_monitor(
    at: SocketAddr,
    app: &Arc<App>,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, std::thread::JoinHandle<()>), StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    let (listener, addr) = bind(at, &runtime)?;
    let (router, app) = (routes::monitor_router(app.clone()), app.clone());
    let thread = std::thread::Builder::new().name("possync-monitor".into()).spawn(move || {
        let reason = runtime.block_on(accept::serve(listener, router, app, MONITOR_CONNECTIONS, stop));
        if let StopReason::Failed(why) = reason {
            log::error!(listen:% = addr, reason = why.as_str(); "the monitoring port stopped serving");
        }
    })?;
    Ok((addr, thread))
}

/// A listener of `runtime` on `addr` with `TCP_NODELAY` (inherited by accepted sockets on Linux), and
/// the address it bound (port 0 picks one).
fn bind(
    addr: SocketAddr,
    runtime: &tokio::runtime::Runtime,
) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let bind_error = |e: &dyn std::fmt::Display| StartError::Bind { addr, reason: e.to_string() };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_error(&e))?;
    let sock = socket2::SockRef::from(&listener);
    sock.set_tcp_nodelay(true).map_err(|e| bind_error(&e))?;
    listener.set_nonblocking(true).map_err(|e| bind_error(&e))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let _guard = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| bind_error(&e))?;
    Ok((listener, bound))
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The monitoring port's bound address, when [`HttpConfig::monitor_listen`] was set.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor.as_ref().map(|(addr, _)| *addr)
    }

    /// Writes the device activity noted so far now, instead of at the next interval (tests).
    pub fn flush_activity(&self) {
        self.app.activity.flush();
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone() }
    }

    /// Stops taking requests and waits until every request in hand is answered.
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        let _ = self.join();
    }

    /// Waits until the server stops (after a [`ShutdownHandle::shutdown`], or on its own), then lets
    /// the database threads finish their jobs.
    pub fn join(self) -> StopReason {
        let reason = match self.runtime.block_on(self.main) {
            Ok(reason) => reason,
            Err(e) => StopReason::Failed(format!("the accept loop ended abnormally: {e}")),
        };
        // The main port stopped (asked to, or on its own): the monitoring port stops with it.
        let _ = self.stop.send(true);
        if let Some((_, monitor)) = self.monitor {
            let _ = monitor.join();
        }
        self.runtime.shutdown_timeout(Duration::from_secs(1));
        self.app.pool.join();
        self.app.gauges.join();
        self.app.activity.stop();
        self.watch_stop.store(true, Ordering::SeqCst);
        if let Some(watcher) = self.watcher {
            let _ = watcher.join();
        }
        match &reason {
            StopReason::Requested => log::info!(listen:% = self.addr; "possync-server stopped"),
            StopReason::Failed(why) => log::error!(listen:% = self.addr, reason = why.as_str();
                "possync-server stopped serving"),
        }
        reason
    }
}
