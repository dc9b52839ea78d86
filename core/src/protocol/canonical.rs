//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! Canonical bytes are what payload hash v1 is computed over: object members sorted by their UTF-16
//! code units, no insignificant whitespace, ECMAScript number formatting and minimal string escapes.
//! The implementation is the `serde_json_canonicalizer` crate, checked against RFC 8785's own examples
//! in this module's tests.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

/// A value could not be turned into canonical JSON.
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalize JSON: {0}")]
pub struct CanonicalError(#[from] serde_json::Error);

/// Canonical JSON (RFC 8785) of any serializable value, as UTF-8 bytes.
///
/// Values whose numbers are all integers within ±2^53 and whose object keys are all ASCII (every
/// sale) take a fast path: `serde_json` writes them exactly as RFC 8785 does (its maps are sorted by
/// key, and for ASCII keys byte order is UTF-16 order; integers in that range print the same as the
/// ECMAScript doubles RFC 8785 asks for; the string escapes are the same). Anything else goes through
/// `serde_json_canonicalizer`. The property tests check both paths against a reference. (The crate
/// alone re-parses every object key to sort it: 10 µs of a 44 µs enqueue, see docs/benchmarks.md.)
///
/// # Errors
/// [`CanonicalError`] when the value cannot be represented as JSON (e.g. a map with non-string keys
/// or a non-finite float).
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let tree = serde_json::to_value(value)?;
    if serde_json_maps_are_sorted() && plain(&tree) {
        Ok(serde_json::to_vec(&tree)?)
    } else {
        Ok(serde_json_canonicalizer::to_vec(&tree)?)
    }
}

/// Canonical JSON (RFC 8785) of any serializable value, as a string.
///
/// # Errors
/// As [`canonical_json`].
pub fn canonical_json_string<T: Serialize>(value: &T) -> Result<String, CanonicalError> {
    let bytes = canonical_json(value)?;
    // Both writers emit UTF-8 only; a failure here would be a bug in them, reported as an error.
    String::from_utf8(bytes).map_err(|e| CanonicalError(serde::ser::Error::custom(e)))
}

/// Largest integer a double holds exactly (2^53).
const MAX_EXACT_INT: u64 = 1 << 53;

/// Whether `serde_json` writes `v` exactly as RFC 8785 does: integers within ±2^53, ASCII keys.
fn plain(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => {
            n.as_u64().is_some_and(|u| u <= MAX_EXACT_INT)
                || n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_EXACT_INT)
        }
        Value::Array(items) => items.iter().all(plain),
        Value::Object(map) => map.iter().all(|(k, v)| k.is_ascii() && plain(v)),
    }
}

/// `serde_json::Map` is sorted by key unless some crate in the build enables serde_json's
/// `preserve_order` feature; checked once, and the fast path is off if not.
fn serde_json_maps_are_sorted() -> bool {
    static SORTED: OnceLock<bool> = OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".into(), Value::Null);
        map.insert("a".into(), Value::Null);
        map.keys().map(String::as_str).eq(["a", "b"])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(input: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(input).expect("test input is JSON");
        String::from_utf8(canonical_json(&value).expect("canonicalizes")).expect("UTF-8")
    }

    /// RFC 8785 section 3.2.2: the "sample input" and its canonical form.
    #[test]
    fn rfc8785_sample_input() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(canon(input), expected);
    }

    /// RFC 8785 section 3.2.3: property sorting by UTF-16 code units.
    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), expected);
    }

    /// RFC 8785 appendix B: IEEE 754 number serialization samples.
    #[test]
    fn rfc8785_number_samples() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("9007199254740992", "9007199254740992"),
            ("9007199254740993", "9007199254740992"),
            ("295147905179352830000", "295147905179352830000"),
            ("1e+23", "1e+23"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("4.35", "4.35"),
            ("0.1", "0.1"),
            ("999999999999999700000", "999999999999999700000"),
            ("1e+21", "1e+21"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(&format!("[{input}]")), format!("[{expected}]"), "input {input}");
        }
    }

    #[test]
    fn nested_objects_are_sorted_and_compact() {
        assert_eq!(
            canon(r#"{ "b": [ {"z": 1, "a": "x"} ], "a": {"d": null, "c": -12} }"#),
            r#"{"a":{"c":-12,"d":null},"b":[{"a":"x","z":1}]}"#
        );
    }
}
