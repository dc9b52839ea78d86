//! Fuzz target: the payload parser, the validator and the RFC 8785 canonicalizer on arbitrary bytes.
//!
//! Crashes on: any panic (parser, validator, canonicalizer); a refusal with an undocumented code; a
//! canonical form that does not parse back or is not idempotent; a valid sale whose canonical bytes
//! do not parse back to the same sale.

#![no_main]

use libfuzzer_sys::fuzz_target;
use possync_core::protocol::{canonical_json, validate_sale, Limits, SalePayload, INVALID_SALE_CODES};
use serde::Deserialize;
use serde_json::Value;

fn check_sale(sale: &SalePayload) {
    match validate_sale(sale, &Limits::default()) {
        Ok(()) => {
            let canonical = canonical_json(sale).expect("a valid sale canonicalizes");
            let back: SalePayload =
                serde_json::from_slice(&canonical).expect("canonical bytes parse as a sale");
            assert_eq!(&back, sale, "canonical bytes of a valid sale parse to another sale");
        }
        Err(e) => assert!(INVALID_SALE_CODES.contains(&e.code()), "undocumented code {}", e.code()),
    }
}

fuzz_target!(|data: &[u8]| {
    // The client's path: typed parsing.
    if let Ok(sale) = serde_json::from_slice::<SalePayload>(data) {
        check_sale(&sale);
    }
    // The server's path: a Value (hashed through its canonical form), then the typed sale.
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        if let Ok(canonical) = canonical_json(&value) {
            let again: Value = serde_json::from_slice(&canonical).expect("canonical bytes are JSON");
            let twice = canonical_json(&again).expect("canonical JSON canonicalizes");
            assert_eq!(twice, canonical, "canonicalization is not idempotent");
        }
        if let Ok(sale) = SalePayload::deserialize(&value) {
            check_sale(&sale);
        }
    }
});
