//! One drain run: claim due sales, send them in batches, finalize each result, until nothing due is
//! left or the link is judged down.
//!
//! [`Drainer::drain`] is the one entry point. While a batch is on the wire the run's one heartbeat
//! thread extends its leases; a lease lost to another sender is never finalized, and the run stops
//! after that batch. Results map to outbox states as the
//! protocol says: `OK`/`DUPLICATE` ⇒ sent, `CONFLICT`/`INVALID` ⇒ terminal, `RETRY` ⇒ pending with
//! per-sale backoff (growing with the sale's `server_retries`). A failed request is the link's fault,
//! not the sales': its batch goes back due at once (at the run's start, so it is taken again after the
//! other due sales) without counting against them. [`judge`] turns a batch's answer into data: each
//! sale's outcome, the next batch size, and whether the run stops ([`crate::link::judge_batch`]:
//! `DrainStop::Offline` after `link.failures_before_backoff` failures in a row or a `Retry-After`;
//! the engine then backs off).
//! 401/403 and TLS failures stop it for a person; 413 halves the batch and goes on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::value::RawValue;

use crate::backlog::BacklogCache;
use crate::clock::Clock;
use crate::config::SyncConfig;
use crate::error::{ConfigError, StorageError};
use crate::link::{judge_batch, BatchVerdict, LinkState, RequestResult};
use crate::outbox::{Claimed, Finalized, Lease, LeaseState, Outbox, Outcome};
use crate::protocol::{
    BacklogReport, PushRequest, PushResponse, PushResult, PushStatus, PushTransaction, Resend,
};
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
    /// Sales the server had acknowledged and no longer held (its database restored or failed over),
    /// queued again in this run to be sent under their own id and hash.
    pub resent: u64,
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
    /// An empty report of a run that starts now.
    fn new(correlation_id: String, reasons: DrainReasons, started_at_ms: i64) -> Self {
        DrainReport {
            correlation_id,
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
            resent: 0,
            remaining_pending: 0,
            oldest_pending_age_ms: None,
            last_error: None,
            stop: None,
        }
    }

    /// Sales settled as sent in this run (`OK` + `DUPLICATE`).
    pub fn settled(&self) -> u64 {
        self.sent + self.duplicate
    }

    /// Counts one written outcome.
    fn tally(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Sent { duplicate: false, .. } => self.sent += 1,
            Outcome::Sent { duplicate: true, .. } => self.duplicate += 1,
            Outcome::Conflict { .. } => self.conflict += 1,
            Outcome::Invalid { .. } => self.invalid += 1,
            Outcome::Retry { code, message, .. } => {
                self.retry += 1;
                self.last_error = Some(format!("{code}: {message}"));
            }
        }
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

    /// Runs until nothing due remains or the run must stop (see the module docs); `hooks` get the
    /// progress after each batch and may stop the run between batches (the batch in flight is
    /// finished and finalized first). The one entry point of a run.
    ///
    /// # Errors
    /// A storage error of the outbox. Transport failures are not errors: they end up in the report.
    pub fn drain(
        &self,
        reasons: DrainReasons,
        mut hooks: DrainHooks<'_>,
    ) -> Result<DrainReport, StorageError> {
        if reasons.contains(DrainReason::Manual) || reasons.contains(DrainReason::Online) {
            // "Sync now" and "back online" must not wait out per-sale backoff from the outage.
            let moved = self.outbox.make_all_due()?;
            if moved > 0 {
                log::info!(drain_reason:% = reasons, sales = moved; "backoff skipped for pending sales");
            }
        }
        let heartbeat = Arc::new(Heartbeat::new(self.outbox.clock().clone(), self.config.heartbeat_ms));
        let weak = Arc::downgrade(&heartbeat);
        self.outbox.clock().on_advance(Box::new(move || weak.upgrade().map(|h| h.poke()).is_some()));
        let heartbeat = &*heartbeat;
        std::thread::scope(|scope| {
            let beating = std::thread::Builder::new()
                .name("possync-heartbeat".into())
                .spawn_scoped(scope, || heartbeat.run(self.outbox, self.config.lease_ms));
            if let Err(e) = &beating {
                log::warn!(error:% = e; "could not start the heartbeat thread; leases are not extended");
            }
            let result = self.run(reasons, &mut hooks, heartbeat);
            heartbeat.finish();
            result
        })
    }

    /// One run as steps: claim a batch ([`Drainer::claim`]), send it ([`Drainer::send`]), count the
    /// request ([`Run::count_request`]), write the answer under the leases ([`Drainer::apply`]), count
    /// the sales ([`Run::count_sales`]), queue again what the server lacks; with nothing due, ask once
    /// whether the server lacks acknowledged sales ([`Drainer::ask_for_lost_sales`]).
    fn run(
        &self,
        reasons: DrainReasons,
        hooks: &mut DrainHooks<'_>,
        heartbeat: &Heartbeat,
    ) -> Result<DrainReport, StorageError> {
        let mut run = self.start_run(reasons)?;
        while run.report.stop.is_none() && !hooks.stop.as_ref().is_some_and(|stop| stop()) {
            let claimed = self.claim(&run)?;
            if claimed.is_empty() {
                match self.ask_for_lost_sales(&mut run)? {
                    Asked::Requeued => continue,
                    Asked::Done => break,
                }
            }
            let sent = self.send(&mut run, &claimed, heartbeat);
            run.count_request(&sent);
            let applied = self.apply(&run, sent.settled, &sent.lost, sent.latency_ms)?;
            run.count_sales(&applied, sent.latency_ms);
            self.requeue(&mut run, sent.resend.as_ref())?;
            if run.report.lease_lost > 0 && run.report.stop.is_none() {
                run.report.stop = Some(DrainStop::LeaseLost);
            }
            run.done += claimed.len() as u64;
            if let Some(progress) = hooks.progress.as_mut() {
                progress(run.done.min(run.total.max(run.done)), run.total.max(run.done));
            }
        }
        self.end_run(run)
    }

    /// A run starting now, with the batch size the last run ended with.
    fn start_run(&self, reasons: DrainReasons) -> Result<Run, StorageError> {
        let started_at_ms = self.outbox.clock().now_ms();
        let wall = Instant::now();
        let correlation_id = uuid::Uuid::now_v7().to_string();
        let total = self.outbox.counts()?.unsent();
        let carried = (*self.batch_size.lock()).clamp(1, self.config.batch_size);
        Ok(Run {
            report: DrainReport::new(correlation_id, reasons, started_at_ms),
            wall,
            link: LinkState { batch_size: carried, ..LinkState::new(self.config.batch_size) },
            done: 0,
            total,
            rng: rand::rng(),
            backlog: BacklogCache::default(),
            recovery: Recovery::default(),
        })
    }

    /// Claims the next batch of due sales (due at the run's start at the latest).
    fn claim(&self, run: &Run) -> Result<Vec<Claimed>, StorageError> {
        self.outbox.claim_due_by(
            &self.owner,
            run.link.batch_size,
            self.config.lease_ms,
            run.report.started_at_ms,
        )
    }

    /// Nothing to send: one report-only request per run (unless the run answered one already), so
    /// that a server that lost sales it had acknowledged (a restored backup, a promoted standby) asks
    /// for them again; they are queued again at once.
    fn ask_for_lost_sales(&self, run: &mut Run) -> Result<Asked, StorageError> {
        if run.report.requests_ok > 0 || run.recovery.checked {
            return Ok(Asked::Done);
        }
        run.recovery.checked = true;
        let now = self.outbox.clock().now_ms();
        let Some(backlog) = run.backlog.current(self.outbox, now) else { return Ok(Asked::Done) };
        if backlog.acked_seq.is_none() {
            return Ok(Asked::Done);
        }
        let request = PushRequest {
            device_id: self.config.device_id.clone(),
            transactions: vec![],
            report: Some(backlog),
        };
        let correlation_id = run.report.correlation_id.clone();
        match self.transport.push(&request, &correlation_id) {
            Ok(response) => {
                run.report.requests_ok += 1;
                let queued = run.recovery.requeue(self.outbox, response.resend.as_ref(), &correlation_id)?;
                run.report.resent += queued;
                if queued == 0 {
                    return Ok(Asked::Done);
                }
                run.backlog = BacklogCache::default();
                Ok(Asked::Requeued)
            }
            Err(e) => {
                // Nothing was due: the link is not judged on it; the next run asks again.
                log::debug!(correlation_id = correlation_id.as_str(), error:% = e;
                    "report-only request failed; nothing was due");
                run.report.requests_failed += 1;
                run.report.last_error = Some(e.to_string());
                Ok(Asked::Done)
            }
        }
    }

    /// Sends a claimed batch (its leases extended while it is on the wire) and judges the answer:
    /// each sale's outcome (a stored payload that is not JSON is `corrupt_payload`, never sent), the
    /// leases lost meanwhile, and how the request went.
    fn send<'c>(&self, run: &mut Run, claimed: &'c [Claimed], heartbeat: &Heartbeat) -> SentBatch<'c> {
        let backlog = run.backlog.current(self.outbox, self.outbox.clock().now_ms());
        let (request, sendable, broken) = build_request(&self.config.device_id, claimed, backlog);
        let mut settled: Vec<(&Claimed, Outcome)> = broken
            .into_iter()
            .map(|(c, reason)| (c, Outcome::Invalid { code: "corrupt_payload".into(), message: reason }))
            .collect();
        if sendable.is_empty() {
            return SentBatch { settled, lost: HashSet::new(), latency_ms: 0, resend: None, request: None };
        }
        let sent_at = Instant::now();
        heartbeat.begin(sendable.iter().map(|c| c.lease.clone()).collect());
        let result = self.transport.push(&request, &run.report.correlation_id);
        let lost = heartbeat.end();
        let latency_ms = sent_at.elapsed().as_millis() as u64;
        let mut resend = None;
        let result = result.and_then(|response| {
            resend = response.resend.clone();
            check_response(&request, response)
        });
        let error = result.as_ref().err().cloned();
        let now = self.outbox.clock().now_ms();
        let judged =
            judge(result, &sendable, run.link, now, run.report.started_at_ms, self.config, &mut run.rng);
        settled.extend(sendable.iter().copied().zip(judged.outcomes));
        let request = Request {
            result: judged.request,
            error,
            stop: judged.stop,
            link: judged.link,
            sales: sendable.len(),
        };
        SentBatch { settled, lost, latency_ms, resend, request: Some(request) }
    }

    /// Writes each outcome under its lease: an outcome whose lease was lost on the wire (`lost`, logged
    /// here) or is found lost at the write is dropped. Returns each outcome with what became of it:
    /// the ones lost on the wire first, then the others in order.
    fn apply<'c>(
        &self,
        run: &Run,
        settled: Vec<(&'c Claimed, Outcome)>,
        lost: &HashSet<i64>,
        latency_ms: u64,
    ) -> Result<Vec<Applied<'c>>, StorageError> {
        let (correlation_id, reasons) = (&run.report.correlation_id, run.report.reasons);
        let mut applied = Vec::with_capacity(settled.len());
        let mut to_write = Vec::with_capacity(settled.len());
        let mut written_for = Vec::with_capacity(settled.len());
        for (c, outcome) in settled {
            if lost.contains(&c.lease.seq) {
                log_send(SendRecord::LeaseLost, correlation_id, reasons, c, latency_ms, &outcome);
                applied.push(Applied { claimed: c, outcome, fate: Fate::LostOnTheWire });
                continue;
            }
            to_write.push((c.lease.clone(), outcome));
            written_for.push(c);
        }
        let written = self.outbox.finalize_all(&to_write)?;
        for (((_, outcome), finalized), c) in to_write.into_iter().zip(written).zip(written_for) {
            let fate = if finalized == Finalized::LeaseLost { Fate::LostAtWrite } else { Fate::Written };
            applied.push(Applied { claimed: c, outcome, fate });
        }
        Ok(applied)
    }

    /// Queues again the sales the server asked for and lacks (see [`Recovery`]).
    fn requeue(&self, run: &mut Run, resend: Option<&Resend>) -> Result<(), StorageError> {
        let queued = run.recovery.requeue(self.outbox, resend, &run.report.correlation_id)?;
        if queued > 0 {
            run.report.resent += queued;
            run.backlog = BacklogCache::default();
        }
        Ok(())
    }

    /// Keeps the batch size for the next run and completes the report with what is left unsent.
    fn end_run(&self, run: Run) -> Result<DrainReport, StorageError> {
        let Run { mut report, link, wall, .. } = run;
        *self.batch_size.lock() = link.batch_size;
        let counts = self.outbox.counts()?;
        report.remaining_pending = counts.unsent();
        report.oldest_pending_age_ms = self.outbox.oldest_unsent_age_ms()?;
        report.duration_ms = wall.elapsed().as_millis() as u64;
        log::info!(correlation_id = report.correlation_id.as_str(), drain_reason:% = report.reasons,
            sent = report.sent, duplicate = report.duplicate, conflict = report.conflict,
            invalid = report.invalid, retry = report.retry, lease_lost = report.lease_lost,
            resent = report.resent,
            remaining_pending = report.remaining_pending, duration_ms = report.duration_ms,
            stop = stop_label(report.stop.as_ref()), last_error = report.last_error.as_deref().unwrap_or("");
            "drain run finished");
        Ok(report)
    }
}

/// What one run carries from batch to batch.
struct Run {
    /// The report so far.
    report: DrainReport,
    /// When the run started, for its duration.
    wall: Instant,
    /// Failures in a row and the batch size.
    link: LinkState,
    /// Sales claimed so far, and the unsent sales at the start (for the progress hook).
    done: u64,
    total: u64,
    /// Jitter of the sales' backoff.
    rng: rand::rngs::ThreadRng,
    /// The backlog report sent with each request.
    backlog: BacklogCache,
    /// Acknowledged sales the server asked for again.
    recovery: Recovery,
}

impl Run {
    /// Counts a batch's request (answered or failed), keeps the link's new state and the run's stop,
    /// and logs a failed request.
    fn count_request(&mut self, sent: &SentBatch<'_>) {
        let Some(request) = &sent.request else { return };
        match request.result {
            RequestResult::Answered => self.report.requests_ok += 1,
            RequestResult::TimedOut | RequestResult::Failed { .. } => self.report.requests_failed += 1,
            RequestResult::TooLarge | RequestResult::NeedsPerson => {}
        }
        if let Some(error) = &request.error {
            self.report.last_error = Some(error.to_string());
            let stop = request.stop.as_ref();
            log_request_failed(&self.report.correlation_id, error, &request.link, stop, request.sales);
        }
        self.report.stop = request.stop.clone();
        self.link = request.link;
    }

    /// Counts a batch's sales as they were written (one log record each), and logs the request's
    /// `RETRY`s and lost leases once.
    fn count_sales(&mut self, applied: &[Applied<'_>], latency_ms: u64) {
        let (correlation_id, reasons) = (self.report.correlation_id.clone(), self.report.reasons);
        let correlation_id = correlation_id.as_str();
        let mut batch = BatchTally::default();
        for a in applied {
            match a.fate {
                // Logged before the write.
                Fate::LostOnTheWire => batch.note_lost(),
                Fate::LostAtWrite => {
                    batch.note_lost();
                    log_send(
                        SendRecord::LeaseLost,
                        correlation_id,
                        reasons,
                        a.claimed,
                        latency_ms,
                        &a.outcome,
                    );
                }
                Fate::Written => {
                    batch.note(&a.outcome);
                    log_send(SendRecord::Attempt, correlation_id, reasons, a.claimed, latency_ms, &a.outcome);
                    self.report.tally(&a.outcome);
                    if !matches!(a.outcome, Outcome::Retry { .. }) {
                        self.backlog.settled(1);
                    }
                }
            }
        }
        self.report.lease_lost += batch.lease_lost;
        batch.log(&self.report.correlation_id);
    }
}

/// What asking for lost sales came to.
enum Asked {
    /// Sales were queued again: the run goes on with them.
    Requeued,
    /// Nothing to queue again (or the question was asked already, or failed): the run ends.
    Done,
}

/// A batch sent and its answer judged ([`Drainer::send`]).
struct SentBatch<'c> {
    /// Each claimed sale with the outcome to write.
    settled: Vec<(&'c Claimed, Outcome)>,
    /// Seqs whose lease was lost while the batch was on the wire.
    lost: HashSet<i64>,
    /// How long the request took, in ms (0 when nothing was sent).
    latency_ms: u64,
    /// The sales the server asked to be sent again.
    resend: Option<Resend>,
    /// How the request went; `None` when nothing could be sent.
    request: Option<Request>,
}

/// How a batch's request went, judged ([`judge`]).
struct Request {
    result: RequestResult,
    /// The failure, when it failed.
    error: Option<TransportError>,
    stop: Option<DrainStop>,
    /// The link state for the next batch.
    link: LinkState,
    /// Sales sent in it.
    sales: usize,
}

/// One sale's outcome and what became of it ([`Drainer::apply`]).
struct Applied<'c> {
    claimed: &'c Claimed,
    outcome: Outcome,
    fate: Fate,
}

/// Whether an outcome was written, or dropped with its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Written.
    Written,
    /// Dropped: the lease was lost while the batch was on the wire (logged then).
    LostOnTheWire,
    /// Dropped: the lease was found lost at the write.
    LostAtWrite,
}

/// What a run did about acknowledged sales the server says it lacks ([`PushResponse::resend`]).
#[derive(Debug, Default)]
struct Recovery {
    /// The run sent its one report-only request.
    checked: bool,
    /// Ranges already queued again in this run: asked again, they are not queued twice (a server
    /// that keeps asking cannot keep a run going).
    done: HashSet<[i64; 2]>,
}

impl Recovery {
    /// Queues again the sales of `resend` that belong to this outbox and were not queued in this run
    /// yet; returns how many.
    fn requeue(
        &mut self,
        outbox: &Outbox,
        resend: Option<&Resend>,
        correlation_id: &str,
    ) -> Result<u64, StorageError> {
        let Some(resend) = resend else { return Ok(0) };
        if resend.outbox_id != outbox.outbox_id()? {
            log::warn!(correlation_id = correlation_id, outbox_id = resend.outbox_id.as_str();
                "the server asked for sales of another outbox; ignored");
            return Ok(0);
        }
        let ranges: Vec<(i64, i64)> = resend
            .ranges
            .iter()
            .take(crate::protocol::MAX_RESEND_RANGES)
            .filter(|r| r[0] >= 1 && r[0] <= r[1] && self.done.insert(**r))
            .map(|r| (r[0], r[1]))
            .collect();
        if ranges.is_empty() {
            return Ok(0);
        }
        let queued = outbox.requeue_acknowledged(&ranges)?;
        log::warn!(correlation_id = correlation_id, ranges = ranges.len(), sales = queued,
            first_seq = ranges[0].0, last_seq = ranges[ranges.len() - 1].1;
            "the server lacks sales it had acknowledged; sending them again");
        Ok(queued)
    }
}

/// Hooks of a run (see [`Drainer::drain`]); `DrainHooks::default()` for none.
#[derive(Default)]
pub struct DrainHooks<'h> {
    /// Called after each batch with `(done, total)`, `total` being the unsent sales at the start.
    pub progress: Option<&'h mut dyn FnMut(u64, u64)>,
    /// Asked between batches: `true` ends the run after the batch in flight.
    pub stop: Option<&'h dyn Fn() -> bool>,
}

/// What one batch's answer means for the run, decided by [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// The outcome of each sent sale, in request order.
    pub outcomes: Vec<Outcome>,
    /// How the request counts for the link.
    pub request: RequestResult,
    /// Why the run stops after this batch, if it does.
    pub stop: Option<DrainStop>,
    /// The link state for the next batch (failures in a row, batch size).
    pub link: LinkState,
}

/// Judges the (checked) answer to a request of `sendable` sales: each sale's outcome, the request's
/// count, the run's stop and the next batch size. Only a server `RETRY` gives a sale backoff (its
/// `server_retries` + 1, jittered by `rng`); after a failed request its sales are due again at the
/// run's start (`run_started_ms`), after the other due sales. Pure but for `rng`.
pub fn judge(
    result: Result<Vec<PushResult>, TransportError>,
    sendable: &[&Claimed],
    link: LinkState,
    now_ms: i64,
    run_started_ms: i64,
    config: &SyncConfig,
    rng: &mut impl rand::Rng,
) -> Judged {
    let request = match &result {
        Ok(_) => RequestResult::Answered,
        Err(e) => e.request_result(),
    };
    let (link, verdict) = judge_batch(&config.link, link, request, sendable.len());
    let stop = result.as_ref().err().and_then(|error| match verdict {
        BatchVerdict::Continue => None,
        BatchVerdict::BackOff { .. } => Some(DrainStop::Offline { error: error.clone() }),
        BatchVerdict::NeedsPerson if error.is_auth() => Some(DrainStop::AuthFailed { error: error.clone() }),
        BatchVerdict::NeedsPerson => Some(DrainStop::TlsFailed { error: error.clone() }),
    });
    let outcomes = match result {
        Ok(results) => results
            .into_iter()
            .zip(sendable)
            .map(|(r, c)| {
                let retries = c.server_retries.saturating_add(1);
                let delay = config.backoff.delay_ms(retries, None, rng).max(1);
                outcome_of(r, now_ms.saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)))
            })
            .collect(),
        Err(TransportError::TooLarge { code, message }) if sendable.len() <= 1 => {
            vec![Outcome::Invalid { code, message: format!("too large to send even alone: {message}") }]
        }
        Err(error) => {
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
                    next_attempt_at_ms: run_started_ms,
                })
                .collect()
        }
    };
    Judged { outcomes, request, stop, link }
}

/// The run's one heartbeat thread: while a batch is on the wire it extends the batch's leases every
/// `heartbeat_ms` on the outbox's clock and notes the ones lost to another sender; between batches
/// it waits. A [`crate::clock::ManualClock`] moved by a test wakes it like time passing.
struct Heartbeat {
    clock: Arc<dyn Clock>,
    every_ms: i64,
    state: Mutex<Beat>,
    wake: Condvar,
}

#[derive(Default)]
struct Beat {
    /// Leases of the batch on the wire (empty between batches).
    active: Vec<Lease>,
    /// Seqs of `active` lost so far.
    lost: HashSet<i64>,
    /// Bumped at each batch's start and end, so that a late heartbeat of an earlier batch is ignored.
    batch: u64,
    /// When the next beat is due, on the clock's monotonic reading.
    next_beat_ms: i64,
    finished: bool,
}

impl Heartbeat {
    fn new(clock: Arc<dyn Clock>, every_ms: u64) -> Self {
        let every_ms = i64::try_from(every_ms).unwrap_or(i64::MAX);
        Heartbeat { clock, every_ms, state: Mutex::new(Beat::default()), wake: Condvar::new() }
    }

    /// A batch goes on the wire with these leases; the first beat is `heartbeat_ms` from now.
    fn begin(&self, leases: Vec<Lease>) {
        let mut beat = self.state.lock();
        beat.active = leases;
        beat.lost.clear();
        beat.batch += 1;
        beat.next_beat_ms = self.clock.monotonic_ms().saturating_add(self.every_ms);
        self.wake.notify_all();
    }

    /// The batch's answer is in: returns the seqs whose lease was lost meanwhile.
    fn end(&self) -> HashSet<i64> {
        let mut beat = self.state.lock();
        beat.active.clear();
        beat.batch += 1;
        self.wake.notify_all();
        std::mem::take(&mut beat.lost)
    }

    /// Wakes the thread to look at the clock again.
    fn poke(&self) {
        let _beat = self.state.lock();
        self.wake.notify_all();
    }

    /// The run is over: the thread returns.
    fn finish(&self) {
        self.state.lock().finished = true;
        self.wake.notify_all();
    }

    fn run(&self, outbox: &Outbox, lease_ms: u64) {
        let mut beat = self.state.lock();
        while !beat.finished {
            if beat.active.is_empty() {
                self.wake.wait(&mut beat);
                continue;
            }
            let now = self.clock.monotonic_ms();
            if now < beat.next_beat_ms {
                let ms = u64::try_from(beat.next_beat_ms - now).unwrap_or(1);
                self.wake.wait_for(&mut beat, Duration::from_millis(ms));
                continue;
            }
            beat.next_beat_ms = now.saturating_add(self.every_ms);
            let (leases, batch) = (beat.active.clone(), beat.batch);
            let states = parking_lot::MutexGuard::unlocked(&mut beat, || outbox.heartbeat(&leases, lease_ms));
            match states {
                Ok(states) if beat.batch == batch => {
                    for (lease, state) in leases.iter().zip(states) {
                        if state == LeaseState::Lost {
                            beat.lost.insert(lease.seq);
                        }
                    }
                    let lost = &beat.lost;
                    let still: Vec<Lease> = leases.into_iter().filter(|l| !lost.contains(&l.seq)).collect();
                    beat.active = still;
                }
                Ok(_) => {} // the batch ended meanwhile
                Err(e) => log::warn!(error:% = e; "lease heartbeat failed"),
            }
        }
    }
}

/// The one WARN of a request that failed as a whole (its sales' own records are DEBUG): the run goes
/// on (fewer than K failures in a row, or a 413 that halves the batch) or stops with `stop`.
fn log_request_failed(
    correlation_id: &str,
    error: &TransportError,
    link: &LinkState,
    stop: Option<&DrainStop>,
    sales: usize,
) {
    if matches!(error, TransportError::TooLarge { .. }) {
        log::warn!(correlation_id = correlation_id, batch_size = link.batch_size, code = error.code(),
            sales = sales; "request too large; halving the batch");
    } else if stop.is_none() {
        log::warn!(correlation_id = correlation_id, error:% = error, code = error.code(), sales = sales,
            failures_in_a_row = link.failures_in_a_row, batch_size = link.batch_size;
            "request failed; the run goes on");
    } else {
        log::warn!(correlation_id = correlation_id, error:% = error, code = error.code(), sales = sales,
            retry_after_ms = error.retry_after_ms().unwrap_or(0), stop = stop_label(stop);
            "request failed; the run stops");
    }
}

/// What the sales of one request came to, for the request's own log lines: the per-sale records of
/// a `RETRY` or a lost lease are DEBUG, and the request logs one WARN for each kind instead.
#[derive(Debug, Default)]
struct BatchTally {
    /// Sales the server answered `RETRY` (in a 200 answer), and the first one's code.
    retried: u64,
    retry_code: Option<String>,
    /// Sales whose answer was dropped because their lease was lost meanwhile.
    lease_lost: u64,
}

impl BatchTally {
    fn note(&mut self, outcome: &Outcome) {
        if let Outcome::Retry { from_server: true, code, .. } = outcome {
            self.retried += 1;
            self.retry_code.get_or_insert_with(|| code.clone());
        }
    }

    fn note_lost(&mut self) {
        self.lease_lost += 1;
    }

    fn log(&self, correlation_id: &str) {
        if self.retried > 0 {
            log::warn!(correlation_id = correlation_id, sales = self.retried,
                code = self.retry_code.as_deref().unwrap_or("");
                "sales answered RETRY by the server; sent again later");
        }
        if self.lease_lost > 0 {
            log::warn!(correlation_id = correlation_id, sales = self.lease_lost;
                "leases lost during send; their answers dropped");
        }
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
fn check_response(request: &PushRequest, response: PushResponse) -> Result<Vec<PushResult>, TransportError> {
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
fn outcome_of(result: PushResult, next_attempt_at_ms: i64) -> Outcome {
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

/// What a send record says: the attempt's answer was written, or dropped with a lost lease.
#[derive(Clone, Copy)]
enum SendRecord {
    Attempt,
    LeaseLost,
}

/// One structured log record per send attempt of a sale, with the seven fields of every attempt
/// (`result` is what the answer said, also when it was dropped because another sender took the lease
/// over meanwhile). Never the payload, never the device token.
///
/// Its level: INFO for a sale sent (`OK`, `DUPLICATE`), WARN for a sale that needs a person
/// (`CONFLICT`, `INVALID`: once per sale, it is final), DEBUG for the rest (`RETRY`, `TRANSPORT`,
/// an answer dropped with a lost lease), which an app may leave off in production: the request they
/// were in logs one WARN for them ([`log_request_failed`], [`BatchTally`]), not one per sale.
fn log_send(
    record: SendRecord,
    correlation_id: &str,
    reasons: DrainReasons,
    claimed: &Claimed,
    latency_ms: u64,
    outcome: &Outcome,
) {
    let (level, message) = match (record, outcome) {
        (SendRecord::Attempt, Outcome::Sent { .. }) => (log::Level::Info, "send attempt"),
        (SendRecord::Attempt, Outcome::Conflict { .. } | Outcome::Invalid { .. }) => {
            (log::Level::Warn, "send attempt")
        }
        (SendRecord::Attempt, Outcome::Retry { .. }) => (log::Level::Debug, "send attempt"),
        (SendRecord::LeaseLost, _) => (log::Level::Debug, "lease lost during send; result dropped"),
    };
    log::log!(target: "possync::send", level,
        correlation_id = correlation_id,
        client_tx_id = claimed.lease.client_tx_id.as_str(),
        attempt = claimed.attempt,
        lease_token = claimed.lease.token.as_str(),
        drain_reason:% = reasons,
        latency_ms = latency_ms,
        result = outcome.label(),
        code = outcome.code();
        "{message}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Lease;
    use rand::SeedableRng;

    fn claimed(seq: i64, server_retries: u32) -> Claimed {
        Claimed {
            lease: Lease { seq, client_tx_id: format!("s-{seq}"), token: "t".into() },
            attempt: 1,
            payload: "{}".into(),
            payload_sha256: String::new(),
            payload_hash_version: 1,
            server_retries,
        }
    }

    fn result(id: &str, status: PushStatus) -> PushResult {
        PushResult {
            client_tx_id: id.into(),
            status,
            code: Some("c".into()),
            message: None,
            server_tx_id: None,
        }
    }

    fn config() -> SyncConfig {
        let mut c = SyncConfig::new("http://127.0.0.1:1", "pst_x", "till-1");
        c.backoff = crate::backoff::BackoffPolicy { base_ms: 1_000, cap_ms: 8_000 };
        c
    }

    const NOW: i64 = 1_000_000;
    const RUN_START: i64 = 999_000;

    #[test]
    fn an_answer_gives_each_sale_its_outcome_and_only_retry_backs_off_by_the_sales_own_count() {
        let (a, b, c) = (claimed(1, 0), claimed(2, 3), claimed(3, 0));
        let answers = vec![
            result("s-1", PushStatus::Ok),
            result("s-2", PushStatus::Retry),
            result("s-3", PushStatus::Conflict),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let judged =
            judge(Ok(answers), &[&a, &b, &c], LinkState::new(50), NOW, RUN_START, &config(), &mut rng);
        assert_eq!((judged.request, judged.stop.clone()), (RequestResult::Answered, None));
        assert_eq!(
            judged.outcomes.iter().map(Outcome::label).collect::<Vec<_>>(),
            ["OK", "RETRY", "CONFLICT"]
        );
        let Outcome::Retry { next_attempt_at_ms, from_server: true, .. } = judged.outcomes[1] else {
            panic!("{judged:?}")
        };
        // Its fourth RETRY: a ceiling of min(8 s, 1 s × 2^3) = 8 s.
        assert!((NOW + 1..=NOW + 8_000).contains(&next_attempt_at_ms), "{next_attempt_at_ms}");
    }

    #[test]
    fn a_failed_request_puts_its_sales_back_at_the_runs_start_and_stops_after_k() {
        let sales = [claimed(1, 5), claimed(2, 0)];
        let sendable: Vec<&Claimed> = sales.iter().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut link = LinkState::new(50);
        for k in 1..=3 {
            let down = Err(TransportError::Unreachable("refused".into()));
            let judged = judge(down, &sendable, link, NOW, RUN_START, &config(), &mut rng);
            assert_eq!(judged.request, RequestResult::Failed { retry_after_ms: None });
            assert!(
                judged.outcomes.iter().all(|o| matches!(
                    o,
                    Outcome::Retry { from_server: false, next_attempt_at_ms: RUN_START, .. }
                )),
                "{judged:?}"
            );
            assert_eq!(judged.stop.is_some(), k == 3, "failure {k}: {judged:?}");
            link = judged.link;
        }
    }

    #[test]
    fn a_lone_sale_too_large_is_invalid_and_auth_stops_for_a_person() {
        let one = claimed(1, 0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let big = Err(TransportError::TooLarge { code: "body_too_large".into(), message: "1 MB".into() });
        let judged = judge(big, &[&one], LinkState::new(50), NOW, RUN_START, &config(), &mut rng);
        assert_eq!(judged.outcomes[0].label(), "INVALID");
        assert_eq!(judged.stop, None);
        let refused = TransportError::Unauthorized { code: "token_revoked".into(), message: String::new() };
        let judged =
            judge(Err(refused.clone()), &[&one], LinkState::new(50), NOW, RUN_START, &config(), &mut rng);
        assert_eq!(judged.stop, Some(DrainStop::AuthFailed { error: refused }));
    }
}
