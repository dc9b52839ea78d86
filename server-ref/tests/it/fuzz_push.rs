//! Property tests of `POST /sync/push` against a live in-process server (issue 7, "fuzzing of bad
//! input"): random bytes, every prefix of valid bodies, deep nesting, huge numbers, unicode edge
//! cases, wrong hashes, oversize batches and bodies.
//!
//! Each property starts ONE server (fresh PostgreSQL database, small limits) and runs a fixed number of
//! cases against it (independent of `PROPTEST_CASES`; failures are not persisted, shrinking runs against
//! the same server). For every answer:
//! - it is a documented HTTP status whose JSON body has a documented `code`, or a 200 whose per-sale
//!   results have documented statuses and codes; never 500 `internal_error` (the handler panicked);
//! - a refused sale stored nothing (no header, item or payment rows for its `client_tx_id`) and its
//!   audit rows, if any, have outcome `INVALID`.
//!
//! After each property the server still answers `/healthz` with 200 and still stores a good sale;
//! properties that send only invalid input also find the three sale tables empty.

use std::cell::RefCell;

use possync_core::protocol::{
    canonical_json, payload_sha256, validate_sale, InvalidSale, Limits, SalePayload, SalePayment,
    INVALID_SALE_CODES,
};
use possync_server::http::HttpConfig;
use possync_test_support::{envelope, new_id, request, sale, TestServer};
use postgres::Client;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestRunner};
use serde::Deserialize;
use serde_json::{json, Value};

/// Small limits, so that oversize input is cheap to make.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_TRANSACTIONS: usize = 8;
const MAX_ITEMS: usize = 20;

/// Request-level answers documented in `docs/protocol.md` (500 `internal_error` is documented too, but
/// is a server failure: bad input must never cause it, so it is not accepted here).
const REQUEST_ERRORS: &[(u16, &[&str])] = &[
    (400, &["malformed_json", "unreadable_body"]),
    (401, &["missing_token", "invalid_token", "token_revoked"]),
    (403, &["device_mismatch", "store_forbidden"]),
    (404, &["not_found"]),
    (405, &["method_not_allowed"]),
    (413, &["body_too_large", "too_many_transactions"]),
    (503, &["database_unavailable", "not_ready"]),
];

/// Per-sale codes of `INVALID` the server gives besides the validator's ([`INVALID_SALE_CODES`]), as
/// documented.
const SERVER_INVALID_CODES: &[&str] =
    &["malformed_transaction", "unsupported_hash_version", "hash_mismatch", "rejected_by_database"];

/// Per-sale codes of `RETRY`, as documented.
const RETRY_CODES: &[&str] = &[
    "lock_timeout",
    "deadlock",
    "serialization_failure",
    "statement_timeout",
    "connection_lost",
    "database_unavailable",
    "database_error",
];

const SALE_TABLES: [&str; 3] = ["pos_transactions", "pos_transaction_items", "pos_transaction_payments"];

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

fn limits() -> Limits {
    Limits { max_items_per_sale: MAX_ITEMS, ..Limits::default() }
}

fn start_server() -> TestServer {
    let mut http: HttpConfig = possync_test_support::test_http_config();
    http.max_body_bytes = MAX_BODY_BYTES;
    http.push_limits.max_transactions = MAX_TRANSACTIONS;
    http.push_limits.sale = limits();
    TestServer::start_with(http, possync_test_support::test_pg_options())
}

#[test]
fn documented_codes_are_the_ones_in_protocol_md() {
    let doc = include_str!("../../../docs/protocol.md");
    let codes = REQUEST_ERRORS
        .iter()
        .flat_map(|(_, c)| c.iter())
        .chain(INVALID_SALE_CODES)
        .chain(SERVER_INVALID_CODES)
        .chain(RETRY_CODES);
    for code in codes.chain(&["hash_differs"]) {
        assert!(doc.contains(&format!("`{code}`")), "{code} is not documented in docs/protocol.md");
    }
}

// ---------------------------------------------------------------------------------------------------
// Checking answers and storage

/// What one answer said, once checked against the documentation.
#[derive(Debug)]
enum Answer {
    /// A documented request-level error.
    Refused { status: u16, code: String },
    /// 200 with one `(status, code)` per sale.
    Results(Vec<(String, Option<String>)>),
}

impl Answer {
    fn request_error(&self) -> Option<(u16, &str)> {
        match self {
            Answer::Refused { status, code } => Some((*status, code.as_str())),
            Answer::Results(_) => None,
        }
    }

    fn sale(&self, i: usize) -> Option<(&str, Option<&str>)> {
        match self {
            Answer::Results(r) => r.get(i).map(|(s, c)| (s.as_str(), c.as_deref())),
            Answer::Refused { .. } => None,
        }
    }
}

/// Checks that `reply` is documented; `transactions` is the number of sales sent, when known.
fn documented(
    reply: &possync_test_support::Reply,
    transactions: Option<usize>,
) -> Result<Answer, TestCaseError> {
    let body = &reply.body;
    prop_assert!(reply.correlation_id.is_some(), "every answer carries X-Correlation-Id");
    if reply.status != 200 {
        prop_assert!(body.is_object(), "HTTP {} with a non-JSON body {}", reply.status, body);
        let code = body["code"].as_str().unwrap_or("<no code>");
        prop_assert!(body["message"].is_string(), "HTTP {} without a message: {}", reply.status, body);
        let allowed = REQUEST_ERRORS.iter().find(|(s, _)| *s == reply.status).map(|(_, c)| *c);
        prop_assert!(
            allowed.is_some_and(|c| c.contains(&code)),
            "undocumented answer HTTP {} code {} (500 internal_error means a panic): {}",
            reply.status,
            code,
            body
        );
        if reply.status == 503 {
            prop_assert!(reply.retry_after.is_some(), "503 without Retry-After");
        }
        return Ok(Answer::Refused { status: reply.status, code: code.to_owned() });
    }
    let results = body["results"].as_array();
    prop_assert!(results.is_some(), "200 without results: {}", body);
    let results = results.expect("checked");
    if let Some(n) = transactions {
        prop_assert_eq!(results.len(), n, "one result per sale: {}", body);
    }
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        prop_assert!(r["client_tx_id"].is_string(), "result without client_tx_id: {}", r);
        let status = r["status"].as_str().unwrap_or("<none>");
        let code = r["code"].as_str();
        match status {
            "OK" | "DUPLICATE" => {
                prop_assert!(code.is_none() && r["server_tx_id"].is_i64(), "{}", r);
            }
            "CONFLICT" => prop_assert_eq!(code, Some("hash_differs"), "{}", r),
            "INVALID" => prop_assert!(
                code.is_some_and(|c| INVALID_SALE_CODES.contains(&c) || SERVER_INVALID_CODES.contains(&c)),
                "{}",
                r
            ),
            "RETRY" => prop_assert!(code.is_some_and(|c| RETRY_CODES.contains(&c)), "{}", r),
            other => prop_assert!(false, "undocumented status {}: {}", other, r),
        }
        if status != "OK" && status != "DUPLICATE" {
            prop_assert!(r["message"].is_string(), "{} without a message: {}", status, r);
        }
        out.push((status.to_owned(), code.map(str::to_owned)));
    }
    Ok(Answer::Results(out))
}

/// One database connection for the checks of a whole property.
struct Db(RefCell<Client>);

impl Db {
    fn new(server: &TestServer) -> Db {
        Db(RefCell::new(server.db.client()))
    }

    fn count(&self, sql: &str, id: &str) -> i64 {
        self.0.borrow_mut().query_one(sql, &[&id]).expect("count").get(0)
    }

    /// Rows of `id` in the three sale tables.
    fn sale_rows(&self, id: &str) -> [i64; 3] {
        SALE_TABLES.map(|t| self.count(&format!("SELECT count(*) FROM {t} WHERE client_tx_id = $1"), id))
    }

    /// A refused sale: no sale rows; its audit rows (if its id could be read) are all INVALID.
    fn assert_refused(&self, id: &str) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.sale_rows(id), [0, 0, 0], "a refused sale stored rows: {}", id);
        let other = self.count(
            "SELECT count(*) FROM pos_transaction_audit WHERE client_tx_id = $1 AND outcome <> 'INVALID'",
            id,
        );
        prop_assert_eq!(other, 0, "a refused sale has a non-INVALID audit row: {}", id);
        Ok(())
    }

    /// A refused sale that the server answered `INVALID`: as above, and its attempt is audited.
    fn assert_invalid_audited(&self, id: &str, code: &str) -> Result<(), TestCaseError> {
        self.assert_refused(id)?;
        let audited = self.count(
            "SELECT count(*) FROM pos_transaction_audit WHERE client_tx_id = $1 AND outcome = 'INVALID'",
            id,
        );
        prop_assert!(audited >= 1, "the INVALID ({}) attempt of {:?} left no audit row", code, id);
        Ok(())
    }

    /// An accepted sale: exactly one header and the expected items and payments.
    fn assert_stored(&self, id: &str, sale: &SalePayload) -> Result<(), TestCaseError> {
        let expected = [1, sale.items.len() as i64, sale.payments.len() as i64];
        prop_assert_eq!(self.sale_rows(id), expected, "stored rows of {}", id);
        Ok(())
    }
}

/// After a property: the server still answers and still stores a good sale.
fn assert_still_serving(server: &TestServer) {
    let health = server.get("/healthz");
    assert_eq!(health.status, 200, "/healthz after the property: {}", health.body);
    let id = new_id();
    let good = sale("store-1", 7, 2);
    let reply = server.push(&request(vec![envelope(&id, &good)]));
    assert_eq!((reply.status, reply.status_of(0)), (200, "OK"), "still stores: {}", reply.body);
    assert_eq!(server.sale_rows(&id), (1, 2, 2));
}

/// For properties that send only invalid input: nothing at all in the sale tables, and every audit
/// row says INVALID.
fn assert_nothing_stored(server: &TestServer) {
    for table in SALE_TABLES {
        assert_eq!(server.total(table), 0, "{table} must stay empty after invalid input only");
    }
    let mut c = server.db.client();
    let other: i64 = c
        .query_one("SELECT count(*) FROM pos_transaction_audit WHERE outcome <> 'INVALID'", &[])
        .expect("count")
        .get(0);
    assert_eq!(other, 0, "audit rows of refused input must all be INVALID");
}

/// After a property that also sent good sales: exactly those are stored (header, items, payments),
/// and every other audit row says INVALID.
fn assert_only_stored(server: &TestServer, good_ids: &[String]) {
    let mut c = server.db.client();
    let mut stored: Vec<String> = c
        .query("SELECT client_tx_id FROM pos_transactions", &[])
        .expect("stored ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    stored.sort();
    let mut expected = good_ids.to_vec();
    expected.sort();
    assert_eq!(stored, expected, "only the good sales are stored");
    for table in ["pos_transaction_items", "pos_transaction_payments"] {
        let orphans: i64 = c
            .query_one(&format!("SELECT count(*) FROM {table} WHERE client_tx_id <> ALL($1)"), &[&good_ids])
            .expect("count")
            .get(0);
        assert_eq!(orphans, 0, "{table} has rows of refused sales");
    }
    let other: i64 = c
        .query_one(
            "SELECT count(*) FROM pos_transaction_audit WHERE outcome <> 'INVALID' AND client_tx_id <> ALL($1)",
            &[&good_ids],
        )
        .expect("count")
        .get(0);
    assert_eq!(other, 0, "audit rows of refused input must all be INVALID");
}

fn run<S: Strategy>(cases: u32, strategy: &S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(cases));
    if let Err(e) = runner.run(strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Input strategies

/// Number literals beyond `i64`/`u64`/`f64`, negative zero, odd exponents and non-numbers.
fn number_literal() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "-0.0",
        "0e0",
        "5e-324",
        "1.7976931348623157e308",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "9007199254740993",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "4294967295",
        "4294967296",
        "10000000000000",
        "10000000000001",
        "-10000000000001",
        "12.5",
        "1.0",
        "1E2",
        "01",
        "+1",
        ".5",
        "NaN",
        "Infinity",
    ]);
    prop_oneof![
        3 => fixed.prop_map(str::to_owned),
        1 => "-?[1-9][0-9]{18,400}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

/// Strings that stress escaping, sorting and storage: NUL and other controls, U+2028/2029, BOM,
/// combining marks, astral characters, noncharacters, over-long texts.
const EDGE_CHARS: &[char] = &[
    '\u{0}',
    '\u{1}',
    '\u{8}',
    '\u{9}',
    '\u{a}',
    '\u{d}',
    '\u{1f}',
    '\u{7f}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{301}',
    '\u{fe0f}',
    '\u{200d}',
    '\u{e000}',
    '\u{1f600}',
    '\u{10ffff}',
    '"',
    '\\',
    '/',
    '\u{e9}',
    '\u{20ac}',
    '\u{7530}',
    ' ',
];

fn edge_string() -> impl Strategy<Value = String> {
    let c = prop_oneof![3 => select(EDGE_CHARS), 1 => any::<char>(), 2 => proptest::char::range('a', 'z')];
    prop_oneof![6 => vec(c.clone(), 0..12), 1 => vec(c, 195..=205)].prop_map(String::from_iter)
}

/// A string field as JSON text: a JSON-encoded edge string, or raw escapes that may not be JSON at all
/// (lone surrogates, raw controls).
fn string_literal() -> impl Strategy<Value = String> {
    let raw = select(vec![
        r#""\ud800""#,
        r#""\udfff""#,
        r#""x\ude00\ud83d""#,
        r#""\ud83d\ude00""#,
        r#""\u0000""#,
        r#""a\u001fb""#,
        r#""\u2028\u2029""#,
        r#""\ufeffEUR""#,
        r#""e\u0301""#,
        "\"\u{0}\"",
        "\"a\nb\"",
        r#""\x41""#,
        r#""""#,
    ]);
    prop_oneof![
        3 => edge_string().prop_map(|s| Value::String(s).to_string()),
        1 => raw.prop_map(str::to_owned),
    ]
}

/// A valid sale of `store-1` with 1..=4 items and two payments.
fn good_sale() -> impl Strategy<Value = SalePayload> {
    (0i64..1_000_000, 1usize..=4).prop_map(|(seed, n)| sale("store-1", seed, n))
}

/// JSON pointers of every leaf of `v`.
fn leaves(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                leaves(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                leaves(item, format!("{at}/{k}"), out);
            }
        }
        _ => out.push(at),
    }
}

const MARK: &str = "\u{1}MARK\u{1}";
const HASH_MARK: &str = "HASH-TO-BE-COMPUTED";

/// A one-sale request body whose payload has the literal text `literal` at `pointer`, with the hash
/// the server will compute for it (when the text is JSON at all); returns the body and, when the body
/// parses, the payload `Value` the server will see.
fn body_with_literal(
    id: &str,
    payload: &SalePayload,
    pointer: &str,
    literal: &str,
) -> (Vec<u8>, Option<Value>) {
    let mut p = serde_json::to_value(payload).expect("sale to JSON");
    if let Some(slot) = p.pointer_mut(pointer) {
        *slot = Value::String(MARK.into());
    }
    let env = json!({"client_tx_id": id, "payload_hash_version": 1, "payload_sha256": HASH_MARK,
                     "attempt": 1, "payload": p});
    let text = request(vec![env]).to_string().replace(&Value::String(MARK.into()).to_string(), literal);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => {
            let payload = v["transactions"][0]["payload"].clone();
            let hash = payload_sha256(&canonical_json(&payload).expect("a parsed Value canonicalizes"));
            (text.replace(HASH_MARK, &hash).into_bytes(), Some(payload))
        }
        Err(_) => (text.replace(HASH_MARK, &"0".repeat(64)).into_bytes(), None),
    }
}

/// What the server must answer for a well-formed envelope with a matching hash around `payload`:
/// `Ok(sale)` when it must be stored, else the documented `INVALID` code (from core's own parser and
/// validator, themselves covered by `core/tests/protocol_props.rs`).
fn expected_for(payload: &Value) -> Result<SalePayload, &'static str> {
    let sale = SalePayload::deserialize(payload)
        .map_err(|e| InvalidSale::Malformed { detail: e.to_string() }.code())?;
    validate_sale(&sale, &limits()).map_err(|e| e.code())?;
    Ok(sale)
}

/// Checks the answer to a one-sale body built by [`body_with_literal`] against [`expected_for`].
fn check_one_sale(
    server: &TestServer,
    db: &Db,
    id: &str,
    body: Vec<u8>,
    payload: Option<Value>,
) -> Result<(), TestCaseError> {
    let reply = server.push_raw(Some(&server.token), body);
    let answer = documented(&reply, payload.as_ref().map(|_| 1))?;
    let Some(payload) = payload else {
        prop_assert_eq!(answer.request_error(), Some((400, "malformed_json")), "{}", reply.body);
        return db.assert_refused(id);
    };
    match expected_for(&payload) {
        Ok(sale) if sale.header.store_id != "store-1" => {
            prop_assert_eq!(answer.request_error(), Some((403, "store_forbidden")), "{}", reply.body);
            db.assert_refused(id)
        }
        Ok(sale) => {
            prop_assert_eq!(answer.sale(0), Some(("OK", None)), "{}", reply.body);
            db.assert_stored(id, &sale)?;
            let canonical = String::from_utf8(canonical_json(&payload).expect("canonical")).expect("UTF-8");
            let mut c = db.0.borrow_mut();
            let row = c
                .query_one("SELECT payload_canonical FROM pos_transactions WHERE client_tx_id = $1", &[&id])
                .expect("stored header");
            prop_assert_eq!(row.get::<_, String>(0), canonical, "stored canonical text differs");
            Ok(())
        }
        Err(code) => {
            prop_assert_eq!(answer.sale(0), Some(("INVALID", Some(code))), "{}", reply.body);
            db.assert_invalid_audited(id, code)
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Properties

#[test]
fn random_bytes_bodies_get_a_documented_400_and_store_nothing() {
    let server = start_server();
    let tokens = select(vec![
        &b"{"[..],
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\"device_id\"",
        b"\"transactions\"",
        b"\"till-1\"",
        b"null",
        b"1e400",
        b"\\u0000",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xed\xa0\x80",
        b" ",
    ]);
    let body = prop_oneof![
        vec(any::<u8>(), 0..2048),
        vec(tokens, 0..64).prop_map(|parts| parts.concat()),
        vec(any::<u8>(), 0..64)
            .prop_map(|tail| [&br#"{"device_id":"till-1","transactions":["#[..], &tail].concat()),
    ];
    run(128, &body, |bytes| {
        let reply = server.push_raw(Some(&server.token), bytes);
        let answer = documented(&reply, None)?;
        if let Answer::Results(results) = &answer {
            // Random bytes that happen to form a request can only hold refused entries.
            prop_assert!(results.iter().all(|(s, _)| s == "INVALID"), "{:?}", results);
        }
        Ok(())
    });
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

#[test]
fn every_prefix_of_a_valid_body_is_400_malformed_json_and_stores_nothing() {
    let server = start_server();
    let db = Db::new(&server);
    // Every prefix of one body, exhaustively.
    let id = new_id();
    let body = serde_json::to_vec(&request(vec![envelope(&id, &sale("store-1", 3, 2))])).expect("json");
    for len in 0..body.len() {
        let reply = server.push_raw(Some(&server.token), body[..len].to_vec());
        assert_eq!((reply.status, reply.error_code()), (400, "malformed_json"), "prefix of {len} bytes");
    }
    assert_eq!(db.sale_rows(&id), [0, 0, 0]);
    // Sampled prefixes of other bodies (1..=3 sales, unicode texts, pretty-printed or compact).
    let strategy = (vec(good_sale(), 1..=3), any::<Index>(), any::<bool>(), edge_string());
    run(96, &strategy, |(sales, cut, pretty, name)| {
        let ids: Vec<String> = sales.iter().map(|_| new_id()).collect();
        let envelopes = sales
            .iter()
            .zip(&ids)
            .map(|(s, id)| {
                let mut s = s.clone();
                s.items[0].name = name.clone();
                envelope(id, &s)
            })
            .collect();
        let req = request(envelopes);
        let body = if pretty { serde_json::to_vec_pretty(&req) } else { serde_json::to_vec(&req) };
        let body = body.expect("json");
        let len = cut.index(body.len());
        let reply = server.push_raw(Some(&server.token), body[..len].to_vec());
        let answer = documented(&reply, None)?;
        prop_assert_eq!(
            answer.request_error(),
            Some((400, "malformed_json")),
            "prefix {} of {}",
            len,
            body.len()
        );
        for id in &ids {
            db.assert_refused(id)?;
        }
        Ok(())
    });
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

/// Where the nesting goes in a request.
#[derive(Debug, Clone, Copy)]
enum NestAt {
    Body,
    DeviceId,
    Transaction,
    Payload,
    PayloadField,
}

#[test]
fn deeply_nested_json_gets_a_documented_answer_and_stores_nothing() {
    let server = start_server();
    let db = Db::new(&server);
    let stored = RefCell::new(Vec::new());
    let place = select(vec![
        NestAt::Body,
        NestAt::DeviceId,
        NestAt::Transaction,
        NestAt::Payload,
        NestAt::PayloadField,
    ]);
    let depth = prop_oneof![10usize..=140, 10usize..=5000, Just(127usize), Just(128), Just(5000)];
    run(96, &(place, depth, vec(any::<bool>(), 1..4), good_sale()), |(place, depth, kinds, sale)| {
        let mut nested = String::new();
        for i in 0..depth {
            nested.push_str(if kinds[i % kinds.len()] { "[" } else { "{\"k\":" });
        }
        nested.push('1');
        for i in (0..depth).rev() {
            nested.push(if kinds[i % kinds.len()] { ']' } else { '}' });
        }
        let id = new_id();
        let good_id = new_id();
        let (body, n) = match place {
            NestAt::Body => (nested.into_bytes(), None),
            NestAt::DeviceId => {
                let text = json!({"device_id": MARK, "transactions": [envelope(&id, &sale)]}).to_string();
                (text.replace(&Value::String(MARK.into()).to_string(), &nested).into_bytes(), None)
            }
            NestAt::Transaction => {
                let text = request(vec![json!(MARK), envelope(&good_id, &sale)]).to_string();
                (text.replace(&Value::String(MARK.into()).to_string(), &nested).into_bytes(), Some(2))
            }
            NestAt::Payload => (body_with_literal(&id, &sale, "", &nested).0, Some(1)),
            NestAt::PayloadField => (body_with_literal(&id, &sale, "/items/0/sku", &nested).0, Some(1)),
        };
        let reply = server.push_raw(Some(&server.token), body);
        let answer = documented(&reply, None)?;
        match &answer {
            Answer::Refused { status, code } => {
                prop_assert_eq!((*status, code.as_str()), (400, "malformed_json"), "{}", reply.body)
            }
            Answer::Results(results) => {
                // Only nesting the server's parser accepts (depth < 128 in all) gets this far, and a
                // nested value is never a valid entry, payload or text.
                prop_assert!(depth < 128, "depth {} was parsed", depth);
                prop_assert_eq!(Some(results.len()), n);
                prop_assert_eq!(results[0].0.as_str(), "INVALID");
                if let NestAt::Transaction = place {
                    // One bad entry never fails its neighbours.
                    prop_assert_eq!(results[1].0.as_str(), "OK", "{}", reply.body);
                    db.assert_stored(&good_id, &sale)?;
                    stored.borrow_mut().push(good_id);
                }
            }
        }
        db.assert_refused(&id)
    });
    assert_only_stored(&server, &stored.borrow());
    assert_still_serving(&server);
}

#[test]
fn huge_and_odd_numbers_anywhere_get_the_documented_answer() {
    let server = start_server();
    let db = Db::new(&server);
    let strategy = (good_sale(), any::<Index>(), number_literal());
    run(128, &strategy, |(sale, pick, literal)| {
        let mut paths = Vec::new();
        leaves(&serde_json::to_value(&sale).expect("json"), String::new(), &mut paths);
        let path = pick.get(&paths);
        let id = new_id();
        let (body, payload) = body_with_literal(&id, &sale, path, &literal);
        check_one_sale(&server, &db, &id, body, payload)
    });
    // The same literals in the envelope's numbers (attempt, payload_hash_version).
    let strategy = (good_sale(), any::<bool>(), number_literal());
    run(64, &strategy, |(sale, in_attempt, literal)| {
        let id = new_id();
        let mut env = envelope(&id, &sale);
        let field = if in_attempt { "attempt" } else { "payload_hash_version" };
        env[field] = json!(MARK);
        let text = request(vec![env]).to_string().replace(&Value::String(MARK.into()).to_string(), &literal);
        let reply = server.push_raw(Some(&server.token), text.clone().into_bytes());
        let answer = documented(&reply, None)?;
        let Ok(parsed) = serde_json::from_str::<Value>(&text) else {
            prop_assert_eq!(answer.request_error(), Some((400, "malformed_json")), "{}", reply.body);
            return db.assert_refused(&id);
        };
        let expected = match u32::deserialize(&parsed["transactions"][0][field]) {
            Err(_) => Some("malformed_transaction"),
            Ok(v) if !in_attempt && v != 1 => Some("unsupported_hash_version"),
            Ok(_) => None,
        };
        match expected {
            Some(code) => {
                prop_assert_eq!(answer.sale(0), Some(("INVALID", Some(code))), "{}", reply.body);
                db.assert_invalid_audited(&id, code)
            }
            None => {
                prop_assert_eq!(answer.sale(0), Some(("OK", None)), "{}", reply.body);
                db.assert_stored(&id, &sale)
            }
        }
    });
    assert_still_serving(&server);
}

#[test]
fn unicode_edge_cases_in_payload_strings_are_stored_exactly_or_refused_with_the_documented_code() {
    let server = start_server();
    let db = Db::new(&server);
    let fields = select(vec![
        "/header/store_id",
        "/header/receipt_number",
        "/header/cashier_id",
        "/header/currency",
        "/header/kind",
        "/items/0/sku",
        "/items/0/name",
        "/payments/0/method",
        "/payments/0/reference",
        "/payments/1/reference",
    ]);
    let strategy = (good_sale(), vec((fields, string_literal()), 1..=3));
    run(128, &strategy, |(sale, edits)| {
        let id = new_id();
        // Apply all edits but the last as values, the last as literal text.
        let mut value = serde_json::to_value(&sale).expect("json");
        let (last_path, last_literal) = edits.last().expect("one edit at least").clone();
        for (path, literal) in &edits[..edits.len() - 1] {
            if let Ok(s) = serde_json::from_str::<Value>(literal) {
                let (parent, key) = path.rsplit_once('/').expect("pointer");
                if let Some(Value::Object(map)) = value.pointer_mut(parent) {
                    map.insert(key.to_owned(), s);
                }
            }
        }
        let Ok(edited) = SalePayload::deserialize(&value) else {
            return Ok(()); // cannot happen: every edit is a string on a string field
        };
        // Optional fields may be absent: add them so the pointer exists.
        let mut value = serde_json::to_value(&edited).expect("json");
        let (parent, key) = last_path.rsplit_once('/').expect("pointer");
        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
            map.insert(key.to_owned(), Value::Null);
        }
        let edited_value = value;
        let (body, payload) = {
            let mut p = edited_value;
            if let Some(slot) = p.pointer_mut(last_path) {
                *slot = Value::String(MARK.into());
            }
            let env = json!({"client_tx_id": id, "payload_hash_version": 1, "payload_sha256": HASH_MARK,
                             "attempt": 1, "payload": p});
            let text = request(vec![env])
                .to_string()
                .replace(&Value::String(MARK.into()).to_string(), &last_literal);
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    let payload = v["transactions"][0]["payload"].clone();
                    let hash = payload_sha256(&canonical_json(&payload).expect("canonical"));
                    (text.replace(HASH_MARK, &hash).into_bytes(), Some(payload))
                }
                Err(_) => (text.into_bytes(), None),
            }
        };
        check_one_sale(&server, &db, &id, body, payload)
    });
    assert_still_serving(&server);
}

/// How the sent `payload_sha256` is wrong.
#[derive(Debug, Clone)]
enum WrongHash {
    RandomHex(String),
    UpperCase,
    OneCharChanged(Index, char),
    Truncated(Index),
    OneCharMore,
    Empty,
    NotAString(String),
    OfNonCanonicalText,
    OfAnotherSale(i64),
}

fn wrong_hash() -> impl Strategy<Value = WrongHash> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(WrongHash::RandomHex),
        Just(WrongHash::UpperCase),
        (any::<Index>(), select(vec!['0', '7', 'a', 'f', 'g', 'A', ' ', '\u{e9}', '\u{0}']))
            .prop_map(|(i, c)| WrongHash::OneCharChanged(i, c)),
        any::<Index>().prop_map(WrongHash::Truncated),
        Just(WrongHash::OneCharMore),
        Just(WrongHash::Empty),
        select(vec!["null", "0", "1e400", "[]", "{}", "true"])
            .prop_map(|s| WrongHash::NotAString(s.to_owned())),
        Just(WrongHash::OfNonCanonicalText),
        (0i64..1000).prop_map(WrongHash::OfAnotherSale),
    ]
}

#[test]
fn wrong_hashes_are_invalid_hash_mismatch_and_store_nothing() {
    let server = start_server();
    let db = Db::new(&server);
    run(128, &(good_sale(), wrong_hash()), |(sale, wrong)| {
        let id = new_id();
        let mut env = envelope(&id, &sale);
        let right = env["payload_sha256"].as_str().expect("hash").to_owned();
        let replace_char = |i: &Index, c: char| {
            let at = i.index(right.len());
            let mut chars: Vec<char> = right.chars().collect();
            chars[at] = if chars[at] == c {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            };
            chars.into_iter().collect::<String>()
        };
        let mut expected = "hash_mismatch";
        env["payload_sha256"] = match &wrong {
            WrongHash::RandomHex(h) => json!(h),
            WrongHash::UpperCase => json!(right.to_uppercase()),
            WrongHash::OneCharChanged(i, c) => json!(replace_char(i, *c)),
            WrongHash::Truncated(i) => json!(&right[..i.index(right.len())]),
            WrongHash::OneCharMore => json!(format!("{right}0")),
            WrongHash::Empty => json!(""),
            WrongHash::NotAString(text) => {
                expected = "malformed_transaction";
                serde_json::from_str(text).unwrap_or(Value::Null)
            }
            WrongHash::OfNonCanonicalText => {
                json!(payload_sha256(&serde_json::to_vec_pretty(&sale).expect("json")))
            }
            WrongHash::OfAnotherSale(seed) => {
                json!(payload_sha256(
                    &canonical_json(&possync_test_support::sale("store-1", *seed + 1_000_000, 1)).expect("c")
                ))
            }
        };
        prop_assume!(env["payload_sha256"] != json!(right));
        let reply = server.push(&request(vec![env]));
        let answer = documented(&reply, Some(1))?;
        prop_assert_eq!(answer.sale(0), Some(("INVALID", Some(expected))), "{:?}: {}", wrong, reply.body);
        db.assert_invalid_audited(&id, expected)
    });
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

/// An oversize request.
#[derive(Debug, Clone)]
enum Oversize {
    /// More sales than `MAX_TRANSACTIONS`.
    Batch(usize),
    /// A valid request padded past `MAX_BODY_BYTES` with whitespace.
    PaddedBody(usize),
    /// A text field longer than the whole body limit.
    HugeString(usize),
    /// One sale with more than `MAX_ITEMS` items.
    Items(usize),
    /// One sale with more than 32 payments.
    Payments(usize),
}

fn oversize() -> impl Strategy<Value = Oversize> {
    prop_oneof![
        (MAX_TRANSACTIONS + 1..=40).prop_map(Oversize::Batch),
        (1usize..=3 * MAX_BODY_BYTES).prop_map(Oversize::PaddedBody),
        (MAX_BODY_BYTES..=3 * MAX_BODY_BYTES).prop_map(Oversize::HugeString),
        (MAX_ITEMS + 1..=80).prop_map(Oversize::Items),
        (33usize..=60).prop_map(Oversize::Payments),
    ]
}

#[test]
fn oversize_batches_and_bodies_get_413_or_the_documented_sale_code_and_store_nothing() {
    let server = start_server();
    let db = Db::new(&server);
    run(96, &(oversize(), 0i64..1_000_000), |(kind, seed)| {
        let id = new_id();
        let one = |s: &SalePayload| serde_json::to_vec(&request(vec![envelope(&id, s)])).expect("json");
        let (body, expected): (Vec<u8>, Result<(u16, &str), &str>) = match kind {
            Oversize::Batch(n) => {
                let mut envs: Vec<Value> =
                    (1..n).map(|i| envelope(&new_id(), &sale("store-1", seed + i as i64, 1))).collect();
                envs.push(envelope(&id, &sale("store-1", seed, 1)));
                (serde_json::to_vec(&request(envs)).expect("json"), Ok((413, "too_many_transactions")))
            }
            Oversize::PaddedBody(extra) => {
                let mut body = one(&sale("store-1", seed, 2));
                let pad = MAX_BODY_BYTES.saturating_sub(body.len()) + extra;
                body.extend(std::iter::repeat_n(b' ', pad));
                (body, Ok((413, "body_too_large")))
            }
            Oversize::HugeString(len) => {
                let mut s = sale("store-1", seed, 1);
                s.items[0].name = "\u{e9}".repeat(len / 2);
                (one(&s), Ok((413, "body_too_large")))
            }
            Oversize::Items(n) => (one(&sale("store-1", seed, n)), Err("too_many_items")),
            Oversize::Payments(n) => {
                let mut s = sale("store-1", seed, 1);
                let total = s.header.total_minor;
                prop_assume!(total >= n as i64);
                s.payments = (0..n)
                    .map(|i| SalePayment {
                        method: "voucher".into(),
                        amount_minor: if i + 1 == n { total - (n as i64 - 1) } else { 1 },
                        reference: None,
                    })
                    .collect();
                (one(&s), Err("too_many_payments"))
            }
        };
        let reply = server.push_raw(Some(&server.token), body);
        let answer = documented(&reply, None)?;
        match expected {
            Ok(refusal) => prop_assert_eq!(answer.request_error(), Some(refusal), "{}", reply.body),
            Err(code) => {
                prop_assert_eq!(answer.sale(0), Some(("INVALID", Some(code))), "{}", reply.body);
                db.assert_invalid_audited(&id, code)?;
            }
        }
        db.assert_refused(&id)
    });
    assert_nothing_stored(&server);
    assert_still_serving(&server);
}

/// How an envelope is broken.
#[derive(Debug, Clone)]
enum BadEnvelope {
    /// `client_tx_id` as this JSON text (edge strings, NUL, over-long, not a string).
    ClientTxId(String),
    /// One required field missing.
    Missing(&'static str),
    /// Not an object at all.
    NotAnObject(String),
}

fn bad_envelope() -> impl Strategy<Value = BadEnvelope> {
    let id_text = prop_oneof![
        3 => edge_string().prop_map(|s| Value::String(s).to_string()),
        1 => "[A-Za-z0-9._:-]{60,70}".prop_map(|s| Value::String(s).to_string()),
        1 => select(vec!["null", "1", "1e400", "[]", "{}", "true", r#""\u0000""#, r#""a\u0000b""#])
            .prop_map(str::to_owned),
    ];
    prop_oneof![
        4 => id_text.prop_map(BadEnvelope::ClientTxId),
        1 => select(vec!["client_tx_id", "payload_hash_version", "payload_sha256", "attempt", "payload"])
            .prop_map(BadEnvelope::Missing),
        1 => select(vec!["null", "1", "\"x\"", "[]", "{}"]).prop_map(|s| BadEnvelope::NotAnObject(s.to_owned())),
    ]
}

#[test]
fn malformed_envelopes_are_invalid_with_the_documented_code_and_audited() {
    let server = start_server();
    let db = Db::new(&server);
    let stored = RefCell::new(Vec::new());
    run(128, &(good_sale(), bad_envelope()), |(sale, bad)| {
        let fresh = new_id();
        let mut env = envelope(&fresh, &sale);
        let (id, expected) = match &bad {
            BadEnvelope::ClientTxId(text) => {
                env["client_tx_id"] = json!(MARK);
                match serde_json::from_str::<Value>(text) {
                    Ok(Value::String(id)) => {
                        let ok = possync_core::protocol::validate_client_tx_id(&id).is_ok();
                        (id, if ok { None } else { Some("bad_client_tx_id") })
                    }
                    _ => (String::new(), Some("malformed_transaction")),
                }
            }
            BadEnvelope::Missing(field) => {
                env.as_object_mut().expect("object").remove(*field);
                let id = if *field == "client_tx_id" { String::new() } else { fresh.clone() };
                (id, Some("malformed_transaction"))
            }
            BadEnvelope::NotAnObject(_) => {
                env = json!(MARK);
                (String::new(), Some("malformed_transaction"))
            }
        };
        let literal = match &bad {
            BadEnvelope::ClientTxId(t) | BadEnvelope::NotAnObject(t) => t.clone(),
            BadEnvelope::Missing(_) => String::new(),
        };
        let text = request(vec![env]).to_string().replace(&Value::String(MARK.into()).to_string(), &literal);
        let parses = serde_json::from_str::<Value>(&text).is_ok();
        let reply = server.push_raw(Some(&server.token), text.into_bytes());
        let answer = documented(&reply, Some(1))?;
        if !parses {
            // e.g. `1e400` as the id: not JSON the server can read at all.
            prop_assert_eq!(answer.request_error(), Some((400, "malformed_json")), "{}", reply.body);
            return Ok(());
        }
        // PostgreSQL text cannot hold U+0000, so an id with NUL can neither be stored nor looked up.
        let id_is_storable = !id.contains('\0');
        match expected {
            None if stored.borrow().contains(&id) => {
                // A short valid id (e.g. "c") comes up again: a replay, never a second write.
                let status = answer.sale(0).map(|(s, _)| s);
                prop_assert!(matches!(status, Some("DUPLICATE" | "CONFLICT")), "{}", reply.body);
                prop_assert_eq!(db.sale_rows(&id)[0], 1, "{} stored once", id);
            }
            None => {
                prop_assert_eq!(answer.sale(0), Some(("OK", None)), "{}", reply.body);
                db.assert_stored(&id, &sale)?;
                stored.borrow_mut().push(id);
            }
            Some(code) => {
                prop_assert_eq!(answer.sale(0), Some(("INVALID", Some(code))), "{:?}: {}", bad, reply.body);
                if id_is_storable {
                    db.assert_refused(&id)?;
                }
                // Every refused attempt is audited, whatever its id: found by the request's
                // correlation id.
                let cid = reply.correlation_id.clone().expect("correlation id");
                let audited = db.count(
                    "SELECT count(*) FROM pos_transaction_audit WHERE correlation_id = $1 AND outcome = 'INVALID'",
                    &cid,
                );
                prop_assert_eq!(audited, 1, "the refused attempt ({:?}) left no audit row", bad);
            }
        }
        Ok(())
    });
    assert_only_stored(&server, &stored.borrow());
    assert_still_serving(&server);
}

// ---------------------------------------------------------------------------------------------------
// Regressions for what the properties above found (deterministic, so they fail on every run).

/// Found by `malformed_envelopes_...`, `wrong_hashes_...` and `unicode_edge_cases_...`: a refused
/// attempt whose id, hash or parser message held U+0000 left no audit row (PostgreSQL `text` cannot
/// hold NUL, so the audit insert failed). It is audited with U+FFFD in place of NUL.
#[test]
fn refused_input_with_nul_is_still_audited() {
    let server = start_server();
    let good = sale("store-1", 1, 1);
    let mut bad_id = envelope("a\u{0}b", &good);
    bad_id["attempt"] = json!(2);
    let mut bad_hash = envelope(&new_id(), &good);
    bad_hash["payload_sha256"] = json!(format!("{}\u{0}", "0".repeat(63)));
    let mut bad_kind = serde_json::to_value(&good).expect("json");
    bad_kind["header"]["kind"] = json!("\u{0}");
    let canonical = canonical_json(&bad_kind).expect("canonical");
    let bad_kind_id = new_id();
    let bad_kind = json!({"client_tx_id": bad_kind_id, "payload_hash_version": 1, "attempt": 1,
                          "payload_sha256": payload_sha256(&canonical), "payload": bad_kind});
    let reply = server.push(&request(vec![bad_id, bad_hash, bad_kind]));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let codes: Vec<&str> = (0..3).map(|i| reply.code_of(i)).collect();
    assert_eq!(codes, ["bad_client_tx_id", "hash_mismatch", "malformed_sale"]);
    let cid = reply.correlation_id.expect("correlation id");
    let mut c = server.db.client();
    let rows = c
        .query(
            "SELECT client_tx_id, coalesce(payload_sha256, ''), coalesce(message, ''), outcome \
             FROM pos_transaction_audit WHERE correlation_id = $1 ORDER BY audit_id",
            &[&cid],
        )
        .expect("audit rows");
    assert_eq!(rows.len(), 3, "every refused attempt is audited");
    assert_eq!(rows[0].get::<_, String>(0), "a\u{fffd}b");
    assert!(rows[1].get::<_, String>(1).ends_with('\u{fffd}'));
    assert_eq!(rows[2].get::<_, String>(0), bad_kind_id);
    assert!(rows.iter().all(|r| r.get::<_, String>(3) == "INVALID"));
    assert_nothing_stored(&server);
}

/// Found by `huge_and_odd_numbers_...`: a `line_no` above 2^31 - 1 passed validation (the till would
/// enqueue it) but the database refused it (`rejected_by_database`, "should not happen after
/// validation"). Validation now refuses it as `bad_line_no`; 2^31 - 1 itself is stored.
#[test]
fn line_no_beyond_the_sql_integer_range_is_bad_line_no() {
    let server = start_server();
    let mut s = sale("store-1", 1, 1);
    s.items[0].line_no = u32::MAX;
    let id = new_id();
    let reply = server.push(&request(vec![envelope(&id, &s)]));
    assert_eq!((reply.status_of(0), reply.code_of(0)), ("INVALID", "bad_line_no"), "{}", reply.body);
    assert_eq!(server.sale_rows(&id), (0, 0, 0));
    s.items[0].line_no = i32::MAX as u32;
    let id = new_id();
    let reply = server.push(&request(vec![envelope(&id, &s)]));
    assert_eq!(reply.status_of(0), "OK", "{}", reply.body);
    assert_eq!(server.sale_rows(&id), (1, 1, 2));
}
