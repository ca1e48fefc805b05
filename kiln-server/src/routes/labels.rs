//! `GET /api/v1/profile-types`, `GET /pyroscope/label-names`, `GET /pyroscope/label-values`.
//!
//! Label names include `__name__` and `service_name` and the sample-label names, as
//! Grafana Pyroscope's do. Without `from`/`until` these look at all stored data.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{run_query, time_range, AppState, Params};
use crate::error::ApiError;

pub async fn profile_types(State(st): State<AppState>) -> Json<Vec<String>> {
    Json(st.store.profile_types())
}

pub async fn label_names(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        let (from, until) = time_range(&p, "from", "until", "0")?;
        let query = p.get("query").cloned().unwrap_or_default();
        run_query(&st, "label_names", move |s| {
            s.label_names(&query, from, until)
        })
        .await
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn label_values(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        let label = p
            .get("label")
            .or_else(|| p.get("name"))
            .filter(|l| !l.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::bad_request("invalid_param", "missing ?label="))?;
        let (from, until) = time_range(&p, "from", "until", "0")?;
        let query = p.get("query").cloned().unwrap_or_default();
        run_query(&st, "label_values", move |s| {
            s.label_values(&label, &query, from, until)
        })
        .await
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
