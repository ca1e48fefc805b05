//! API errors, rendered as Connect-style JSON: `{"code":"invalid_argument","message":...}`
//! with the matching HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_store::StoreError;

use crate::limits::BodyError;
use crate::timeparse::TimeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Connect error code.
    pub code: &'static str,
    pub message: String,
    /// Short label for the rejected-requests metric.
    pub reason: &'static str,
    /// Seconds for a `Retry-After` header (busy, try again).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => "invalid_argument",
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => "resource_exhausted",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::REQUEST_TIMEOUT => "deadline_exceeded",
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN | StatusCode::MISDIRECTED_REQUEST => "permission_denied",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => "unimplemented",
            _ => "internal",
        };
        ApiError {
            status,
            code,
            message: message.into(),
            reason,
            retry_after: None,
        }
    }

    pub fn bad_request(reason: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, reason, message)
    }
}

/// `error: cause: cause`, like anyhow's `{:#}`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let msg = chain(&e);
        match &e {
            StoreError::Limit(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit", msg),
            StoreError::UnknownProfileType(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_profile_type", msg)
            }
            StoreError::Invalid(_) => ApiError::bad_request("invalid_profile", msg),
            StoreError::Selector(_) | StoreError::BadQuery(_) => {
                ApiError::bad_request("invalid_query", msg)
            }
            StoreError::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "closed", msg),
            _ => {
                log::error!("kiln-server: {msg}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
            }
        }
    }
}

impl From<TimeError> for ApiError {
    fn from(e: TimeError) -> Self {
        ApiError::bad_request("invalid_time", e.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", chain(&e))
            }
            BodyError::OverMemoryBudget { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "over_memory_budget",
                chain(&e),
            ),
            BodyError::OverSampleBudget { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "over_sample_budget",
                chain(&e),
            ),
            BodyError::Gzip(_) => ApiError::bad_request("invalid_gzip", chain(&e)),
            BodyError::Protobuf(_) | BodyError::Malformed(_) => {
                ApiError::bad_request("invalid_protobuf", chain(&e))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        r
    }
}
