//! The router and its handlers.
//!
//! Routes are declared with their method: another method is 405 `method_not_allowed` (with axum's
//! `Allow`), any other path 404 `not_found`; the console's pages are its own router, merged in.
//! Every request passes [`front`] first: it picks the correlation id (handlers take it with the
//! [`CorrelationId`] extractor), refuses ambiguous framing (`Content-Length` with
//! `Transfer-Encoding`, several `Content-Length`s) with 400 and close, and after the handler writes
//! the body of an [`ApiError`] answer with the id and records the metrics and the access log. A panic
//! anywhere in a handler is a JSON 500 (tower-http's catch-panic); one in a database job is caught on
//! its thread.
//!
//! `POST /sync/push`, in order: a declared body over the limit ⇒ 413 and close, unread; the token
//! (cache, else a database lookup on the pool) ⇒ 401 and close; the device's one flight (a push of
//! the same device in hand) ⇒ 429 `push_in_flight` + `Retry-After` at once and close, the body
//! unread; the body's bytes in the byte budget ⇒ 503 `overloaded` + jittered `Retry-After` at once
//! and close; the body, read within the body limit and the body read timeout ⇒ 413 / 408 and close;
//! then a push slot (a bounded number of pushes in flight) and the sales' share of the sales
//! budget, else the same 503 at once; the sales checked (parsed, validated, hashed: no database);
//! then handed to [`crate::push::store_push`], which stores them on the database threads before
//! the request deadline. See [`super::admission`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use possync_core::protocol::push::{CORRELATION_HEADER, PUSH_PATH};
use tower_http::catch_panic::CatchPanicLayer;

use super::admission::{Boarded, HeldBytes};
use super::App;
use crate::auth::{bearer_token, token_sha256};
use crate::push::{check_push, store_push, PushError};
use crate::reply::{self, job_failed, ApiError, CorrelationId, Reply};
use crate::store::{Device, TokenLookup};

/// Set on a request by the connection when its raw head stated the body length both by
/// `Content-Length` and by `Transfer-Encoding` (hyper keeps only the latter; see `framing.rs`).
#[derive(Clone, Copy)]
pub(crate) struct AmbiguousFraming;

/// The routes of the server (the console's merged in), behind [`front`] and catch-panic.
pub(crate) fn router(app: Arc<App>) -> Router {
    let routes = monitoring().route(PUSH_PATH, post(push)).merge(crate::console::router(app.console.clone()));
    layered(routes, app)
}

/// The monitoring routes alone (`/healthz`, `/readyz`, `/metrics`), for the monitoring port.
pub(crate) fn monitor_router(app: Arc<App>) -> Router {
    layered(monitoring(), app)
}

fn monitoring() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `routes` behind [`front`] and catch-panic, with a JSON 404 for any other path and a JSON 405 (with
/// axum's `Allow`) for another method.
fn layered(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            log::error!("request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(middleware::from_fn_with_state(app.clone(), front))
        .with_state(app)
}

async fn front(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Reply {
    let started = Instant::now();
    let cid: Arc<str> = correlation_id_of(request.headers()).into();
    let path = request.uri().path().to_owned();
    let route = match path.as_str() {
        PUSH_PATH | "/healthz" | "/readyz" | "/metrics" => path.as_str(),
        p if p == "/console" || p.starts_with("/console/") => "/console",
        _ => "other",
    };
    let method = request.method().clone();
    let reply = match ambiguous_framing(&request) {
        Some(why) => {
            app.metrics.limit_hits.with_label_values(&["ambiguous_framing"]).inc();
            ApiError::new(StatusCode::BAD_REQUEST, "ambiguous_framing", why).closing().into_response()
        }
        None => {
            request.extensions_mut().insert(CorrelationId(cid.clone()));
            next.run(request).await
        }
    };
    let mut reply = reply::write_error_body(reply, &cid);
    if let Ok(value) = HeaderValue::from_str(&cid) {
        reply.headers_mut().insert(CORRELATION_HEADER, value);
    }
    let status = reply.status().as_u16();
    let elapsed = started.elapsed();
    app.metrics.http_requests.with_label_values(&[route, &status.to_string()]).inc();
    app.metrics.http_seconds.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    if route != "/healthz" && route != "/metrics" {
        let path: String = path.chars().take(256).collect();
        log::info!(correlation_id = &*cid, method = method.as_str(), path = path.as_str(), status = status,
            latency_ms = elapsed.as_millis() as u64; "request answered");
    }
    reply
}

/// Why a request's framing is ambiguous, if it is: a body length stated twice or two ways is how
/// requests are smuggled past one parser and into another.
fn ambiguous_framing(request: &Request) -> Option<&'static str> {
    if request.extensions().get::<AmbiguousFraming>().is_some() {
        return Some("Content-Length together with Transfer-Encoding");
    }
    let headers = request.headers();
    let lengths = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Some("several Content-Length headers");
    }
    if lengths == 1 && headers.contains_key(header::TRANSFER_ENCODING) {
        return Some("Content-Length together with Transfer-Encoding");
    }
    None
}

/// The request's `X-Correlation-Id` when it is sane (1..=128 visible ASCII characters), else a new one.
fn correlation_id_of(headers: &HeaderMap) -> String {
    headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// 405 `method_not_allowed` (axum adds the `Allow` header naming the route's methods).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let method: String = method.as_str().chars().take(32).collect();
    let path: String = uri.path().chars().take(256).collect();
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {path}"),
    )
}

async fn not_found(uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(256).collect();
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route {path}"))
}

async fn healthz() -> Reply {
    reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn metrics(State(app): State<Arc<App>>, CorrelationId(cid): CorrelationId) -> Reply {
    app.metrics.body_bytes_reading.set(i64::try_from(app.body_budget.in_use()).unwrap_or(i64::MAX));
    let mut text = app.metrics.render(app.store.pool_state());
    if let Some(devices) = app.gauges.text(app.store.clone(), app.config.console.alert_after, &cid).await {
        text.push_str(&devices);
    }
    reply::text("text/plain; version=0.0.4", text)
}

async fn readyz(State(app): State<Arc<App>>) -> Result<Reply, ApiError> {
    let store = app.store.clone();
    match run_blocking(&app, move || store.check_ready()).await? {
        Ok(()) => Ok(reply::json(StatusCode::OK, &serde_json::json!({"status": "ready"}))),
        Err(e) => Err(unavailable(&app, "not_ready", e.to_string())),
    }
}

/// A 503 with the configured `Retry-After`.
fn unavailable(app: &App, code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry_after(app.config.retry_after_secs)
}

/// A 503 `overloaded` for a push of `device`, whose `Retry-After` is a second reserved for it (see
/// [`super::comeback`]).
fn shed(app: &App, device: &Device, limit: &str, what: &str) -> ApiError {
    reply::shed(&app.metrics, app.come_back.retry_after_secs(device), limit, what)
}

/// Runs `job` on the database pool; a full queue is answered 503 at once.
async fn run_blocking<R, F>(app: &App, job: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    app.pool.run(job).await.map_err(|e| job_failed(&app.metrics, app.config.retry_after_secs, e))
}

async fn push(State(app): State<Arc<App>>, CorrelationId(cid): CorrelationId, request: Request) -> Reply {
    match answer_push(&app, cid, request).await {
        Ok(reply) => reply,
        Err(e) => e.into_response(),
    }
}

/// The push handler's steps, in the order of the module's comment; every refusal is an [`ApiError`].
async fn answer_push(app: &Arc<App>, cid: Arc<str>, request: Request) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let max = app.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(body_too_large(app, max));
    }
    let device = authenticate(app, request.headers()).await?;
    let deadline = started + app.config.limits.request_deadline;
    // One push per device, taken before the body is read: the connection closes (its body unread).
    let boarded = if app.config.limits.one_push_per_device {
        match app.flights.board(&device, deadline, Instant::now()) {
            Ok(boarded) => Some(boarded),
            Err(left) => return Err(push_in_flight(app, &device, left, &cid).closing()),
        }
    } else {
        None
    };
    // The body's bytes, taken whole when declared, before any is read (else chunk by chunk).
    let mut held = HeldBytes::default();
    let declared = declared.map_or(0, |len| len as usize);
    if !app.body_budget.take(&mut held, declared) {
        return Err(shed(app, &device, "body_bytes", "request bodies being read").closing());
    }
    let body = read_body(app, &device, request.into_body(), &mut held).await?;
    // With its body in hand, the push takes a slot: a slow body never held one.
    let Ok(permit) = app.admission.clone().try_acquire_owned() else {
        return Err(shed(app, &device, "inflight_pushes", "pushes in flight"));
    };
    app.metrics.pushes_in_flight.inc();
    let in_flight = InFlight { app: app.clone(), _permit: permit, _boarded: boarded };
    // The share of the sales budget is taken on a count of the sales (a scan, no parsing of each
    // sale) before any work on them; a push that does not fit waits in line, holding its slot.
    let budget = app.config.max_inflight_sales();
    let wanted = u32::try_from(count_sales(&body).clamp(1, budget)).unwrap_or(u32::MAX);
    let Some(share) = sales_share(app, wanted, deadline).await else {
        return Err(shed(app, &device, "inflight_pushes", "sales in flight"));
    };
    app.come_back.admitted();
    let settling = Settling::start(&app.pushes_settling);
    // Checking the sales is CPU work without the database: done here, not on a database thread.
    let checked = check_push(&app.metrics, &device, &cid, &body, &app.config.push_limits);
    drop((body, held));
    let checked = checked.map_err(|e| refused(app, &device, &cid, e))?;
    let pushes = settling.pushes();
    let admitted: Arc<dyn std::any::Any + Send + Sync> = Arc::new((in_flight, share, settling));
    let lanes = lanes_for(app.config.limits.sale_lanes, app.config.workers, pushes);
    match store_push(app, admitted, device.clone(), cid.clone(), checked, lanes, deadline).await {
        Ok(Ok(response)) => Ok(reply::json(StatusCode::OK, &response)),
        Ok(Err(e)) => Err(refused(app, &device, &cid, e)),
        Err(e) => Err(job_failed(&app.metrics, app.config.retry_after_secs, e)),
    }
}

/// The push's share of the sales budget: at once when it fits, else after waiting in line (first come,
/// first served) for at most [`FrontLimits::sales_wait`](super::FrontLimits::sales_wait) and never
/// past the push's deadline; `None` when no room came in time.
async fn sales_share(app: &App, wanted: u32, deadline: Instant) -> Option<tokio::sync::OwnedSemaphorePermit> {
    if let Ok(share) = app.sales_budget.clone().try_acquire_many_owned(wanted) {
        return Some(share);
    }
    let wait = app.config.limits.sales_wait;
    if wait.is_zero() {
        return None;
    }
    let until = (Instant::now() + wait).min(deadline);
    let line = app.sales_budget.clone().acquire_many_owned(wanted);
    match tokio::time::timeout_at(until.into(), line).await {
        Ok(Ok(share)) => Some(share),
        _ => None,
    }
}

/// A push with its share of the sales budget, counted while it does database work (the pushes in
/// line are not): the count sets how many lanes each push gets.
struct Settling(Arc<std::sync::atomic::AtomicUsize>);

impl Settling {
    fn start(count: &Arc<std::sync::atomic::AtomicUsize>) -> Settling {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Settling(count.clone())
    }

    /// Pushes doing database work now, this one included.
    fn pushes(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A 429 `push_in_flight`: the device's earlier push is still in hand (for at most `left`, its
/// deadline). `Retry-After` is the configured value, or sooner when the earlier push's deadline is.
fn push_in_flight(app: &App, device: &Device, left: Duration, cid: &str) -> ApiError {
    app.metrics.limit_hits.with_label_values(&["push_in_flight"]).inc();
    let left_secs = u32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
    let secs = left_secs.clamp(1, app.config.retry_after_secs.max(1));
    log::debug!(correlation_id = cid, device_id = device.device_id.as_str(), retry_after_secs = secs;
        "push refused: the device has a push in flight");
    let message =
        format!("this device already has a push in flight (one at a time per device); retry after {secs} s");
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "push_in_flight", message).retry_after(secs)
}

/// How many sales a push body holds, from a scan of its `transactions` array (each sale left
/// unparsed); 1 when the body is not a push (the full check then says why).
fn count_sales(body: &[u8]) -> usize {
    #[derive(serde::Deserialize)]
    struct Count<'a> {
        #[serde(borrow)]
        transactions: Vec<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Count>(body).map_or(1, |c| c.transactions.len())
}

/// The answer to a push refused as a whole.
fn refused(app: &App, device: &Device, cid: &str, e: PushError) -> ApiError {
    let (status, code) = e.status_and_code();
    log::warn!(correlation_id = cid, device_id = device.device_id.as_str(), code = code; "push refused");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = ApiError::new(status, code, e.to_string());
    match e {
        PushError::Unavailable(_) => error.retry_after(app.config.retry_after_secs),
        _ => error,
    }
}

/// A push doing database work: holds its admission permit, its device's flight and the in-flight
/// gauge until every job of the request is done, even when the client has gone.
struct InFlight {
    app: Arc<App>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    _boarded: Option<Boarded>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.app.metrics.pushes_in_flight.dec();
    }
}

/// Lanes for one push when `in_flight` pushes (this one included) are admitted: up to `sale_lanes`
/// while the database threads have room, fewer as pushes share them, one when every thread has a
/// push of its own. A till alone drains faster than one connection commits; in a storm the lanes
/// would only queue behind each other and take the cores the async threads need to shed at once.
fn lanes_for(sale_lanes: usize, workers: usize, in_flight: usize) -> usize {
    (workers / in_flight.max(1)).clamp(1, sale_lanes.max(1))
}

fn body_too_large(app: &App, max: usize) -> ApiError {
    app.metrics.limit_hits.with_label_values(&["body_too_large"]).inc();
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {max} bytes"),
    )
    .closing()
}

/// The whole body, within the size limit, the body read timeout and the byte budget: `held` has the
/// declared length already; each chunk past it takes its bytes from the budget as it arrives, and
/// one that does not fit ends the read with 503 `overloaded` at once.
async fn read_body(app: &App, device: &Device, body: Body, held: &mut HeldBytes) -> Result<Bytes, ApiError> {
    let max = app.config.max_body_bytes;
    let timeout: Duration = app.config.limits.body_read_timeout;
    let read = async {
        let mut body = Limited::new(body, max);
        let mut out = Vec::with_capacity(held.bytes());
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyFailure::Read)?;
            let Ok(data) = frame.into_data() else { continue };
            let past = (out.len() + data.len()).saturating_sub(held.bytes());
            if !app.body_budget.take(held, past) {
                return Err(BodyFailure::OverBudget);
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            app.metrics.limit_hits.with_label_values(&["body_timeout"]).inc();
            let message = format!("the request body was not received within {} ms", timeout.as_millis());
            Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).closing())
        }
        Ok(Err(BodyFailure::OverBudget)) => {
            Err(shed(app, device, "body_bytes", "request bodies being read").closing())
        }
        Ok(Err(BodyFailure::Read(e))) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(body_too_large(app, max))
        }
        Ok(Err(BodyFailure::Read(e))) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("cannot read the request body: {e}"),
        )
        .closing()),
        Ok(Ok(bytes)) => Ok(bytes.into()),
    }
}

/// Why a body was not read whole.
enum BodyFailure {
    /// The client's bytes: too many, or the connection failed.
    Read(axum::BoxError),
    /// A chunk did not fit the byte budget.
    OverBudget,
}

/// The device of the request's bearer token: from the cache, else looked up on the database pool.
async fn authenticate(app: &Arc<App>, headers: &HeaderMap) -> Result<Device, ApiError> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let Some(token) = token else {
        return Err(ApiError::unauthorized("missing_token", "send Authorization: Bearer <device token>"));
    };
    let token_sha256 = token_sha256(token);
    if let Some(device) = app.tokens.get(&token_sha256) {
        app.metrics.token_cache_hits.inc();
        return Ok(device);
    }
    let store = app.store.clone();
    let sha = token_sha256.clone();
    let generation = app.tokens.generation();
    match run_blocking(app, move || store.lookup_token(&sha)).await? {
        Ok(TokenLookup::Active(device)) => {
            app.tokens.put(&token_sha256, &device, generation);
            Ok(device)
        }
        Ok(TokenLookup::Revoked) => {
            Err(ApiError::unauthorized("token_revoked", "this device token was revoked"))
        }
        Ok(TokenLookup::Unknown) => Err(ApiError::unauthorized("invalid_token", "unknown device token")),
        Err(e) => Err(unavailable(app, "database_unavailable", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::lanes_for;

    #[test]
    fn a_push_alone_gets_every_lane_and_a_crowd_one_each() {
        assert_eq!(lanes_for(4, 16, 1), 4, "a till alone");
        assert_eq!(lanes_for(4, 16, 4), 4, "four pushes: 16 threads, 4 lanes each");
        assert_eq!(lanes_for(4, 16, 8), 2);
        assert_eq!(lanes_for(4, 16, 16), 1);
        assert_eq!(lanes_for(4, 16, 32), 1, "never fewer than one");
        assert_eq!(lanes_for(1, 16, 1), 1, "--sale-lanes 1: one after another");
        assert_eq!(lanes_for(4, 16, 0), 4);
    }
}
