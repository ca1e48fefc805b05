//! `GET /api/v1/export?query=&from=&until=&format=pprof|folded`: gzip'd pprof
//! (`application/octet-stream`, attachment) or folded text.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::{run_query, time_range, AppState, Params};
use crate::error::ApiError;

pub async fn export(State(st): State<AppState>, Query(p): Query<Params>) -> Response {
    let r = async {
        let query = p
            .get("query")
            .filter(|q| !q.is_empty())
            .cloned()
            .ok_or_else(|| ApiError::bad_request("invalid_query", "missing ?query="))?;
        let (from, until) = time_range(&p, "from", "until", "now-1h")?;
        match p.get("format").map_or("pprof", String::as_str) {
            "pprof" => {
                let bytes = run_query(&st, "export", move |s| {
                    let prof = s.export_pprof(&query, from, until)?;
                    Ok(kiln_proto::gzip::compress(&prof.encode_to_vec()))
                })
                .await?;
                Ok((
                    [
                        (header::CONTENT_TYPE, "application/octet-stream"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"profile.pb.gz\"",
                        ),
                    ],
                    bytes,
                )
                    .into_response())
            }
            "folded" => {
                let text =
                    run_query(&st, "export", move |s| s.export_folded(&query, from, until)).await?;
                Ok((
                    [
                        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"profile.folded\"",
                        ),
                    ],
                    text,
                )
                    .into_response())
            }
            other => Err(ApiError::bad_request(
                "invalid_param",
                format!("format {other:?}: use pprof or folded"),
            )),
        }
    }
    .await;
    match r {
        Ok(v) => v,
        Err(e) => e.into_response(),
    }
}
