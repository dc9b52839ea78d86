//! The console's router, its extractors and its handlers. Each page is one route with its methods
//! ([`router`]); a wrong method is 405 (axum's `Allow`), any other path under `/console` 404. The
//! `Session` extractor finds the session (or answers 401 / 404 `console_off`), `Posted` also
//! reads the form and checks its CSRF token (403): a page that takes one cannot run without it.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use axum::Router;
use possync_core::protocol::SalePayload;

use super::forms::{utc_day, Fields, InputError};
use super::session::{
    cookie, hash_secret, random_hex, same_token, set_cookie, verify_secret, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use super::views::{
    money, till_views, utc, AttentionPage, AttentionView, ErrorPage, LoginPage, Nav, SaleView, SalesPage,
    TillsPage,
};
use super::{diff, Console};
use crate::attention::write_csv;
use crate::auth::{generate_token, token_sha256};
use crate::clock::now_ms;
use crate::reply::{job_failed, ApiError, CorrelationId, Reply};
use crate::store::{ConsoleSession, Device, RevocationSink, SaleQuery, StoreError};

/// Most attention items on the page.
const ATTENTION_LIMIT: u32 = 200;
/// Most rows in the CSV export.
const CSV_LIMIT: u32 = 10_000;
/// Most sales found at once.
const SALES_LIMIT: u32 = 100;

/// The console's pages, for any outer router state `S`.
pub fn router<S: Clone + Send + Sync + 'static>(console: Arc<Console>) -> Router<S> {
    Router::new()
        .route("/console", get(tills))
        .route("/console/", get(tills))
        .route("/console/attention", get(attention))
        .route("/console/attention.csv", get(attention_csv))
        .route("/console/sales", get(sales))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/tokens", post(create_token))
        .route("/console/tokens/revoke", post(revoke_token))
        .route("/console/attention/settle", post(mark_reviewed))
        .route("/console/{*rest}", any(no_such_page))
        .method_not_allowed_fallback(wrong_method)
        .with_state(console)
}

async fn no_such_page(ctx: Ctx) -> ConsoleError {
    ctx.error(404, "not_found", "no such console page")
}

async fn wrong_method(ctx: Ctx, method: Method, uri: Uri) -> ConsoleError {
    let method: String = method.as_str().chars().take(32).collect();
    ctx.error(405, "method_not_allowed", format!("{method} is not allowed on {}", uri.path()))
}

/// An error of a console page: an HTML page with the code for a browser, the JSON error body
/// otherwise.
pub struct ConsoleError {
    error: ApiError,
    html: bool,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Reply {
        if !self.html {
            return self.error.into_response();
        }
        let e = self.error;
        let page =
            ErrorPage { status: e.status.as_u16(), code: e.code.to_owned(), message: e.message.clone() };
        let mut reply = html(e.status.as_u16(), page.render().unwrap_or_default());
        e.headers_onto(&mut reply);
        reply
    }
}

/// The request as every handler needs it: the console, the correlation id (for the logs), and
/// whether errors answer HTML.
struct Ctx {
    console: Arc<Console>,
    cid: Arc<str>,
    html: bool,
}

impl FromRequestParts<Arc<Console>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Self::Rejection> {
        let Ok(CorrelationId(cid)) = CorrelationId::from_request_parts(parts, console).await;
        Ok(Ctx { console: console.clone(), cid, html: wants_html(&parts.headers) })
    }
}

impl Ctx {
    /// An error answer with `status`, `code` and `message`.
    fn error(&self, status: u16, code: &'static str, message: impl Into<String>) -> ConsoleError {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ConsoleError { error: ApiError::new(status, code, message), html: self.html }
    }

    fn input(&self, e: &InputError) -> ConsoleError {
        let (status, code) = e.status_and_code();
        self.error(status, code, e.to_string())
    }

    fn store_failed(&self, e: &StoreError) -> ConsoleError {
        log::error!(correlation_id = &*self.cid, error:% = e; "console: database error");
        match e {
            StoreError::Unavailable(_) => {
                let mut e = self.error(
                    503,
                    "database_unavailable",
                    "the database is unavailable; reload in a moment",
                );
                e.error = e.error.retry_after(self.console.limits.retry_after_secs);
                e
            }
            _ => self.error(500, "internal_error", "the server failed to answer; reload in a moment"),
        }
    }

    /// Runs `job` on the database pool; its error becomes an answer.
    async fn db<R, F>(&self, job: F) -> Result<R, ConsoleError>
    where
        F: FnOnce(&dyn crate::store::Store) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.console.store.clone();
        let c = &self.console;
        match c.pool.run(move || job(store.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.store_failed(&e)),
            Err(e) => Err(ConsoleError {
                error: job_failed(&c.metrics, c.limits.retry_after_secs, e),
                html: self.html,
            }),
        }
    }

    fn secure_cookie(&self) -> bool {
        self.console.limits.config.secure_cookie
    }
}

/// An HTML answer with the console's security headers: no script may run, no framing, no caching.
fn html(status: u16, body: String) -> Reply {
    let mut reply = Response::new(Body::from(body));
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = reply.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    reply
}

fn render<T: Template>(status: u16, page: &T) -> Reply {
    match page.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            log::error!(error:% = e; "console: template failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the page could not be rendered",
            )
            .into_response()
        }
    }
}

/// A 303 to `location`.
fn see_other(location: &'static str) -> Reply {
    let mut reply = Response::new(Body::empty());
    *reply.status_mut() = StatusCode::SEE_OTHER;
    reply.headers_mut().insert(header::LOCATION, HeaderValue::from_static(location));
    reply.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn with_cookie(mut reply: Reply, value: &str) -> Reply {
    if let Ok(v) = HeaderValue::from_str(value) {
        reply.headers_mut().append(header::SET_COOKIE, v);
    }
    reply
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

/// The session of the request's cookie; without one 401 `login_required` (404 `console_off` when no
/// admin exists).
struct Session {
    session: ConsoleSession,
    /// The SHA-256 of the session's cookie, as stored.
    sha: String,
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, ConsoleError> {
        let Ok(ctx) = Ctx::from_request_parts(parts, console).await;
        if let Some(value) = cookie(&parts.headers, SESSION_COOKIE) {
            let sha = token_sha256(&value);
            let lookup = sha.clone();
            if let Some(session) = ctx.db(move |s| s.session(&lookup, now_ms())).await? {
                return Ok(Session { session, sha });
            }
        }
        console_on(&ctx).await?;
        Err(ctx.error(401, "login_required", "log in to the console first"))
    }
}

/// A POSTed form of a session, its CSRF token checked (else 403 `csrf_invalid`).
struct Posted {
    session: Session,
    fields: Fields,
}

impl FromRequest<Arc<Console>> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, console: &Arc<Console>) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let Ok(ctx) = Ctx::from_request_parts(&mut parts, console).await;
        let session = Session::from_request_parts(&mut parts, console).await?;
        let fields =
            Fields::from_body(body, console.limits.body_read_timeout).await.map_err(|e| ctx.input(&e))?;
        let csrf = fields.text("csrf", 64).unwrap_or_default();
        if csrf.is_empty() || !same_token(&csrf, &session.session.csrf_token) {
            return Err(ctx.error(
                403,
                "csrf_invalid",
                "this form lacks its CSRF token: reload the page and submit again",
            ));
        }
        Ok(Posted { session, fields })
    }
}

/// The query string's fields (bounded).
struct Query(Fields);

impl FromRequestParts<Arc<Console>> for Query {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, ConsoleError> {
        let Ok(ctx) = Ctx::from_request_parts(parts, console).await;
        Fields::from_query(parts.uri.query()).map(Query).map_err(|e| ctx.input(&e))
    }
}

/// `Ok` when an admin exists; else 404 `console_off`.
async fn console_on(ctx: &Ctx) -> Result<(), ConsoleError> {
    if ctx.db(|s| s.has_admin()).await? {
        Ok(())
    } else {
        Err(ctx.error(
            404,
            "console_off",
            "the console is off: create an admin with `possync-server admin create --name NAME`",
        ))
    }
}

async fn login_form(ctx: Ctx) -> Result<Reply, ConsoleError> {
    login_page(&ctx, None).await
}

async fn login_page(ctx: &Ctx, error: Option<String>) -> Result<Reply, ConsoleError> {
    console_on(ctx).await?;
    let csrf = random_hex();
    let status = if error.is_some() { 401 } else { 200 };
    let reply = render(status, &LoginPage { csrf: csrf.clone(), error });
    Ok(with_cookie(reply, &set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, ctx.secure_cookie())))
}

async fn login(ctx: Ctx, request: Request) -> Result<Reply, ConsoleError> {
    console_on(&ctx).await?;
    let expected = cookie(request.headers(), LOGIN_CSRF_COOKIE);
    if expected.is_none() && ctx.secure_cookie() && over_plain_http(request.headers()) {
        // The form's cookie is `Secure`: a browser on plain HTTP never stored it, and reloading
        // cannot help.
        return Err(ctx.error(
            403,
            "console_needs_tls",
            "this console runs over plain HTTP, where the browser does not keep its Secure login \
             cookie: serve it behind TLS (docs/deploy.md, section 6) or start possync-server with \
             --console-insecure-cookie on loopback",
        ));
    }
    let timeout = ctx.console.limits.body_read_timeout;
    let fields = Fields::from_body(request.into_body(), timeout).await.map_err(|e| ctx.input(&e))?;
    let csrf = fields.text("csrf", 64).unwrap_or_default();
    if expected.is_none_or(|e| csrf.is_empty() || !same_token(&csrf, &e)) {
        return Err(ctx.error(
            403,
            "csrf_invalid",
            "the login form lacks its CSRF token: reload it and try again",
        ));
    }
    let (name, secret) = match (fields.required("name", 64), fields.required("secret", 256)) {
        (Ok(n), Ok(s)) => (n, s),
        _ => return login_page(&ctx, Some("Enter your admin name and login secret.".into())).await,
    };
    let Ok(permit) = ctx.console.logins.clone().try_acquire_owned() else {
        let mut e = ctx.error(503, "overloaded", "too many logins at once; try again");
        e.error = e.error.retry_after(1);
        return Err(e);
    };
    let check_name = name.clone();
    let verified = ctx
        .db(move |s| {
            let _permit = permit;
            // A name without an admin still costs one hash, so timing does not tell names apart.
            let phc = s.admin_secret(&check_name)?;
            let ok = verify_secret(&secret, phc.as_deref().unwrap_or_else(|| dummy_phc()));
            Ok(ok && phc.is_some())
        })
        .await?;
    if !verified {
        log::warn!(correlation_id = &*ctx.cid, admin = name.as_str(); "console: login refused");
        return login_page(&ctx, Some("Wrong admin name or login secret.".into())).await;
    }
    let value = random_hex();
    let sha = token_sha256(&value);
    let ttl = ctx.console.limits.config.session_ttl;
    let expires = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let admin = name.clone();
    ctx.db(move |s| s.create_session(&sha, &admin, &random_hex(), expires, now_ms())).await?;
    log::info!(correlation_id = &*ctx.cid, admin = name.as_str(); "console: logged in");
    let secure = ctx.secure_cookie();
    let reply =
        with_cookie(see_other("/console"), &set_cookie(SESSION_COOKIE, &value, ttl.as_secs(), secure));
    Ok(with_cookie(reply, &set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure)))
}

/// Whether the browser sent this request over plain HTTP, as far as its headers tell: a proxy's
/// `X-Forwarded-Proto`, else the scheme of the form's `Origin` (or `Referer`).
fn over_plain_http(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(proto) = text("x-forwarded-proto") {
        return proto.trim().eq_ignore_ascii_case("http");
    }
    text("origin").or_else(|| text("referer")).is_some_and(|url| url.starts_with("http://"))
}

async fn logout(ctx: Ctx, posted: Posted) -> Result<Reply, ConsoleError> {
    let session_sha = posted.session.sha;
    ctx.db(move |s| s.delete_session(&session_sha)).await?;
    let cookie = set_cookie(SESSION_COOKIE, "", 0, ctx.secure_cookie());
    Ok(with_cookie(see_other("/console/login"), &cookie))
}

fn nav(session: &ConsoleSession, page: &'static str) -> Nav {
    Nav { admin: session.admin_name.clone(), csrf: session.csrf_token.clone(), page }
}

async fn tills(ctx: Ctx, session: Session) -> Result<Reply, ConsoleError> {
    tills_page(&ctx, &session.session, None).await
}

async fn tills_page(
    ctx: &Ctx,
    session: &ConsoleSession,
    new_token: Option<(String, String, String)>,
) -> Result<Reply, ConsoleError> {
    let now = now_ms();
    let day_start = now - now.rem_euclid(86_400_000);
    let (tills, gaps, attention) = ctx
        .db(move |s| {
            let tills = s.tills(day_start)?;
            let gaps = s.seq_gaps(None)?;
            let attention = s.attention_entries(None, false, ATTENTION_LIMIT)?.len();
            Ok((tills, gaps, attention))
        })
        .await?;
    let alert = ctx.console.limits.config.alert_after;
    let alert_ms = i64::try_from(alert.as_millis()).unwrap_or(i64::MAX);
    let page = TillsPage {
        nav: nav(session, "tills"),
        tills: till_views(&tills, &gaps, now, alert_ms),
        attention,
        threshold: super::views::age(alert_ms),
        new_token,
        now: utc(now),
    };
    Ok(render(200, &page))
}

async fn create_token(ctx: Ctx, posted: Posted) -> Result<Reply, ConsoleError> {
    let (session, fields) = (&posted.session.session, &posted.fields);
    let parsed =
        (|| Ok::<_, InputError>((fields.id("store")?, fields.id("device")?, fields.text("label", 200)?)))();
    let (store_id, device_id, label) = parsed.map_err(|e| ctx.input(&e))?;
    if store_id.is_empty() || device_id.is_empty() {
        return Err(ctx.error(400, "bad_field", "a store and a till are required"));
    }
    let token = generate_token();
    let sha = token_sha256(&token);
    let device = Device { store_id: store_id.clone(), device_id: device_id.clone() };
    let label = (!label.is_empty()).then_some(label);
    ctx.db(move |s| s.create_token(&device, &sha, label.as_deref())).await?;
    log::info!(correlation_id = &*ctx.cid, admin = session.admin_name.as_str(), store_id = store_id.as_str(),
        device_id = device_id.as_str(); "console: token created");
    tills_page(&ctx, session, Some((store_id, device_id, token))).await
}

async fn revoke_token(ctx: Ctx, posted: Posted) -> Result<Reply, ConsoleError> {
    let fields = &posted.fields;
    let store_id = fields.id("store").map_err(|e| ctx.input(&e))?;
    let device_id = fields.id("device").map_err(|e| ctx.input(&e))?;
    let device = Device { store_id, device_id };
    let revoked = ctx.db(move |s| s.revoke_tokens(&device)).await?;
    ctx.console.tokens.revoked();
    log::info!(correlation_id = &*ctx.cid, revoked = revoked; "console: tokens revoked");
    Ok(see_other("/console"))
}

/// Marks an attention item reviewed, with the admin's note.
async fn mark_reviewed(ctx: Ctx, posted: Posted) -> Result<Reply, ConsoleError> {
    let (session, fields) = (&posted.session.session, &posted.fields);
    let audit_id: i64 = fields
        .required("audit_id", 20)
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ctx.error(400, "bad_field", "audit_id is not a number"))?;
    let client_tx_id = fields.required("client_tx_id", 128).map_err(|e| ctx.input(&e))?;
    let note = fields.required("note", 1000).map_err(|e| ctx.input(&e))?;
    let admin = session.admin_name.clone();
    let settled = ctx.db(move |s| s.mark_reviewed(&client_tx_id, audit_id, &admin, &note)).await?;
    if !settled {
        return Err(ctx.error(404, "not_found", "no such unsettled attention item"));
    }
    Ok(see_other("/console/attention"))
}

async fn attention(ctx: Ctx, session: Session, Query(query): Query) -> Result<Reply, ConsoleError> {
    let session = &session.session;
    let store = query.id("store").map_err(|e| ctx.input(&e))?;
    let include_settled = query.has("settled");
    let filter = (!store.is_empty()).then(|| store.clone());
    let entries =
        ctx.db(move |s| s.attention_entries(filter.as_deref(), include_settled, ATTENTION_LIMIT)).await?;
    let items = entries
        .into_iter()
        .map(|e| AttentionView {
            audit_id: e.record.audit_id,
            at: e.record.at.clone(),
            store_id: e.record.store_id.clone(),
            device_id: e.record.device_id.clone(),
            client_tx_id: e.record.client_tx_id.clone(),
            outcome: e.record.outcome.clone(),
            code: e.record.code.clone().unwrap_or_default(),
            message: e.record.message.clone().unwrap_or_default(),
            outbox_seq: e.outbox_seq.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
            rows: diff::side_by_side(e.stored_payload.as_deref(), e.attempted_payload.as_deref()),
            settled: e.settled_at_ms.map(|at| {
                format!(
                    "Settled by {} at {}: {}",
                    e.settled_by.as_deref().unwrap_or("?"),
                    utc(at),
                    e.settled_note.as_deref().unwrap_or_default()
                )
            }),
        })
        .collect();
    Ok(render(200, &AttentionPage { nav: nav(session, "attention"), items, include_settled, store }))
}

async fn attention_csv(ctx: Ctx, _session: Session, Query(query): Query) -> Result<Reply, ConsoleError> {
    let store = query.id("store").map_err(|e| ctx.input(&e))?;
    let filter = (!store.is_empty()).then_some(store);
    let entries = ctx.db(move |s| s.attention_entries(filter.as_deref(), true, CSV_LIMIT)).await?;
    let mut body = Vec::new();
    write_csv(&entries, &mut body).map_err(|e| ctx.error(500, "internal_error", e.to_string()))?;
    let mut reply = Response::new(Body::from(body));
    let h = reply.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"attention.csv\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(reply)
}

async fn sales(ctx: Ctx, session: Session, Query(query): Query) -> Result<Reply, ConsoleError> {
    let session = &session.session;
    let parsed =
        (|| Ok::<_, InputError>((query.id("store")?, query.id("client_tx_id")?, query.text("day", 10)?)))();
    let (store, client_tx_id, day) = parsed.map_err(|e| ctx.input(&e))?;
    let occurred = if day.is_empty() { None } else { Some(utc_day(&day).map_err(|e| ctx.input(&e))?) };
    let searched = !(store.is_empty() && client_tx_id.is_empty() && day.is_empty());
    let found = if searched {
        let q = SaleQuery {
            store_id: (!store.is_empty()).then(|| store.clone()),
            client_tx_id: (!client_tx_id.is_empty()).then(|| client_tx_id.clone()),
            occurred_ms: occurred,
            limit: SALES_LIMIT,
        };
        ctx.db(move |s| s.find_sales(&q)).await?
    } else {
        Vec::new()
    };
    let sales = found
        .into_iter()
        .map(|r| {
            let payload: Option<SalePayload> = serde_json::from_str(&r.payload_canonical).ok();
            let (h, items, payments) = match &payload {
                Some(p) => (Some(&p.header), p.items.as_slice(), p.payments.as_slice()),
                None => (None, &[][..], &[][..]),
            };
            let currency = h.map(|h| h.currency.as_str()).unwrap_or_default();
            SaleView {
                store_id: r.store_id.clone(),
                client_tx_id: r.client_tx_id.clone(),
                server_tx_id: r.server_tx_id,
                device_id: r.device_id.clone(),
                outbox_seq: r.outbox_seq.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
                receipt_number: h.map(|h| h.receipt_number.clone()).unwrap_or_default(),
                kind: h.map(|h| h.kind.as_str().to_owned()).unwrap_or_default(),
                occurred: utc(r.occurred_ms),
                received: utc(r.received_ms),
                total: h.map(|h| money(h.total_minor, currency)).unwrap_or_default(),
                cashier: h.and_then(|h| h.cashier_id.clone()).unwrap_or_default(),
                items: items
                    .iter()
                    .map(|i| {
                        [
                            i.line_no.to_string(),
                            i.sku.clone(),
                            i.name.clone(),
                            format!("{}", i.quantity_milli as f64 / 1000.0),
                            money(i.unit_price_minor, currency),
                            money(i.discount_minor, currency),
                            money(i.line_total_minor, currency),
                        ]
                    })
                    .collect(),
                payments: payments
                    .iter()
                    .map(|p| {
                        [
                            p.method.clone(),
                            money(p.amount_minor, currency),
                            p.reference.clone().unwrap_or_default(),
                        ]
                    })
                    .collect(),
            }
        })
        .collect();
    let page = SalesPage {
        nav: nav(session, "sales"),
        store,
        client_tx_id,
        day,
        searched,
        sales,
        limit: SALES_LIMIT,
    };
    Ok(render(200, &page))
}

/// A PHC string no secret matches, verified against when the name has no admin.
fn dummy_phc() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&random_hex()).unwrap_or_default())
}
