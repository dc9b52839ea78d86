//! When the engine runs next, as data: [`plan_after_run`] takes how a run ended and says whether the
//! engine backs off, runs again when the earliest unsent sale is due, or waits for the interval.
//!
//! - A run stopped because the link is down (failed requests in a row, or a `Retry-After`) backs the
//!   whole engine off. Any request answered in that run resets the backoff first, so a flaky link that
//!   still carries requests never climbs to the cap; only runs with no answer at all grow it.
//! - A run stopped for a person (401/403, TLS) or by a storage error backs off the same way, counted.
//! - Otherwise, when sales are unsent, the next run is when the earliest of them is due (a sale's
//!   `RETRY` backoff, another owner's lease), not the interval: a run that found nothing due is not a
//!   success that may wait a minute.

/// How a run ended, as far as scheduling is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// It went until nothing due was left (or it was asked to stop, or lost a lease).
    Done,
    /// The link is judged down.
    LinkDown {
        /// The server's `Retry-After`, in ms: the floor of the wait.
        retry_after_ms: Option<u64>,
    },
    /// A person must fix the setup (401/403, TLS), or the outbox could not be read or written.
    Failed,
}

/// What the engine knows after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// How it ended.
    pub end: RunEnd,
    /// Whether any request of the run was answered.
    pub answered: bool,
    /// When the earliest unsent sale is due, in ms from now (negative: already due); `None` when
    /// nothing is unsent.
    pub next_due_in_ms: Option<i64>,
}

/// When the next run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRun {
    /// The whole engine backs off (`offline_backoff` for `failures`, at least `retry_after_ms`);
    /// `Online` and `Manual` still go at once.
    BackOff {
        /// Runs in a row that ended with the link down or failed: the backoff's exponent.
        failures: u32,
        /// The server's `Retry-After`, in ms.
        retry_after_ms: Option<u64>,
    },
    /// Sales are unsent: run when the earliest is due, in ms from now (0: at once).
    DueIn {
        /// The wait, in ms.
        ms: u64,
    },
    /// Nothing is unsent: the interval timer.
    Interval,
}

/// The next run after one that ended as `run`, given the engine's failed runs in a row so far; returns
/// the new count with the plan. Pure.
pub fn plan_after_run(failures_before: u32, run: &RunSummary) -> (u32, NextRun) {
    match run.end {
        RunEnd::LinkDown { retry_after_ms } => {
            let base = if run.answered { 0 } else { failures_before };
            let failures = base.saturating_add(1);
            (failures, NextRun::BackOff { failures, retry_after_ms })
        }
        RunEnd::Failed => {
            let failures = failures_before.saturating_add(1);
            (failures, NextRun::BackOff { failures, retry_after_ms: None })
        }
        RunEnd::Done => {
            // A run without any request (nothing due) neither proves nor disproves the link.
            let failures = if run.answered { 0 } else { failures_before };
            let next = match run.next_due_in_ms {
                Some(ms) => NextRun::DueIn { ms: ms.max(0) as u64 },
                None => NextRun::Interval,
            };
            (failures, next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(end: RunEnd, answered: bool, next_due_in_ms: Option<i64>) -> RunSummary {
        RunSummary { end, answered, next_due_in_ms }
    }

    const DOWN: RunEnd = RunEnd::LinkDown { retry_after_ms: None };

    #[test]
    fn runs_with_the_link_down_grow_the_backoff_and_any_answer_resets_it() {
        let (f, next) = plan_after_run(0, &run(DOWN, false, Some(0)));
        assert_eq!((f, next), (1, NextRun::BackOff { failures: 1, retry_after_ms: None }));
        let (f, _) = plan_after_run(f, &run(DOWN, false, Some(0)));
        let (f, _) = plan_after_run(f, &run(DOWN, false, Some(0)));
        assert_eq!(f, 3);
        let (f, next) = plan_after_run(f, &run(DOWN, true, Some(0)));
        assert_eq!(
            (f, next),
            (1, NextRun::BackOff { failures: 1, retry_after_ms: None }),
            "answered, then down"
        );
        let (f, next) = plan_after_run(f, &run(RunEnd::Done, true, None));
        assert_eq!((f, next), (0, NextRun::Interval));
    }

    #[test]
    fn retry_after_is_passed_on_as_the_floor() {
        let busy = RunEnd::LinkDown { retry_after_ms: Some(30_000) };
        assert_eq!(
            plan_after_run(0, &run(busy, true, Some(0))).1,
            NextRun::BackOff { failures: 1, retry_after_ms: Some(30_000) }
        );
    }

    #[test]
    fn nothing_due_schedules_the_earliest_due_time_not_the_interval() {
        assert_eq!(
            plan_after_run(0, &run(RunEnd::Done, false, Some(4_500))),
            (0, NextRun::DueIn { ms: 4_500 })
        );
        assert_eq!(plan_after_run(0, &run(RunEnd::Done, true, Some(-20))).1, NextRun::DueIn { ms: 0 });
        assert_eq!(plan_after_run(0, &run(RunEnd::Done, true, None)).1, NextRun::Interval);
        assert_eq!(plan_after_run(2, &run(RunEnd::Done, false, Some(10))).0, 2, "no request: no verdict");
    }

    #[test]
    fn a_failed_run_backs_off_counted() {
        assert_eq!(plan_after_run(1, &run(RunEnd::Failed, false, Some(0))).0, 2);
    }
}
