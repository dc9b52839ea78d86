//! Property tests of the payload parser, the validator and the RFC 8785 canonicalizer (issue 7,
//! "fuzzing of bad input").
//!
//! - (a) Parsing arbitrary bytes and hostile JSON text (huge and odd number literals, deep nesting,
//!   lone surrogate escapes, control characters, truncated and mutated sales) as a [`SalePayload`] and
//!   validating it never panics; a refusal is a typed error whose code is documented in
//!   `docs/protocol.md`.
//! - (b) Canonicalization of any float-free JSON value is idempotent, independent of the member order,
//!   whitespace and string escapes of the text it was parsed from, and equal to a small reference
//!   JCS written here (members sorted by UTF-16 code units, minimal escapes).
//! - (c) Generated sales that follow every rule of `docs/protocol.md` are accepted, and the canonical
//!   bytes of the typed sale equal those of its `serde_json::Value` (what the server hashes).
//! - (d) Moving one money field of a valid sale by ±1 gets it refused with a money code.
//!
//! Case counts are fixed in each `ProptestConfig` (independent of `PROPTEST_CASES`) and failures are
//! not persisted; a failure prints the minimal input proptest shrank it to.

use possync_core::protocol::validate::{MAX_OCCURRED_AT_MS, MIN_OCCURRED_AT_MS};
use possync_core::protocol::{
    canonical_json, payload_sha256, validate_sale, Limits, SaleHeader, SaleItem, SaleKind, SalePayload,
    SalePayment, INVALID_SALE_CODES,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use serde::Deserialize;
use serde_json::Value;

/// Codes a ±1 change of one money field may give.
const MONEY_CODES: &[&str] = &["totals_mismatch", "negative_money", "discount_too_large", "out_of_range"];

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

#[test]
fn documented_codes_are_the_ones_in_protocol_md() {
    let doc = include_str!("../../../docs/protocol.md");
    for code in INVALID_SALE_CODES {
        assert!(doc.contains(&format!("`{code}`")), "{code} is not documented in docs/protocol.md");
    }
}

// ---------------------------------------------------------------------------------------------------
// Strategies: characters, strings, number literals, JSON values and texts.

/// Characters that stress escaping and sorting: controls, separators, BOM, combining marks, the
/// UTF-16 surrogate boundary (U+E000.. sorts after astral characters in UTF-16 but before them in UTF-8).
const EDGE_CHARS: &[char] = &[
    '\u{0}',
    '\u{1}',
    '\u{8}',
    '\u{9}',
    '\u{a}',
    '\u{c}',
    '\u{d}',
    '\u{1f}',
    '\u{7f}',
    '\u{80}',
    '\u{85}',
    '\u{9f}',
    '\u{a0}',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{fffe}',
    '\u{ffff}',
    '\u{fffd}',
    '\u{301}',
    '\u{20dd}',
    '\u{fe0f}',
    '\u{200d}',
    '\u{200b}',
    '\u{e000}',
    '\u{f8ff}',
    '\u{fb33}',
    '\u{1f600}',
    '\u{1f3fb}',
    '\u{10000}',
    '\u{10ffff}',
    '"',
    '\\',
    '/',
    'e',
    '\u{e9}',
    '\u{20ac}',
    '\u{7530}',
];

fn edge_char() -> impl Strategy<Value = char> {
    prop_oneof![3 => select(EDGE_CHARS), 1 => any::<char>(), 2 => proptest::char::range('a', 'z')]
}

fn edge_string() -> impl Strategy<Value = String> {
    vec(edge_char(), 0..10).prop_map(String::from_iter)
}

/// Number literals as text: beyond `i64`/`u64`/`f64`, negative zero, odd exponents, and things that
/// are not JSON numbers at all.
fn number_literal() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        "1e400",
        "-1e400",
        "1E+400",
        "1e-400",
        "-0",
        "-0.0",
        "0e0",
        "0.0",
        "5e-324",
        "1.7976931348623157e308",
        "123456789012345678901234567890",
        "-123456789012345678901234567890",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "4294967295",
        "4294967296",
        "10000000000000",
        "10000000000001",
        "-10000000000001",
        "12.5",
        "1.0",
        "00",
        "01",
        "+1",
        ".5",
        "1.",
        "-",
        "NaN",
        "Infinity",
        "-Infinity",
        "0x10",
        "1_000",
    ]);
    prop_oneof![
        3 => fixed.prop_map(str::to_owned),
        1 => "-?[1-9][0-9]{0,400}",
        1 => "-?[1-9][0-9]{0,30}(\\.[0-9]{1,30})?([eE][-+]?[0-9]{1,4})?",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:e}")),
    ]
}

/// A JSON string literal as text, with escapes a till would not send: lone and reversed surrogate
/// escapes, escaped NUL, upper-case hex, raw control characters (invalid JSON), unknown escapes.
fn string_literal() -> impl Strategy<Value = String> {
    let fixed = select(vec![
        r#""\ud800""#,
        r#""\udfff""#,
        r#""\ude00\ud83d""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00""#,
        r#""\ud83d""#,
        r#""a\ud800b""#,
        r#""\u0000""#,
        r#""\u001f""#,
        r#""\u2028\u2029""#,
        r#""\ufeff""#,
        r#""e\u0301""#,
        r#""\u00e9""#,
        r#""\/""#,
        r#""\x41""#,
        r#""\u12""#,
        r#""\""#,
        "\"\u{0}\"",
        "\"\n\"",
        "\"\u{2028}\"",
        "\"\u{feff}\"",
        r#""""#,
    ]);
    prop_oneof![
        2 => fixed.prop_map(str::to_owned),
        1 => edge_string().prop_map(|s| Value::String(s).to_string()),
        1 => edge_string().prop_map(|s| format!("\"{s}\"")),
    ]
}

/// Nesting `depth` arrays or objects (by `kinds`) around `inner`.
fn nest(depth: usize, kinds: &[bool], inner: &str) -> String {
    let mut out = String::with_capacity(depth * 6 + inner.len());
    for i in 0..depth {
        out.push_str(if kinds[i % kinds.len()] { "[" } else { "{\"k\":" });
    }
    out.push_str(inner);
    for i in (0..depth).rev() {
        out.push(if kinds[i % kinds.len()] { ']' } else { '}' });
    }
    out
}

/// Deeply nested text, on both sides of `serde_json`'s recursion limit (128).
fn deep_literal() -> impl Strategy<Value = String> {
    (0usize..300, vec(any::<bool>(), 1..4), prop_oneof![Just("1".to_owned()), Just("[]".to_owned())])
        .prop_map(|(depth, kinds, inner)| nest(depth, &kinds, &inner))
}

/// Any JSON-ish literal: numbers, strings, keywords, nesting, and near-misses.
fn hostile_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => number_literal(),
        3 => string_literal(),
        1 => deep_literal(),
        1 => select(vec!["null", "true", "false", "[]", "{}", "tru", "nul", "[1,]", "{\"a\"}", ""])
            .prop_map(str::to_owned),
    ]
}

/// Largest integer JCS (which writes every number as an IEEE 754 double) keeps exact: 2^53.
const MAX_EXACT_INT: i64 = 1 << 53;

/// Integers: with `exact`, within ±2^53 (where JCS output equals the plain decimal); otherwise any
/// `i64` / `u64`, which JCS rounds to the nearest double.
fn int_value(exact: bool) -> BoxedStrategy<Value> {
    if exact {
        prop_oneof![
            (-MAX_EXACT_INT..=MAX_EXACT_INT).prop_map(Value::from),
            select(vec![0i64, -1, 1, MAX_EXACT_INT, -MAX_EXACT_INT, 10_000_000_000_000])
                .prop_map(Value::from),
        ]
        .boxed()
    } else {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            select(vec![i64::MIN, i64::MAX, MAX_EXACT_INT + 1, -MAX_EXACT_INT - 1]).prop_map(Value::from),
        ]
        .boxed()
    }
}

/// Float-free JSON values with edge-case strings and keys; trees up to depth 40, plus chains of nesting.
fn json_value_no_floats() -> impl Strategy<Value = Value> {
    json_value(true)
}

/// As [`json_value_no_floats`], with integers of any size (`exact` = false) or within ±2^53.
fn json_value(exact: bool) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        int_value(exact),
        edge_string().prop_map(Value::String),
    ];
    let tree = leaf.clone().prop_recursive(40, 200, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((edge_string(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    let chain = (leaf, vec((any::<bool>(), edge_string()), 0..=40)).prop_map(|(leaf, wraps)| {
        wraps.into_iter().fold(leaf, |inner, (array, key)| {
            if array {
                Value::Array(vec![inner])
            } else {
                Value::Object([(key, inner)].into_iter().collect())
            }
        })
    });
    prop_oneof![3 => tree, 1 => chain]
}

// ---------------------------------------------------------------------------------------------------
// A JSON writer with free choices (member order, whitespace, escapes) and a reference JCS.

/// A tiny deterministic generator for the writer's choices (seeded by proptest, so shrinkable).
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        // xorshift64*; the seed is never 0 (see `new`).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn new(seed: u64) -> Self {
        Choices(seed | 1)
    }
}

/// Writes `v` as valid JSON text with shuffled members, random whitespace and random (valid) escapes.
fn write_free(v: &Value, c: &mut Choices, out: &mut String) {
    const WS: [&str; 5] = ["", "", " ", "\n", "\t\r\n  "];
    let ws = |c: &mut Choices, out: &mut String| out.push_str(WS[c.below(WS.len())]);
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
        Value::String(s) => write_string_free(s, c, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(c, out);
                write_free(item, c, out);
                ws(c, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            for i in (1..members.len()).rev() {
                members.swap(i, c.below(i + 1));
            }
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(c, out);
                write_string_free(key, c, out);
                ws(c, out);
                out.push(':');
                ws(c, out);
                write_free(value, c, out);
            }
            ws(c, out);
            out.push('}');
        }
    }
}

fn write_string_free(s: &str, c: &mut Choices, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        let must_escape = ch == '"' || ch == '\\' || (ch as u32) < 0x20;
        if must_escape || c.below(4) == 0 {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                if c.below(2) == 0 {
                    out.push_str(&format!("\\u{unit:04x}"));
                } else {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        } else {
            out.push(ch);
        }
    }
    out.push('"');
}

/// Reference RFC 8785 for float-free values: members sorted by UTF-16 code units, no whitespace,
/// minimal escapes with lower-case hex, everything else as UTF-8.
fn reference_jcs(v: &Value, out: &mut String) {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
        Value::String(s) => reference_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_jcs(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by_key(|(k, _)| k.encode_utf16().collect::<Vec<u16>>());
            out.push('{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_string(key, out);
                out.push(':');
                reference_jcs(value, out);
            }
            out.push('}');
        }
    }
}

fn reference_string(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn canonical_string(v: &Value) -> String {
    String::from_utf8(canonical_json(v).expect("a float-free value canonicalizes")).expect("UTF-8")
}

// ---------------------------------------------------------------------------------------------------
// Valid sales, built to satisfy every rule of docs/protocol.md.

/// Text characters a sale may carry: anything but control characters (Cc), bidi controls and
/// line / paragraph separators, edge cases included.
fn text_char() -> impl Strategy<Value = char> {
    let allowed = |c: &char| !possync_core::protocol::validate::is_refused_char(*c);
    prop_oneof![
        2 => select(EDGE_CHARS).prop_filter("no refused characters", allowed),
        1 => any::<char>().prop_filter("no refused characters", allowed),
        3 => proptest::char::range('A', 'z'),
    ]
}

/// A valid text: 1..=200 characters, not only whitespace, no control characters.
fn valid_text() -> impl Strategy<Value = String> {
    prop_oneof![4 => vec(text_char(), 1..24), 1 => vec(text_char(), 200..=200)]
        .prop_map(String::from_iter)
        .prop_filter("not only whitespace", |s| !s.trim().is_empty())
}

#[derive(Debug, Clone)]
struct LineSpec {
    qty_abs: i64,
    price: i64,
    discount_permille: i64,
    refund_flag: bool,
    sku: String,
    name: String,
}

fn line_spec() -> impl Strategy<Value = LineSpec> {
    let qty = prop_oneof![1i64..=3, 1i64..=100_000, Just(1000i64), Just(1_000_000_000i64)];
    let price = prop_oneof![0i64..=2, 0i64..=1_000_000, Just(1_000_000i64)];
    let discount = prop_oneof![Just(0i64), 0i64..=1000, Just(1000i64)];
    (qty, price, discount, any::<bool>(), valid_text(), valid_text()).prop_map(
        |(qty_abs, price, discount_permille, refund_flag, sku, name)| LineSpec {
            qty_abs,
            price,
            discount_permille,
            refund_flag,
            sku,
            name,
        },
    )
}

#[derive(Debug, Clone)]
struct PaymentSpec {
    method: String,
    weight: i64,
    reference: Option<String>,
}

fn payment_spec() -> impl Strategy<Value = PaymentSpec> {
    ("[a-z0-9_]{1,32}", 1i64..100, proptest::option::of(valid_text()))
        .prop_map(|(method, weight, reference)| PaymentSpec { method, weight, reference })
}

fn gross(qty: i64, price: i64) -> i64 {
    let product = i128::from(qty) * i128::from(price);
    let magnitude = (product.abs() + 500) / 1000;
    i64::try_from(magnitude * product.signum()).expect("generated lines stay in range")
}

/// Splits `amount` (> 0) into `weights.len().min(amount)` positive parts by weight.
fn split(amount: i64, weights: &[i64]) -> Vec<i64> {
    let n = weights.len().min(usize::try_from(amount).unwrap_or(usize::MAX)).max(1);
    let weights = &weights[..n];
    let total_weight: i64 = weights.iter().sum();
    let spare = amount - n as i64;
    let mut parts: Vec<i64> = weights
        .iter()
        .map(|w| {
            1 + i64::try_from(i128::from(spare) * i128::from(*w) / i128::from(total_weight)).unwrap_or(0)
        })
        .collect();
    let assigned: i64 = parts.iter().sum();
    parts[n - 1] += amount - assigned;
    parts
}

prop_compose! {
    fn valid_sale()(
        refund in any::<bool>(),
        lines in vec(line_spec(), 1..6),
        store_id in valid_text(),
        receipt_number in valid_text(),
        cashier_id in proptest::option::of(valid_text()),
        currency in select(vec!["EUR", "USD", "JPY", "GBP", "CHF", "SEK", "KWD", "BHD", "ISK", "XAU"]),
        occurred_at_ms in MIN_OCCURRED_AT_MS..MAX_OCCURRED_AT_MS,
        tax in prop_oneof![Just(0i64), 0i64..10_000],
        change in prop_oneof![Just(0i64), 0i64..10_000],
        payments in vec(payment_spec(), 1..5),
    ) -> Option<SalePayload> {
        let items: Vec<SaleItem> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                // Quantities are capped so that qty × price stays within ±10^13 minor units.
                let qty_abs = l.qty_abs.min(100_000_000);
                let quantity_milli = if refund { -qty_abs } else { qty_abs };
                let g = gross(quantity_milli, l.price);
                let discount_minor = g.abs() * l.discount_permille / 1000;
                SaleItem {
                    line_no: i as u32 + 1,
                    sku: l.sku,
                    name: l.name,
                    quantity_milli,
                    unit_price_minor: l.price,
                    discount_minor,
                    line_total_minor: g - g.signum() * discount_minor,
                    refund: refund || l.refund_flag,
                }
            })
            .collect();
        let subtotal: i64 = items.iter().map(|i| i.line_total_minor).sum();
        let tax = if refund { -tax } else { tax };
        let total = subtotal + tax;
        let weights: Vec<i64> = payments.iter().map(|p| p.weight).collect();
        let (change, amounts) = if refund {
            if total == 0 {
                return None; // a refund of 0 cannot be paid out with non-zero negative tenders
            }
            (0, split(-total, &weights).into_iter().map(|a| -a).collect::<Vec<_>>())
        } else {
            let change = if total + change == 0 { 1 } else { change };
            (change, split(total + change, &weights))
        };
        let payments = payments
            .into_iter()
            .zip(amounts)
            .map(|(p, amount_minor)| SalePayment { method: p.method, amount_minor, reference: p.reference })
            .collect();
        Some(SalePayload {
            header: SaleHeader {
                store_id,
                receipt_number,
                kind: if refund { SaleKind::Refund } else { SaleKind::Sale },
                occurred_at_ms,
                currency: currency.to_owned(),
                subtotal_minor: subtotal,
                tax_minor: tax,
                total_minor: total,
                change_minor: change,
                cashier_id,
            },
            items,
            payments,
        })
    }
}

fn some_valid_sale() -> impl Strategy<Value = SalePayload> {
    valid_sale().prop_filter_map("refund with a zero total", |s| s)
}

/// JSON pointers of every leaf (and every container) of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                pointers(item, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A valid sale's JSON text with one value replaced by a hostile literal, a field dropped or added,
/// or the text cut short.
fn mutated_sale_text() -> impl Strategy<Value = Vec<u8>> {
    (some_valid_sale(), any::<Index>(), 0u8..4, hostile_literal(), any::<Index>()).prop_map(
        |(sale, pick, how, literal, cut)| {
            let mut value = serde_json::to_value(&sale).expect("sale to JSON");
            let mut paths = Vec::new();
            pointers(&value, String::new(), &mut paths);
            let path = pick.get(&paths).clone();
            const MARK: &str = "\u{1}MUTATION\u{1}";
            match how {
                0 | 1 => {
                    if let Some(slot) = value.pointer_mut(&path) {
                        *slot = Value::String(MARK.into());
                    }
                }
                2 => {
                    if let Some((parent, key)) = path.rsplit_once('/') {
                        if let Some(Value::Object(map)) = value.pointer_mut(parent) {
                            map.remove(key);
                            map.insert("surprise".into(), Value::String(MARK.into()));
                        }
                    }
                }
                _ => {}
            }
            let text = value.to_string().replace(&Value::String(MARK.into()).to_string(), &literal);
            let mut bytes = text.into_bytes();
            if how == 3 {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        },
    )
}

/// Parses and validates `bytes` the way the client (typed) and the server (through a `Value`) do.
/// Panics (failing the property) only when a refusal carries an undocumented code.
fn parse_validate_canonicalize(bytes: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    if let Ok(sale) = serde_json::from_slice::<SalePayload>(bytes) {
        if let Err(e) = validate_sale(&sale, &limits) {
            prop_assert!(INVALID_SALE_CODES.contains(&e.code()), "undocumented code {}", e.code());
        }
    }
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        match canonical_json(&value) {
            Ok(canonical) => {
                let again: Result<Value, _> = serde_json::from_slice(&canonical);
                prop_assert!(
                    again.is_ok(),
                    "canonical bytes are not JSON: {:?}",
                    String::from_utf8_lossy(&canonical)
                );
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        // The server's path: the payload arrives as a Value inside the envelope.
        if let Ok(sale) = SalePayload::deserialize(&value) {
            if let Err(e) = validate_sale(&sale, &limits) {
                prop_assert!(INVALID_SALE_CODES.contains(&e.code()), "undocumented code {}", e.code());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// (a) never panics, refusals are typed and documented

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        parse_validate_canonicalize(&bytes)?;
    }

    #[test]
    fn a_hostile_literals_never_panic(literal in hostile_literal()) {
        parse_validate_canonicalize(literal.as_bytes())?;
        parse_validate_canonicalize(format!("[{literal}]").as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn a_mutated_and_truncated_sales_never_panic(bytes in mutated_sale_text()) {
        parse_validate_canonicalize(&bytes)?;
    }

    #[test]
    fn a_random_json_values_never_panic(value in json_value_no_floats(), seed in any::<u64>()) {
        let mut text = String::new();
        write_free(&value, &mut Choices::new(seed), &mut text);
        parse_validate_canonicalize(text.as_bytes())?;
    }
}

#[test]
fn a_nesting_beyond_the_recursion_limit_is_an_error_not_a_crash() {
    for depth in [127, 128, 129, 1_000, 100_000] {
        for kinds in [&[true][..], &[false], &[true, false]] {
            let text = nest(depth, kinds, "1");
            let parsed = serde_json::from_str::<Value>(&text);
            assert_eq!(parsed.is_ok(), depth < 128, "depth {depth}");
            assert!(serde_json::from_str::<SalePayload>(&text).is_err());
        }
    }
}

#[test]
fn a_lone_surrogate_escapes_are_refused_by_the_parser() {
    for text in [r#""\ud800""#, r#""\udfff""#, r#""a\ud800b""#, r#""\ude00\ud83d""#] {
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text} must not parse");
    }
    let pair: Value = serde_json::from_str(r#""\ud83d\ude00""#).expect("a surrogate pair parses");
    assert_eq!(pair, Value::String("\u{1f600}".into()));
}

// ---------------------------------------------------------------------------------------------------
// (b) canonicalization: idempotent, order/whitespace/escape independent, equal to the reference

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn b_canonicalization_is_idempotent_and_order_independent(
        value in json_value_no_floats(),
        seed_a in any::<u64>(),
        seed_b in any::<u64>(),
    ) {
        let canonical = canonical_string(&value);
        let reparsed: Value = serde_json::from_str(&canonical).expect("canonical text is JSON");
        prop_assert_eq!(&reparsed, &value);
        prop_assert_eq!(canonical_string(&reparsed), canonical.clone(), "canonical(parse(canonical(v))) differs");

        let mut expected = String::new();
        reference_jcs(&value, &mut expected);
        prop_assert_eq!(&canonical, &expected, "differs from the reference JCS");

        for seed in [seed_a, seed_b] {
            let mut text = String::new();
            write_free(&value, &mut Choices::new(seed), &mut text);
            let parsed: Value = serde_json::from_str(&text).expect("the free writer writes JSON");
            prop_assert_eq!(canonical_string(&parsed), canonical.clone(), "text {:?}", text);
        }
    }

    /// Integers beyond ±2^53 are written as the nearest double (RFC 8785 treats every number as an
    /// IEEE 754 double), so canonicalization is no longer value-preserving there; it stays idempotent
    /// and order independent. Sales never carry such integers (money ≤ 10^13, see `out_of_range`).
    #[test]
    fn b_canonicalization_of_huge_integers_is_idempotent_and_order_independent(
        value in json_value(false),
        seed in any::<u64>(),
    ) {
        let canonical = canonical_string(&value);
        let reparsed: Value = serde_json::from_str(&canonical).expect("canonical text is JSON");
        prop_assert_eq!(canonical_string(&reparsed), canonical.clone(), "canonical(parse(canonical(v))) differs");
        let mut text = String::new();
        write_free(&value, &mut Choices::new(seed), &mut text);
        let parsed: Value = serde_json::from_str(&text).expect("the free writer writes JSON");
        prop_assert_eq!(canonical_string(&parsed), canonical, "text {:?}", text);
    }
}

proptest! {
    #![proptest_config(config(384))]

    /// `canonical_json` writes plain values (integers within ±2^53, ASCII keys) with serde_json and
    /// everything else with serde_json_canonicalizer: both paths give the crate's bytes, for values
    /// on either side of the line (huge integers, non-ASCII keys from the edge characters).
    #[test]
    fn b_the_fast_path_gives_the_same_bytes_as_the_canonicalizer_crate(
        value in prop_oneof![json_value(true), json_value(false)],
    ) {
        let ours = canonical_json(&value).expect("canonicalizes");
        let crate_bytes = serde_json_canonicalizer::to_vec(&value).expect("crate canonicalizes");
        prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&crate_bytes));
    }

    #[test]
    fn b_a_sale_canonicalizes_as_the_canonicalizer_crate_does(sale in some_valid_sale()) {
        let ours = canonical_json(&sale).expect("canonicalizes");
        let crate_bytes = serde_json_canonicalizer::to_vec(&sale).expect("crate canonicalizes");
        prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&crate_bytes));
    }
}

#[test]
fn b_integers_beyond_2_pow_53_are_rounded_like_doubles() {
    let value: Value = serde_json::from_str("[9007199254740993,57393695149333541]").expect("JSON");
    assert_eq!(canonical_string(&value), "[9007199254740992,57393695149333544]");
}

// ---------------------------------------------------------------------------------------------------
// (c) valid sales are accepted; typed and Value canonical bytes agree

proptest! {
    #![proptest_config(config(384))]

    #[test]
    fn c_valid_sales_are_accepted_and_hash_the_same_typed_or_as_value(
        sale in some_valid_sale(),
        seed in any::<u64>(),
    ) {
        let limits = Limits::default();
        prop_assert_eq!(validate_sale(&sale, &limits), Ok(()));

        let typed = canonical_json(&sale).expect("typed sale canonicalizes");
        let value = serde_json::to_value(&sale).expect("sale to Value");
        prop_assert_eq!(&canonical_json(&value).expect("value canonicalizes"), &typed);

        // As the server receives it: any member order, whitespace and escapes.
        let mut text = String::new();
        write_free(&value, &mut Choices::new(seed), &mut text);
        let received: Value = serde_json::from_str(&text).expect("JSON");
        prop_assert_eq!(payload_sha256(&canonical_json(&received).expect("canonical")), payload_sha256(&typed));
        let parsed = SalePayload::deserialize(&received).expect("a valid sale parses from its Value");
        prop_assert_eq!(&parsed, &sale);
        let reparsed: SalePayload = serde_json::from_slice(&typed).expect("canonical bytes parse as a sale");
        prop_assert_eq!(&reparsed, &sale);
    }
}

// ---------------------------------------------------------------------------------------------------
// (d) one money field off by one is refused

#[derive(Debug, Clone, Copy)]
enum MoneyField {
    Subtotal,
    Tax,
    Total,
    Change,
    UnitPrice(usize),
    Discount(usize),
    LineTotal(usize),
    Payment(usize),
}

fn money_fields(sale: &SalePayload) -> Vec<MoneyField> {
    let mut fields = vec![MoneyField::Subtotal, MoneyField::Tax, MoneyField::Total, MoneyField::Change];
    for (i, item) in sale.items.iter().enumerate() {
        // Below one unit, a price change of 1 minor unit can vanish in the rounding of
        // quantity × price / 1000 (the documented rule), so the price is only mutated from 1 unit up.
        if item.quantity_milli.abs() >= 1000 {
            fields.push(MoneyField::UnitPrice(i));
        }
        fields.push(MoneyField::Discount(i));
        fields.push(MoneyField::LineTotal(i));
    }
    fields.extend((0..sale.payments.len()).map(MoneyField::Payment));
    fields
}

fn field_mut(sale: &mut SalePayload, field: MoneyField) -> &mut i64 {
    match field {
        MoneyField::Subtotal => &mut sale.header.subtotal_minor,
        MoneyField::Tax => &mut sale.header.tax_minor,
        MoneyField::Total => &mut sale.header.total_minor,
        MoneyField::Change => &mut sale.header.change_minor,
        MoneyField::UnitPrice(i) => &mut sale.items[i].unit_price_minor,
        MoneyField::Discount(i) => &mut sale.items[i].discount_minor,
        MoneyField::LineTotal(i) => &mut sale.items[i].line_total_minor,
        MoneyField::Payment(i) => &mut sale.payments[i].amount_minor,
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn d_one_money_field_off_by_one_is_refused(
        sale in some_valid_sale(),
        pick in any::<Index>(),
        up in any::<bool>(),
    ) {
        let limits = Limits::default();
        prop_assert_eq!(validate_sale(&sale, &limits), Ok(()));
        let field = *pick.get(&money_fields(&sale));
        let mut mutated = sale.clone();
        *field_mut(&mut mutated, field) += if up { 1 } else { -1 };
        match validate_sale(&mutated, &limits) {
            Ok(()) => prop_assert!(false, "{field:?} {} by 1 was accepted", if up { "up" } else { "down" }),
            Err(e) => prop_assert!(MONEY_CODES.contains(&e.code()), "{field:?}: code {} ({e})", e.code()),
        }
    }
}
