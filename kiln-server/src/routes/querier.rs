//! A JSON-only subset of Connect `querier.v1.QuerierService`: `ProfileTypes`,
//! `LabelNames`, `LabelValues` (what Grafana's data source calls first). Times `start`/
//! `end` are unix ms; `matchers` are selectors, of which the first is used.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{read_body, run_query, AppState};
use crate::error::ApiError;

#[derive(Deserialize, Default)]
struct LabelsRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default)]
    start: Option<serde_json::Value>,
    #[serde(default)]
    end: Option<serde_json::Value>,
}

fn millis(v: &Option<serde_json::Value>, default: i64) -> i64 {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(default),
        _ => default,
    }
}

async fn parse(headers: &HeaderMap, body: Body, limit: usize) -> Result<LabelsRequest, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            "only application/json is supported on querier.v1",
        ));
    }
    let body = read_body(body, limit).await?;
    if body.is_empty() {
        return Ok(LabelsRequest::default());
    }
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("invalid request JSON: {e}")))
}

pub async fn profile_types(State(st): State<AppState>) -> Response {
    let types: Vec<_> = st
        .store
        .profile_types()
        .into_iter()
        .map(|id| {
            let p: Vec<&str> = id.split(':').collect();
            let g = |i: usize| p.get(i).copied().unwrap_or("");
            json!({"ID": id, "name": g(0), "sampleType": g(1), "sampleUnit": g(2),
                   "periodType": g(3), "periodUnit": g(4)})
        })
        .collect();
    axum::Json(json!({ "profileTypes": types })).into_response()
}

async fn labels(
    st: AppState,
    headers: HeaderMap,
    body: Body,
    values: bool,
) -> Result<Response, ApiError> {
    let req = parse(&headers, body, st.limits.max_body_bytes).await?;
    let now_ms = kiln_store::now_nanos() / 1_000_000;
    let from = millis(&req.start, 0).max(0) * 1_000_000;
    let until = millis(&req.end, now_ms).max(0) * 1_000_000;
    let query = req.matchers.first().cloned().unwrap_or_default();
    let name = req.name;
    let names = run_query(&st, "querier", move |s| {
        if values {
            s.label_values(&name, &query, from, until)
        } else {
            s.label_names(&query, from, until)
        }
    })
    .await?;
    Ok(axum::Json(json!({ "names": names })).into_response())
}

pub async fn label_names(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    labels(st, headers, body, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn label_values(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    labels(st, headers, body, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
