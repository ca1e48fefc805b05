//! `POST /push.v1.PusherService/Push`: Connect unary push of `PushRequest` (protobuf or
//! JSON, optionally gzip'd), as current Pyroscope SDKs and Grafana Alloy send.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_proto::push::{PushRequest, PushResponse};
use kiln_store::IngestRequest;
use prost::Message;

use super::{ingest_permit, read_body, AppState};
use crate::error::ApiError;
use crate::limits::RequestBudget;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

fn codec(headers: &HeaderMap) -> Result<Codec, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let base = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/proto" | "application/protobuf" | "application/x-protobuf" => Ok(Codec::Proto),
        "application/json" => Ok(Codec::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("unsupported content-type {ct:?}: send application/proto or application/json"),
        )),
    }
}

pub async fn push(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    st.metrics
        .push_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match push_inner(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            st.metrics.reject(e.reason);
            e.into_response()
        }
    }
}

async fn push_inner(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let codec = codec(headers)?;
    let _turn = ingest_permit(st).await?;
    let body = read_body(body, st.limits.max_body_bytes).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let mut budget = RequestBudget::new(&st.limits);
    let raw = match encoding.as_str() {
        "gzip" => {
            if !kiln_proto::gzip::is_gzip(&body) {
                return Err(ApiError::bad_request(
                    "invalid_gzip",
                    "content-encoding is gzip but the body is not gzip data",
                ));
            }
            budget.decompress(&body)?
        }
        "identity" | "" => std::borrow::Cow::Borrowed(&body[..]),
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_encoding",
                format!("unsupported content-encoding {other:?}: use gzip or identity"),
            ))
        }
    };
    let req: PushRequest = match codec {
        Codec::Proto => budget.decode_push(&raw).map_err(|e| {
            let mut e = ApiError::from(e);
            e.message = format!("invalid PushRequest: {}", e.message);
            e
        })?,
        Codec::Json => {
            // serde's structs for the labels are at most a few times the JSON text.
            budget.charge_memory(4 * raw.len() as u64)?;
            serde_json::from_slice(&raw).map_err(|e| {
                ApiError::bad_request("invalid_json", format!("invalid PushRequest JSON: {e}"))
            })?
        }
    };
    drop(raw);
    let mut reqs = Vec::new();
    for (si, series) in req.series.iter().enumerate() {
        let labels: Vec<(String, String)> = series
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        for (pi, sample) in series.samples.iter().enumerate() {
            let profile = budget.decode_profile(&sample.raw_profile).map_err(|e| {
                let mut e = ApiError::from(e);
                e.message = format!("series {si} profile {pi}: {}", e.message);
                e
            })?;
            reqs.push(IngestRequest {
                labels: labels.clone(),
                profile,
                from_nanos: 0,
                until_nanos: 0,
            });
        }
    }
    drop(req);
    if !reqs.is_empty() {
        let store = st.store.clone();
        let n = reqs.len() as u64;
        let out = tokio::task::spawn_blocking(move || store.ingest_many(reqs))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
        st.metrics
            .pushed_profiles
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        st.metrics
            .pushed_samples
            .fetch_add(out.samples, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(match codec {
        Codec::Proto => (
            [(header::CONTENT_TYPE, "application/proto")],
            PushResponse {}.encode_to_vec(),
        )
            .into_response(),
        Codec::Json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
    })
}
