//! The blocking HTTP front: a fixed pool of worker threads over `tiny_http`.
//!
//! Routes: `POST /sync/push`, `GET /healthz` (process alive), `GET /readyz` (database reachable and
//! schema current), `GET /metrics` (Prometheus text). Every answer carries `X-Correlation-Id` (the
//! request's, or a fresh UUID v7); every error is a JSON [`ErrorBody`] with a machine-readable `code`.
//! [`RunningServer::shutdown`] stops taking requests, lets each worker finish the request it is
//! answering (so in-flight sale transactions commit or roll back normally) and joins the workers.

use std::io::Read;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use possync_core::protocol::push::{CORRELATION_HEADER, PUSH_PATH};
use possync_core::protocol::ErrorBody;
use tiny_http::{Header, Method, Request, Response};

use crate::auth::{bearer_token, token_sha256};
use crate::metrics::Metrics;
use crate::push::{handle_push, PushLimits};
use crate::store::{Device, Store, TokenLookup};
use crate::token_cache::TokenCache;

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Worker threads, each answering one request at a time.
    pub workers: usize,
    /// Largest accepted request body (more ⇒ 413 `body_too_large`).
    pub max_body_bytes: usize,
    /// Per-request and per-sale limits.
    pub push_limits: PushLimits,
    /// `Retry-After` seconds sent with 503 answers.
    pub retry_after_secs: u32,
    /// How long an accepted device token is trusted without asking the store again (zero: every
    /// request asks). A revoked token is refused within this time.
    pub token_cache_ttl: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 8,
            max_body_bytes: 4 * 1024 * 1024,
            push_limits: PushLimits::default(),
            retry_after_secs: 2,
            token_cache_ttl: Duration::from_secs(5),
        }
    }
}

struct Shared {
    store: Arc<dyn Store>,
    metrics: Metrics,
    tokens: TokenCache,
    config: HttpConfig,
}

/// A server accepting requests; dropping it without [`RunningServer::shutdown`] leaves the workers
/// running until the process ends.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

/// Asks a [`RunningServer`] to stop, from any thread (e.g. a signal handler).
#[derive(Clone)]
pub struct ShutdownHandle {
    stop: Arc<AtomicBool>,
    server: Arc<tiny_http::Server>,
    workers: usize,
}

impl ShutdownHandle {
    /// Stops taking new requests; workers finish the request in hand and exit.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in 0..self.workers {
            self.server.unblock();
        }
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
    /// A worker thread could not be spawned.
    #[error("cannot start worker threads: {0}")]
    Spawn(#[from] std::io::Error),
}

/// A tiny_http server listening on `addr` with `TCP_NODELAY`.
///
/// tiny_http writes a response's head and body in two writes; with Nagle's algorithm the body waits
/// for the ACK of the head, which the client delays by up to 40 ms (seen as 41 ms per request of a
/// till's drain). Accepted sockets inherit `TCP_NODELAY` from the listener on Linux.
///
/// # Errors
/// [`StartError::Bind`] when the address cannot be bound or the option cannot be set.
pub fn bind(addr: SocketAddr) -> Result<tiny_http::Server, StartError> {
    let bind_error = |e: &dyn std::fmt::Display| StartError::Bind { addr, reason: e.to_string() };
    let listener = std::net::TcpListener::bind(addr).map_err(|e| bind_error(&e))?;
    socket2::SockRef::from(&listener).set_tcp_nodelay(true).map_err(|e| bind_error(&e))?;
    tiny_http::Server::from_listener(listener, None).map_err(|e| bind_error(&e))
}

/// Binds `config.listen` and starts `config.workers` worker threads.
///
/// # Errors
/// [`StartError`] when the address cannot be bound or threads cannot be spawned.
pub fn start(store: Arc<dyn Store>, config: HttpConfig) -> Result<RunningServer, StartError> {
    let server = bind(config.listen)?;
    let addr = server.server_addr().to_ip().unwrap_or(config.listen);
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = config.workers.max(1);
    let tokens = TokenCache::new(config.token_cache_ttl);
    let shared = Arc::new(Shared { store, metrics: Metrics::new(), tokens, config });
    let mut handles = Vec::with_capacity(workers);
    for i in 0..workers {
        let (server, stop, shared) = (server.clone(), stop.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("possync-http-{i}"))
            .spawn(move || worker_loop(&server, &stop, &shared))?;
        handles.push(handle);
    }
    log::info!(listen:% = addr, workers = workers; "possync-server listening");
    Ok(RunningServer { addr, stop, server, workers: handles })
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops this server from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone(), server: self.server.clone(), workers: self.workers.len() }
    }

    /// Stops taking requests and waits until every worker has finished its request in hand.
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        self.join();
    }

    /// Waits for the workers to exit (after a [`ShutdownHandle::shutdown`]).
    pub fn join(self) {
        for w in self.workers {
            if w.join().is_err() {
                log::error!("an HTTP worker thread panicked");
            }
        }
        log::info!(listen:% = self.addr; "possync-server stopped");
    }
}

fn worker_loop(server: &tiny_http::Server, stop: &AtomicBool, shared: &Shared) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(request)) => handle(shared, request),
            Ok(None) => {}
            Err(e) => log::warn!(error:% = e; "accepting a request failed"),
        }
    }
}

/// An answer before it is written.
struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
    retry_after: Option<u32>,
    www_authenticate: bool,
}

impl Reply {
    fn json<T: serde::Serialize>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply { status, body, content_type: "application/json", retry_after: None, www_authenticate: false }
    }

    fn error(status: u16, code: &str, message: impl Into<String>, correlation_id: &str) -> Self {
        let body = ErrorBody {
            code: code.to_owned(),
            message: message.into(),
            correlation_id: Some(correlation_id.to_owned()),
        };
        Self::json(status, &body)
    }

    fn unavailable(shared: &Shared, code: &str, message: String, correlation_id: &str) -> Self {
        let mut reply = Self::error(503, code, message, correlation_id);
        reply.retry_after = Some(shared.config.retry_after_secs);
        reply
    }
}

fn handle(shared: &Shared, mut request: Request) {
    let started = Instant::now();
    let correlation_id = correlation_id_of(&request);
    let path = request.url().split('?').next().unwrap_or("").to_owned();
    let route = match path.as_str() {
        PUSH_PATH | "/healthz" | "/readyz" | "/metrics" => path.clone(),
        _ => "other".to_owned(),
    };
    let reply = catch_unwind(AssertUnwindSafe(|| route_request(shared, &mut request, &path, &correlation_id)))
        .unwrap_or_else(|_| {
            log::error!(correlation_id = correlation_id.as_str(), path = path.as_str(); "request handler panicked");
            Reply::error(500, "internal_error", "the server failed to answer; retry later", &correlation_id)
        });

    let elapsed = started.elapsed();
    shared.metrics.http_requests.with_label_values(&[route.as_str(), &reply.status.to_string()]).inc();
    shared.metrics.http_seconds.with_label_values(&[route.as_str()]).observe(elapsed.as_secs_f64());
    if route != "/healthz" && route != "/metrics" {
        log::info!(correlation_id = correlation_id.as_str(), method = request.method().as_str(),
            path = path.as_str(), status = reply.status, latency_ms = elapsed.as_millis() as u64;
            "request answered");
    }

    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    for (name, value) in
        [("Content-Type", reply.content_type.to_owned()), (CORRELATION_HEADER, correlation_id.clone())]
    {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    if let Some(secs) = reply.retry_after {
        if let Ok(h) = Header::from_bytes(&b"Retry-After"[..], secs.to_string().as_bytes()) {
            response.add_header(h);
        }
    }
    if reply.www_authenticate {
        if let Ok(h) = Header::from_bytes(&b"WWW-Authenticate"[..], &b"Bearer"[..]) {
            response.add_header(h);
        }
    }
    if let Err(e) = request.respond(response) {
        log::warn!(correlation_id = correlation_id.as_str(), error:% = e; "writing the response failed");
    }
}

/// The request's `X-Correlation-Id` when it is sane (1..=128 visible ASCII characters), else a new one.
fn correlation_id_of(request: &Request) -> String {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(CORRELATION_HEADER))
        .map(|h| h.value.as_str().trim())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn header<'r>(request: &'r Request, name: &'static str) -> Option<&'r str> {
    request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str())
}

fn route_request(shared: &Shared, request: &mut Request, path: &str, cid: &str) -> Reply {
    let method = request.method().clone();
    match (path, &method) {
        (PUSH_PATH, Method::Post) => push(shared, request, cid),
        ("/healthz", Method::Get) => Reply::json(200, &serde_json::json!({"status": "ok"})),
        ("/readyz", Method::Get) => match shared.store.check_ready() {
            Ok(()) => Reply::json(200, &serde_json::json!({"status": "ready"})),
            Err(e) => Reply::unavailable(shared, "not_ready", e.to_string(), cid),
        },
        ("/metrics", Method::Get) => {
            let text = shared.metrics.render(shared.store.pool_state());
            Reply {
                status: 200,
                body: text.into_bytes(),
                content_type: "text/plain; version=0.0.4",
                retry_after: None,
                www_authenticate: false,
            }
        }
        (PUSH_PATH | "/healthz" | "/readyz" | "/metrics", _) => {
            Reply::error(405, "method_not_allowed", format!("{method} is not allowed on {path}"), cid)
        }
        _ => Reply::error(404, "not_found", format!("no route {path}"), cid),
    }
}

fn push(shared: &Shared, request: &mut Request, cid: &str) -> Reply {
    let max = shared.config.max_body_bytes;
    if request.body_length().is_some_and(|len| len > max) {
        return Reply::error(413, "body_too_large", format!("request body exceeds {max} bytes"), cid);
    }
    let device = match authenticate(shared, request, cid) {
        Ok(device) => device,
        Err(reply) => return reply,
    };
    let mut body = Vec::with_capacity(request.body_length().unwrap_or(0).min(max));
    if let Err(e) = request.as_reader().take(max as u64 + 1).read_to_end(&mut body) {
        return Reply::error(400, "unreadable_body", format!("cannot read the request body: {e}"), cid);
    }
    if body.len() > max {
        return Reply::error(413, "body_too_large", format!("request body exceeds {max} bytes"), cid);
    }
    let limits = shared.config.push_limits;
    match handle_push(shared.store.as_ref(), &shared.metrics, &device, cid, &body, &limits) {
        Ok(response) => Reply::json(200, &response),
        Err(e) => {
            let (status, code) = e.status_and_code();
            log::warn!(correlation_id = cid, device_id = device.device_id.as_str(), code = code; "push refused");
            Reply::error(status, code, e.to_string(), cid)
        }
    }
}

fn authenticate(shared: &Shared, request: &Request, cid: &str) -> Result<Device, Reply> {
    let unauthorized = |code: &str, message: &str| {
        let mut reply = Reply::error(401, code, message, cid);
        reply.www_authenticate = true;
        reply
    };
    let Some(token) = header(request, "Authorization").and_then(bearer_token) else {
        return Err(unauthorized("missing_token", "send Authorization: Bearer <device token>"));
    };
    let token_sha256 = token_sha256(token);
    if let Some(device) = shared.tokens.get(&token_sha256) {
        return Ok(device);
    }
    match shared.store.lookup_token(&token_sha256) {
        Ok(TokenLookup::Active(device)) => {
            shared.tokens.put(&token_sha256, &device);
            Ok(device)
        }
        Ok(TokenLookup::Revoked) => Err(unauthorized("token_revoked", "this device token was revoked")),
        Ok(TokenLookup::Unknown) => Err(unauthorized("invalid_token", "unknown device token")),
        Err(e) => Err(Reply::unavailable(shared, "database_unavailable", e.to_string(), cid)),
    }
}
