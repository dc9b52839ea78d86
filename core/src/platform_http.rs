//! Push requests carried by the app's own HTTP stack (OkHttp or `HttpURLConnection` on Android,
//! `URLSession` on iOS) instead of the built-in `ureq` + rustls client.
//!
//! The app implements [`HttpClient`]: one `POST` with the given headers, body and timeouts, and the
//! status, `Retry-After` and body of the answer, or why there was none. Everything else stays here:
//! the request's JSON, the bearer token, the correlation id, and reading the answer into per-sale
//! results or a typed failure ([`crate::transport::answer`]), exactly as the built-in client does.
//! Trust (the shop's CA, certificate pins) is then the platform's: Android's network security
//! config, iOS App Transport Security or the app's `URLSession` delegate. A library built without the
//! built-in client (`possync-ffi` without its `builtin-http` feature) leaves out ureq, rustls, ring
//! and the Mozilla roots: the mobile library's size (docs/benchmarks.md).

use std::sync::Arc;

use crate::config::{DeviceToken, SyncConfig};
use crate::error::ConfigError;
use crate::protocol::push::{CORRELATION_HEADER, PUSH_PATH};
use crate::protocol::{PushRequest, PushResponse};
use crate::transport::{answer, Bearer, Transport, TransportError};

/// One `POST` for the app's HTTP stack to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPost {
    /// `{server_url}/sync/push`.
    pub url: String,
    /// Headers to send as given (`Authorization`, `Content-Type`, the correlation id).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Time to connect (TCP and TLS), in ms.
    pub connect_timeout_ms: u64,
    /// Time for the whole request, from connecting to the last byte of the answer, in ms.
    pub request_timeout_ms: u64,
}

/// The server's answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header's value, when there was one.
    pub retry_after: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// Why no answer came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpFailure {
    /// The server could not be reached (no route, refused, unknown host): the till is offline.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// No complete answer within the timeouts.
    #[error("request timed out: {0}")]
    Timeout(String),
    /// The TLS handshake failed: the server's certificate is not trusted or not pinned.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// The connection broke after the request may have been sent.
    #[error("connection failed mid-request: {0}")]
    Io(String),
}

impl From<HttpFailure> for TransportError {
    fn from(failure: HttpFailure) -> Self {
        match failure {
            HttpFailure::Unreachable(m) => TransportError::Unreachable(m),
            HttpFailure::Timeout(m) => TransportError::Timeout(m),
            HttpFailure::Tls(m) => TransportError::Tls(m),
            HttpFailure::Io(m) => TransportError::Io(m),
        }
    }
}

/// The app's HTTP stack. Called on the engine's thread, one request at a time per engine; it may
/// block until the answer or a timeout.
pub trait HttpClient: Send + Sync {
    /// Sends `request` and returns the answer, whatever its status.
    ///
    /// # Errors
    /// An [`HttpFailure`] when no answer came back.
    fn post(&self, request: HttpPost) -> Result<HttpReply, HttpFailure>;
}

/// A [`Transport`] over an [`HttpClient`].
pub struct PlatformTransport {
    client: Arc<dyn HttpClient>,
    url: String,
    authorization: Bearer,
    connect_timeout_ms: u64,
    request_timeout_ms: u64,
}

impl PlatformTransport {
    /// A transport for `config`'s server, token and timeouts, through `client`.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` has TLS options: with the app's own HTTP stack, trust is
    /// set up in that stack, and options here would be silently ignored.
    pub fn new(config: &SyncConfig, client: Arc<dyn HttpClient>) -> Result<Self, ConfigError> {
        if !config.tls.is_default() {
            return Err(ConfigError(
                "tls options apply to the built-in HTTP client only: with the app's own HTTP client, \
                 set up the shop's CA or pins in that client (network security config, URLSession)"
                    .into(),
            ));
        }
        Ok(PlatformTransport {
            client,
            url: format!("{}{PUSH_PATH}", config.server_url.trim_end_matches('/')),
            authorization: Bearer::new(&config.token),
            connect_timeout_ms: config.connect_timeout_ms,
            request_timeout_ms: config.request_timeout_ms,
        })
    }

    /// Replaces the device token for the next requests (a request in flight keeps the old one).
    ///
    /// # Errors
    /// [`ConfigError`] for a token that cannot be sent (empty, spaces, non-ASCII); the old one stays.
    pub fn set_token(&self, token: &DeviceToken) -> Result<(), ConfigError> {
        self.authorization.set(token)
    }
}

impl std::fmt::Debug for PlatformTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("PlatformTransport").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Transport for PlatformTransport {
    fn push(&self, request: &PushRequest, correlation_id: &str) -> Result<PushResponse, TransportError> {
        let body = serde_json::to_vec(request).map_err(|e| TransportError::BadResponse(e.to_string()))?;
        let post = HttpPost {
            url: self.url.clone(),
            headers: vec![
                ("Authorization".into(), self.authorization.header()),
                (CORRELATION_HEADER.into(), correlation_id.into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body,
            connect_timeout_ms: self.connect_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
        };
        let reply = self.client.post(post)?;
        answer(reply.status, reply.retry_after.as_deref(), &reply.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PushStatus;
    use parking_lot::Mutex;

    /// Answers from a script and keeps what it was asked.
    struct Scripted {
        replies: Mutex<Vec<Result<HttpReply, HttpFailure>>>,
        seen: Mutex<Vec<HttpPost>>,
    }

    impl HttpClient for Scripted {
        fn post(&self, request: HttpPost) -> Result<HttpReply, HttpFailure> {
            self.seen.lock().push(request);
            self.replies.lock().remove(0)
        }
    }

    fn transport(replies: Vec<Result<HttpReply, HttpFailure>>) -> (PlatformTransport, Arc<Scripted>) {
        let client = Arc::new(Scripted { replies: Mutex::new(replies), seen: Mutex::new(Vec::new()) });
        let config = SyncConfig::new("http://shop.example:8080/", "pst_token1", "till-1");
        (PlatformTransport::new(&config, client.clone()).expect("transport"), client)
    }

    fn request() -> PushRequest {
        PushRequest { device_id: "till-1".into(), transactions: Vec::new(), report: None }
    }

    #[test]
    fn the_request_carries_url_token_correlation_id_and_timeouts() {
        let (t, client) = transport(vec![Ok(HttpReply {
            status: 200,
            retry_after: None,
            body: r#"{"results":[]}"#.into(),
        })]);
        t.set_token(&DeviceToken::new("pst_token2".to_owned())).expect("token");
        let response = t.push(&request(), "cid-1").expect("pushed");
        assert!(response.results.is_empty());
        let seen = client.seen.lock();
        assert_eq!(seen[0].url, "http://shop.example:8080/sync/push");
        let header = |name: &str| seen[0].headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header("Authorization").as_deref(), Some("Bearer pst_token2"));
        assert_eq!(header(CORRELATION_HEADER).as_deref(), Some("cid-1"));
        assert_eq!(header("Content-Type").as_deref(), Some("application/json"));
        let sent: serde_json::Value = serde_json::from_slice(&seen[0].body).expect("json body");
        assert_eq!(sent["device_id"], "till-1");
        let defaults = SyncConfig::new("http://x", "pst_t", "d");
        assert_eq!(seen[0].connect_timeout_ms, defaults.connect_timeout_ms);
        assert_eq!(seen[0].request_timeout_ms, defaults.request_timeout_ms);
    }

    #[test]
    fn answers_and_failures_are_typed_as_the_built_in_client_types_them() {
        let reply = |status, retry_after: Option<&str>, body: &str| {
            Ok(HttpReply { status, retry_after: retry_after.map(str::to_owned), body: body.to_owned() })
        };
        let (t, _) = transport(vec![
            reply(503, Some("7"), r#"{"code":"overloaded","message":"busy","correlation_id":"c"}"#),
            reply(401, None, r#"{"code":"unauthorized","message":"no","correlation_id":"c"}"#),
            reply(200, None, "not json"),
            Err(HttpFailure::Unreachable("no route".into())),
            Err(HttpFailure::Tls("unknown CA".into())),
            Err(HttpFailure::Timeout("30 s".into())),
            reply(200, None, r#"{"results":[{"client_tx_id":"a","status":"OK","server_tx_id":1}]}"#),
        ]);
        let r = t.push(&request(), "c").expect_err("503");
        assert_eq!((r.code(), r.retry_after_ms()), ("overloaded", Some(7_000)));
        assert!(t.push(&request(), "c").expect_err("401").is_auth());
        assert!(matches!(t.push(&request(), "c"), Err(TransportError::BadResponse(_))));
        assert!(matches!(t.push(&request(), "c"), Err(TransportError::Unreachable(_))));
        assert!(t.push(&request(), "c").expect_err("tls").is_tls());
        assert!(matches!(t.push(&request(), "c"), Err(TransportError::Timeout(_))));
        let ok = t.push(&request(), "c").expect("200");
        assert_eq!(ok.results[0].status, PushStatus::Ok);
    }

    #[test]
    fn tls_options_are_refused_with_the_apps_own_client() {
        let mut config = SyncConfig::new("https://shop.example", "pst_token1", "till-1");
        config.tls.spki_sha256_pins = vec!["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()];
        let client = Arc::new(Scripted { replies: Mutex::new(Vec::new()), seen: Mutex::new(Vec::new()) });
        let err = PlatformTransport::new(&config, client).expect_err("refused");
        assert!(err.to_string().contains("built-in HTTP client"), "{err}");
    }
}
