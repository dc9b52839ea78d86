//! The app's own HTTP stack, implemented in Kotlin, Swift or Python: [`HttpClient`] sends one `POST`
//! and returns the answer. The engine builds the request and reads the answer
//! (`possync_core::platform_http`); this file only mirrors the types.
//!
//! `post` is called on the engine's `possync-drain` thread (never the UI thread), one request at a
//! time per engine, and may block until the answer or the timeouts given in the request. An exception
//! thrown by it that is not an [`HttpFailure`] counts as a broken connection (`Io`): the sales are sent
//! again later and the server answers `DUPLICATE` for any it already has.

use std::sync::Arc;

use possync_core::platform_http as core_http;

use crate::types::int;

/// One `POST` to send.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HttpPost {
    /// `{server_url}/sync/push`.
    pub url: String,
    /// Headers to send as given, in order.
    pub headers: Vec<HttpHeader>,
    /// The JSON body.
    pub body: Vec<u8>,
    /// Time to connect (TCP and TLS), in ms.
    pub connect_timeout_ms: i64,
    /// Time for the whole request, to the last byte of the answer, in ms.
    pub request_timeout_ms: i64,
}

/// One header.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HttpHeader {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The server's answer, whatever its status.
#[derive(Debug, Clone, uniffi::Record)]
pub struct HttpReply {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header's value, when there was one.
    pub retry_after: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// Why no answer came back. Pick the closest: the engine shows `Offline` for `Unreachable` and
/// `Timeout`, `TlsFailed` for `Tls` (which a retry cannot fix), and retries `Io`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum HttpFailure {
    /// No route, refused, unknown host: the till is offline.
    #[error("{reason}")]
    Unreachable {
        /// What happened, for a person.
        reason: String,
    },
    /// No complete answer within the timeouts.
    #[error("{reason}")]
    Timeout {
        /// What happened, for a person.
        reason: String,
    },
    /// The server's certificate is not trusted or not pinned.
    #[error("{reason}")]
    Tls {
        /// What happened, for a person.
        reason: String,
    },
    /// The connection broke after the request may have been sent.
    #[error("{reason}")]
    Io {
        /// What happened, for a person.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for HttpFailure {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        HttpFailure::Io { reason: format!("the app's HTTP client failed: {}", e.reason) }
    }
}

impl From<HttpFailure> for core_http::HttpFailure {
    fn from(f: HttpFailure) -> Self {
        match f {
            HttpFailure::Unreachable { reason } => core_http::HttpFailure::Unreachable(reason),
            HttpFailure::Timeout { reason } => core_http::HttpFailure::Timeout(reason),
            HttpFailure::Tls { reason } => core_http::HttpFailure::Tls(reason),
            HttpFailure::Io { reason } => core_http::HttpFailure::Io(reason),
        }
    }
}

/// The app's HTTP stack (OkHttp or `HttpURLConnection` on Android, `URLSession` on iOS).
#[uniffi::export(with_foreign)]
pub trait HttpClient: Send + Sync {
    /// Sends `request` and returns the answer, whatever its status.
    ///
    /// # Errors
    /// An [`HttpFailure`] when no answer came back.
    fn post(&self, request: HttpPost) -> Result<HttpReply, HttpFailure>;
}

/// Adapts a foreign [`HttpClient`] to the core's.
pub(crate) struct HttpClientBridge(pub(crate) Arc<dyn HttpClient>);

impl core_http::HttpClient for HttpClientBridge {
    fn post(&self, request: core_http::HttpPost) -> Result<core_http::HttpReply, core_http::HttpFailure> {
        let post = HttpPost {
            url: request.url,
            headers: request.headers.into_iter().map(|(name, value)| HttpHeader { name, value }).collect(),
            body: request.body,
            connect_timeout_ms: int(request.connect_timeout_ms),
            request_timeout_ms: int(request.request_timeout_ms),
        };
        let reply = self.0.post(post)?;
        Ok(core_http::HttpReply { status: reply.status, retry_after: reply.retry_after, body: reply.body })
    }
}
