//! The console's handlers: one dispatcher over `/console/...` that settles the session (or answers
//! 401 / 404 `console_off`), checks the CSRF token of every POST (403), and renders the page.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use possync_core::protocol::SalePayload;

use super::forms::{utc_day, Fields, InputError};
use super::session::{
    cookie, hash_secret, random_hex, same_token, set_cookie, verify_secret, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use super::views::{
    money, till_views, utc, AttentionPage, AttentionView, ErrorPage, LoginPage, Nav, SaleView, SalesPage,
    TillsPage,
};
use super::{diff, now_ms};
use crate::attention::write_csv;
use crate::auth::{generate_token, token_sha256};
use crate::http::reply::{self, Reply};
use crate::http::routes::{cid_of, run_blocking};
use crate::http::App;
use crate::store::RevocationSink;
use crate::store::{ConsoleSession, Device, SaleQuery, StoreError};

/// Most attention items on the page.
const ATTENTION_LIMIT: u32 = 200;
/// Most rows in the CSV export.
const CSV_LIMIT: u32 = 10_000;
/// Most sales found at once.
const SALES_LIMIT: u32 = 100;

/// The request as the handlers need it.
struct Ctx {
    app: Arc<App>,
    cid: Arc<str>,
    html: bool,
}

impl Ctx {
    /// An error answer: an HTML page with the code for a browser, the JSON error body otherwise.
    fn error(&self, status: u16, code: &str, message: impl Into<String>) -> Reply {
        let message = message.into();
        if !self.html {
            return reply::error(status, code, message, &self.cid);
        }
        let page = ErrorPage { status, code: code.to_owned(), message };
        html(status, page.render().unwrap_or_default())
    }

    fn input(&self, e: &InputError) -> Reply {
        let (status, code) = e.status_and_code();
        self.error(status, code, e.to_string())
    }

    fn store_failed(&self, e: &StoreError) -> Reply {
        log::error!(correlation_id = &*self.cid, error:% = e; "console: database error");
        match e {
            StoreError::Unavailable(_) => reply::retry_after(
                self.error(503, "database_unavailable", "the database is unavailable; reload in a moment"),
                self.app.config.retry_after_secs,
            ),
            _ => self.error(500, "internal_error", "the server failed to answer; reload in a moment"),
        }
    }

    /// Runs `job` on the database pool; its error becomes an answer.
    async fn db<R, F>(&self, job: F) -> Result<R, Reply>
    where
        F: FnOnce(&dyn crate::store::Store) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let store = self.app.store.clone();
        match run_blocking(&self.app, &self.cid, move || job(store.as_ref())).await? {
            Ok(value) => Ok(value),
            Err(e) => Err(self.store_failed(&e)),
        }
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
            reply::error(500, "internal_error", "the page could not be rendered", "")
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

/// Every `/console` request.
pub(crate) async fn console(State(app): State<Arc<App>>, request: Request) -> Reply {
    let ctx = Ctx { app, cid: cid_of(&request), html: wants_html(request.headers()) };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let is_get = method == Method::GET || method == Method::HEAD;
    let is_post = method == Method::POST;
    let allowed = match path.as_str() {
        "/console" | "/console/" | "/console/attention" | "/console/attention.csv" | "/console/sales" => {
            "GET"
        }
        "/console/login" => "GET, POST",
        "/console/logout" | "/console/tokens" | "/console/tokens/revoke" | "/console/attention/settle" => {
            "POST"
        }
        _ => return ctx.error(404, "not_found", "no such console page"),
    };
    if !((is_get && allowed.contains("GET")) || (is_post && allowed.contains("POST"))) {
        let mut reply = ctx.error(405, "method_not_allowed", format!("{method} is not allowed on {path}"));
        reply.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
        return reply;
    }
    if path == "/console/login" {
        return if is_get { login_form(&ctx, None).await } else { login(&ctx, request).await };
    }
    let (session, session_sha) = match session_of(&ctx, request.headers()).await {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    if is_post {
        let timeout = ctx.app.config.limits.body_read_timeout;
        let fields = match Fields::from_body(request.into_body(), timeout).await {
            Ok(f) => f,
            Err(e) => return ctx.input(&e),
        };
        let csrf = fields.text("csrf", 64).unwrap_or_default();
        if csrf.is_empty() || !same_token(&csrf, &session.csrf_token) {
            return ctx.error(
                403,
                "csrf_invalid",
                "this form lacks its CSRF token: reload the page and submit again",
            );
        }
        let outcome = match path.as_str() {
            "/console/logout" => logout(&ctx, session_sha).await,
            "/console/tokens" => create_token(&ctx, &session, &fields).await,
            "/console/tokens/revoke" => revoke_token(&ctx, &fields).await,
            _ => settle(&ctx, &session, &fields).await,
        };
        return outcome.unwrap_or_else(|reply| reply);
    }
    let query = match Fields::from_query(request.uri().query()) {
        Ok(q) => q,
        Err(e) => return ctx.input(&e),
    };
    let outcome = match path.as_str() {
        "/console/attention" => attention(&ctx, &session, &query).await,
        "/console/attention.csv" => attention_csv(&ctx, &query).await,
        "/console/sales" => sales(&ctx, &session, &query).await,
        _ => tills(&ctx, &session, None).await,
    };
    outcome.unwrap_or_else(|reply| reply)
}

/// The session of the request's cookie; else 404 `console_off` (no admin) or 401 `login_required`.
async fn session_of(ctx: &Ctx, headers: &HeaderMap) -> Result<(ConsoleSession, String), Reply> {
    if let Some(value) = cookie(headers, SESSION_COOKIE) {
        let sha = token_sha256(&value);
        let lookup = sha.clone();
        if let Some(session) = ctx.db(move |s| s.session(&lookup, now_ms())).await? {
            return Ok((session, sha));
        }
    }
    console_on(ctx).await?;
    Err(ctx.error(401, "login_required", "log in to the console first"))
}

/// `Ok` when an admin exists; else 404 `console_off`.
async fn console_on(ctx: &Ctx) -> Result<(), Reply> {
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

async fn login_form(ctx: &Ctx, error: Option<String>) -> Reply {
    if let Err(reply) = console_on(ctx).await {
        return reply;
    }
    let csrf = random_hex();
    let status = if error.is_some() { 401 } else { 200 };
    let reply = render(status, &LoginPage { csrf: csrf.clone(), error });
    with_cookie(reply, &set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, ctx.app.config.console.secure_cookie))
}

async fn login(ctx: &Ctx, request: Request) -> Reply {
    if let Err(reply) = console_on(ctx).await {
        return reply;
    }
    let expected = cookie(request.headers(), LOGIN_CSRF_COOKIE);
    if expected.is_none() && ctx.app.config.console.secure_cookie && over_plain_http(request.headers()) {
        // The form's cookie is `Secure`: a browser on plain HTTP never stored it, and reloading
        // cannot help.
        return ctx.error(
            403,
            "console_needs_tls",
            "this console runs over plain HTTP, where the browser does not keep its Secure login \
             cookie: serve it behind TLS (docs/deploy.md, section 6) or start possync-server with \
             --console-insecure-cookie on loopback",
        );
    }
    let fields = match Fields::from_body(request.into_body(), ctx.app.config.limits.body_read_timeout).await {
        Ok(f) => f,
        Err(e) => return ctx.input(&e),
    };
    let csrf = fields.text("csrf", 64).unwrap_or_default();
    if expected.is_none_or(|e| csrf.is_empty() || !same_token(&csrf, &e)) {
        return ctx.error(
            403,
            "csrf_invalid",
            "the login form lacks its CSRF token: reload it and try again",
        );
    }
    let (name, secret) = match (fields.required("name", 64), fields.required("secret", 256)) {
        (Ok(n), Ok(s)) => (n, s),
        _ => return login_form(ctx, Some("Enter your admin name and login secret.".into())).await,
    };
    let Ok(permit) = ctx.app.console_logins.clone().try_acquire_owned() else {
        return reply::retry_after(ctx.error(503, "overloaded", "too many logins at once; try again"), 1);
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
        .await;
    match verified {
        Ok(true) => {}
        Ok(false) => {
            log::warn!(correlation_id = &*ctx.cid, admin = name.as_str(); "console: login refused");
            return login_form(ctx, Some("Wrong admin name or login secret.".into())).await;
        }
        Err(reply) => return reply,
    }
    let value = random_hex();
    let sha = token_sha256(&value);
    let ttl = ctx.app.config.console.session_ttl;
    let expires = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let admin = name.clone();
    if let Err(reply) =
        ctx.db(move |s| s.create_session(&sha, &admin, &random_hex(), expires, now_ms())).await
    {
        return reply;
    }
    log::info!(correlation_id = &*ctx.cid, admin = name.as_str(); "console: logged in");
    let secure = ctx.app.config.console.secure_cookie;
    let reply =
        with_cookie(see_other("/console"), &set_cookie(SESSION_COOKIE, &value, ttl.as_secs(), secure));
    with_cookie(reply, &set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure))
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

async fn logout(ctx: &Ctx, session_sha: String) -> Result<Reply, Reply> {
    ctx.db(move |s| s.delete_session(&session_sha)).await?;
    let cookie = set_cookie(SESSION_COOKIE, "", 0, ctx.app.config.console.secure_cookie);
    Ok(with_cookie(see_other("/console/login"), &cookie))
}

fn nav(session: &ConsoleSession, page: &'static str) -> Nav {
    Nav { admin: session.admin_name.clone(), csrf: session.csrf_token.clone(), page }
}

async fn tills(
    ctx: &Ctx,
    session: &ConsoleSession,
    new_token: Option<(String, String, String)>,
) -> Result<Reply, Reply> {
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
    let alert = ctx.app.config.console.alert_after;
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

async fn create_token(ctx: &Ctx, session: &ConsoleSession, fields: &Fields) -> Result<Reply, Reply> {
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
    tills(ctx, session, Some((store_id, device_id, token))).await
}

async fn revoke_token(ctx: &Ctx, fields: &Fields) -> Result<Reply, Reply> {
    let store_id = fields.id("store").map_err(|e| ctx.input(&e))?;
    let device_id = fields.id("device").map_err(|e| ctx.input(&e))?;
    let device = Device { store_id, device_id };
    let revoked = ctx.db(move |s| s.revoke_tokens(&device)).await?;
    ctx.app.tokens.revoked();
    log::info!(correlation_id = &*ctx.cid, revoked = revoked; "console: tokens revoked");
    Ok(see_other("/console"))
}

async fn settle(ctx: &Ctx, session: &ConsoleSession, fields: &Fields) -> Result<Reply, Reply> {
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

async fn attention(ctx: &Ctx, session: &ConsoleSession, query: &Fields) -> Result<Reply, Reply> {
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

async fn attention_csv(ctx: &Ctx, query: &Fields) -> Result<Reply, Reply> {
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

async fn sales(ctx: &Ctx, session: &ConsoleSession, query: &Fields) -> Result<Reply, Reply> {
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
