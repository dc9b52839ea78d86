//! The link's health during a drain run, as data: [`judge_batch`] takes what one request came to and
//! says whether the run goes on, with how many sales in the next batch, or stops.
//!
//! The link is judged apart from the sales. A failed request (refused, timed out, cut, 5xx, 429/503, a
//! garbled answer) is the link's fault: its sales go back due at once and the run goes on, until
//! [`LinkPolicy::failures_before_backoff`] requests in a row have failed; then the run stops and the
//! engine backs off. Any answered request resets the count. A `Retry-After` ends the run at once (the
//! server asked to be left alone) and is the floor of the engine's wait. Timeouts halve the batch (a
//! slow link carries smaller requests in time); answers double it back up to its ceiling; a 413 lowers
//! the ceiling itself. 401/403 and TLS failures stop the run for a person.

/// The link policy of drain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Failed requests in a row after which a run stops and the engine backs off (at least 1).
    pub failures_before_backoff: u32,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy { failures_before_backoff: 3 }
    }
}

/// What one request came to, as far as the link is concerned (the transport says which for a failed
/// request: `TransportError::request_result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// A 200 whose results match the request: the link works (whatever each sale's answer).
    Answered,
    /// No complete answer within the request timeout.
    TimedOut,
    /// Refused, cut, 5xx, 429/503, or a 200 that is not a valid answer.
    Failed {
        /// The server's `Retry-After`, in ms, if it sent one.
        retry_after_ms: Option<u64>,
    },
    /// 413: too many sales in one request.
    TooLarge,
    /// 401/403 or a TLS failure: retrying cannot help until a person fixes the setup.
    NeedsPerson,
}

/// The link as one run has seen it so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Failed requests in a row (reset by any answer).
    pub failures_in_a_row: u32,
    /// Sales in the next request.
    pub batch_size: usize,
    /// Largest batch: the configured size, lowered by a 413.
    pub batch_ceiling: usize,
}

impl LinkState {
    /// A fresh state with batches of `batch_size`.
    pub fn new(batch_size: usize) -> Self {
        LinkState { failures_in_a_row: 0, batch_size: batch_size.max(1), batch_ceiling: batch_size.max(1) }
    }
}

/// What the run does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchVerdict {
    /// Send the next batch (of the state's `batch_size`).
    Continue,
    /// Stop; the engine backs off (at least `retry_after_ms` when given).
    BackOff {
        /// The server's `Retry-After`, in ms.
        retry_after_ms: Option<u64>,
    },
    /// Stop; a person must fix the token, the device or the TLS setup.
    NeedsPerson,
}

/// Judges one request of `sent` sales: the new link state and what the run does next. Pure.
pub fn judge_batch(
    policy: &LinkPolicy,
    state: LinkState,
    result: RequestResult,
    sent: usize,
) -> (LinkState, BatchVerdict) {
    let mut next = state;
    let verdict = match result {
        RequestResult::Answered => {
            next.failures_in_a_row = 0;
            next.batch_size = state.batch_size.saturating_mul(2).min(state.batch_ceiling).max(1);
            BatchVerdict::Continue
        }
        RequestResult::TooLarge => {
            // Not a failure of the link: the request was answered. A single sale too large is invalid.
            if sent > 1 {
                next.batch_ceiling = (sent / 2).max(1);
                next.batch_size = next.batch_ceiling;
            }
            BatchVerdict::Continue
        }
        RequestResult::NeedsPerson => BatchVerdict::NeedsPerson,
        RequestResult::TimedOut | RequestResult::Failed { .. } => {
            next.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
            let retry_after_ms = match result {
                RequestResult::Failed { retry_after_ms } => retry_after_ms,
                _ => None,
            };
            if result == RequestResult::TimedOut {
                next.batch_size = (state.batch_size.min(sent.max(1)) / 2).max(1);
            }
            if retry_after_ms.is_some() || next.failures_in_a_row >= policy.failures_before_backoff.max(1) {
                BatchVerdict::BackOff { retry_after_ms }
            } else {
                BatchVerdict::Continue
            }
        }
    };
    (next, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3: LinkPolicy = LinkPolicy { failures_before_backoff: 3 };
    const FAILED: RequestResult = RequestResult::Failed { retry_after_ms: None };

    #[test]
    fn a_run_goes_on_past_failures_and_backs_off_after_k_in_a_row() {
        let (s, v) = judge_batch(&K3, LinkState::new(50), FAILED, 50);
        assert_eq!((s.failures_in_a_row, v), (1, BatchVerdict::Continue));
        let (s, v) = judge_batch(&K3, s, FAILED, 50);
        assert_eq!((s.failures_in_a_row, v), (2, BatchVerdict::Continue));
        let (s, v) = judge_batch(&K3, s, FAILED, 50);
        assert_eq!((s.failures_in_a_row, v), (3, BatchVerdict::BackOff { retry_after_ms: None }));
    }

    #[test]
    fn an_answer_resets_the_failures_in_a_row() {
        let (s, _) = judge_batch(&K3, LinkState::new(50), FAILED, 50);
        let (s, _) = judge_batch(&K3, s, FAILED, 50);
        let (s, v) = judge_batch(&K3, s, RequestResult::Answered, 50);
        assert_eq!((s.failures_in_a_row, v), (0, BatchVerdict::Continue));
        let (s, v) = judge_batch(&K3, s, FAILED, 50);
        assert_eq!((s.failures_in_a_row, v), (1, BatchVerdict::Continue));
    }

    #[test]
    fn retry_after_stops_the_run_at_once_and_is_passed_on() {
        let busy = RequestResult::Failed { retry_after_ms: Some(30_000) };
        let (_, v) = judge_batch(&K3, LinkState::new(50), busy, 50);
        assert_eq!(v, BatchVerdict::BackOff { retry_after_ms: Some(30_000) });
    }

    #[test]
    fn timeouts_halve_the_batch_and_answers_grow_it_back_to_the_ceiling() {
        let (s, _) = judge_batch(&K3, LinkState::new(50), RequestResult::TimedOut, 50);
        assert_eq!(s.batch_size, 25);
        let (s, _) = judge_batch(&K3, s, RequestResult::TimedOut, 25);
        assert_eq!(s.batch_size, 12);
        let (s, _) = judge_batch(&K3, s, RequestResult::Answered, 12);
        assert_eq!(s.batch_size, 24);
        let (s, _) = judge_batch(&K3, s, RequestResult::Answered, 24);
        let (s, _) = judge_batch(&K3, s, RequestResult::Answered, 48);
        assert_eq!(s.batch_size, 50, "never above the ceiling");
        let one = LinkState::new(1);
        assert_eq!(judge_batch(&K3, one, RequestResult::TimedOut, 1).0.batch_size, 1, "never below 1");
    }

    #[test]
    fn too_large_lowers_the_ceiling_without_counting_as_a_failure() {
        let (s, v) = judge_batch(&K3, LinkState::new(40), RequestResult::TooLarge, 40);
        assert_eq!(
            (s.batch_size, s.batch_ceiling, s.failures_in_a_row, v),
            (20, 20, 0, BatchVerdict::Continue)
        );
        let (s, _) = judge_batch(&K3, s, RequestResult::Answered, 20);
        assert_eq!(s.batch_size, 20, "an answer does not grow past a 413's ceiling");
    }

    #[test]
    fn auth_and_tls_need_a_person() {
        assert_eq!(
            judge_batch(&K3, LinkState::new(5), RequestResult::NeedsPerson, 5).1,
            BatchVerdict::NeedsPerson
        );
    }
}
