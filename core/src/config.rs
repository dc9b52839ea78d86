//! Policy as data: every timeout, lease length, batch size and retention in one place, with units in
//! the names, validated once.

use crate::backoff::BackoffPolicy;
use crate::error::ConfigError;
use crate::link::LinkPolicy;

/// How hard SQLite flushes each committed sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL` (default): a committed sale survives power loss.
    Full,
    /// `synchronous=NORMAL`: faster; in WAL mode a power cut may lose the last commits (never
    /// corrupt the file). Only for tills with a battery or UPS.
    Normal,
}

/// Settings of the outbox file.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Flush policy.
    pub durability: Durability,
    /// How long a writer waits for another process's lock before failing with `Busy`, in ms.
    pub busy_timeout_ms: u64,
    /// Sent sales are pruned after this age, in ms (unsent ones never are). Default 7 days.
    pub sent_retention_ms: u64,
    /// Upper bound of the file size, in bytes (`None`: no bound but the disk). When reached, new sales
    /// are refused with `DiskFull` and stored ones stay safe.
    pub max_size_bytes: Option<u64>,
    /// Size the write-ahead log is truncated to after a checkpoint (`PRAGMA journal_size_limit`), in
    /// bytes, and at which it is checkpointed (`PRAGMA wal_autocheckpoint`, at least 100 pages).
    /// Without it the `-wal` file keeps the size of its largest burst for the app's life.
    pub wal_size_limit_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            durability: Durability::Full,
            busy_timeout_ms: 5_000,
            sent_retention_ms: 7 * 24 * 3_600 * 1_000,
            max_size_bytes: None,
            wal_size_limit_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A device token (`pst_...`): a secret. Its `Debug` prints `DeviceToken(<redacted>)` and it has no
/// `Display`, so it cannot end up in a log line, an error message or a config dump by accident; only
/// [`DeviceToken::expose`] gives the text, for the `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl DeviceToken {
    /// Wraps a token (checked by [`DeviceToken::validate`] when a config is validated).
    pub fn new(token: impl Into<String>) -> Self {
        DeviceToken(token.into())
    }

    /// The token's text. Only for the `Authorization` header: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks that the token can be sent in a header: not empty, visible ASCII only.
    ///
    /// # Errors
    /// [`ConfigError`], which never contains the token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.0.is_empty() || !self.0.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError(
                "the device token must be non-empty visible ASCII (as printed by `possync-server token create`)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}

impl From<String> for DeviceToken {
    fn from(token: String) -> Self {
        DeviceToken(token)
    }
}

impl From<&str> for DeviceToken {
    fn from(token: &str) -> Self {
        DeviceToken(token.to_owned())
    }
}

/// TLS settings of the HTTPS transport beyond the public web roots. Empty (the default) keeps ureq's
/// own rustls setup: the Mozilla root store, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra CA certificates to trust besides the public roots, PEM (each string may hold several
    /// `-----BEGIN CERTIFICATE-----` blocks): the shop's own CA when its server is not on a public one.
    pub extra_ca_pem: Vec<String>,
    /// SHA-256 of the server's SubjectPublicKeyInfo, base64 (as Android's `<pin digest="SHA-256">`:
    /// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary |
    /// base64`). When any are given, a connection is accepted only if the chain is trusted **and** the
    /// server's certificate or an intermediate it sends has one of these keys.
    pub spki_sha256_pins: Vec<String>,
}

impl TlsOptions {
    /// True when nothing is set (the transport then uses ureq's default TLS setup unchanged).
    pub fn is_default(&self) -> bool {
        self.extra_ca_pem.is_empty() && self.spki_sha256_pins.is_empty()
    }

    /// Checks the options: every PEM string holds at least one certificate, every pin is base64 of 32
    /// bytes.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad entry.
    #[cfg(feature = "tls")]
    fn check(&self) -> Result<(), ConfigError> {
        self.extra_cas()?;
        self.pins()?;
        Ok(())
    }

    /// The extra CA certificates, parsed.
    ///
    /// # Errors
    /// [`ConfigError`] naming the entry that is not PEM or holds no certificate.
    #[cfg(feature = "tls")]
    pub(crate) fn extra_cas(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        let mut certs = Vec::new();
        for (i, pem) in self.extra_ca_pem.iter().enumerate() {
            let found = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConfigError(format!("tls extra_ca_pem[{i}] is not PEM: {e}")))?;
            if found.is_empty() {
                return Err(ConfigError(format!(
                    "tls extra_ca_pem[{i}] holds no -----BEGIN CERTIFICATE----- block"
                )));
            }
            certs.extend(found);
        }
        Ok(certs)
    }

    /// The SPKI pins, decoded.
    ///
    /// # Errors
    /// [`ConfigError`] naming the pin that is not base64 of 32 bytes.
    #[cfg(feature = "tls")]
    pub(crate) fn pins(&self) -> Result<Vec<[u8; 32]>, ConfigError> {
        use base64::Engine as _;
        self.spki_sha256_pins
            .iter()
            .enumerate()
            .map(|(i, pin)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(pin.trim().trim_start_matches("sha256/"))
                    .map_err(|e| ConfigError(format!("tls spki_sha256_pins[{i}] is not base64: {e}")))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    ConfigError(format!(
                        "tls spki_sha256_pins[{i}] is {} bytes, a SHA-256 is 32",
                        bytes.len()
                    ))
                })
            })
            .collect()
    }
}

/// Minimum margin by which a lease must outlive the HTTP request timeout, in ms.
pub const LEASE_MARGIN_MS: u64 = 5_000;

/// Settings of pushing sales to the server.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Base URL of the server, e.g. `https://pos.example.com` (the client appends `/sync/push`).
    pub server_url: String,
    /// The device token (`pst_...`), sent as `Authorization: Bearer`; redacted in `Debug`.
    pub token: DeviceToken,
    /// This till's device id, as registered with the token.
    pub device_id: String,
    /// TCP connect timeout, in ms.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout (connect, send, wait, read), in ms.
    pub request_timeout_ms: u64,
    /// Lease length of claimed sales, in ms; must exceed `request_timeout_ms` by [`LEASE_MARGIN_MS`].
    pub lease_ms: u64,
    /// Interval of lease heartbeats during a send, in ms; at most a third of `lease_ms`.
    pub heartbeat_ms: u64,
    /// Sales per request.
    pub batch_size: usize,
    /// Per-sale backoff after a server `RETRY` (failed requests never count against a sale).
    pub backoff: BackoffPolicy,
    /// How many failed requests in a row end a run (see [`crate::link`]).
    pub link: LinkPolicy,
    /// Extra CA certificates and SPKI pins for HTTPS.
    pub tls: TlsOptions,
}

impl SyncConfig {
    /// A config with default timeouts for a server, token and device.
    pub fn new(
        server_url: impl Into<String>,
        token: impl Into<DeviceToken>,
        device_id: impl Into<String>,
    ) -> Self {
        SyncConfig {
            server_url: server_url.into(),
            token: token.into(),
            device_id: device_id.into(),
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            lease_ms: 60_000,
            heartbeat_ms: 10_000,
            batch_size: 50,
            backoff: BackoffPolicy::default(),
            link: LinkPolicy::default(),
            tls: TlsOptions::default(),
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if !(self.server_url.starts_with("http://") || self.server_url.starts_with("https://")) {
            return bad(format!("server_url {:?} must start with http:// or https://", self.server_url));
        }
        self.token.validate()?;
        if self.device_id.trim().is_empty() {
            return bad("device_id must not be empty".into());
        }
        if self.connect_timeout_ms == 0 || self.request_timeout_ms < self.connect_timeout_ms {
            return bad("request_timeout_ms must be at least connect_timeout_ms, both above 0".into());
        }
        if self.lease_ms < self.request_timeout_ms + LEASE_MARGIN_MS {
            return bad(format!(
                "lease_ms {} must exceed request_timeout_ms {} by at least {LEASE_MARGIN_MS} ms",
                self.lease_ms, self.request_timeout_ms
            ));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 3 > self.lease_ms {
            return bad(format!("heartbeat_ms must be in 1..={}", self.lease_ms / 3));
        }
        if self.batch_size == 0 || self.batch_size > 500 {
            return bad("batch_size must be in 1..=500".into());
        }
        if self.backoff.base_ms == 0 || self.backoff.cap_ms < self.backoff.base_ms {
            return bad("backoff needs 0 < base_ms <= cap_ms".into());
        }
        if self.link.failures_before_backoff == 0 {
            return bad("link.failures_before_backoff must be at least 1".into());
        }
        #[cfg(feature = "tls")]
        self.tls.check()?;
        #[cfg(not(feature = "tls"))]
        if !self.tls.is_default() {
            return bad("tls options need possync-core's `tls` feature".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_must_outlive_the_request_timeout() {
        let mut c = SyncConfig::new("http://127.0.0.1:1", "pst_x", "till-1");
        assert!(c.validate().is_ok());
        c.lease_ms = c.request_timeout_ms + LEASE_MARGIN_MS - 1;
        assert!(matches!(c.validate(), Err(ConfigError(m)) if m.contains("lease_ms")));
        let mut c = SyncConfig::new("ftp://x", "pst_x", "till-1");
        assert!(c.validate().is_err());
        c.server_url = "https://x".into();
        c.heartbeat_ms = c.lease_ms;
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_token_is_redacted_in_debug_and_never_in_its_errors() {
        let mut c = SyncConfig::new("http://127.0.0.1:1", "pst_very_secret", "till-1");
        let shown = format!("{c:?}");
        assert!(!shown.contains("pst_very_secret") && shown.contains("<redacted>"), "{shown}");
        c.token = DeviceToken::new("pst_with space");
        let err = c.validate().expect_err("a space cannot go in a header");
        assert!(!err.to_string().contains("pst_with"), "{err}");
    }
}
