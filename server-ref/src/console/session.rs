//! Console credentials: the admin's login secret (argon2id, PHC string), the session cookie (random,
//! only its SHA-256 stored), the CSRF token every form carries, and the cookies themselves.
//!
//! Cookies are `HttpOnly`, `SameSite=Strict`, `Path=/console`, and `Secure` unless the server is told
//! it runs without TLS (`--console-insecure-cookie`, for a test or a loopback-only server).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use rand::Rng;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "possync_console";
/// Name of the cookie that carries the login form's CSRF token (there is no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "possync_login_csrf";
/// Prefix of an admin's login secret.
pub const SECRET_PREFIX: &str = "psa_";

/// Why a secret could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the login secret: {0}")]
pub struct HashError(String);

/// 32 random bytes as 64 lowercase hex characters.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A fresh login secret for an admin (`psa_` and 32 random bytes in hex), shown once.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", random_hex())
}

/// The argon2id PHC string of `secret`, with a random salt.
///
/// # Errors
/// [`HashError`] when argon2 refuses its parameters (does not happen with the defaults).
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `secret` matches the PHC string `phc` (a malformed PHC string matches nothing).
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(secret.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Equality that takes the same time wherever the first difference is (for CSRF tokens).
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers, if it is 64 hex characters.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `Set-Cookie` value for `name` = `value`, living `max_age_secs` (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let secret = new_secret();
        let phc = hash_secret(&secret).expect("hash");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_secret(&secret, &phc));
        assert!(!verify_secret("psa_wrong", &phc));
        assert!(!verify_secret(&secret, "not a phc string"));
    }

    #[test]
    fn cookies_are_found_only_when_well_formed() {
        let mut headers = HeaderMap::new();
        let value = random_hex();
        headers.insert(header::COOKIE, format!("a=b; {SESSION_COOKIE}={value}").parse().expect("header"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some(value));
        headers.insert(header::COOKIE, format!("{SESSION_COOKIE}=short").parse().expect("header"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("abc", "ab"));
    }
}
