//! Payload hash v1: lowercase hex SHA-256 of the RFC 8785 canonical JSON of the payload.
//!
//! `payload_hash_version` travels and is stored with every hash, so a later v2 can coexist with v1.

use sha2::{Digest, Sha256};

/// The only payload hash version this build knows.
pub const PAYLOAD_HASH_VERSION_V1: u32 = 1;

/// Hash v1 of canonical payload bytes: 64 lowercase hex characters.
pub fn payload_sha256(canonical_bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(canonical_bytes))
}

/// True when `s` looks like a v1 hash: exactly 64 lowercase hex characters.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_and_abc() {
        assert_eq!(payload_sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(
            payload_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&payload_sha256(b"abc")));
        assert!(!is_sha256_hex("ABC"));
    }
}
