//! Answers of the server's routes: JSON bodies, the one error type [`ApiError`] (the JSON error body
//! `{code, message, correlation_id}` and the headers that go with it: `Retry-After`,
//! `WWW-Authenticate`, `Connection: close`), and the request's correlation id as an extractor,
//! [`CorrelationId`].
//!
//! Handlers return an [`ApiError`] without knowing the request's correlation id: the HTTP front
//! picks the id before routing and writes the error's body, id included, as the answer leaves
//! ([`write_error_body`]). [`job_failed`] is the answer to database work that could not run.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::response::IntoResponse;
use possync_core::protocol::ErrorBody;
use rand::RngExt;

use crate::blocking::JobError;
use crate::metrics::Metrics;

/// An answer of the server.
pub type Reply = Response<Body>;

/// `value` as a JSON answer with `status`.
pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut reply = Response::new(Body::from(body));
    *reply.status_mut() = status;
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

/// Plain text (the Prometheus exposition).
pub fn text(content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(Body::from(body));
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// The request's correlation id: its `X-Correlation-Id` when sane, else a fresh UUID v7, picked by
/// the HTTP front before routing (empty for a request that did not pass the front).
#[derive(Debug, Clone)]
pub struct CorrelationId(pub Arc<str>);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<CorrelationId>().cloned().unwrap_or_else(|| CorrelationId("".into())))
    }
}

/// An error answer: a status, a machine-readable code and a message, with the headers it needs.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Machine-readable code (`docs/protocol.md`).
    pub code: &'static str,
    /// Human-readable reason.
    pub message: String,
    /// `Retry-After` seconds, when the request may be sent again later.
    pub retry_after: Option<u32>,
    /// `Connection: close`: the connection is closed after the answer, so that bytes the request left
    /// unread (an unread body) are never parsed as a next request.
    pub closing: bool,
    /// `WWW-Authenticate: Bearer` (a 401 of the device token).
    pub bearer: bool,
}

impl ApiError {
    /// An error with `status`, `code` and `message`, without extra headers.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None, closing: false, bearer: false }
    }

    /// A 401 with `WWW-Authenticate: Bearer`, closing the connection (its body is left unread).
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { bearer: true, ..ApiError::new(StatusCode::UNAUTHORIZED, code, message).closing() }
    }

    /// A 500 `internal_error`.
    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed to answer; retry later",
        )
    }

    /// The same error with `Retry-After: secs`.
    pub fn retry_after(self, secs: u32) -> Self {
        ApiError { retry_after: Some(secs), ..self }
    }

    /// The same error with `Connection: close`.
    pub fn closing(self) -> Self {
        ApiError { closing: true, ..self }
    }

    /// Puts this error's headers on `reply`.
    pub fn headers_onto(&self, reply: &mut Reply) {
        let h = reply.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.closing {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.bearer {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
    }
}

/// The body of an [`ApiError`] answer, until [`write_error_body`] writes it with the correlation id.
#[derive(Clone)]
struct PendingBody {
    code: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Reply {
        let mut reply = json(
            self.status,
            &ErrorBody { code: self.code.to_owned(), message: self.message.clone(), correlation_id: None },
        );
        self.headers_onto(&mut reply);
        reply.extensions_mut().insert(PendingBody { code: self.code, message: self.message });
        reply
    }
}

/// Writes the JSON error body of an [`ApiError`] answer with `correlation_id`; other answers are
/// left as they are. The HTTP front calls it on every answer.
pub fn write_error_body(reply: Reply, correlation_id: &str) -> Reply {
    let Some(pending) = reply.extensions().get::<PendingBody>().cloned() else { return reply };
    let (mut parts, _) = reply.into_parts();
    parts.extensions.remove::<PendingBody>();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = ErrorBody {
        code: pending.code.to_owned(),
        message: pending.message,
        correlation_id: Some(correlation_id.to_owned()),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    Response::from_parts(parts, Body::from(bytes))
}

/// A 503 `overloaded` with a `Retry-After` of `secs`; counted under the limit `limit` of `metrics`.
pub fn shed(metrics: &Metrics, secs: u32, limit: &str, what: &str) -> ApiError {
    metrics.limit_hits.with_label_values(&[limit]).inc();
    let message = format!("the server is at capacity ({what}); retry after {secs} s");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).retry_after(secs)
}

/// The answer to a database job that did not run: a full queue is a 503 `overloaded` (shed), a
/// panic a 500, a stopped pool a 503 `shutting_down`.
pub fn job_failed(metrics: &Metrics, retry_after_secs: u32, e: JobError) -> ApiError {
    match e {
        JobError::Full => {
            // Spread over [base, 2 × base] so that the clients shed together do not come back together.
            let base = retry_after_secs.max(1);
            let secs = rand::rng().random_range(base..=base.saturating_mul(2));
            shed(metrics, secs, "inflight_pushes", "database queue full")
        }
        JobError::Panicked => ApiError::internal(),
        JobError::Stopped => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
                .retry_after(retry_after_secs)
        }
    }
}
