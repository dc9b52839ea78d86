//! Hash v1 test vectors (`tests/vectors/v1.json`, published in `docs/protocol.md`): payload →
//! RFC 8785 canonical bytes → SHA-256. The expected values were computed independently (Python's
//! `json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=False)`, exact JCS for payloads
//! without floats) so this checks the Rust implementation against a second one.

use possync_core::protocol::{canonical_json, payload_sha256, validate_sale, Limits, SalePayload};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    name: String,
    payload: serde_json::Value,
    canonical: String,
    sha256: String,
}

fn vectors() -> Vec<Vector> {
    serde_json::from_str(include_str!("vectors/v1.json")).expect("vectors file is JSON")
}

#[test]
fn hash_v1_test_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let from_value = canonical_json(&v.payload).expect("canonicalize value");
        assert_eq!(String::from_utf8(from_value.clone()).expect("utf-8"), v.canonical, "{}", v.name);
        assert_eq!(payload_sha256(&from_value), v.sha256, "{}", v.name);

        // A till hashes its typed sale; it must give the same bytes.
        let sale: SalePayload = serde_json::from_value(v.payload.clone()).expect("vector is a sale");
        validate_sale(&sale, &Limits::default()).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let typed = canonical_json(&sale).expect("canonicalize typed");
        assert_eq!(payload_sha256(&typed), v.sha256, "typed {}", v.name);
    }
}

#[test]
fn protocol_doc_publishes_every_vector() {
    let doc = include_str!("../../../docs/protocol.md");
    for v in vectors() {
        assert!(doc.contains(&v.sha256), "docs/protocol.md lacks the hash of vector {}", v.name);
        assert!(
            doc.contains(&v.canonical),
            "docs/protocol.md lacks the canonical bytes of vector {}",
            v.name
        );
    }
}
