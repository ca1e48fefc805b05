//! HTTP handlers, one module per endpoint family, and what they share.

pub mod export;
pub mod ingest;
pub mod labels;
pub mod push;
pub mod querier;
pub mod render;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::StatusCode;
use kiln_store::{Store, StoreError};

use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::timeparse::parse_time;

pub struct Inner {
    pub store: Arc<Store>,
    pub access: crate::access::Access,
    pub limits: Limits,
    pub metrics: Metrics,
    pub queries: tokio::sync::Semaphore,
    /// Pushes being decoded and stored (see [`ingest_permit`]).
    pub ingests: tokio::sync::Semaphore,
}

/// Shared by every handler.
pub type AppState = Arc<Inner>;

pub type Params = HashMap<String, String>;

/// How long a push may take to send its body. Pushes hold an ingest turn while they
/// send, so a client trickling its body cannot hold one for longer.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        format!(
            "the request body took more than {} s to arrive",
            BODY_READ_TIMEOUT.as_secs()
        ),
    )
}

/// Reads a whole body, refusing more than `limit` bytes with a 413 and a body slower than
/// [`BODY_READ_TIMEOUT`] with a 408.
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| body_timeout())?
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds the limit of {limit} bytes (--max-body-bytes)"),
            )
        })
}

/// Waits up to `ingest_queue_wait` for one of the `max_concurrent_ingests` turns, so that
/// many clients at once cannot multiply the per-request memory budget; else a 429 with
/// `Retry-After`. Taken before the body is read, so a waiting push holds no memory.
pub async fn ingest_permit(st: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    let busy = || {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            format!(
                "the server is storing {} pushes already (--max-concurrent-ingests): retry later",
                st.limits.max_concurrent_ingests
            ),
        );
        e.retry_after = Some(1);
        e
    };
    match tokio::time::timeout(st.limits.ingest_queue_wait, st.ingests.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "closed",
            "shutting down",
        )),
        Err(_) => Err(busy()),
    }
}

/// Runs a store call on the blocking pool, at most `max_concurrent_queries` at once, and
/// records its latency.
pub async fn run_query<T: Send + 'static>(
    st: &AppState,
    endpoint: &'static str,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit =
        st.queries.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "closed", "shutting down")
        })?;
    let store = st.store.clone();
    let start = Instant::now();
    let r = tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    st.metrics.observe_query(endpoint, start.elapsed());
    r.map_err(ApiError::from)
}

/// `(from, until)` in unix ns from `from_key`/`until_key`, with defaults.
pub fn time_range(
    p: &Params,
    from_key: &str,
    until_key: &str,
    default_from: &str,
) -> Result<(i64, i64), ApiError> {
    let now = kiln_store::now_nanos();
    let from = parse_time(p.get(from_key).map_or(default_from, String::as_str), now)?;
    let until = parse_time(p.get(until_key).map_or("now", String::as_str), now)?;
    if from > until {
        return Err(ApiError::bad_request(
            "invalid_time",
            format!("{from_key} is after {until_key}"),
        ));
    }
    Ok((from, until))
}

pub fn param_usize(p: &Params, keys: &[&str]) -> Result<Option<usize>, ApiError> {
    for k in keys {
        if let Some(v) = p.get(*k) {
            return v.trim().parse().map(Some).map_err(|_| {
                ApiError::bad_request(
                    "invalid_param",
                    format!("{k} must be a non-negative integer"),
                )
            });
        }
    }
    Ok(None)
}

pub fn param_step(p: &Params) -> Result<i64, ApiError> {
    match p.get("step") {
        None => Ok(0),
        Some(v) => {
            let v = v.trim();
            let secs = if v.bytes().all(|c| c.is_ascii_digit()) && !v.is_empty() {
                v.parse::<i64>().ok()
            } else {
                crate::timeparse::parse_duration_nanos(v)
                    .ok()
                    .map(|n| n / 1_000_000_000)
            };
            match secs {
                Some(s) if s >= 0 => Ok(if s == 0 { 0 } else { s.max(10) }),
                _ => Err(ApiError::bad_request(
                    "invalid_param",
                    "step must be seconds or a duration like 1m",
                )),
            }
        }
    }
}

pub fn max_nodes(st: &AppState, p: &Params) -> Result<usize, ApiError> {
    Ok(param_usize(p, &["maxNodes", "max-nodes", "max_nodes"])?
        .filter(|&n| n > 0)
        .unwrap_or(st.limits.max_nodes)
        .min(st.limits.max_nodes_cap))
}
