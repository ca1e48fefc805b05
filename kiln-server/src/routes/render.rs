//! `GET /pyroscope/render`, `GET /pyroscope/render-diff`, `GET /api/v1/group-totals`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_store::{QueryRange, RenderOptions};

use super::{max_nodes, param_step, run_query, time_range, AppState, Params};
use crate::error::ApiError;

fn query_param<'a>(p: &'a Params, keys: &[&str]) -> Result<&'a str, ApiError> {
    keys.iter()
        .find_map(|k| p.get(*k).map(String::as_str))
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "missing ?{}= (e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{{service_name=\"app\"}})",
                    keys[0]
                ),
            )
        })
}

fn check_format(p: &Params) -> Result<(), ApiError> {
    match p.get("format").map(String::as_str) {
        None | Some("json") => Ok(()),
        Some(other) => Err(ApiError::bad_request(
            "invalid_param",
            format!("format {other:?} is not supported here: use json (or /api/v1/export for pprof and folded)"),
        )),
    }
}

pub async fn render(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        check_format(&p)?;
        let query = query_param(&p, &["query", "name"])?.to_owned();
        let (from, until) = time_range(&p, "from", "until", "now-1h")?;
        let opts = RenderOptions {
            max_nodes: max_nodes(&st, &p)?,
            step_secs: param_step(&p)?,
            group_by: p.get("groupBy").filter(|g| !g.is_empty()).cloned(),
        };
        run_query(&st, "render", move |s| s.render(&query, from, until, &opts)).await
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn render_diff(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        check_format(&p)?;
        let left = query_param(&p, &["leftQuery"])?.to_owned();
        let right = query_param(&p, &["rightQuery"])?.to_owned();
        let (lf, lu) = time_range(&p, "leftFrom", "leftUntil", "now-1h")?;
        let (rf, ru) = time_range(&p, "rightFrom", "rightUntil", "now-1h")?;
        let n = max_nodes(&st, &p)?;
        run_query(&st, "render_diff", move |s| {
            s.render_diff(
                &QueryRange {
                    query: &left,
                    from_nanos: lf,
                    until_nanos: lu,
                },
                &QueryRange {
                    query: &right,
                    from_nanos: rf,
                    until_nanos: ru,
                },
                n,
            )
        })
        .await
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn group_totals(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        let query = query_param(&p, &["query"])?.to_owned();
        let group_by = p
            .get("groupBy")
            .filter(|g| !g.is_empty())
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request("invalid_param", "missing ?groupBy=<label name>")
            })?;
        let (from, until) = time_range(&p, "from", "until", "now-1h")?;
        let step = param_step(&p)?;
        run_query(&st, "group_totals", move |s| {
            s.group_totals(&query, from, until, &group_by, step)
        })
        .await
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
