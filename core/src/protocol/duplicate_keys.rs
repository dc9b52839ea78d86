//! Finds a JSON object that names a key twice.
//!
//! JSON parsers disagree on `{"store_id":"B","store_id":"A"}` (first wins, last wins, error), so a
//! sale carrying one could be read differently by the till, the server and whatever reads the stored
//! payload later. possync refuses such a sale (`INVALID` `duplicate_key`): the server checks the text
//! it received before anything else reads it, and [`parse_sale_json`] gives apps that build sales
//! from JSON the same rule. Typed parsing of [`SalePayload`] also refuses duplicate fields.

use std::collections::HashSet;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::validate::InvalidSale;
use super::SalePayload;

/// Longest key quoted back in an error, in characters.
const MAX_KEY_QUOTED: usize = 64;

/// The first key named twice in one object anywhere in `json` (depth first), if any.
///
/// # Errors
/// The parser's error when `json` is not JSON (or nests deeper than 128 levels).
pub fn first_duplicate_key(json: &str) -> Result<Option<String>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(json);
    let found = Walk.deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Parses a sale from JSON text the way the server reads it: a key named twice is
/// [`InvalidSale::DuplicateKey`], any other shape problem [`InvalidSale::Malformed`]. Validate the
/// result with [`super::validate_sale`].
///
/// # Errors
/// [`InvalidSale::DuplicateKey`] or [`InvalidSale::Malformed`].
pub fn parse_sale_json(json: &str) -> Result<SalePayload, InvalidSale> {
    match first_duplicate_key(json) {
        Ok(Some(key)) => return Err(duplicate(&key)),
        Ok(None) => {}
        Err(e) => return Err(InvalidSale::Malformed { detail: e.to_string() }),
    }
    serde_json::from_str(json).map_err(|e| InvalidSale::Malformed { detail: e.to_string() })
}

/// The error for `key`, quoted up to `MAX_KEY_QUOTED` characters.
pub fn duplicate(key: &str) -> InvalidSale {
    let mut quoted: String = key.chars().take(MAX_KEY_QUOTED).collect();
    if quoted.len() < key.len() {
        quoted.push('…');
    }
    InvalidSale::DuplicateKey { key: quoted }
}

/// Walks any JSON value; yields the first duplicate key found.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let inner = map.next_value_seed(Walk)?;
            if found.is_none() {
                if seen.contains(&key) {
                    found = Some(key);
                } else {
                    found = inner;
                    seen.insert(key);
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(inner) = seq.next_element_seed(Walk)? {
            found = found.or(inner);
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_key_named_twice_at_any_depth() {
        assert_eq!(first_duplicate_key(r#"{"a":1,"b":[{"c":1}]}"#).expect("json"), None);
        assert_eq!(first_duplicate_key(r#"{"a":1,"a":2}"#).expect("json"), Some("a".into()));
        let deep = r#"{"header":{"store_id":"B","store_id":"A"},"items":[]}"#;
        assert_eq!(first_duplicate_key(deep).expect("json"), Some("store_id".into()));
        assert_eq!(first_duplicate_key(r#"[{"x":1},{"y":1,"y":2}]"#).expect("json"), Some("y".into()));
        // An escaped spelling of the same key is the same key.
        assert_eq!(first_duplicate_key(r#"{"a":1,"\u0061":2}"#).expect("json"), Some("a".into()));
        assert!(first_duplicate_key(r#"{"a":1"#).is_err());
        assert!(first_duplicate_key(r#"{"a":1} x"#).is_err());
    }

    #[test]
    fn a_sale_with_a_key_twice_is_refused_by_both_readers() {
        let sale = serde_json::to_string(&crate::protocol::validate::tests::sample()).expect("json");
        assert!(parse_sale_json(&sale).is_ok());
        let twice = sale.replacen("\"store_id\":", "\"store_id\":\"B\",\"store_id\":", 1);
        assert_eq!(
            parse_sale_json(&twice).map(|_| ()),
            Err(InvalidSale::DuplicateKey { key: "store_id".into() })
        );
        assert_eq!(duplicate(&"k".repeat(3000)).code(), "duplicate_key");
        assert!(duplicate(&"k".repeat(3000)).to_string().len() < 200);
        // Typed parsing refuses it too: a till that builds sales as structs never sends one.
        assert!(serde_json::from_str::<SalePayload>(&twice).is_err());
    }
}
