//! A [`Transport`] wrapper that counts what a till was answered: per-sale statuses (with the codes of
//! `RETRY`), sheds (429 / 503) and transport failures. Chaos tests use it to prove that a fault
//! really reached the tills (e.g. lock timeouts came back as `RETRY lock_timeout`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use possync_core::protocol::{PushRequest, PushResponse, PushStatus};
use possync_core::transport::{Transport, TransportError};

/// What the tills sharing one [`Answers`] handle were told so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerCounts {
    /// Push requests sent.
    pub requests: u64,
    /// Sales answered `OK`.
    pub ok: u64,
    /// Sales answered `DUPLICATE`.
    pub duplicate: u64,
    /// Sales answered `CONFLICT` or `INVALID`.
    pub terminal: u64,
    /// Sales answered `RETRY`, by the server's code (`lock_timeout`, `database_unavailable`, ...).
    pub retry: BTreeMap<String, u64>,
    /// Requests shed with 429 or 503.
    pub overloaded: u64,
    /// Of those, by the answer's code (`overloaded`, `push_in_flight`, `database_unavailable`, ...).
    pub shed: BTreeMap<String, u64>,
    /// Requests that timed out.
    pub timeout: u64,
    /// Requests that failed in transport otherwise (refused, cut) or got another non-200 answer.
    pub transport: u64,
}

impl AnswerCounts {
    /// Sales answered `RETRY` with any code.
    pub fn retry_total(&self) -> u64 {
        self.retry.values().sum()
    }

    /// Requests that failed as a whole (shed, timed out or broken).
    pub fn failed_requests(&self) -> u64 {
        self.overloaded + self.timeout + self.transport
    }

    /// Answers that say the database could not be reached: sales answered `RETRY` with
    /// `database_unavailable`, `connection_lost` or `database_error`, and requests answered 503
    /// `database_unavailable`. A proxy's own 503 or a dropped connection is none of them.
    pub fn database_unreachable(&self) -> u64 {
        let retried: u64 = ["database_unavailable", "connection_lost", "database_error"]
            .iter()
            .map(|code| self.retry.get(*code).copied().unwrap_or(0))
            .sum();
        retried + self.shed.get("database_unavailable").copied().unwrap_or(0)
    }

    /// What was counted since `earlier` (a snapshot of the same handle).
    pub fn since(&self, earlier: &AnswerCounts) -> AnswerCounts {
        let minus = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            let mut left = now.clone();
            for (code, n) in then {
                if let Some(v) = left.get_mut(code) {
                    *v -= (*n).min(*v);
                }
            }
            left.retain(|_, n| *n > 0);
            left
        };
        AnswerCounts {
            requests: self.requests - earlier.requests,
            ok: self.ok - earlier.ok,
            duplicate: self.duplicate - earlier.duplicate,
            terminal: self.terminal - earlier.terminal,
            retry: minus(&self.retry, &earlier.retry),
            overloaded: self.overloaded - earlier.overloaded,
            shed: minus(&self.shed, &earlier.shed),
            timeout: self.timeout - earlier.timeout,
            transport: self.transport - earlier.transport,
        }
    }
}

/// A shared tally, cloned into every [`CountingTransport`] that reports to it.
#[derive(Debug, Clone, Default)]
pub struct Answers(Arc<Mutex<AnswerCounts>>);

impl Answers {
    /// A snapshot of the counts so far.
    pub fn snapshot(&self) -> AnswerCounts {
        self.0.lock().clone()
    }

    fn note(&self, result: &Result<PushResponse, TransportError>) {
        let mut c = self.0.lock();
        c.requests += 1;
        match result {
            Ok(response) => {
                for r in &response.results {
                    match r.status {
                        PushStatus::Ok => c.ok += 1,
                        PushStatus::Duplicate => c.duplicate += 1,
                        PushStatus::Conflict | PushStatus::Invalid => c.terminal += 1,
                        PushStatus::Retry => {
                            *c.retry.entry(r.code.clone().unwrap_or_default()).or_default() += 1
                        }
                    }
                }
            }
            Err(TransportError::Overloaded { code, .. }) => {
                c.overloaded += 1;
                *c.shed.entry(code.clone()).or_default() += 1;
            }
            Err(TransportError::Timeout(_)) => c.timeout += 1,
            Err(_) => c.transport += 1,
        }
    }
}

/// Forwards every push to `inner` and counts its outcome in an [`Answers`] tally.
pub struct CountingTransport<T> {
    inner: T,
    answers: Answers,
}

impl<T: Transport> CountingTransport<T> {
    /// Wraps `inner`, counting into `answers`.
    pub fn new(inner: T, answers: Answers) -> Self {
        CountingTransport { inner, answers }
    }
}

impl<T: Transport> Transport for CountingTransport<T> {
    fn push(&self, request: &PushRequest, correlation_id: &str) -> Result<PushResponse, TransportError> {
        let result = self.inner.push(request, correlation_id);
        self.answers.note(&result);
        result
    }
}
