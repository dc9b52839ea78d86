//! The router and its handlers.
//!
//! Every request passes [`front`] first: it settles the correlation id, refuses ambiguous framing
//! (`Content-Length` with `Transfer-Encoding`, several `Content-Length`s) with 400 and close, and after
//! the handler records the metrics and the access log. A panic anywhere in a handler is a JSON 500
//! (tower-http's catch-panic); one in a database job is caught on its thread.
//!
//! `POST /sync/push`, in order: a declared body over the limit ⇒ 413 and close, unread; the token
//! (cache, else a database lookup on the pool) ⇒ 401 and close; the device's one flight (a push of
//! the same device in hand) ⇒ 429 `push_in_flight` + `Retry-After` at once and close, the body
//! unread; the body's bytes in the byte budget ⇒ 503 `overloaded` + jittered `Retry-After` at once
//! and close; the body, read within the body limit and the body read timeout ⇒ 413 / 408 and close;
//! then a push slot (a bounded number of pushes in flight) and the sales' share of the sales
//! budget, else the same 503 at once; the sales checked (parsed, validated, hashed: no database);
//! then settled on the database pool before the request deadline. See [`super::admission`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use possync_core::protocol::push::{CORRELATION_HEADER, PUSH_PATH};
use possync_core::protocol::PushResponse;
use rand::RngExt;
use tower_http::catch_panic::CatchPanicLayer;

use super::admission::{Boarded, HeldBytes};
use super::reply::{self, Reply};
use super::App;
use crate::auth::{bearer_token, token_sha256};
use crate::blocking::{JobError, Submit};
use crate::push::{check_push, finish_push, settle_lane, CheckedPush, LaneOutcome, PushError};
use crate::store::{Device, TokenLookup};
use tokio::sync::oneshot;

/// Set on a request by the connection when its raw head stated the body length both by
/// `Content-Length` and by `Transfer-Encoding` (hyper keeps only the latter; see `framing.rs`).
#[derive(Clone, Copy)]
pub(crate) struct AmbiguousFraming;

/// The request's correlation id, set by [`front`] for the handlers.
#[derive(Clone)]
struct CorrelationId(Arc<str>);

/// The routes of the server, behind [`front`] and catch-panic.
pub(crate) fn router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route(PUSH_PATH, axum::routing::any(push))
        .route("/healthz", axum::routing::any(healthz))
        .route("/readyz", axum::routing::any(readyz))
        .route("/metrics", axum::routing::any(metrics))
        .route("/console", axum::routing::any(crate::console::pages::console))
        .route("/console/{*rest}", axum::routing::any(crate::console::pages::console));
    layered(routes, app)
}

/// The monitoring routes alone (`/healthz`, `/readyz`, `/metrics`), for the monitoring port.
pub(crate) fn monitor_router(app: Arc<App>) -> Router {
    let routes = Router::new()
        .route("/healthz", axum::routing::any(healthz))
        .route("/readyz", axum::routing::any(readyz))
        .route("/metrics", axum::routing::any(metrics));
    layered(routes, app)
}

/// `routes` behind [`front`] and catch-panic, with a JSON 404 for anything else.
fn layered(routes: Router<Arc<App>>, app: Arc<App>) -> Router {
    routes
        .fallback(not_found)
        .layer(CatchPanicLayer::custom(|_| {
            log::error!("request handler panicked");
            reply::error(500, "internal_error", "the server failed to answer; retry later", "")
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
    let mut reply = match ambiguous_framing(&request) {
        Some(why) => {
            app.metrics.limit_hits.with_label_values(&["ambiguous_framing"]).inc();
            reply::closing(reply::error(400, "ambiguous_framing", why, &cid))
        }
        None => {
            request.extensions_mut().insert(CorrelationId(cid.clone()));
            next.run(request).await
        }
    };
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

/// The correlation id [`front`] settled for this request.
pub(crate) fn cid_of(request: &Request) -> Arc<str> {
    request.extensions().get::<CorrelationId>().map(|c| c.0.clone()).unwrap_or_else(|| "".into())
}

/// 405 with the `Allow` header (RFC 9110) naming the one method of the route.
fn method_not_allowed(method: &Method, path: &str, cid: &str) -> Reply {
    let allow = if path == PUSH_PATH { "POST" } else { "GET" };
    let method: String = method.as_str().chars().take(32).collect();
    let mut reply =
        reply::error(405, "method_not_allowed", format!("{method} is not allowed on {path}"), cid);
    reply.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    reply
}

async fn not_found(request: Request) -> Reply {
    let path: String = request.uri().path().chars().take(256).collect();
    reply::error(404, "not_found", format!("no route {path}"), &cid_of(&request))
}

async fn healthz(request: Request) -> Reply {
    if request.method() != Method::GET {
        return method_not_allowed(request.method(), "/healthz", &cid_of(&request));
    }
    reply::json(200, &serde_json::json!({"status": "ok"}))
}

async fn metrics(State(app): State<Arc<App>>, request: Request) -> Reply {
    let cid = cid_of(&request);
    if request.method() != Method::GET {
        return method_not_allowed(request.method(), "/metrics", &cid);
    }
    app.metrics.body_bytes_reading.set(i64::try_from(app.body_budget.in_use()).unwrap_or(i64::MAX));
    let mut text = app.metrics.render(app.store.pool_state());
    if let Some(devices) = app.gauges.text(app.store.clone(), app.config.console.alert_after, &cid).await {
        text.push_str(&devices);
    }
    reply::text("text/plain; version=0.0.4", text)
}

async fn readyz(State(app): State<Arc<App>>, request: Request) -> Reply {
    let cid = cid_of(&request);
    if request.method() != Method::GET {
        return method_not_allowed(request.method(), "/readyz", &cid);
    }
    let store = app.store.clone();
    match run_blocking(&app, &cid, move || store.check_ready()).await {
        Ok(Ok(())) => reply::json(200, &serde_json::json!({"status": "ready"})),
        Ok(Err(e)) => unavailable(&app, "not_ready", e.to_string(), &cid),
        Err(reply) => reply,
    }
}

/// A 503 with the configured `Retry-After`.
fn unavailable(app: &App, code: &str, message: String, cid: &str) -> Reply {
    reply::retry_after(reply::error(503, code, message, cid), app.config.retry_after_secs)
}

/// A 503 `overloaded` with a `Retry-After` spread over [base, 2 × base], so shed tills spread out;
/// counted under the limit `limit`.
fn shed(app: &App, limit: &str, what: &str, cid: &str) -> Reply {
    app.metrics.limit_hits.with_label_values(&[limit]).inc();
    let base = app.config.retry_after_secs.max(1);
    let secs = rand::rng().random_range(base..=base.saturating_mul(2));
    let message = format!("the server is at capacity ({what}); retry after {secs} s");
    reply::retry_after(reply::error(503, "overloaded", message, cid), secs)
}

/// Runs `job` on the database pool; a full queue is answered 503 at once.
pub(crate) async fn run_blocking<R, F>(app: &App, cid: &str, job: F) -> Result<R, Reply>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let queued =
        queue_blocking(app, job).ok_or_else(|| shed(app, "inflight_pushes", "database queue full", cid))?;
    job_result(app, cid, queued).await
}

/// Queues `job` on the database pool now (not when awaited, as [`run_blocking`] would), so that
/// several jobs run at once; `None` when the queue is full (the caller sheds). [`job_result`] awaits
/// it.
fn queue_blocking<R, F>(app: &App, job: F) -> Option<oneshot::Receiver<Result<R, JobError>>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match app.pool.submit(job) {
        Submit::Full => None,
        Submit::Queued(rx) => Some(rx),
    }
}

/// The value of a queued job: a panic is a 500, a stopped pool a 503 `shutting_down`.
async fn job_result<R>(
    app: &App,
    cid: &str,
    queued: oneshot::Receiver<Result<R, JobError>>,
) -> Result<R, Reply> {
    match queued.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(JobError::Panicked)) => {
            Err(reply::error(500, "internal_error", "the server failed to answer; retry later", cid))
        }
        Ok(Err(JobError::Stopped)) | Err(_) => {
            Err(unavailable(app, "shutting_down", "the server is shutting down".into(), cid))
        }
    }
}

async fn push(State(app): State<Arc<App>>, request: Request) -> Reply {
    let started = Instant::now();
    let cid = cid_of(&request);
    if request.method() != Method::POST {
        return method_not_allowed(request.method(), PUSH_PATH, &cid);
    }
    let max = app.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return body_too_large(&app, max, &cid);
    }
    let device = match authenticate(&app, request.headers(), &cid).await {
        Ok(device) => device,
        Err(reply) => return reply,
    };
    let deadline = started + app.config.limits.request_deadline;
    // One push per device, taken before the body is read: the connection closes (its body unread).
    let boarded = if app.config.limits.one_push_per_device {
        match app.flights.board(&device, deadline, Instant::now()) {
            Ok(boarded) => Some(boarded),
            Err(left) => return reply::closing(push_in_flight(&app, &device, left, &cid)),
        }
    } else {
        None
    };
    // The body's bytes, taken whole when declared, before any is read (else chunk by chunk).
    let mut held = HeldBytes::default();
    let declared = declared.map_or(0, |len| len as usize);
    if !app.body_budget.take(&mut held, declared) {
        return reply::closing(shed(&app, "body_bytes", "request bodies being read", &cid));
    }
    let body = match read_body(&app, request.into_body(), &mut held, &cid).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    // With its body in hand, the push takes a slot: a slow body never held one.
    let Ok(permit) = app.admission.clone().try_acquire_owned() else {
        return shed(&app, "inflight_pushes", "pushes in flight", &cid);
    };
    app.metrics.pushes_in_flight.inc();
    let in_flight = InFlight { app: app.clone(), _permit: permit, _boarded: boarded };
    // The share of the sales budget is taken on a count of the sales (a scan, no parsing of each
    // sale) before any work on them, so that a push that does not fit is shed at once.
    let budget = app.config.max_inflight_sales();
    let wanted = u32::try_from(count_sales(&body).clamp(1, budget)).unwrap_or(u32::MAX);
    let Ok(share) = app.sales_budget.clone().try_acquire_many_owned(wanted) else {
        return shed(&app, "inflight_pushes", "sales in flight", &cid);
    };
    // Checking the sales is CPU work without the database: done here, not on a database thread.
    let checked = check_push(&app.metrics, &device, &cid, &body, &app.config.push_limits);
    drop((body, held));
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => return refused(&app, &device, &cid, e),
    };
    let in_flight = Arc::new((in_flight, share));
    match settle_push(&app, &cid, in_flight, device.clone(), checked, deadline).await {
        Ok(Ok(response)) => reply::json(200, &response),
        Ok(Err(e)) => refused(&app, &device, &cid, e),
        Err(reply) => reply,
    }
}

/// A 429 `push_in_flight`: the device's earlier push is still in hand (for at most `left`, its
/// deadline). `Retry-After` is the configured value, or sooner when the earlier push's deadline is.
fn push_in_flight(app: &App, device: &Device, left: Duration, cid: &str) -> Reply {
    app.metrics.limit_hits.with_label_values(&["push_in_flight"]).inc();
    let left_secs = u32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
    let secs = left_secs.clamp(1, app.config.retry_after_secs.max(1));
    log::debug!(correlation_id = cid, device_id = device.device_id.as_str(), retry_after_secs = secs;
        "push refused: the device has a push in flight");
    let message =
        format!("this device already has a push in flight (one at a time per device); retry after {secs} s");
    reply::retry_after(reply::error(429, "push_in_flight", message, cid), secs)
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
fn refused(app: &App, device: &Device, cid: &str, e: PushError) -> Reply {
    let (status, code) = e.status_and_code();
    log::warn!(correlation_id = cid, device_id = device.device_id.as_str(), code = code; "push refused");
    let reply = reply::error(status, code, e.to_string(), cid);
    match e {
        PushError::Unavailable(_) => reply::retry_after(reply, app.config.retry_after_secs),
        _ => reply,
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

/// A push's admission and its share of the sales budget, held by every job of the push.
type Admitted = Arc<(InFlight, tokio::sync::OwnedSemaphorePermit)>;

/// Lanes for one push when `in_flight` pushes (this one included) are admitted: up to `sale_lanes`
/// while the database threads have room, fewer as pushes share them, one when every thread has a
/// push of its own. A till alone drains faster than one connection commits; in a storm the lanes
/// would only queue behind each other and take the cores the async threads need to shed at once.
fn lanes_for(sale_lanes: usize, workers: usize, in_flight: usize) -> usize {
    (workers / in_flight.max(1)).clamp(1, sale_lanes.max(1))
}

/// Settles a checked push on the database threads: one job for a request of one lane (a single sale,
/// or `--sale-lanes 1`); else its sales split into lanes settled in parallel, each sale still in its
/// own transaction, at most `--sale-lanes` connections for one request.
async fn settle_push(
    app: &Arc<App>,
    cid: &Arc<str>,
    admitted: Admitted,
    device: Device,
    checked: CheckedPush,
    deadline: Instant,
) -> Result<Result<PushResponse, PushError>, Reply> {
    let in_flight = app.config.max_inflight_pushes().saturating_sub(app.admission.available_permits());
    let lanes = lanes_for(app.config.limits.sale_lanes, app.config.workers, in_flight);
    let (mut split, news) = checked.into_lanes(lanes);
    if split.len() <= 1 {
        let (job_app, job_cid, guard) = (app.clone(), cid.clone(), admitted);
        return run_blocking(app, cid, move || {
            let _guard = guard;
            let store = job_app.store.as_ref();
            let outcomes = split
                .pop()
                .map(|lane| settle_lane(store, &job_app.metrics, &device, &job_cid, lane, deadline))
                .into_iter()
                .collect();
            finish_push(store, &job_app.activity, &device, &job_cid, news, outcomes)
        })
        .await;
    }
    // Every lane is queued before any is awaited, so that they run at once. If the queue fills up
    // half way, the lanes already queued still settle their sales (each its own transaction); the
    // till gets the 503 and its resend of those answers DUPLICATE.
    let mut pending = Vec::with_capacity(split.len());
    let mut news = news;
    // The first lane's job also checks the till's acknowledged sales: no extra job for it.
    let mut acknowledged = news.take_acknowledged();
    for lane in split {
        let (job_app, job_cid, job_device, guard) =
            (app.clone(), cid.clone(), device.clone(), admitted.clone());
        let check = acknowledged.take();
        let queued = queue_blocking(app, move || {
            let _guard = guard;
            let store = job_app.store.as_ref();
            let mut outcome = settle_lane(store, &job_app.metrics, &job_device, &job_cid, lane, deadline);
            outcome.check_acknowledged(check, store, &job_device, &job_cid);
            outcome
        });
        pending.push(queued.ok_or_else(|| shed(app, "inflight_pushes", "database queue full", cid))?);
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for lane in pending {
        outcomes.push(job_result(app, cid, lane).await?);
    }
    if outcomes.iter().any(LaneOutcome::has_refused) {
        // The audit of refused sales writes to the database: on its thread too.
        let (job_app, job_cid, guard) = (app.clone(), cid.clone(), admitted);
        return run_blocking(app, cid, move || {
            let _guard = guard;
            finish_push(job_app.store.as_ref(), &job_app.activity, &device, &job_cid, news, outcomes)
        })
        .await;
    }
    Ok(finish_push(app.store.as_ref(), &app.activity, &device, cid, news, outcomes))
}

fn body_too_large(app: &App, max: usize, cid: &str) -> Reply {
    app.metrics.limit_hits.with_label_values(&["body_too_large"]).inc();
    reply::closing(reply::error(413, "body_too_large", format!("request body exceeds {max} bytes"), cid))
}

/// The whole body, within the size limit, the body read timeout and the byte budget: `held` has the
/// declared length already; each chunk past it takes its bytes from the budget as it arrives, and
/// one that does not fit ends the read with 503 `overloaded` at once.
async fn read_body(app: &App, body: Body, held: &mut HeldBytes, cid: &str) -> Result<Bytes, Reply> {
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
            Err(reply::closing(reply::error(408, "body_timeout", message, cid)))
        }
        Ok(Err(BodyFailure::OverBudget)) => {
            Err(reply::closing(shed(app, "body_bytes", "request bodies being read", cid)))
        }
        Ok(Err(BodyFailure::Read(e))) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(body_too_large(app, max, cid))
        }
        Ok(Err(BodyFailure::Read(e))) => Err(reply::closing(reply::error(
            400,
            "unreadable_body",
            format!("cannot read the request body: {e}"),
            cid,
        ))),
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
async fn authenticate(app: &Arc<App>, headers: &HeaderMap, cid: &str) -> Result<Device, Reply> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    let Some(token) = token else {
        return Err(reply::unauthorized("missing_token", "send Authorization: Bearer <device token>", cid));
    };
    let token_sha256 = token_sha256(token);
    if let Some(device) = app.tokens.get(&token_sha256) {
        app.metrics.token_cache_hits.inc();
        return Ok(device);
    }
    let store = app.store.clone();
    let sha = token_sha256.clone();
    let generation = app.tokens.generation();
    match run_blocking(app, cid, move || store.lookup_token(&sha)).await? {
        Ok(TokenLookup::Active(device)) => {
            app.tokens.put(&token_sha256, &device, generation);
            Ok(device)
        }
        Ok(TokenLookup::Revoked) => {
            Err(reply::unauthorized("token_revoked", "this device token was revoked", cid))
        }
        Ok(TokenLookup::Unknown) => Err(reply::unauthorized("invalid_token", "unknown device token", cid)),
        Err(e) => Err(unavailable(app, "database_unavailable", e.to_string(), cid)),
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
