//! Device tokens: generation, hashing and the `Authorization: Bearer` header.
//!
//! A token is `pst_` followed by 64 hex characters (32 random bytes). The server stores only its
//! SHA-256, so a leaked database does not leak usable tokens; the token is shown once at creation.

use rand::Rng;
use sha2::{Digest, Sha256};

/// Prefix of every device token, so a token in a config file or a log is recognizable.
pub const TOKEN_PREFIX: &str = "pst_";

/// A fresh random device token.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// SHA-256 of a token, lowercase hex: what the database stores and looks up.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token of an `Authorization` header value (`Bearer <token>`, scheme case-insensitive).
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hash_stably() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == 68);
        assert_eq!(token_sha256(&a), token_sha256(&a));
        assert_eq!(token_sha256(&a).len(), 64);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer pst_abc"), Some("pst_abc"));
        assert_eq!(bearer_token("bearer   pst_abc "), Some("pst_abc"));
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token(""), None);
    }
}
