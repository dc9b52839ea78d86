//! Every send attempt is logged with correlation_id, client_tx_id, attempt, lease_token, drain_reason,
//! latency_ms and result, for OK, DUPLICATE, RETRY and CONFLICT; never the payload or the token.
//! (One test: the logger is process-global.)

mod common;

use std::collections::HashMap;

use common::{sale, TempOutbox};
use parking_lot::Mutex;
use possync_core::drain::Drainer;
use possync_core::protocol::{PushRequest, PushResponse, PushResult, PushStatus};
use possync_core::reason::DrainReason;
use possync_core::transport::{Transport, TransportError};

type Fields = HashMap<String, String>;

struct Capture(Mutex<Vec<(String, String, Fields)>>);

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
        self.0.lock().push((record.target().to_owned(), record.args().to_string(), fields));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

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
        Ok(PushResponse { results })
    }
}

#[test]
fn send_attempt_records_carry_all_seven_fields_with_the_right_values() {
    log::set_logger(&CAPTURE).expect("install logger");
    log::set_max_level(log::LevelFilter::Trace);

    let t = TempOutbox::new();
    let outbox = t.open();
    let ids: Vec<String> = (1..=4).map(|i| outbox.enqueue(&sale(i)).expect("enqueue")).collect();
    let config = common::sync_config("pst_secret_token_value");
    let report = Drainer::new(&outbox, &ByReceipt, &config)
        .expect("drainer")
        .drain_once(DrainReason::Focus.into())
        .expect("drain");
    assert_eq!((report.sent, report.duplicate, report.conflict, report.retry), (1, 1, 1, 1));

    let records = CAPTURE.0.lock().clone();
    let sends: Vec<&Fields> =
        records.iter().filter(|(target, _, _)| target == "possync::send").map(|(_, _, f)| f).collect();
    assert_eq!(sends.len(), 4, "one record per send attempt");
    for (id, expected) in ids.iter().zip(["OK", "DUPLICATE", "CONFLICT", "RETRY"]) {
        let fields = sends
            .iter()
            .find(|f| f.get("client_tx_id") == Some(id))
            .unwrap_or_else(|| panic!("no record for {id}"));
        assert_eq!(fields.get("correlation_id"), Some(&report.correlation_id));
        assert_eq!(fields.get("attempt").map(String::as_str), Some("1"));
        let token = fields.get("lease_token").expect("lease_token");
        assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        assert_eq!(fields.get("drain_reason").map(String::as_str), Some("focus"));
        assert!(fields.get("latency_ms").and_then(|v| v.parse::<u64>().ok()).is_some(), "{fields:?}");
        assert_eq!(fields.get("result").map(String::as_str), Some(expected), "{fields:?}");
    }
    let run = records.iter().find(|(_, msg, _)| msg == "drain run finished").expect("run record");
    assert_eq!(run.2.get("correlation_id"), Some(&report.correlation_id));
    for (_, msg, fields) in &records {
        let text = format!("{msg} {fields:?}");
        assert!(!text.contains("pst_secret_token_value"), "a token was logged: {text}");
        assert!(!text.contains("Article"), "payload content was logged: {text}");
    }
}
