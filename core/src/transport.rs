//! Sending a push request: the [`Transport`] trait, the server's answer read into a result
//! ([`answer`]), and the built-in HTTP implementation over `ureq` (feature `http`). The app's own HTTP
//! stack can carry the requests instead: see [`crate::platform_http`].
//!
//! Request-level failures are typed ([`TransportError`]) so the drain can tell "try later"
//! (timeouts, refused connections, 429/503 with `Retry-After`, other 5xx) from "stop and tell a person"
//! (401/403) and "split the batch" (413).

#[cfg(feature = "http")]
use std::time::Duration;

use parking_lot::RwLock;

use crate::config::DeviceToken;
#[cfg(feature = "http")]
use crate::config::SyncConfig;
use crate::error::ConfigError;
use crate::link::RequestResult;
#[cfg(feature = "http")]
use crate::protocol::push::{CORRELATION_HEADER, PUSH_PATH};
use crate::protocol::{ErrorBody, PushRequest, PushResponse};

/// Why a push request as a whole failed. Nothing is known to be stored, except after
/// [`TransportError::Timeout`] or [`TransportError::Io`] where the server may have committed (the replay
/// is then answered `DUPLICATE`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached (refused, unresolvable).
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The TLS handshake failed: the server's certificate is not trusted (unknown CA, expired, wrong
    /// name) or matches no configured pin. Retrying cannot help until the setup is fixed.
    #[error("TLS failure (the server's certificate is not trusted or not pinned): {0}")]
    Tls(String),
    /// No complete answer within the request timeout.
    #[error("request timed out: {0}")]
    Timeout(String),
    /// The connection broke mid-request.
    #[error("connection failed mid-request: {0}")]
    Io(String),
    /// 401: the token is missing, unknown or revoked. Retrying cannot help.
    #[error("unauthorized ({code}): {message}")]
    Unauthorized {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// 403: the device may not push for this store. Retrying cannot help.
    #[error("forbidden ({code}): {message}")]
    Forbidden {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// 413: the request is too large; send fewer sales per request.
    #[error("request too large ({code}): {message}")]
    TooLarge {
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// 429 or 503: the server sheds load; try again after `retry_after_ms` when given.
    #[error("server busy ({status} {code}): {message}")]
    Overloaded {
        /// 429 or 503.
        status: u16,
        /// The server's code.
        code: String,
        /// The server's message.
        message: String,
        /// `Retry-After`, in ms.
        retry_after_ms: Option<u64>,
    },
    /// Any other non-200 answer (400, 404, 5xx, ...).
    #[error("HTTP {status} ({code}): {message}")]
    Http {
        /// The status.
        status: u16,
        /// The server's code (or `unknown`).
        code: String,
        /// The server's message.
        message: String,
    },
    /// A 200 whose body is not a valid push response.
    #[error("unexpected response: {0}")]
    BadResponse(String),
}

impl TransportError {
    /// True for 401 and 403: the drain stops instead of hammering.
    pub fn is_auth(&self) -> bool {
        matches!(self, TransportError::Unauthorized { .. } | TransportError::Forbidden { .. })
    }

    /// True for a TLS failure: the drain stops and says so, instead of reporting the server offline.
    pub fn is_tls(&self) -> bool {
        matches!(self, TransportError::Tls(_))
    }

    /// The server's `Retry-After`, in ms, if it sent one.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            TransportError::Overloaded { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }

    /// The link's view of this failure ([`crate::link::judge_batch`] judges it): 401/403 and TLS need a
    /// person, 413 is too large, a timeout is timed out, the rest failed (with the server's
    /// `Retry-After`, if any).
    pub fn request_result(&self) -> RequestResult {
        match self {
            e if e.is_auth() || e.is_tls() => RequestResult::NeedsPerson,
            TransportError::TooLarge { .. } => RequestResult::TooLarge,
            TransportError::Timeout(_) => RequestResult::TimedOut,
            e => RequestResult::Failed { retry_after_ms: e.retry_after_ms() },
        }
    }

    /// A short machine-readable code (`unreachable`, `timeout`, `unauthorized`, or the server's code).
    pub fn code(&self) -> &str {
        match self {
            TransportError::Unreachable(_) => "unreachable",
            TransportError::Tls(_) => "tls",
            TransportError::Timeout(_) => "timeout",
            TransportError::Io(_) => "connection_failed",
            TransportError::BadResponse(_) => "bad_response",
            TransportError::Unauthorized { code, .. }
            | TransportError::Forbidden { code, .. }
            | TransportError::TooLarge { code, .. }
            | TransportError::Overloaded { code, .. }
            | TransportError::Http { code, .. } => code,
        }
    }
}

/// Something that delivers a push request and returns the server's answer.
pub trait Transport: Send + Sync {
    /// Sends `request` with `correlation_id`; returns the per-sale results.
    ///
    /// # Errors
    /// A [`TransportError`] when the request as a whole failed.
    fn push(&self, request: &PushRequest, correlation_id: &str) -> Result<PushResponse, TransportError>;
}

/// The `Authorization` header of a transport's requests; replaced by `set`, read per request.
pub(crate) struct Bearer(RwLock<String>);

impl Bearer {
    pub(crate) fn new(token: &DeviceToken) -> Self {
        Bearer(RwLock::new(format!("Bearer {}", token.expose())))
    }

    /// Replaces the token for the next requests (a request in flight keeps the old one).
    pub(crate) fn set(&self, token: &DeviceToken) -> Result<(), ConfigError> {
        token.validate()?;
        *self.0.write() = format!("Bearer {}", token.expose());
        log::info!("device token replaced");
        Ok(())
    }

    /// The header's value.
    pub(crate) fn header(&self) -> String {
        self.0.read().clone()
    }
}

/// The server's answer to a push, as a result: a 200's per-sale results, or the request-level failure
/// its status says (`retry_after` is the `Retry-After` header's value, in seconds, when there was one).
///
/// # Errors
/// The [`TransportError`] of any status but 200, or [`TransportError::BadResponse`] for a 200 whose body
/// is not a push response.
pub fn answer(status: u16, retry_after: Option<&str>, body: &str) -> Result<PushResponse, TransportError> {
    if status == 200 {
        return serde_json::from_str(body).map_err(|e| TransportError::BadResponse(e.to_string()));
    }
    let retry_after_ms =
        retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(|secs| secs.saturating_mul(1_000));
    let (code, message) = match serde_json::from_str::<ErrorBody>(body) {
        Ok(b) => (b.code, b.message),
        Err(_) => ("unknown".to_owned(), body.chars().take(200).collect()),
    };
    Err(match status {
        401 => TransportError::Unauthorized { code, message },
        403 => TransportError::Forbidden { code, message },
        413 => TransportError::TooLarge { code, message },
        429 | 503 => TransportError::Overloaded { status, code, message, retry_after_ms },
        _ => TransportError::Http { status, code, message },
    })
}

/// HTTP(S) transport: `POST {server_url}/sync/push` with connect and overall timeouts, bearer token and
/// correlation id.
#[cfg(feature = "http")]
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    authorization: Bearer,
    /// Set when the TLS options could not be turned into a TLS setup: every push fails with it (never a
    /// silent fall-back to weaker trust). `SyncConfig::validate` catches such options first.
    tls_error: Option<String>,
}

#[cfg(feature = "http")]
impl HttpTransport {
    /// A transport for `config`'s server, token, timeouts and TLS options (without options: ureq's own
    /// rustls setup with the public roots, unchanged).
    pub fn new(config: &SyncConfig) -> Self {
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(config.connect_timeout_ms)))
            .timeout_global(Some(Duration::from_millis(config.request_timeout_ms)))
            .build();
        let (agent, tls_error) = agent(agent_config, config);
        HttpTransport {
            agent,
            tls_error,
            url: format!("{}{PUSH_PATH}", config.server_url.trim_end_matches('/')),
            authorization: Bearer::new(&config.token),
        }
    }

    /// Replaces the device token for the next requests (a request in flight keeps the old one).
    ///
    /// # Errors
    /// [`ConfigError`] for a token that cannot be sent (empty, spaces, non-ASCII); the old one stays.
    pub fn set_token(&self, token: &DeviceToken) -> Result<(), ConfigError> {
        self.authorization.set(token)
    }
}

/// The agent: ureq's default connectors, or with TLS options ours (see `tls.rs`).
#[cfg(feature = "tls")]
fn agent(agent_config: ureq::config::Config, config: &SyncConfig) -> (ureq::Agent, Option<String>) {
    use ureq::unversioned::resolver::DefaultResolver;
    use ureq::unversioned::transport::{Connector, TcpConnector};
    if config.tls.is_default() {
        return (agent_config.into(), None);
    }
    match crate::tls::client_config(&config.tls) {
        Ok(client_config) => {
            let connector =
                ().chain(TcpConnector::default()).chain(crate::tls::PinnedTlsConnector::new(client_config));
            (ureq::Agent::with_parts(agent_config, connector, DefaultResolver::default()), None)
        }
        Err(e) => (agent_config.into(), Some(e.to_string())),
    }
}

/// The agent: ureq's default connectors (TLS options need the `tls` feature; `validate` refuses them).
#[cfg(all(feature = "http", not(feature = "tls")))]
fn agent(agent_config: ureq::config::Config, config: &SyncConfig) -> (ureq::Agent, Option<String>) {
    let refused = (!config.tls.is_default()).then(|| "tls options need the `tls` feature".to_owned());
    (agent_config.into(), refused)
}

#[cfg(feature = "http")]
impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("HttpTransport").field("url", &self.url).finish_non_exhaustive()
    }
}

#[cfg(feature = "http")]
impl Transport for HttpTransport {
    fn push(&self, request: &PushRequest, correlation_id: &str) -> Result<PushResponse, TransportError> {
        if let Some(error) = &self.tls_error {
            return Err(TransportError::Tls(error.clone()));
        }
        let body = serde_json::to_vec(request).map_err(|e| TransportError::BadResponse(e.to_string()))?;
        let authorization = self.authorization.header();
        let response = self
            .agent
            .post(&self.url)
            .header("Authorization", &authorization)
            .header(CORRELATION_HEADER, correlation_id)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let mut response = response.map_err(classify_ureq)?;
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get("Retry-After").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.body_mut().read_to_string().map_err(classify_ureq)?;
        answer(status, retry_after.as_deref(), &text)
    }
}

#[cfg(feature = "http")]
fn classify_ureq(err: ureq::Error) -> TransportError {
    #[cfg(feature = "tls")]
    if crate::tls::is_tls_failure(&err) {
        return TransportError::Tls(err.to_string());
    }
    match err {
        ureq::Error::Timeout(t) => TransportError::Timeout(t.to_string()),
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
            TransportError::Unreachable(err.to_string())
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            TransportError::Unreachable(e.to_string())
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            TransportError::Timeout(e.to_string())
        }
        ureq::Error::Io(e) => TransportError::Io(e.to_string()),
        other => TransportError::Io(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_and_tls_need_a_person_and_a_timeout_is_timed_out() {
        let refused = TransportError::Forbidden { code: "device_mismatch".into(), message: String::new() };
        assert_eq!(refused.request_result(), RequestResult::NeedsPerson);
        assert_eq!(TransportError::Tls("pin".into()).request_result(), RequestResult::NeedsPerson);
        assert_eq!(TransportError::Timeout("slow".into()).request_result(), RequestResult::TimedOut);
        let busy = TransportError::Overloaded {
            status: 503,
            code: "not_ready".into(),
            message: String::new(),
            retry_after_ms: Some(5),
        };
        assert_eq!(busy.request_result(), RequestResult::Failed { retry_after_ms: Some(5) });
    }
}
