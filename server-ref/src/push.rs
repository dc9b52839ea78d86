//! The `/sync/push` logic, independent of HTTP: parse, check and settle each sale of a request.
//!
//! Request-level problems ([`PushError`]) refuse the whole request and store nothing. Everything about
//! one sale (its envelope, id, hash, payload shape, business rules, storage) decides only that sale:
//! one bad sale never fails its neighbours. Results come back in request order.
//!
//! A push is [`check_push`] (CPU work, on the caller's thread), then [`store_push`], which runs the
//! push's lanes in parallel on the database threads it is given and gathers their answers.

use std::sync::Arc;
use std::time::Instant;

use possync_core::protocol::duplicate_keys::{self, first_duplicate_key};
use possync_core::protocol::hash::is_sha256_hex;
use possync_core::protocol::{
    canonical_json, payload_sha256, validate_client_tx_id, validate_sale, InvalidSale, Limits, PushResponse,
    PushResult, PushStatus, Resend, SalePayload, PAYLOAD_HASH_VERSION_V1,
};
use serde::Deserialize;

use crate::activity::ActivityRecorder;
use crate::blocking::{BlockingPool, JobError, Submit};
use crate::metrics::Metrics;
use crate::report::{parse_report, MAX_OUTBOX_SEQ};
use crate::store::{AckCheck, CheckedSale, Device, PushContext, PushStore, Rejection, SaleOutcome, Store};

/// Limits of one push request.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// Most sales in one request (more ⇒ 413 `too_many_transactions`).
    pub max_transactions: usize,
    /// Per-sale limits (more items ⇒ that sale is `INVALID` `too_many_items`).
    pub sale: Limits,
}

impl Default for PushLimits {
    fn default() -> Self {
        PushLimits { max_transactions: 500, sale: Limits::default() }
    }
}

/// Why a whole push request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The body is not JSON of the push request's shape (400 `malformed_json`).
    #[error("request body is not a push request: {0}")]
    Malformed(String),
    /// More sales than allowed in one request (413 `too_many_transactions`).
    #[error("{count} transactions exceed the limit of {max} per request")]
    TooManyTransactions {
        /// Sales in the request.
        count: usize,
        /// The limit in force.
        max: usize,
    },
    /// The body's `device_id` is not the token's device (403 `device_mismatch`).
    #[error("device_id {sent:?} does not match the token's device")]
    DeviceMismatch {
        /// What the body said.
        sent: String,
    },
    /// A sale belongs to another store than the token's (403 `store_forbidden`).
    #[error("transactions[{index}] is for store {store_id:?}, which this device may not push to")]
    StoreForbidden {
        /// Position of the first such sale.
        index: usize,
        /// The store the sale names.
        store_id: String,
    },
    /// The database could not be reached (503 `database_unavailable` + `Retry-After`). Sales settled
    /// before it in the same request stay stored; their replay answers `DUPLICATE`.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl PushError {
    /// HTTP status and machine-readable code of the refusal.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            PushError::Malformed(_) => (400, "malformed_json"),
            PushError::TooManyTransactions { .. } => (413, "too_many_transactions"),
            PushError::DeviceMismatch { .. } => (403, "device_mismatch"),
            PushError::StoreForbidden { .. } => (403, "store_forbidden"),
            PushError::Unavailable(_) => (503, "database_unavailable"),
        }
    }
}

#[derive(Deserialize)]
struct RequestIn {
    device_id: String,
    transactions: Vec<serde_json::Value>,
    /// The till's backlog report (optional; see `crate::report`).
    #[serde(default)]
    report: Option<serde_json::Value>,
}

/// The transactions as the text received, read only when the body names a key twice somewhere, to
/// find which transactions do.
#[derive(Deserialize)]
struct RawTransactions<'a> {
    #[serde(borrow)]
    transactions: Vec<&'a serde_json::value::RawValue>,
}

/// For each transaction, the first key it names twice (all `None` in the usual case, found with one
/// pass over the body).
fn duplicate_keys_of(body: &[u8], count: usize) -> Vec<Option<String>> {
    let text = std::str::from_utf8(body).unwrap_or_default();
    if !matches!(first_duplicate_key(text), Ok(Some(_))) {
        return vec![None; count];
    }
    match serde_json::from_str::<RawTransactions<'_>>(text) {
        Ok(raw) => raw.transactions.iter().map(|t| first_duplicate_key(t.get()).ok().flatten()).collect(),
        Err(_) => vec![None; count],
    }
}

pub use crate::store::{capped, MAX_MESSAGE_BYTES};

#[derive(Deserialize)]
struct EnvelopeIn {
    client_tx_id: String,
    payload_hash_version: u32,
    payload_sha256: String,
    attempt: u32,
    payload: serde_json::Value,
    /// The till's outbox sequence number (optional, outside the hash).
    #[serde(default)]
    outbox_seq: Option<u64>,
}

/// Longest attempted payload kept in the audit row of a refused sale, in bytes.
pub const MAX_ATTEMPTED_PAYLOAD_BYTES: usize = 64 * 1024;

/// A sale that passed every check, owning what [`CheckedSale`] borrows.
struct Prepared {
    client_tx_id: String,
    payload_hash_version: u32,
    payload_sha256: String,
    attempt: u32,
    payload: SalePayload,
    canonical: String,
    outbox_seq: Option<i64>,
}

/// A sale refused before storage, with what could be read of it for the audit.
struct Refused {
    client_tx_id: String,
    attempt: Option<u32>,
    payload_hash_version: Option<u32>,
    payload_sha256: Option<Box<str>>,
    code: &'static str,
    message: String,
    outbox_seq: Option<std::num::NonZeroI64>,
    attempted_payload: Option<Box<str>>,
}

/// The outbox sequence number of a transaction entry, when it is a valid one.
fn outbox_seq_of(value: &serde_json::Value) -> Option<std::num::NonZeroI64> {
    value
        .get("outbox_seq")
        .and_then(|v| v.as_u64())
        .filter(|n| (1..=MAX_OUTBOX_SEQ).contains(n))
        .and_then(|n| std::num::NonZeroI64::new(n as i64))
}

/// The payload of a refused entry as text for the console, cut at [`MAX_ATTEMPTED_PAYLOAD_BYTES`].
fn payload_text(payload: &serde_json::Value) -> Option<Box<str>> {
    let mut text = serde_json::to_string(payload).ok()?;
    if text.len() > MAX_ATTEMPTED_PAYLOAD_BYTES {
        let mut end = MAX_ATTEMPTED_PAYLOAD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Some(text.into())
}

impl Refused {
    fn from_envelope(env: &EnvelopeIn, code: &'static str, message: String) -> Self {
        Refused {
            // An id is at most 64 characters when valid; an invalid one is quoted back cut.
            client_tx_id: env.client_tx_id.chars().take(128).collect(),
            attempt: Some(env.attempt),
            payload_hash_version: Some(env.payload_hash_version),
            payload_sha256: Some(env.payload_sha256.chars().take(128).collect::<String>().into()),
            code,
            message: capped(message),
            outbox_seq: env
                .outbox_seq
                .filter(|n| (1..=MAX_OUTBOX_SEQ).contains(n))
                .and_then(|n| std::num::NonZeroI64::new(n as i64)),
            attempted_payload: payload_text(&env.payload),
        }
    }

    fn invalid(env: &EnvelopeIn, err: &InvalidSale) -> Self {
        Self::from_envelope(env, err.code(), err.to_string())
    }
}

/// A push request parsed and checked against the device and the limits, its sales not yet settled.
pub struct CheckedPush {
    sales: Vec<Result<Prepared, Refused>>,
    news: PushNews,
}

/// What a push tells about its till, apart from the sales: its backlog report, if it sent one that
/// parses, and whether the request held sales. Noted once the sales are settled.
pub struct PushNews {
    report: Option<crate::report::ParsedReport>,
    had_sales: bool,
    /// The till's word on its acknowledged sales, until a job takes it to check it. Checked once per
    /// push: by the job of the push's first lane, or by [`finish_push`]. The request's own sales all
    /// lie above `acked_seq` (they are unsent on the till), so the check does not wait for them.
    acknowledged: Option<AckCheck>,
}

impl PushNews {
    /// The till's outbox identity, if its report named one.
    fn outbox_id(&self) -> Option<&str> {
        self.report.as_ref().and_then(|r| r.report.outbox_id.as_deref())
    }

    /// Takes the till's word on its acknowledged sales out of the news, for the job that checks it
    /// (`None` when its report named no outbox or no `acked_seq`, or a job took it already).
    fn take_acknowledged(&mut self) -> Option<AckCheck> {
        self.acknowledged.take()
    }
}

/// Sales of one request that one database thread stores, one after another, in request order.
pub struct Lane {
    sales: Vec<(usize, Result<Prepared, Refused>)>,
    /// The till's outbox identity from the request's report, kept with each sale.
    outbox_id: Option<std::sync::Arc<str>>,
}

/// What settling a [`Lane`] gave.
pub struct LaneOutcome {
    results: Vec<(usize, PushResult)>,
    refused: Vec<Refused>,
    unavailable: Option<String>,
    /// Sales decided (not `RETRY`), and their totals per currency, to take off the till's report.
    decided: u64,
    decided_minor: std::collections::BTreeMap<String, i64>,
    /// The acknowledged-sales check's answer, when this lane's job made it.
    resend: Option<Resend>,
}

/// Parses a request body and checks it against the device and the limits: every check short of the
/// database, for every sale.
///
/// # Errors
/// A [`PushError`] when the request as a whole is refused; then nothing is stored.
pub fn check_push(
    metrics: &Metrics,
    device: &Device,
    correlation_id: &str,
    body: &[u8],
    limits: &PushLimits,
) -> Result<CheckedPush, PushError> {
    let request: RequestIn =
        serde_json::from_slice(body).map_err(|e| PushError::Malformed(capped(e.to_string())))?;
    if request.transactions.len() > limits.max_transactions {
        return Err(PushError::TooManyTransactions {
            count: request.transactions.len(),
            max: limits.max_transactions,
        });
    }
    if request.device_id != device.device_id {
        return Err(PushError::DeviceMismatch { sent: request.device_id });
    }
    let report = match request.report.as_ref().map(parse_report) {
        None => None,
        Some(Ok(report)) => Some(report),
        Some(Err(why)) => {
            metrics.limit_hits.with_label_values(&["bad_report"]).inc();
            log::warn!(correlation_id = correlation_id, device_id = device.device_id.as_str(), reason = why.as_str();
                "backlog report ignored");
            None
        }
    };
    let request_len = request.transactions.len();
    let sales: Vec<Result<Prepared, Refused>> = request
        .transactions
        .into_iter()
        .zip(duplicate_keys_of(body, request_len))
        .map(|(value, duplicate)| check(value, duplicate, &limits.sale))
        .collect();
    for (index, sale) in sales.iter().enumerate() {
        if let Ok(p) = sale {
            if p.payload.header.store_id != device.store_id {
                return Err(PushError::StoreForbidden { index, store_id: p.payload.header.store_id.clone() });
            }
        }
    }
    let acknowledged = report.as_ref().and_then(|r| {
        Some(AckCheck {
            outbox_id: r.report.outbox_id.clone()?,
            acked_seq: r.report.acked_seq?,
            kept_seq: r.report.kept_seq.unwrap_or(1),
        })
    });
    let news = PushNews { report, had_sales: !sales.is_empty(), acknowledged };
    Ok(CheckedPush { sales, news })
}

impl CheckedPush {
    /// Sales in the request.
    pub fn len(&self) -> usize {
        self.sales.len()
    }

    /// Whether the request has no sale.
    pub fn is_empty(&self) -> bool {
        self.sales.is_empty()
    }

    /// The sales split into at most `lanes` lanes to settle in parallel, dealt out in turn so that
    /// the lanes are even (a lane that ends last keeps the whole request waiting). Sales with the
    /// same `client_tx_id` land in the lane of its first occurrence, in request order, so a request
    /// naming one sale twice answers `OK` then `DUPLICATE` as when settled one by one.
    fn into_lanes(self, lanes: usize) -> (Vec<Lane>, PushNews) {
        let n = lanes.clamp(1, self.sales.len().max(1));
        let outbox_id: Option<std::sync::Arc<str>> = self.news.outbox_id().map(Into::into);
        let mut out: Vec<Lane> =
            (0..n).map(|_| Lane { sales: Vec::new(), outbox_id: outbox_id.clone() }).collect();
        let mut lane_of_id: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut next = 0usize;
        for (index, sale) in self.sales.into_iter().enumerate() {
            let id = match &sale {
                Ok(p) => &p.client_tx_id,
                Err(r) => &r.client_tx_id,
            };
            let lane = *lane_of_id.entry(id.clone()).or_insert_with(|| {
                next += 1;
                (next - 1) % n
            });
            out[lane].sales.push((index, sale));
        }
        out.retain(|l| !l.sales.is_empty());
        (out, self.news)
    }
}

/// Stores a lane's sales one after another, each in its own transaction. Sales not settled by
/// `deadline` answer `RETRY` (`deadline_exceeded`) untouched; when the database cannot be reached the
/// lane stops there.
fn run_lane<S: PushStore + ?Sized>(
    store: &S,
    metrics: &Metrics,
    device: &Device,
    correlation_id: &str,
    lane: Lane,
    deadline: Instant,
) -> LaneOutcome {
    let ctx = PushContext { device, correlation_id, outbox_id: lane.outbox_id.as_deref() };
    let mut out = LaneOutcome {
        results: Vec::with_capacity(lane.sales.len()),
        refused: Vec::new(),
        unavailable: None,
        decided: 0,
        decided_minor: std::collections::BTreeMap::new(),
        resend: None,
    };
    for (index, sale) in lane.sales {
        if Instant::now() >= deadline {
            let id = match &sale {
                Ok(p) => p.client_tx_id.clone(),
                Err(r) => r.client_tx_id.clone(),
            };
            metrics.limit_hits.with_label_values(&["request_deadline"]).inc();
            let message = "the request's deadline passed before this sale was settled; nothing stored".into();
            out.results.push((index, retry(&id, "deadline_exceeded", message)));
            continue;
        }
        let amount =
            sale.as_ref().ok().map(|p| (p.payload.header.currency.clone(), p.payload.header.total_minor));
        let (result, unavailable) = answer_sale(store, metrics, &ctx, sale, &mut out.refused);
        if result.status != PushStatus::Retry {
            out.decided += 1;
            if let Some((currency, total)) = amount {
                *out.decided_minor.entry(currency).or_insert(0) += total;
            }
        }
        if unavailable {
            out.unavailable = Some(result.message.unwrap_or_default());
            break;
        }
        out.results.push((index, result));
    }
    out
}

/// What [`store_push`] needs of the server: the store, the database threads that run a push's
/// lanes, the metrics and the recorder of device activity.
pub trait PushHost: Send + Sync + 'static {
    /// The store the sales go to.
    fn store(&self) -> &dyn Store;
    /// The database threads.
    fn pool(&self) -> &BlockingPool;
    /// The server's metrics.
    fn metrics(&self) -> &Metrics;
    /// Where the device's news goes, written off the push path.
    fn activity(&self) -> &ActivityRecorder;
}

/// Stores a checked push on the database threads of `host` and answers it: one job for a push of
/// one lane (a single sale, or `lanes` 1); else its sales split into at most `lanes` lanes run in
/// parallel, each sale still in its own transaction; then [`finish_push`]. `admitted` (the push's
/// admission) is held by every job until it ends, even when the client has gone.
///
/// # Errors
/// The outer [`JobError`] when a job could not run: [`JobError::Full`] when the queue was full (if it
/// fills half way, the lanes already queued still store their sales, each its own transaction; the
/// till's resend of those answers `DUPLICATE`), a panic, or a stopped pool. The inner [`PushError`]
/// as [`finish_push`] answers.
pub async fn store_push<H: PushHost>(
    host: &Arc<H>,
    admitted: Arc<dyn std::any::Any + Send + Sync>,
    device: Device,
    correlation_id: Arc<str>,
    checked: CheckedPush,
    lanes: usize,
    deadline: Instant,
) -> Result<Result<PushResponse, PushError>, JobError> {
    let (mut split, mut news) = checked.into_lanes(lanes);
    if split.len() <= 1 {
        let (job_host, cid) = (host.clone(), correlation_id);
        return host
            .pool()
            .run(move || {
                let _admitted = admitted;
                let (store, metrics) = (job_host.store(), job_host.metrics());
                let outcomes = split
                    .pop()
                    .map(|lane| run_lane(store, metrics, &device, &cid, lane, deadline))
                    .into_iter()
                    .collect();
                finish_push(store, job_host.activity(), &device, &cid, news, outcomes)
            })
            .await;
    }
    // Every lane is queued before any is awaited, so that they run at once. The first lane's job also
    // checks the till's acknowledged sales: no extra job for it.
    let mut pending = Vec::with_capacity(split.len());
    let mut acknowledged = news.take_acknowledged();
    for lane in split {
        let (job_host, cid, job_device, guard) =
            (host.clone(), correlation_id.clone(), device.clone(), admitted.clone());
        let check = acknowledged.take();
        pending.push(queue(host.pool(), move || {
            let _admitted = guard;
            let store = job_host.store();
            let mut outcome = run_lane(store, job_host.metrics(), &job_device, &cid, lane, deadline);
            outcome.check_acknowledged(check, store, &job_device, &cid);
            outcome
        })?);
    }
    let mut outcomes = Vec::with_capacity(pending.len());
    for lane in pending {
        outcomes.push(lane.await.unwrap_or(Err(JobError::Stopped))?);
    }
    if outcomes.iter().any(LaneOutcome::has_refused) {
        // The audit of refused sales writes to the database: on its thread too.
        let job_host = host.clone();
        return host
            .pool()
            .run(move || {
                let _admitted = admitted;
                finish_push(job_host.store(), job_host.activity(), &device, &correlation_id, news, outcomes)
            })
            .await;
    }
    Ok(finish_push(host.store(), host.activity(), &device, &correlation_id, news, outcomes))
}

/// `job` queued on `pool` now (not when awaited), so that several jobs run at once.
fn queue<R, F>(
    pool: &BlockingPool,
    job: F,
) -> Result<tokio::sync::oneshot::Receiver<Result<R, JobError>>, JobError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match pool.submit(job) {
        Submit::Queued(rx) => Ok(rx),
        Submit::Full => Err(JobError::Full),
    }
}

/// Puts the lanes' results back in request order and audits the refused sales in one transaction.
///
/// # Errors
/// [`PushError::Unavailable`] when a lane could not reach the database (sales settled before stay
/// stored; their replay answers `DUPLICATE`).
/// The device's news (last seen, last push, backlog report less the sales decided now) goes to
/// `activity`, written off this path.
fn finish_push<S: PushStore + ?Sized>(
    store: &S,
    activity: &ActivityRecorder,
    device: &Device,
    correlation_id: &str,
    mut news: PushNews,
    outcomes: Vec<LaneOutcome>,
) -> Result<PushResponse, PushError> {
    let ctx = PushContext { device, correlation_id, outbox_id: news.outbox_id() };
    let mut results = Vec::new();
    let mut refused = Vec::new();
    let mut unavailable = None;
    let mut resend = None;
    let (mut decided, mut decided_minor) = (0u64, std::collections::BTreeMap::<String, i64>::new());
    for outcome in outcomes {
        results.extend(outcome.results);
        refused.extend(outcome.refused);
        unavailable = unavailable.or(outcome.unavailable);
        resend = resend.or(outcome.resend);
        decided += outcome.decided;
        for (currency, total) in outcome.decided_minor {
            *decided_minor.entry(currency).or_insert(0) += total;
        }
    }
    audit_refused(store, &ctx, &refused);
    if let Some(message) = unavailable {
        return Err(PushError::Unavailable(message));
    }
    let now = crate::clock::now_ms();
    if let Some(check) = news.take_acknowledged() {
        resend = resend_of(store, device, correlation_id, &check);
    }
    let retired = news.report.as_ref().map(|r| r.retired_seqs.as_slice()).unwrap_or_default();
    let after = news.report.as_ref().map(|r| r.after_request(decided, &decided_minor, now));
    activity.note(device, now, news.had_sales, after, retired);
    results.sort_by_key(|(index, _)| *index);
    Ok(PushResponse { results: results.into_iter().map(|(_, r)| r).collect(), resend })
}

/// The acknowledged runs `store` lacks, for the answer's `resend`, after recording what is lost for
/// good (see [`PushStore::check_acknowledged`]); `None` when nothing is lacking, or when the check
/// failed (it is made again with the till's next push, and never costs this push its sales).
fn resend_of<S: PushStore + ?Sized>(
    store: &S,
    device: &Device,
    correlation_id: &str,
    check: &AckCheck,
) -> Option<Resend> {
    let now = crate::clock::now_ms();
    // Once more on an error: a pooled connection that died while idle (a restored or restarted
    // database) fails its first use and is dropped; the next one is fresh.
    let plan = match store
        .check_acknowledged(device, check, now)
        .or_else(|_| store.check_acknowledged(device, check, now))
    {
        Ok(plan) => plan,
        Err(e) => {
            log::warn!(correlation_id = correlation_id, device_id = device.device_id.as_str(), error:% = e;
                "acknowledged-sales check failed; made again with the next push");
            return None;
        }
    };
    for (from, to) in &plan.lost {
        log::error!(correlation_id = correlation_id, store_id = device.store_id.as_str(),
            device_id = device.device_id.as_str(), from_seq = *from, to_seq = *to;
            "acknowledged sales missing on the server and no longer kept by the till: lost for good");
    }
    if plan.resend.is_empty() {
        return None;
    }
    let missing: i64 = plan.resend.iter().map(|(from, to)| to - from + 1).sum();
    log::warn!(correlation_id = correlation_id, store_id = device.store_id.as_str(),
        device_id = device.device_id.as_str(), ranges = plan.resend.len(), sales = missing,
        first_seq = plan.resend[0].0;
        "acknowledged sales missing on the server; the till is asked to send them again");
    Some(Resend {
        outbox_id: check.outbox_id.clone(),
        ranges: plan.resend.iter().map(|(from, to)| [*from, *to]).collect(),
    })
}

impl LaneOutcome {
    /// Makes the push's acknowledged-sales check in this lane's job (see [`PushNews::take_acknowledged`]).
    fn check_acknowledged<S: PushStore + ?Sized>(
        &mut self,
        acknowledged: Option<AckCheck>,
        store: &S,
        device: &Device,
        correlation_id: &str,
    ) {
        self.resend = acknowledged.and_then(|check| resend_of(store, device, correlation_id, &check));
    }

    /// Whether refused sales wait for their audit (then [`finish_push`] writes to the database).
    fn has_refused(&self) -> bool {
        !self.refused.is_empty()
    }
}

/// The audit code of the one row that stands for a request's entries without a usable
/// `client_tx_id` (see [`audit_refused`]).
pub const UNIDENTIFIED_ENTRIES: &str = "unidentified_entries";

/// Whether a refused entry names a sale a person can act on: a non-empty `client_tx_id` string (even
/// one the protocol refuses, e.g. too long: it is what the till sent). Entries that are not objects,
/// or carry no id, or an id that is no string, name nothing.
fn identifiable(r: &Refused) -> bool {
    !r.client_tx_id.is_empty()
}

/// Audits the request's sales refused before storage, in one transaction: one row per refused
/// entry that names a sale, and at most one row for all the entries that name none (how many,
/// which codes; the first one's payload if it had one), so that a request's audit rows are bounded
/// by the sales it names, not by the entries it holds (500 bare numbers are one row, not 500).
fn audit_refused<S: PushStore + ?Sized>(store: &S, ctx: &PushContext<'_>, refused: &[Refused]) {
    let (named, unnamed): (Vec<&Refused>, Vec<&Refused>) = refused.iter().partition(|r| identifiable(r));
    let texts: Vec<_> = named
        .iter()
        .map(|r| {
            (
                without_nul(&r.client_tx_id),
                r.payload_sha256.as_deref().map(without_nul),
                without_nul(&r.message),
            )
        })
        .collect();
    let mut rejections: Vec<Rejection<'_>> = named
        .iter()
        .zip(&texts)
        .map(|(r, (id, sha, message))| Rejection {
            client_tx_id: id,
            attempt: r.attempt,
            payload_hash_version: r.payload_hash_version,
            payload_sha256: sha.as_deref(),
            code: r.code,
            message,
            outbox_seq: r.outbox_seq.map(std::num::NonZeroI64::get),
            attempted_payload: r.attempted_payload.as_deref(),
        })
        .collect();
    let summary = unidentified_summary(&unnamed);
    if let Some(message) = &summary {
        log::warn!(correlation_id = ctx.correlation_id, device_id = ctx.device.device_id.as_str(),
            entries = unnamed.len(), summary = message.as_str();
            "transaction entries without a client_tx_id refused");
        rejections.push(Rejection {
            client_tx_id: "",
            attempt: None,
            payload_hash_version: None,
            payload_sha256: None,
            code: UNIDENTIFIED_ENTRIES,
            message,
            outbox_seq: None,
            attempted_payload: unnamed.iter().find_map(|r| r.attempted_payload.as_deref()),
        });
    }
    if let Err(e) = store.audit_rejections(ctx, &rejections) {
        log::error!(correlation_id = ctx.correlation_id, refused = refused.len(), error:% = e;
            "audit of refused sales failed");
    }
}

/// The message of the one audit row of a request's entries without a usable `client_tx_id`: how
/// many, and how many of each code (`None` when there are none).
fn unidentified_summary(unnamed: &[&Refused]) -> Option<String> {
    if unnamed.is_empty() {
        return None;
    }
    let mut codes = std::collections::BTreeMap::<&str, usize>::new();
    for r in unnamed {
        *codes.entry(r.code).or_default() += 1;
    }
    let codes: Vec<String> = codes.iter().map(|(code, n)| format!("{code} × {n}")).collect();
    let first = without_nul(&unnamed[0].message);
    Some(capped(format!(
        "{} transaction entries without a client_tx_id answered INVALID ({}); the first: {first}",
        unnamed.len(),
        codes.join(", ")
    )))
}

/// The answer for a sale from what storing it came to: the status, code and message the outcome
/// carries (the same text as its audit row), and the server's id once the sale is stored. The one
/// place where a store's outcome becomes the protocol's answer.
pub fn push_result(client_tx_id: &str, outcome: &SaleOutcome) -> PushResult {
    PushResult {
        client_tx_id: client_tx_id.to_owned(),
        status: outcome.status(),
        code: outcome.code().map(str::to_owned),
        message: outcome.message(),
        server_tx_id: outcome.server_tx_id(),
    }
}

/// A `RETRY` answer: transient, nothing stored.
fn retry(client_tx_id: &str, code: &str, message: String) -> PushResult {
    PushResult {
        client_tx_id: client_tx_id.to_owned(),
        status: PushStatus::Retry,
        code: Some(code.to_owned()),
        message: Some(message),
        server_tx_id: None,
    }
}

/// The answer for one sale: stored (or found stored) in its own transaction, or refused before
/// storage (then kept in `refused` for the request's one audit transaction); and whether the database
/// could not be reached ([`SaleOutcome::is_unavailable`]).
fn answer_sale<S: PushStore + ?Sized>(
    store: &S,
    metrics: &Metrics,
    ctx: &PushContext<'_>,
    sale: Result<Prepared, Refused>,
    refused: &mut Vec<Refused>,
) -> (PushResult, bool) {
    let started = Instant::now();
    let mut unavailable = false;
    let (result, attempt) = match sale {
        Ok(p) => {
            let checked = CheckedSale {
                client_tx_id: &p.client_tx_id,
                payload_hash_version: p.payload_hash_version,
                payload_sha256: &p.payload_sha256,
                attempt: p.attempt,
                payload: &p.payload,
                canonical: &p.canonical,
                outbox_seq: p.outbox_seq,
            };
            let outcome = store.store_sale(ctx, &checked);
            unavailable = outcome.is_unavailable();
            (push_result(&p.client_tx_id, &outcome), Some(p.attempt))
        }
        Err(r) => {
            let result = PushResult {
                client_tx_id: r.client_tx_id.clone(),
                status: PushStatus::Invalid,
                code: Some(r.code.to_owned()),
                message: Some(r.message.clone()),
                server_tx_id: None,
            };
            let attempt = r.attempt;
            refused.push(r);
            (result, attempt)
        }
    };
    let elapsed = started.elapsed();
    metrics.push_results.with_label_values(&[result.status.as_str()]).inc();
    metrics.sale_seconds.observe(elapsed.as_secs_f64());
    let level = match result.status {
        PushStatus::Ok | PushStatus::Duplicate => log::Level::Info,
        // An entry that names no sale: its request's one audit row logs them all, once.
        PushStatus::Invalid if result.client_tx_id.is_empty() => log::Level::Debug,
        PushStatus::Retry | PushStatus::Conflict | PushStatus::Invalid => log::Level::Warn,
    };
    log::log!(level,
        correlation_id = ctx.correlation_id,
        client_tx_id = result.client_tx_id.as_str(),
        store_id = ctx.device.store_id.as_str(),
        device_id = ctx.device.device_id.as_str(),
        attempt = attempt.unwrap_or(0),
        result = result.status.as_str(),
        code = result.code.as_deref().unwrap_or(""),
        server_tx_id = result.server_tx_id.unwrap_or(0),
        latency_ms = elapsed.as_millis() as u64;
        "sale settled");
    (result, unavailable)
}

/// `s` with every U+0000 replaced by U+FFFD, for the audit row of a refused attempt: refused input may
/// carry NUL (in its id, its hash, or quoted in a parser message), which a PostgreSQL `text` cannot
/// hold; without this the audit insert fails and the attempt goes unaudited.
fn without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// Every per-sale check short of the database: envelope, id, hash version, hash, shape, rules.
fn check(value: serde_json::Value, duplicate: Option<String>, limits: &Limits) -> Result<Prepared, Refused> {
    let env: EnvelopeIn = match EnvelopeIn::deserialize(&value) {
        Ok(env) => env,
        Err(e) => {
            let id = value.get("client_tx_id").and_then(|v| v.as_str()).unwrap_or_default();
            return Err(Refused {
                client_tx_id: id.chars().take(128).collect(),
                attempt: value.get("attempt").and_then(|v| v.as_u64()).and_then(|a| u32::try_from(a).ok()),
                payload_hash_version: None,
                payload_sha256: None,
                code: "malformed_transaction",
                message: capped(format!("transaction entry is not valid: {e}")),
                outbox_seq: outbox_seq_of(&value),
                attempted_payload: value.get("payload").and_then(payload_text),
            });
        }
    };
    if env.outbox_seq.is_some_and(|n| !(1..=MAX_OUTBOX_SEQ).contains(&n)) {
        let message = format!("outbox_seq must be in 1..={MAX_OUTBOX_SEQ}");
        return Err(Refused::from_envelope(&env, "malformed_transaction", message));
    }
    if let Some(key) = duplicate {
        return Err(Refused::invalid(&env, &duplicate_keys::duplicate(&key)));
    }
    if let Err(e) = validate_client_tx_id(&env.client_tx_id) {
        return Err(Refused::invalid(&env, &e));
    }
    if env.payload_hash_version != PAYLOAD_HASH_VERSION_V1 {
        return Err(Refused::from_envelope(
            &env,
            "unsupported_hash_version",
            format!("payload_hash_version {} is not supported; use 1", env.payload_hash_version),
        ));
    }
    let canonical = match canonical_json(&env.payload) {
        Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
        Err(e) => return Err(Refused::from_envelope(&env, "malformed_sale", e.to_string())),
    };
    let computed = payload_sha256(canonical.as_bytes());
    if !is_sha256_hex(&env.payload_sha256) || computed != env.payload_sha256 {
        let message = format!("payload_sha256 does not match the payload; the server computed {computed}");
        return Err(Refused::from_envelope(&env, "hash_mismatch", message));
    }
    let payload = match SalePayload::deserialize(&env.payload) {
        Ok(p) => p,
        Err(e) => return Err(Refused::invalid(&env, &InvalidSale::Malformed { detail: e.to_string() })),
    };
    if let Err(e) = validate_sale(&payload, limits) {
        return Err(Refused::invalid(&env, &e));
    }
    Ok(Prepared {
        client_tx_id: env.client_tx_id,
        payload_hash_version: env.payload_hash_version,
        payload_sha256: computed,
        attempt: env.attempt,
        payload,
        canonical,
        outbox_seq: env.outbox_seq.map(|n| n as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(id: &str) -> Refused {
        Refused {
            client_tx_id: id.into(),
            attempt: None,
            payload_hash_version: None,
            payload_sha256: None,
            code: "malformed_transaction",
            message: String::new(),
            attempted_payload: None,
            outbox_seq: None,
        }
    }

    #[test]
    fn lanes_keep_one_id_in_one_lane_in_request_order() {
        // Lanes route by id (the lane of its first occurrence). Only the routing is under test, so
        // the entries are refused ones carrying the ids.
        let ids = ["a", "b", "a", "c", "d", "a", "e", "b"];
        let news = || PushNews { report: None, had_sales: true, acknowledged: None };
        let checked = CheckedPush { sales: ids.iter().map(|id| Err(refused(id))).collect(), news: news() };
        let (lanes, _) = checked.into_lanes(3);
        assert!(lanes.len() <= 3 && !lanes.is_empty());
        let mut seen: Vec<usize> = lanes.iter().flat_map(|l| l.sales.iter().map(|(i, _)| *i)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..ids.len()).collect::<Vec<_>>(), "every sale in exactly one lane");
        for lane in &lanes {
            assert!(lane.sales.windows(2).all(|w| w[0].0 < w[1].0), "request order within a lane");
        }
        for id in ["a", "b"] {
            let holding: Vec<usize> =
                (0..lanes.len()).filter(|&l| lanes[l].sales.iter().any(|(i, _)| ids[*i] == id)).collect();
            assert_eq!(holding.len(), 1, "{id} is routed to one lane");
        }
        assert_eq!(CheckedPush { sales: vec![Err(refused("x"))], news: news() }.into_lanes(8).0.len(), 1);
        assert_eq!(CheckedPush { sales: Vec::new(), news: news() }.into_lanes(4).0.len(), 0);
    }

    #[test]
    fn lanes_are_even() {
        let news = PushNews { report: None, had_sales: true, acknowledged: None };
        let sales = (0..50).map(|n| Err(refused(&format!("sale-{n}")))).collect();
        let (lanes, _) = CheckedPush { sales, news }.into_lanes(4);
        let sizes: Vec<usize> = lanes.iter().map(|l| l.sales.len()).collect();
        assert_eq!(sizes, vec![13, 13, 12, 12], "50 sales dealt over 4 lanes");
    }

    #[test]
    fn entries_without_an_id_are_summed_up_in_one_message() {
        let bare: Vec<Refused> = (0..500)
            .map(|n| {
                let value = serde_json::json!(n);
                check(value, None, &Limits::default()).err().expect("a bare number is refused")
            })
            .collect();
        assert!(bare.iter().all(|r| !identifiable(r) && r.code == "malformed_transaction"));
        let mut odd = refused("");
        odd.code = "bad_client_tx_id";
        let unnamed: Vec<&Refused> = bare.iter().chain([&odd]).collect();
        let summary = unidentified_summary(&unnamed).expect("a summary");
        assert!(
            summary.starts_with(
                "501 transaction entries without a client_tx_id answered INVALID \
                 (bad_client_tx_id × 1, malformed_transaction × 500); the first: transaction entry is not valid"
            ),
            "{summary}"
        );
        assert_eq!(unidentified_summary(&[]), None);
        assert!(identifiable(&refused("a\u{0}b")), "an id the protocol refuses still names the sale");
    }
}
