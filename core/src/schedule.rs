//! When the engine runs, as data.
//!
//! [`plan_after_run`] takes how a run ended and says whether the engine backs off, runs again when the
//! earliest unsent sale is due, or waits for the interval:
//!
//! - A run stopped because the link is down (failed requests in a row, or a `Retry-After`) backs the
//!   whole engine off. Any request answered in that run resets the backoff first, so a flaky link that
//!   still carries requests never climbs to the cap; only runs with no answer at all grow it.
//! - A run stopped for a person (401/403, TLS) or by a storage error backs off the same way, counted.
//! - Otherwise, when sales are unsent, the next run is when the earliest of them is due (a sale's
//!   `RETRY` backoff, another owner's lease), not the interval: a run that found nothing due is not a
//!   success that may wait a minute.
//!
//! [`next_step`] takes the engine's [`Timers`] and the reasons asked for, and says whether a run
//! starts now or until when the engine waits, and why:
//!
//! - `Manual` (the cashier's "Sync now") always goes at once.
//! - `Online`, and the first run after start, first wait a random hold of up to `online_jitter_ms`,
//!   so that a shop's tills coming back together spread out; every trigger but `Manual` waits with it.
//! - While the engine backs off, only `Online` goes (after its hold), and not before the server's
//!   `Retry-After`; `SaleRecorded`, `Focus` and `Interval` wait, and the interval timer is paused.
//!
//! Times are milliseconds on the engine's monotonic clock.

use crate::reason::{DrainReason, DrainReasons};

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

/// The engine's pending reasons and timers, in ms on its monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timers {
    /// Reasons asked for since the last run started.
    pub requested: DrainReasons,
    /// When the interval timer fires next.
    pub next_interval_ms: i64,
    /// The engine backs off until then.
    pub backoff_until_ms: Option<i64>,
    /// The server's `Retry-After` ends then: not even `Online` goes before.
    pub retry_after_until_ms: Option<i64>,
    /// The earliest unsent sale is due then.
    pub due_at_ms: Option<i64>,
    /// The random hold after `Online` or start ends then.
    pub held_until_ms: Option<i64>,
}

/// Why the engine waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCause {
    /// The random hold after `Online` or start.
    Jitter,
    /// The engine's backoff (or the server's `Retry-After`).
    Backoff,
    /// The earliest unsent sale's due time.
    Due,
    /// The interval timer.
    Interval,
}

/// What the engine does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start a run for these reasons (taken out of [`Timers::requested`]).
    Run(DrainReasons),
    /// Wait until `at_ms` (or a new trigger), then ask again.
    Wait {
        /// The deadline, on the monotonic clock.
        at_ms: i64,
        /// The timer that ends the wait.
        cause: WaitCause,
    },
}

/// Fires the timers that have passed at `now_ms` and decides the engine's next step. Pure but for
/// `timers`, which it updates (reasons added by timers, timers cleared, the interval re-armed).
pub fn next_step(timers: &mut Timers, now_ms: i64, interval_ms: u64) -> Step {
    let passed = |t: Option<i64>| t.is_some_and(|t| t <= now_ms);
    if passed(timers.held_until_ms) {
        timers.held_until_ms = None;
    }
    if passed(timers.retry_after_until_ms) {
        timers.retry_after_until_ms = None;
    }
    if passed(timers.backoff_until_ms) {
        // The end of a backoff is a run of its own.
        timers.backoff_until_ms = None;
        timers.requested.insert(DrainReason::Interval);
    }
    let backing_off = timers.backoff_until_ms.is_some();
    if !backing_off && passed(timers.due_at_ms) {
        timers.due_at_ms = None;
        timers.requested.insert(DrainReason::Interval);
    }
    if timers.next_interval_ms <= now_ms {
        if !backing_off {
            timers.requested.insert(DrainReason::Interval);
        }
        timers.next_interval_ms = now_ms.saturating_add(interval_ms as i64);
    }
    let manual = timers.requested.contains(DrainReason::Manual);
    if manual {
        timers.held_until_ms = None;
    }
    let online = timers.requested.contains(DrainReason::Online) && timers.retry_after_until_ms.is_none();
    let free = timers.held_until_ms.is_none() && (!backing_off || online);
    if !timers.requested.is_empty() && (manual || free) {
        return Step::Run(std::mem::take(&mut timers.requested));
    }
    // While backing off the interval timer is paused: the backoff's end is the next run.
    let candidates = if backing_off {
        [
            (timers.backoff_until_ms, WaitCause::Backoff),
            (timers.retry_after_until_ms, WaitCause::Backoff),
            (None, WaitCause::Due),
        ]
    } else {
        [
            (Some(timers.next_interval_ms), WaitCause::Interval),
            (timers.due_at_ms, WaitCause::Due),
            (None, WaitCause::Backoff),
        ]
    };
    let hold = (timers.held_until_ms.filter(|_| !timers.requested.is_empty()), WaitCause::Jitter);
    let wait = candidates
        .into_iter()
        .chain([hold])
        .filter_map(|(at, cause)| at.map(|at| (at, cause)))
        .min_by_key(|(at, _)| *at)
        .unwrap_or((timers.next_interval_ms, WaitCause::Interval));
    Step::Wait { at_ms: wait.0, cause: wait.1 }
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

    fn timers(reason: DrainReason) -> Timers {
        Timers { requested: reason.into(), next_interval_ms: 60_000, ..Timers::default() }
    }

    #[test]
    fn manual_cancels_the_hold_and_goes_through_everything() {
        let mut t = timers(DrainReason::Manual);
        t.held_until_ms = Some(5_000);
        t.backoff_until_ms = Some(100_000);
        t.retry_after_until_ms = Some(100_000);
        assert_eq!(next_step(&mut t, 0, 60_000), Step::Run(DrainReason::Manual.into()));
        assert_eq!(t.held_until_ms, None);
    }

    #[test]
    fn every_other_reason_waits_for_the_hold() {
        let mut t = timers(DrainReason::Online);
        t.requested.insert(DrainReason::SaleRecorded);
        t.held_until_ms = Some(4_000);
        assert_eq!(next_step(&mut t, 3_999, 60_000), Step::Wait { at_ms: 4_000, cause: WaitCause::Jitter });
        let Step::Run(reasons) = next_step(&mut t, 4_000, 60_000) else { panic!("the hold is over") };
        assert!(reasons.contains(DrainReason::Online) && reasons.contains(DrainReason::SaleRecorded));
        assert!(t.requested.is_empty());
    }

    #[test]
    fn during_a_backoff_only_online_goes_and_not_before_retry_after() {
        let mut t = timers(DrainReason::SaleRecorded);
        t.backoff_until_ms = Some(50_000);
        t.retry_after_until_ms = Some(30_000);
        // The interval (60 s) is paused; the backoff's end is the next run.
        assert_eq!(next_step(&mut t, 10, 60_000), Step::Wait { at_ms: 30_000, cause: WaitCause::Backoff });
        t.requested.insert(DrainReason::Online);
        assert_eq!(
            next_step(&mut t, 29_999, 60_000),
            Step::Wait { at_ms: 30_000, cause: WaitCause::Backoff }
        );
        assert!(matches!(next_step(&mut t, 30_000, 60_000), Step::Run(r) if r.contains(DrainReason::Online)));
        assert_eq!(t.backoff_until_ms, Some(50_000), "Online does not end the backoff");
        t.requested.insert(DrainReason::Focus);
        assert_eq!(
            next_step(&mut t, 30_001, 60_000),
            Step::Wait { at_ms: 50_000, cause: WaitCause::Backoff }
        );
        let Step::Run(reasons) = next_step(&mut t, 50_000, 60_000) else { panic!("the backoff is over") };
        assert!(reasons.contains(DrainReason::Focus) && reasons.contains(DrainReason::Interval));
    }

    #[test]
    fn idle_waits_for_the_earlier_of_the_due_sale_and_the_interval() {
        let mut t = Timers { next_interval_ms: 60_000, due_at_ms: Some(7_000), ..Timers::default() };
        assert_eq!(next_step(&mut t, 0, 60_000), Step::Wait { at_ms: 7_000, cause: WaitCause::Due });
        assert_eq!(next_step(&mut t, 7_000, 60_000), Step::Run(DrainReason::Interval.into()));
        assert_eq!(
            next_step(&mut t, 7_001, 60_000),
            Step::Wait { at_ms: 60_000, cause: WaitCause::Interval }
        );
        assert_eq!(next_step(&mut t, 60_000, 60_000), Step::Run(DrainReason::Interval.into()));
        assert_eq!(t.next_interval_ms, 120_000, "re-armed");
    }
}
