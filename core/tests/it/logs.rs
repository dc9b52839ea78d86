//! Every send attempt is logged with correlation_id, client_tx_id, attempt, lease_token, drain_reason,
//! latency_ms and result, for OK, DUPLICATE, RETRY and CONFLICT, and so is an answer dropped because
//! the lease was lost; never the payload or the token. Levels: a sale sent is INFO, a sale that needs a
//! person WARN, the rest DEBUG; a request that failed, or whose sales came back RETRY or lost their
//! leases, logs one WARN of its own, not one per sale.
//! (The logger is process-global: installed once, and each test reads only its own runs' records.)

use std::collections::HashMap;

use std::sync::Arc;

use crate::common::{sale, TempOutbox, T0};
use parking_lot::Mutex;
use possync_core::clock::ManualClock;
use possync_core::drain::{DrainHooks, Drainer};
use possync_core::outbox::Outbox;
use possync_core::protocol::{PushRequest, PushResponse, PushResult, PushStatus};
use possync_core::reason::DrainReason;
use possync_core::transport::{Transport, TransportError};

type Fields = HashMap<String, String>;

/// One record: level, target, message, key-value fields.
type Record = (log::Level, String, String, Fields);

struct Capture(Mutex<Vec<Record>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        struct Visitor<'a>(&'a mut Fields);
        impl<'kvs> log::kv::VisitSource<'kvs> for Visitor<'_> {
            fn visit_pair(
                &mut self,
                key: log::kv::Key<'kvs>,
                value: log::kv::Value<'kvs>,
            ) -> Result<(), log::kv::Error> {
                self.0.insert(key.to_string(), value.to_string());
                Ok(())
            }
        }
        let mut fields = Fields::new();
        let _ = record.key_values().visit(&mut Visitor(&mut fields));
        self.0.lock().push((record.level(), record.target().to_owned(), record.args().to_string(), fields));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// The records captured so far; installs the logger on first use.
fn records() -> Vec<Record> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("install logger");
        log::set_max_level(log::LevelFilter::Trace);
    });
    CAPTURE.0.lock().clone()
}

/// The records of one run (other tests of this binary log too).
fn of_run(records: &[Record], correlation_id: &str) -> Vec<Record> {
    records
        .iter()
        .filter(|(_, _, _, f)| f.get("correlation_id").map(String::as_str) == Some(correlation_id))
        .cloned()
        .collect()
}

/// Answers by receipt number: R-1 OK, R-2 DUPLICATE, R-3 CONFLICT, R-4 RETRY.
struct ByReceipt;

impl Transport for ByReceipt {
    fn push(&self, request: &PushRequest, _cid: &str) -> Result<PushResponse, TransportError> {
        let results = request
            .transactions
            .iter()
            .map(|t| {
                let payload = t.payload.get();
                let (status, code) = if payload.contains("\"R-1\"") {
                    (PushStatus::Ok, None)
                } else if payload.contains("\"R-2\"") {
                    (PushStatus::Duplicate, None)
                } else if payload.contains("\"R-3\"") {
                    (PushStatus::Conflict, Some("hash_differs".to_owned()))
                } else {
                    (PushStatus::Retry, Some("lock_timeout".to_owned()))
                };
                PushResult {
                    client_tx_id: t.client_tx_id.clone(),
                    status,
                    code,
                    message: None,
                    server_tx_id: None,
                }
            })
            .collect();
        Ok(PushResponse { results, resend: None })
    }
}

/// Another sender (its clock 10 s on: the leases look expired) takes the batch over while it is on the
/// wire; then the server answers as [`ByReceipt`].
struct Stealing(Outbox);

impl Transport for Stealing {
    fn push(&self, request: &PushRequest, cid: &str) -> Result<PushResponse, TransportError> {
        assert!(!self.0.claim("thief", 10, 60_000).expect("claim").is_empty(), "nothing taken over");
        ByReceipt.push(request, cid)
    }
}

/// The seven fields of a send record, checked against the run and the sale.
fn assert_seven_fields(fields: &Fields, correlation_id: &str, reason: &str, result: &str) {
    assert_eq!(fields.get("correlation_id").map(String::as_str), Some(correlation_id), "{fields:?}");
    assert!(fields.get("client_tx_id").is_some_and(|id| !id.is_empty()), "{fields:?}");
    assert_eq!(fields.get("attempt").map(String::as_str), Some("1"));
    let token = fields.get("lease_token").expect("lease_token");
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(fields.get("drain_reason").map(String::as_str), Some(reason));
    assert!(fields.get("latency_ms").and_then(|v| v.parse::<u64>().ok()).is_some(), "{fields:?}");
    assert_eq!(fields.get("result").map(String::as_str), Some(result), "{fields:?}");
}

#[test]
fn send_attempt_records_carry_all_seven_fields_with_the_right_values() {
    records();

    let t = TempOutbox::new();
    let outbox = t.open();
    let ids: Vec<String> = (1..=4).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let config = crate::common::sync_config("pst_secret_token_value");
    let report = Drainer::new(&outbox, &ByReceipt, &config)
        .expect("drainer")
        .drain(DrainReason::Focus.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.duplicate, report.conflict, report.retry), (1, 1, 1, 1));

    let run = of_run(&records(), &report.correlation_id);
    let sends: Vec<&Record> = run.iter().filter(|(_, target, _, _)| target == "possync::send").collect();
    assert_eq!(sends.len(), 4, "one record per send attempt");
    for (id, expected, level) in ids
        .iter()
        .zip([
            ("OK", log::Level::Info),
            ("DUPLICATE", log::Level::Info),
            ("CONFLICT", log::Level::Warn),
            ("RETRY", log::Level::Debug),
        ])
        .map(|(id, (result, level))| (id, result, level))
    {
        let (record_level, _, _, fields) = sends
            .iter()
            .find(|(_, _, _, f)| f.get("client_tx_id") == Some(id))
            .unwrap_or_else(|| panic!("no record for {id}"));
        assert_seven_fields(fields, &report.correlation_id, "focus", expected);
        assert_eq!(*record_level, level, "{expected}: {fields:?}");
    }
    // The RETRY is told once for the request, as a WARN; the CONFLICT is the only other WARN.
    let warns: Vec<&str> =
        run.iter().filter(|(l, _, _, _)| *l == log::Level::Warn).map(|(_, _, m, _)| m.as_str()).collect();
    assert_eq!(warns, ["send attempt", "sales answered RETRY by the server; sent again later"], "{run:?}");

    // A lease lost mid-send: the dropped answer's record carries the same seven fields.
    let stolen = TempOutbox::new();
    let outbox = stolen.open_with(Arc::new(ManualClock::new(T0)));
    let id = outbox.enqueue(&sale(1)).expect("enqueue");
    let thief = Stealing(stolen.open_with(Arc::new(ManualClock::new(T0 + 10_000))));
    let lost = Drainer::new(&outbox, &thief, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!(lost.lease_lost, 1, "{lost:?}");
    let records = records();
    let dropped = records
        .iter()
        .find(|(_, _, msg, f)| {
            msg == "lease lost during send; result dropped" && f.get("client_tx_id") == Some(&id)
        })
        .expect("a lease-lost record");
    assert_seven_fields(&dropped.3, &lost.correlation_id, "manual", "OK");
    assert_eq!(dropped.0, log::Level::Debug);
    let warns: Vec<String> = of_run(&records, &lost.correlation_id)
        .into_iter()
        .filter(|(l, _, _, _)| *l == log::Level::Warn)
        .map(|(_, _, m, f)| format!("{m} {:?}", f.get("sales")))
        .collect();
    assert_eq!(warns, ["leases lost during send; their answers dropped Some(\"1\")"]);

    assert!(
        records.iter().any(|(_, _, msg, f)| msg == "drain run finished"
            && f.get("correlation_id") == Some(&report.correlation_id)),
        "the run's own closing record"
    );
    for (_, _, msg, fields) in &records {
        let text = format!("{msg} {fields:?}");
        assert!(!text.contains("pst_secret_token_value"), "a token was logged: {text}");
        assert!(!text.contains("Article"), "payload content was logged: {text}");
    }
}

/// Sheds every request with 503 `overloaded` and `Retry-After: 2`.
struct Shedding;

impl Transport for Shedding {
    fn push(&self, _request: &PushRequest, _cid: &str) -> Result<PushResponse, TransportError> {
        Err(TransportError::Overloaded {
            status: 503,
            code: "overloaded".into(),
            message: "the server is at capacity".into(),
            retry_after_ms: Some(2_000),
        })
    }
}

/// A request that fails as a whole logs one WARN (the run stops on the server's Retry-After), and
/// each of its twenty sales a DEBUG send record with the seven fields: not twenty WARNs.
#[test]
fn a_failed_request_is_one_warn_and_its_sales_debug_records() {
    records();
    let t = TempOutbox::new();
    let outbox = t.open();
    for i in 1..=20 {
        outbox.enqueue(&sale(i)).expect("enqueue");
    }
    let config = crate::common::sync_config("pst_secret_token_value");
    let report = Drainer::new(&outbox, &Shedding, &config)
        .expect("drainer")
        .drain(DrainReason::Manual.into(), DrainHooks::default())
        .expect("drain");
    assert_eq!((report.sent, report.remaining_pending), (0, 20), "{report:?}");
    let run = of_run(&records(), &report.correlation_id);
    let sends: Vec<&Record> = run.iter().filter(|(_, target, _, _)| target == "possync::send").collect();
    assert_eq!(sends.len(), 20, "one record per sale sent: {run:?}");
    for (level, _, _, fields) in &sends {
        assert_seven_fields(fields, &report.correlation_id, "manual", "TRANSPORT");
        assert_eq!(*level, log::Level::Debug, "{fields:?}");
    }
    let warns: Vec<&Record> = run.iter().filter(|(l, _, _, _)| *l == log::Level::Warn).collect();
    assert_eq!(warns.len(), 1, "one WARN for the failed request: {warns:?}");
    let (_, _, message, fields) = warns[0];
    assert_eq!(message, "request failed; the run stops");
    assert_eq!(fields.get("code").map(String::as_str), Some("overloaded"), "{fields:?}");
    assert_eq!(fields.get("sales").map(String::as_str), Some("20"), "{fields:?}");
    assert_eq!(fields.get("stop").map(String::as_str), Some("offline"), "{fields:?}");
}
