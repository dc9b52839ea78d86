//! Answers of the front: JSON bodies, the error body with its machine-readable code, and the headers
//! that go with them (`Retry-After`, `WWW-Authenticate`, `Connection: close`).

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use possync_core::protocol::ErrorBody;

/// An answer of the front.
pub type Reply = Response<Body>;

/// `value` as a JSON answer with `status`.
pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut reply = Response::new(Body::from(body));
    *reply.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

/// The JSON error body `{code, message, correlation_id}` with `status`.
pub fn error(status: u16, code: &str, message: impl Into<String>, correlation_id: &str) -> Reply {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.into(),
        correlation_id: Some(correlation_id.to_owned()),
    };
    json(status, &body)
}

/// `reply` with `Retry-After: secs`.
pub fn retry_after(mut reply: Reply, secs: u32) -> Reply {
    reply.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    reply
}

/// `reply` with `Connection: close`: the connection is closed after it, so that bytes the request
/// left unread (an unread body) are never parsed as a next request.
pub fn closing(mut reply: Reply) -> Reply {
    reply.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    reply
}

/// A 401 with `WWW-Authenticate: Bearer`, closing the connection (its body is left unread).
pub fn unauthorized(code: &str, message: &str, correlation_id: &str) -> Reply {
    let mut reply = error(401, code, message, correlation_id);
    reply.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    closing(reply)
}

/// Plain text (the Prometheus exposition).
pub fn text(content_type: &'static str, body: String) -> Reply {
    let mut reply = Response::new(Body::from(body));
    reply.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}
