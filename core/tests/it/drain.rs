//! Drain runs against scripted transports: batch splitting on 413, leases lost mid-send, heartbeats
//! during a slow send, and answers that do not match the request.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{sale, TempOutbox, T0};
use parking_lot::Mutex;
use possync_core::clock::{Clock, ManualClock};
use possync_core::config::SyncConfig;
use possync_core::drain::{DrainHooks, DrainStop, Drainer};
use possync_core::link::LinkPolicy;
use possync_core::outbox::{Outbox, SaleState};
use possync_core::protocol::{PushRequest, PushResponse, PushResult, PushStatus};
use possync_core::reason::DrainReason;
use possync_core::transport::{Transport, TransportError};

/// A transport answering with a closure, recording the size of every request.
struct Scripted<F: Fn(&PushRequest) -> Result<PushResponse, TransportError> + Send + Sync> {
    answer: F,
    sizes: Mutex<Vec<usize>>,
}

impl<F: Fn(&PushRequest) -> Result<PushResponse, TransportError> + Send + Sync> Transport for Scripted<F> {
    fn push(&self, request: &PushRequest, _correlation_id: &str) -> Result<PushResponse, TransportError> {
        self.sizes.lock().push(request.transactions.len());
        (self.answer)(request)
    }
}

fn scripted<F: Fn(&PushRequest) -> Result<PushResponse, TransportError> + Send + Sync>(
    answer: F,
) -> Scripted<F> {
    Scripted { answer, sizes: Mutex::new(Vec::new()) }
}

fn all_ok(request: &PushRequest) -> PushResponse {
    let results = request
        .transactions
        .iter()
        .enumerate()
        .map(|(i, t)| PushResult {
            client_tx_id: t.client_tx_id.clone(),
            status: PushStatus::Ok,
            code: None,
            message: None,
            server_tx_id: Some(i as i64),
        })
        .collect();
    PushResponse { results, resend: None }
}

fn config() -> SyncConfig {
    let mut c = crate::common::sync_config("pst_test");
    c.backoff.base_ms = 1;
    c.backoff.cap_ms = 1;
    c
}

#[test]
fn request_too_large_halves_the_batch_and_everything_goes() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..40 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let transport = scripted(|r| {
        if r.transactions.len() > 8 {
            Err(TransportError::TooLarge { code: "body_too_large".into(), message: "too big".into() })
        } else {
            Ok(all_ok(r))
        }
    });
    let config = config();
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.remaining_pending, report.stop.clone()), (40, 0, None), "{report:?}");
    let sizes = transport.sizes.lock().clone();
    assert_eq!(&sizes[..3], &[40, 20, 10], "halved until accepted: {sizes:?}");
    assert!(sizes[3..].iter().all(|&n| n <= 8));
}

#[test]
fn a_single_sale_too_large_for_the_server_is_invalid() {
    let t = TempOutbox::new();
    let outbox = t.open();
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    let transport = scripted(|_| {
        Err(TransportError::TooLarge { code: "body_too_large".into(), message: "too big".into() })
    });
    let config = config();
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!(report.invalid, 1);
    let entry = outbox.get(&id).expect("get").expect("row");
    assert_eq!((entry.state, entry.last_code.as_deref()), (SaleState::Invalid, Some("body_too_large")));
}

#[test]
fn results_that_do_not_match_the_request_put_the_batch_back() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..3 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let transport = scripted(|r| {
        let mut response = all_ok(r);
        response.results.pop();
        Ok(response)
    });
    let config = config();
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("drain");
    assert!(
        matches!(report.stop, Some(DrainStop::Offline { error: TransportError::BadResponse(_) })),
        "{report:?}"
    );
    // A garbled answer is a failed request: the batch is tried again in the run, up to K = 3 in a row.
    assert_eq!((report.sent, report.requests_failed), (0, 3));
    assert_eq!(outbox.counts().expect("counts").pending, 3);
}

#[test]
fn a_lease_taken_over_mid_send_is_not_finalized_and_the_run_stops() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    for i in 0..5 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    // The till stalls (its process frozen: no heartbeat, its clock reads the same) past its lease;
    // another sender, whose clock has moved on 10 s, takes the sales over meanwhile.
    let thief = t.open_with(Arc::new(ManualClock::new(T0 + 10_000)));
    let stolen = Mutex::new(Vec::new());
    let transport = scripted(|r| {
        stolen.lock().extend(thief.claim("thief", 10, 60_000).expect("thief claims"));
        Ok(all_ok(r))
    });
    let config = config();
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Interval.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.lease_lost, report.stop.clone()), (0, 5, Some(DrainStop::LeaseLost)));
    let stolen = stolen.lock();
    assert_eq!(stolen.len(), 5);
    for c in stolen.iter() {
        let entry = outbox.get(&c.lease.client_tx_id).expect("get").expect("row");
        assert_eq!(entry.state, SaleState::InFlight, "the stale result was not written");
        assert_eq!(entry.lease_owner_id.as_deref(), Some("thief"));
        assert_eq!(entry.lease_token.as_deref(), Some(c.lease.token.as_str()));
    }
}

#[test]
fn heartbeats_keep_the_leases_of_a_slow_send() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    for i in 0..3 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let thief: Outbox = t.open_with(clock.clone());
    let config = config();
    let lease_ms = config.lease_ms as i64;
    let transport = scripted(|r| {
        // Five times the lease passes on the till's clock while the request is in flight. Each move of
        // the clock passes a heartbeat's interval: the heartbeat thread, woken by the clock, extends
        // every lease to the new now + lease (waited for on the file, no sleeping on wall time).
        for _ in 0..10 {
            clock.advance(lease_ms / 2);
            let extended_to = clock.now_ms() + lease_ms;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            for tx in &r.transactions {
                while thief.get(&tx.client_tx_id).expect("get").and_then(|e| e.lease_expires_at_ms)
                    != Some(extended_to)
                {
                    assert!(std::time::Instant::now() < deadline, "no heartbeat after the clock moved");
                    std::thread::yield_now();
                }
            }
            assert!(
                thief.claim("thief", 10, 60_000).expect("claim").is_empty(),
                "a heartbeated lease was taken"
            );
        }
        Ok(all_ok(r))
    });
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Online.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.lease_lost), (3, 0), "{report:?}");
}

fn unreachable() -> TransportError {
    TransportError::Unreachable("connection refused".into())
}

#[test]
fn transport_failures_do_not_count_against_a_sale_and_leave_it_due_at_once() {
    let t = TempOutbox::new();
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = t.open_with(clock.clone());
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    let mut config = config();
    config.backoff.base_ms = 60_000;
    config.backoff.cap_ms = 300_000;
    let failing = scripted(|_| Err(unreachable()));
    let drainer = Drainer::new(&outbox, &failing, &config).expect("drainer");
    for run in 1..=4 {
        let report = drainer.drain(DrainReason::Interval.into(), DrainHooks::default()).expect("drain");
        assert!(matches!(report.stop, Some(DrainStop::Offline { .. })), "{report:?}");
        clock.advance(1);
        let entry = outbox.get(&id).expect("get").expect("row");
        assert_eq!(entry.server_retries, 0, "run {run}: a failed request is not the sale's fault");
        assert!(entry.next_attempt_at_ms <= clock.now_ms(), "run {run}: due again at once, no per-sale wait");
        assert_eq!(entry.last_result.as_deref(), Some("TRANSPORT"));
    }
    // The server's RETRY is about the sale: that one counts and delays it.
    let retrying = scripted(|r| {
        let mut response = all_ok(r);
        response.results[0].status = PushStatus::Retry;
        response.results[0].code = Some("busy".into());
        Ok(response)
    });
    let report = Drainer::new(&outbox, &retrying, &config)
        .expect("drainer")
        .drain(DrainReason::Interval.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.retry, report.stop), (1, None));
    let entry = outbox.get(&id).expect("get").expect("row");
    assert_eq!(entry.server_retries, 1);
    assert!(entry.next_attempt_at_ms >= clock.now_ms(), "a RETRY waits its backoff");
}

#[test]
fn a_run_goes_on_past_a_failed_request_and_stops_after_k_failures_in_a_row() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..20 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    // Requests 2 and 4 fail, the others are answered until request 6; from then on the link is down.
    let calls = Mutex::new(0usize);
    let transport = scripted(|r| {
        let mut n = calls.lock();
        *n += 1;
        match *n {
            2 | 4 => {
                Err(TransportError::Http { status: 502, code: "bad_gateway".into(), message: String::new() })
            }
            k if k >= 6 => Err(unreachable()),
            _ => Ok(all_ok(r)),
        }
    });
    let mut config = config();
    config.batch_size = 2;
    config.link = LinkPolicy { failures_before_backoff: 3 };
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Interval.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!(report.requests_ok, 3, "{report:?}");
    assert_eq!(report.requests_failed, 2 + 3, "two single failures passed, then three in a row");
    assert_eq!(report.sent, 6);
    assert!(matches!(report.stop, Some(DrainStop::Offline { error: TransportError::Unreachable(_) })));
    assert_eq!(transport.sizes.lock().len(), 8, "the run stopped right after the third failure in a row");
    let counts = outbox.counts().expect("counts");
    assert_eq!(
        (counts.sent, counts.pending, counts.in_flight),
        (6, 14, 0),
        "nothing lost, nothing left leased"
    );
}

#[test]
fn a_failed_batch_is_sent_again_within_the_run_once_the_link_answers() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..10 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let calls = Mutex::new(0usize);
    let transport = scripted(|r| {
        let mut n = calls.lock();
        *n += 1;
        if *n % 2 == 1 {
            Err(TransportError::Timeout("slow link".into()))
        } else {
            Ok(all_ok(r))
        }
    });
    let mut config = config();
    config.batch_size = 4;
    let report = Drainer::new(&outbox, &transport, &config)
        .expect("drainer")
        .drain(DrainReason::Interval.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.remaining_pending, report.stop.clone()), (10, 0, None), "{report:?}");
    let sizes = transport.sizes.lock().clone();
    assert_eq!(&sizes[..3], &[4, 2, 4], "a timeout halves the batch, an answer grows it back: {sizes:?}");
}

#[test]
fn retry_after_stops_the_run_at_once() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..10 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let transport = scripted(|_| {
        Err(TransportError::Overloaded {
            status: 503,
            code: "overloaded".into(),
            message: String::new(),
            retry_after_ms: Some(30_000),
        })
    });
    let report = Drainer::new(&outbox, &transport, &config())
        .expect("drainer")
        .drain(DrainReason::Interval.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!(report.requests_failed, 1, "the server asked to wait: no second request");
    assert!(
        matches!(report.stop, Some(DrainStop::Offline { ref error }) if error.retry_after_ms() == Some(30_000))
    );
}

/// A server (broken or hostile) that always answers a `resend`: `resend` for each request.
fn answering_resend(
    resend: possync_core::protocol::Resend,
) -> impl Fn(&PushRequest) -> Result<PushResponse, TransportError> + Send + Sync {
    move |r| Ok(PushResponse { resend: Some(resend.clone()), ..all_ok(r) })
}

#[test]
fn a_resend_answer_is_bounded_to_the_tills_own_outbox_and_never_keeps_a_run_going() {
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 0..10 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let config = config();
    let drain = |transport: &dyn Transport| {
        Drainer::new(&outbox, transport, &config)
            .expect("drainer")
            .drain(DrainReason::Interval.into(), DrainHooks::default())
            .expect("drain")
    };
    assert_eq!(drain(&scripted(|r| Ok(all_ok(r)))).sent, 10);
    let own = outbox.outbox_id().expect("outbox id");

    // Another outbox's identity: ignored, nothing queued again, one report-only request.
    let other = possync_core::protocol::Resend { outbox_id: "another-outbox".into(), ranges: vec![[1, 10]] };
    let transport = scripted(answering_resend(other));
    let report = drain(&transport);
    assert_eq!((report.resent, report.sent), (0, 0), "{report:?}");
    assert_eq!(transport.sizes.lock().clone(), vec![0], "one report-only request");

    // Ranges that are not ranges of sequence numbers (reversed, starting below 1): ignored whole.
    let junk = possync_core::protocol::Resend { outbox_id: own.clone(), ranges: vec![[5, 1], [0, 2]] };
    assert_eq!(drain(&scripted(answering_resend(junk))).resent, 0);

    // Its own sales 3-5, asked for in every answer: sent again once in the run, and the run ends.
    let mine = possync_core::protocol::Resend { outbox_id: own, ranges: vec![[3, 5], [3, 5]] };
    let transport = scripted(answering_resend(mine));
    let report = drain(&transport);
    assert_eq!((report.resent, report.sent, report.stop.clone()), (3, 3, None), "{report:?}");
    assert_eq!(transport.sizes.lock().clone(), vec![0, 3], "report-only, then the three, then done");
    assert_eq!(outbox.counts().expect("counts").sent, 10);
}
