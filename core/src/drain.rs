//! One drain run: claim due sales, send them in batches, finalize each result, until nothing due is
//! left or the link is judged down.
//!
//! While a batch is on the wire a heartbeat thread extends its leases; a lease lost to another sender
//! is never finalized, and the run stops after that batch. Results map to outbox states as the
//! protocol says: `OK`/`DUPLICATE` ⇒ sent, `CONFLICT`/`INVALID` ⇒ terminal, `RETRY` ⇒ pending with
//! per-sale backoff (growing with the sale's `server_retries`). A failed request is the link's fault,
//! not the sales': its batch goes back due at once (at the run's start, so it is taken again after the
//! other due sales) without counting against them, and [`crate::link::judge_batch`] decides whether
//! the run goes on, with what batch size, or stops (`DrainStop::Offline` after
//! `link.failures_before_backoff` failures in a row or a `Retry-After`; the engine then backs off).
//! 401/403 and TLS failures stop it for a person; 413 halves the batch and goes on.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::value::RawValue;

use crate::backlog::BacklogCache;
use crate::config::SyncConfig;
use crate::error::{ConfigError, StorageError};
use crate::link::{judge_batch, BatchVerdict, LinkState, RequestResult};
use crate::outbox::{Claimed, Finalized, Lease, LeaseState, Outbox, Outcome};
use crate::protocol::{BacklogReport, PushRequest, PushResponse, PushStatus, PushTransaction};
use crate::reason::{DrainReason, DrainReasons};
use crate::transport::{Transport, TransportError};

/// Why a run ended before everything due was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainStop {
    /// The link is judged down: `link.failures_before_backoff` failed requests in a row, or the server
    /// asked to wait (`Retry-After`). The sales are due again; the engine backs off.
    Offline {
        /// The failure.
        error: TransportError,
    },
    /// 401/403: the token or device is not accepted; a person must fix the setup.
    AuthFailed {
        /// The failure.
        error: TransportError,
    },
    /// The server's certificate is not trusted or matches no pin; a person must fix the setup.
    TlsFailed {
        /// The failure.
        error: TransportError,
    },
    /// Another sender took over some of our leases (e.g. after a long pause); it carries on.
    LeaseLost,
}

/// What one drain run did, for the cashier's status line and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Id of the run, sent as `X-Correlation-Id` with each of its requests.
    pub correlation_id: String,
    /// Why the run happened (merged reasons of coalesced triggers).
    pub reasons: DrainReasons,
    /// Start, Unix ms.
    pub started_at_ms: i64,
    /// Wall time of the run, in ms.
    pub duration_ms: u64,
    /// Sales stored by the server in this run (`OK`).
    pub sent: u64,
    /// Sales the server already had (`DUPLICATE`), now marked sent.
    pub duplicate: u64,
    /// Sales answered `CONFLICT`.
    pub conflict: u64,
    /// Sales answered `INVALID` (or too large to ever send).
    pub invalid: u64,
    /// Sales put back to pending (server `RETRY` or failed request; a sale counts once per request).
    pub retry: u64,
    /// Requests answered (a 200 matching the request) in this run.
    pub requests_ok: u64,
    /// Requests that failed (unreachable, timeout, cut, 5xx, 429/503, garbled answer) in this run.
    pub requests_failed: u64,
    /// Results dropped because the lease had been taken over.
    pub lease_lost: u64,
    /// Unsent sales after the run (pending + in flight).
    pub remaining_pending: u64,
    /// Age of the oldest unsent sale after the run, in ms.
    pub oldest_pending_age_ms: Option<i64>,
    /// The last error seen (transport failure or a sale's RETRY reason).
    pub last_error: Option<String>,
    /// Why the run stopped early, if it did.
    pub stop: Option<DrainStop>,
}

impl DrainReport {
    /// Sales settled as sent in this run (`OK` + `DUPLICATE`).
    pub fn settled(&self) -> u64 {
        self.sent + self.duplicate
    }
}

/// Drains one outbox through one transport. Holds the owner id used for its leases.
pub struct Drainer<'a> {
    outbox: &'a Outbox,
    transport: &'a dyn Transport,
    config: &'a SyncConfig,
    owner: String,
    /// The batch size the last run ended with (timeouts shrink it; it carries over to the next run).
    batch_size: Mutex<usize>,
}

impl<'a> Drainer<'a> {
    /// A drainer with a fresh owner id.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` is invalid.
    pub fn new(
        outbox: &'a Outbox,
        transport: &'a dyn Transport,
        config: &'a SyncConfig,
    ) -> Result<Self, ConfigError> {
        Self::with_owner(outbox, transport, config, uuid::Uuid::now_v7().to_string())
    }

    /// A drainer whose leases carry `owner` (an engine that is the outbox's sole user keeps one owner id
    /// across its lives, to take back what a crashed life left in flight).
    ///
    /// # Errors
    /// [`ConfigError`] when `config` is invalid.
    pub fn with_owner(
        outbox: &'a Outbox,
        transport: &'a dyn Transport,
        config: &'a SyncConfig,
        owner: String,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Drainer { outbox, transport, config, owner, batch_size: Mutex::new(config.batch_size) })
    }

    /// The lease owner id of this drainer.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until nothing due remains or the run must stop; see the module docs.
    ///
    /// # Errors
    /// A storage error of the outbox. Transport failures are not errors: they end up in the report.
    pub fn drain_once(&self, reasons: DrainReasons) -> Result<DrainReport, StorageError> {
        self.drain_with_progress(reasons, &mut |_, _| {})
    }

    /// [`Drainer::drain_with_progress`] that also stops between batches once `stop()` is true (the
    /// batch in flight is finished and finalized first).
    ///
    /// # Errors
    /// As [`Drainer::drain_once`].
    pub fn drain_until(
        &self,
        reasons: DrainReasons,
        progress: &mut dyn FnMut(u64, u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<DrainReport, StorageError> {
        self.run(reasons, progress, stop)
    }

    /// [`Drainer::drain_once`], calling `progress(done, total)` after each batch, where `total` is the
    /// number of unsent sales when the run started.
    ///
    /// # Errors
    /// As [`Drainer::drain_once`].
    pub fn drain_with_progress(
        &self,
        reasons: DrainReasons,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<DrainReport, StorageError> {
        self.run(reasons, progress, &|| false)
    }

    fn run(
        &self,
        reasons: DrainReasons,
        progress: &mut dyn FnMut(u64, u64),
        stop: &dyn Fn() -> bool,
    ) -> Result<DrainReport, StorageError> {
        if reasons.contains(DrainReason::Manual) || reasons.contains(DrainReason::Online) {
            // "Sync now" and "back online" must not wait out per-sale backoff from the outage.
            let moved = self.outbox.make_all_due()?;
            if moved > 0 {
                log::info!(drain_reason:% = reasons, sales = moved; "backoff skipped for pending sales");
            }
        }
        let clock = self.outbox.clock().clone();
        let started_at_ms = clock.now_ms();
        let wall = Instant::now();
        let correlation_id = uuid::Uuid::now_v7().to_string();
        let total = self.outbox.counts()?.unsent();
        let mut report = DrainReport {
            correlation_id: correlation_id.clone(),
            reasons,
            started_at_ms,
            duration_ms: 0,
            sent: 0,
            duplicate: 0,
            conflict: 0,
            invalid: 0,
            retry: 0,
            requests_ok: 0,
            requests_failed: 0,
            lease_lost: 0,
            remaining_pending: 0,
            oldest_pending_age_ms: None,
            last_error: None,
            stop: None,
        };
        let carried = (*self.batch_size.lock()).clamp(1, self.config.batch_size);
        let mut link = LinkState { batch_size: carried, ..LinkState::new(self.config.batch_size) };
        let mut done = 0u64;
        let mut rng = rand::rng();
        let mut backlog_cache = BacklogCache::default();
        while report.stop.is_none() && !stop() {
            let claimed = self.outbox.claim_due_by(
                &self.owner,
                link.batch_size,
                self.config.lease_ms,
                started_at_ms,
            )?;
            if claimed.is_empty() {
                break;
            }
            let backlog = backlog_cache.current(self.outbox, clock.now_ms());
            let (request, sendable, broken) = build_request(&self.config.device_id, &claimed, backlog);
            let leases: Vec<Lease> = sendable.iter().map(|c| c.lease.clone()).collect();
            let mut settled: Vec<(&Claimed, Outcome)> = broken
                .into_iter()
                .map(|(c, reason)| (c, Outcome::Invalid { code: "corrupt_payload".into(), message: reason }))
                .collect();
            let mut lost = HashSet::new();
            let mut latency_ms = 0;
            if !sendable.is_empty() {
                let sent_at = Instant::now();
                let (result, lost_now) = self.send_with_heartbeat(&request, &correlation_id, &leases);
                lost = lost_now;
                latency_ms = sent_at.elapsed().as_millis() as u64;
                let result = result.and_then(|response| check_response(&request, response));
                let judged = RequestResult::of(&result);
                let (next, verdict) = judge_batch(&self.config.link, link, judged, sendable.len());
                match judged {
                    RequestResult::Answered => report.requests_ok += 1,
                    RequestResult::TimedOut | RequestResult::Failed { .. } => report.requests_failed += 1,
                    RequestResult::TooLarge | RequestResult::NeedsPerson => {}
                }
                if let Err(error) = &result {
                    report.last_error = Some(error.to_string());
                    apply_verdict(&mut report, verdict, error, &next);
                }
                link = next;
                let outcomes = self.outcomes(result, &sendable, &report, &mut rng);
                settled.extend(sendable.iter().copied().zip(outcomes));
            }

            let mut to_write = Vec::with_capacity(settled.len());
            for (c, outcome) in settled {
                if lost.contains(&c.lease.seq) {
                    report.lease_lost += 1;
                    log::warn!(correlation_id = correlation_id.as_str(), client_tx_id = c.lease.client_tx_id.as_str(),
                        lease_token = c.lease.token.as_str(); "lease lost during send; result dropped");
                    continue;
                }
                log_attempt(&correlation_id, reasons, c, latency_ms, &outcome);
                to_write.push((c.lease.clone(), outcome));
            }
            let written = self.outbox.finalize_all(&to_write)?;
            for ((_, outcome), finalized) in to_write.iter().zip(written) {
                if finalized == Finalized::LeaseLost {
                    report.lease_lost += 1;
                    continue;
                }
                tally(&mut report, outcome);
                if !matches!(outcome, Outcome::Retry { .. }) {
                    backlog_cache.settled(1);
                }
            }
            if report.lease_lost > 0 && report.stop.is_none() {
                report.stop = Some(DrainStop::LeaseLost);
            }
            done += claimed.len() as u64;
            progress(done.min(total.max(done)), total.max(done));
        }

        *self.batch_size.lock() = link.batch_size;
        let counts = self.outbox.counts()?;
        report.remaining_pending = counts.unsent();
        report.oldest_pending_age_ms = self.outbox.oldest_unsent_age_ms()?;
        report.duration_ms = wall.elapsed().as_millis() as u64;
        log::info!(correlation_id = report.correlation_id.as_str(), drain_reason:% = reasons,
            sent = report.sent, duplicate = report.duplicate, conflict = report.conflict,
            invalid = report.invalid, retry = report.retry, lease_lost = report.lease_lost,
            remaining_pending = report.remaining_pending, duration_ms = report.duration_ms,
            stop = stop_label(report.stop.as_ref()), last_error = report.last_error.as_deref().unwrap_or("");
            "drain run finished");
        Ok(report)
    }

    /// The outcome of each sent sale, from the (checked) answer to its request. Only a server `RETRY`
    /// gives a sale backoff; after a failed request its sales are due again at the run's start.
    fn outcomes(
        &self,
        result: Result<Vec<crate::protocol::PushResult>, TransportError>,
        sendable: &[&Claimed],
        report: &DrainReport,
        rng: &mut impl rand::Rng,
    ) -> Vec<Outcome> {
        let now = self.outbox.clock().now_ms();
        let backoff = self.config.backoff;
        match result {
            Ok(results) => results
                .into_iter()
                .zip(sendable)
                .map(|(r, c)| {
                    let retries = c.server_retries.saturating_add(1);
                    outcome_of(r, now + backoff.delay_ms(retries, None, rng).max(1) as i64)
                })
                .collect(),
            Err(TransportError::TooLarge { code, message }) if sendable.len() <= 1 => {
                vec![Outcome::Invalid { code, message: format!("too large to send even alone: {message}") }]
            }
            Err(error) => {
                // Due again within this run (its start time), after the other due sales; the engine
                // decides when to try again if the run stops.
                let (code, message) = match &error {
                    TransportError::TooLarge { code, message } => (code.clone(), message.clone()),
                    other => (other.code().to_owned(), other.to_string()),
                };
                sendable
                    .iter()
                    .map(|_| Outcome::Retry {
                        from_server: false,
                        code: code.clone(),
                        message: message.clone(),
                        next_attempt_at_ms: report.started_at_ms,
                    })
                    .collect()
            }
        }
    }

    /// Sends one request while a heartbeat thread keeps the batch's leases alive. Returns the answer and
    /// the seqs whose lease was lost meanwhile.
    fn send_with_heartbeat(
        &self,
        request: &PushRequest,
        correlation_id: &str,
        leases: &[Lease],
    ) -> (Result<PushResponse, TransportError>, HashSet<i64>) {
        let stop = (Mutex::new(false), Condvar::new());
        let every = Duration::from_millis(self.config.heartbeat_ms);
        std::thread::scope(|scope| {
            let heartbeat =
                std::thread::Builder::new().name("possync-heartbeat".into()).spawn_scoped(scope, || {
                    let mut active: Vec<Lease> = leases.to_vec();
                    let mut lost = HashSet::new();
                    let mut stopped = stop.0.lock();
                    while !*stopped {
                        if !stop.1.wait_for(&mut stopped, every).timed_out() || *stopped {
                            break;
                        }
                        match self.outbox.heartbeat(&active, self.config.lease_ms) {
                            Ok(states) => {
                                let mut keep = Vec::with_capacity(active.len());
                                for (lease, state) in active.drain(..).zip(states) {
                                    match state {
                                        LeaseState::Held => keep.push(lease),
                                        LeaseState::Lost => {
                                            lost.insert(lease.seq);
                                        }
                                    }
                                }
                                active = keep;
                            }
                            Err(e) => log::warn!(error:% = e; "lease heartbeat failed"),
                        }
                    }
                    lost
                });
            let result = self.transport.push(request, correlation_id);
            *stop.0.lock() = true;
            stop.1.notify_all();
            let lost = match heartbeat {
                Ok(handle) => handle.join().unwrap_or_default(),
                Err(e) => {
                    log::warn!(error:% = e; "could not start the heartbeat thread");
                    HashSet::new()
                }
            };
            (result, lost)
        })
    }
}

/// Records what a failed request's verdict means for the run: a stop, or a warning that it goes on.
fn apply_verdict(report: &mut DrainReport, verdict: BatchVerdict, error: &TransportError, link: &LinkState) {
    match verdict {
        BatchVerdict::Continue => {
            if !matches!(error, TransportError::TooLarge { .. }) {
                log::warn!(correlation_id = report.correlation_id.as_str(), error:% = error,
                    failures_in_a_row = link.failures_in_a_row, batch_size = link.batch_size;
                    "request failed; the run goes on");
            } else {
                log::warn!(correlation_id = report.correlation_id.as_str(), batch_size = link.batch_size,
                    code = error.code(); "request too large; halving the batch");
            }
        }
        BatchVerdict::BackOff { .. } => report.stop = Some(DrainStop::Offline { error: error.clone() }),
        BatchVerdict::NeedsPerson if error.is_auth() => {
            report.stop = Some(DrainStop::AuthFailed { error: error.clone() })
        }
        BatchVerdict::NeedsPerson => report.stop = Some(DrainStop::TlsFailed { error: error.clone() }),
    }
}

/// The push request of a batch, with the outbox's backlog report and each sale's outbox sequence
/// number. A claimed sale whose stored payload is not JSON (a damaged file) is left out and returned
/// with the reason, to be marked invalid instead of sent.
fn build_request<'c>(
    device_id: &str,
    claimed: &'c [Claimed],
    report: Option<BacklogReport>,
) -> (PushRequest, Vec<&'c Claimed>, Vec<(&'c Claimed, String)>) {
    let mut sendable = Vec::with_capacity(claimed.len());
    let mut broken = Vec::new();
    let mut transactions = Vec::with_capacity(claimed.len());
    for c in claimed {
        match RawValue::from_string(c.payload.clone()) {
            Ok(payload) => {
                transactions.push(PushTransaction {
                    client_tx_id: c.lease.client_tx_id.clone(),
                    payload_hash_version: c.payload_hash_version,
                    payload_sha256: c.payload_sha256.clone(),
                    attempt: c.attempt,
                    payload,
                    outbox_seq: Some(c.lease.seq),
                });
                sendable.push(c);
            }
            Err(e) => broken.push((c, format!("stored payload is not JSON: {e}"))),
        }
    }
    (PushRequest { device_id: device_id.to_owned(), transactions, report }, sendable, broken)
}

/// The per-sale results of a 200 answer, checked against the request (same count, same ids, in order).
fn check_response(
    request: &PushRequest,
    response: PushResponse,
) -> Result<Vec<crate::protocol::PushResult>, TransportError> {
    if response.results.len() != request.transactions.len() {
        return Err(TransportError::BadResponse(format!(
            "{} results for {} sales",
            response.results.len(),
            request.transactions.len()
        )));
    }
    for (result, tx) in response.results.iter().zip(&request.transactions) {
        if result.client_tx_id != tx.client_tx_id {
            return Err(TransportError::BadResponse(format!(
                "result for {} where {} was expected",
                result.client_tx_id, tx.client_tx_id
            )));
        }
    }
    Ok(response.results)
}

/// The outbox outcome of one per-sale result.
fn outcome_of(result: crate::protocol::PushResult, next_attempt_at_ms: i64) -> Outcome {
    let code = result.code.unwrap_or_default();
    let message = result.message.unwrap_or_default();
    match result.status {
        PushStatus::Ok => Outcome::Sent { duplicate: false, server_tx_id: result.server_tx_id },
        PushStatus::Duplicate => Outcome::Sent { duplicate: true, server_tx_id: result.server_tx_id },
        PushStatus::Conflict => Outcome::Conflict { code, message },
        PushStatus::Invalid => Outcome::Invalid { code, message },
        PushStatus::Retry => Outcome::Retry { from_server: true, code, message, next_attempt_at_ms },
    }
}

/// The wire name of an outcome, as logged in `result`.
fn result_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Sent { duplicate: false, .. } => "OK",
        Outcome::Sent { duplicate: true, .. } => "DUPLICATE",
        Outcome::Conflict { .. } => "CONFLICT",
        Outcome::Invalid { .. } => "INVALID",
        Outcome::Retry { from_server: true, .. } => "RETRY",
        Outcome::Retry { from_server: false, .. } => "TRANSPORT",
    }
}

fn tally(report: &mut DrainReport, outcome: &Outcome) {
    match outcome {
        Outcome::Sent { duplicate: false, .. } => report.sent += 1,
        Outcome::Sent { duplicate: true, .. } => report.duplicate += 1,
        Outcome::Conflict { .. } => report.conflict += 1,
        Outcome::Invalid { .. } => report.invalid += 1,
        Outcome::Retry { code, message, .. } => {
            report.retry += 1;
            report.last_error = Some(format!("{code}: {message}"));
        }
    }
}

/// One structured log record per send attempt of a sale. Never the payload, never the device token.
fn log_attempt(
    correlation_id: &str,
    reasons: DrainReasons,
    claimed: &Claimed,
    latency_ms: u64,
    outcome: &Outcome,
) {
    let result = result_label(outcome);
    let code = match outcome {
        Outcome::Conflict { code, .. } | Outcome::Invalid { code, .. } | Outcome::Retry { code, .. } => {
            code.as_str()
        }
        Outcome::Sent { .. } => "",
    };
    let level = match outcome {
        Outcome::Sent { .. } => log::Level::Info,
        _ => log::Level::Warn,
    };
    log::log!(target: "possync::send", level,
        correlation_id = correlation_id,
        client_tx_id = claimed.lease.client_tx_id.as_str(),
        attempt = claimed.attempt,
        lease_token = claimed.lease.token.as_str(),
        drain_reason:% = reasons,
        latency_ms = latency_ms,
        result = result,
        code = code;
        "send attempt");
}

fn stop_label(stop: Option<&DrainStop>) -> &'static str {
    match stop {
        None => "",
        Some(DrainStop::Offline { .. }) => "offline",
        Some(DrainStop::AuthFailed { .. }) => "auth_failed",
        Some(DrainStop::TlsFailed { .. }) => "tls_failed",
        Some(DrainStop::LeaseLost) => "lease_lost",
    }
}
