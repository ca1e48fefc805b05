//! `POST /ingest`: Pyroscope's legacy push (`?name=app.cpu{k=v}&from=&until=&format=
//! &sampleRate=&spyName=&units=&aggregationType=`), as PyPI `pyroscope-io` 0.8.x and
//! older agents send. Formats: `folded` (default; `a;b;c 12` lines), `lines` (one stack
//! per line, count 1), `pprof` (raw, gzip'd or not) and `multipart/form-data` (field
//! `profile` = pprof, optional `sample_type_config` JSON). `trie`, `tree`, `jfr` and
//! `speedscope` are refused with a 400.
//!
//! The app name `app.suffix` becomes `service_name="app"` and `__name__` from the suffix:
//! `cpu`/`itimer` → `process_cpu`, `wall` → `wall`, `alloc_*`/`inuse_*` → `memory` (an
//! unknown suffix stays part of the app name, `__name__` = `process_cpu`). Folded CPU
//! samples are stored as `process_cpu:cpu:nanoseconds:cpu:nanoseconds` with each count
//! worth `1e9 / sampleRate` ns; `units=objects|bytes` store `<suffix>:count` /
//! `<suffix>:bytes`. `spyName` becomes the label `pyroscope_spy`. `aggregationType` is
//! accepted and ignored (values are summed).

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;
use kiln_store::IngestRequest;

use super::{body_timeout, ingest_permit, read_body, AppState, Params, BODY_READ_TIMEOUT};
use crate::error::ApiError;
use crate::limits::RequestBudget;
use crate::timeparse::parse_time;

/// A parsed legacy application name.
#[derive(Debug, PartialEq, Eq)]
pub struct AppName {
    pub service: String,
    /// `__name__` label: the profile type family.
    pub family: &'static str,
    /// What followed the last '.', when it named a profile kind ("cpu", "alloc_space").
    pub suffix: String,
    pub tags: Vec<(String, String)>,
}

/// Parses `app.cpu{env=prod,region=us}`.
pub fn parse_app_name(name: &str) -> Result<AppName, ApiError> {
    let bad = |m: &str| ApiError::bad_request("invalid_name", format!("name {name:?}: {m}"));
    let (app, tags) = match name.find('{') {
        Some(i) => {
            let rest = name[i + 1..]
                .strip_suffix('}')
                .ok_or_else(|| bad("missing closing }"))?;
            (&name[..i], rest)
        }
        None => (name, ""),
    };
    let app = app.trim();
    if app.is_empty() {
        return Err(bad("empty application name"));
    }
    let mut labels = Vec::new();
    for kv in tags.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad("tags must be k=v"))?;
        labels.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let (service, family, suffix) = match app.rsplit_once('.') {
        Some((svc, sfx)) => {
            let fam = match sfx {
                "cpu" | "itimer" => Some("process_cpu"),
                "wall" => Some("wall"),
                s if s.starts_with("alloc_") || s.starts_with("inuse_") => Some("memory"),
                "goroutines" => Some("goroutine"),
                _ => None,
            };
            match fam {
                Some(f) => (svc.to_owned(), f, sfx.to_owned()),
                None => (app.to_owned(), "process_cpu", String::new()),
            }
        }
        None => (app.to_owned(), "process_cpu", String::new()),
    };
    Ok(AppName {
        service,
        family,
        suffix,
        tags: labels,
    })
}

/// Memory the builder may hold per distinct sample, beyond 8 bytes a frame (the sample
/// struct and its key in the dedup map).
const BUILT_SAMPLE_BYTES: u64 = 2 * std::mem::size_of::<kiln_proto::pprof::Sample>() as u64 + 96;
/// Memory the builder may hold per distinct frame, beyond twice its name (string table
/// and map key; function, location and line; their map entries).
const BUILT_FRAME_BYTES: u64 = 512;

/// Builds a profile from `(stack root→leaf, value)` entries, charging what the builder
/// holds to `budget` as it grows, so it stops at the first line over the budget.
fn profile_from_stacks<'a>(
    entries: impl Iterator<Item = Result<(Vec<&'a str>, i64), ApiError>>,
    units: &str,
    suffix: &str,
    sample_rate: i64,
    max_depth: usize,
    budget: &mut RequestBudget,
) -> Result<Profile, ApiError> {
    let (ty, unit, period_type, period_unit, period, mult) = match units {
        "" | "samples" => {
            let period = 1_000_000_000 / sample_rate.max(1);
            ("cpu", "nanoseconds", "cpu", "nanoseconds", period, period)
        }
        "objects" => (
            if suffix.is_empty() { "objects" } else { suffix },
            "count",
            "space",
            "bytes",
            0,
            1,
        ),
        "bytes" => (
            if suffix.is_empty() { "space" } else { suffix },
            "bytes",
            "space",
            "bytes",
            0,
            1,
        ),
        other => {
            return Err(ApiError::bad_request(
                "invalid_param",
                format!("unsupported units {other:?}: use samples, objects or bytes"),
            ))
        }
    };
    let mut b = ProfileBuilder::new(&[(ty, unit)], (period_type, period_unit), period);
    let mut locs = Vec::new();
    let mut max_location = 0;
    for e in entries {
        let (frames, value) = e?;
        locs.clear();
        for f in frames.iter().rev().take(max_depth) {
            let id = b.location(
                0,
                0,
                &[FrameSpec {
                    name: f,
                    filename: "",
                    line: 0,
                }],
            );
            if id > max_location {
                max_location = id;
                budget.charge_memory(BUILT_FRAME_BYTES + 2 * f.len() as u64)?;
            }
            locs.push(id);
        }
        let before = b.sample_count();
        b.add_sample(&locs, &[value.saturating_mul(mult)], &[]);
        if b.sample_count() > before {
            budget.charge_samples(1)?;
            budget.charge_memory(BUILT_SAMPLE_BYTES + 16 * locs.len() as u64)?;
        }
    }
    Ok(b.build())
}

fn folded_entries(text: &str) -> impl Iterator<Item = Result<(Vec<&str>, i64), ApiError>> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let bad = || {
                ApiError::bad_request(
                    "invalid_folded",
                    format!("line {}: expected `frame;frame;... <count>`", i + 1),
                )
            };
            let (stack, count) = line.trim_end().rsplit_once(' ').ok_or_else(bad)?;
            let count: i64 = count.parse().map_err(|_| bad())?;
            if count < 0 {
                return Err(ApiError::bad_request(
                    "negative_value",
                    format!("line {}: negative count {count}", i + 1),
                ));
            }
            Ok((stack.split(';').filter(|f| !f.is_empty()).collect(), count))
        })
}

fn lines_entries(text: &str) -> impl Iterator<Item = Result<(Vec<&str>, i64), ApiError>> + '_ {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| {
        Ok((
            l.trim_end().split(';').filter(|f| !f.is_empty()).collect(),
            1,
        ))
    })
}

/// Builds a profile from a legacy text body: `format` is `folded` or `lines`.
pub fn text_profile(
    format: &str,
    text: &str,
    units: &str,
    suffix: &str,
    sample_rate: i64,
    max_depth: usize,
    budget: &mut RequestBudget,
) -> Result<Profile, ApiError> {
    match format {
        "folded" => profile_from_stacks(
            folded_entries(text),
            units,
            suffix,
            sample_rate,
            max_depth,
            budget,
        ),
        "lines" => profile_from_stacks(
            lines_entries(text),
            units,
            suffix,
            sample_rate,
            max_depth,
            budget,
        ),
        other => Err(ApiError::bad_request(
            "unsupported_format",
            format!("format {other:?} is not supported: use folded, lines or pprof"),
        )),
    }
}

#[derive(serde::Deserialize, Default)]
struct SampleTypeConfig {
    #[serde(rename = "display-name", default)]
    display_name: Option<String>,
}

/// Keeps the sample types named in `config` (renamed by `display-name`), as Pyroscope
/// does when a client sends one.
fn apply_sample_type_config(p: &mut Profile, config: &HashMap<String, SampleTypeConfig>) {
    let keep: Vec<usize> = (0..p.sample_type.len())
        .filter(|&i| config.contains_key(p.string(p.sample_type[i].r#type)))
        .collect();
    if keep.is_empty() {
        return;
    }
    let mut types = Vec::new();
    for &i in &keep {
        let mut vt = p.sample_type[i];
        let name = p.string(vt.r#type).to_owned();
        if let Some(d) = config.get(&name).and_then(|c| c.display_name.clone()) {
            p.string_table.push(d);
            vt.r#type = p.string_table.len() as i64 - 1;
        }
        types.push(vt);
    }
    p.sample_type = types;
    for s in &mut p.sample {
        s.value = keep
            .iter()
            .filter_map(|&i| s.value.get(i).copied())
            .collect();
    }
}

pub async fn ingest(
    State(st): State<AppState>,
    Query(params): Query<Params>,
    req: Request,
) -> Response {
    st.metrics
        .ingest_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match ingest_inner(&st, params, req).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            st.metrics.reject(e.reason);
            e.into_response()
        }
    }
}

async fn ingest_inner(st: &AppState, p: Params, req: Request) -> Result<(), ApiError> {
    let name = p
        .get("name")
        .ok_or_else(|| ApiError::bad_request("invalid_name", "missing ?name=app.cpu{tags}"))?;
    let AppName {
        service,
        family,
        suffix,
        tags,
    } = parse_app_name(name)?;
    let now = kiln_store::now_nanos();
    let from = p
        .get("from")
        .map(|s| parse_time(s, now))
        .transpose()?
        .unwrap_or(now);
    let until = p
        .get("until")
        .map(|s| parse_time(s, now))
        .transpose()?
        .unwrap_or(from);
    if from > until {
        return Err(ApiError::bad_request("invalid_time", "from is after until"));
    }
    let sample_rate: i64 = match p.get("sampleRate") {
        Some(s) => s
            .parse()
            .ok()
            .filter(|r| *r > 0 && *r <= 1_000_000_000)
            .ok_or_else(|| ApiError::bad_request("invalid_param", "sampleRate must be 1..=1e9"))?,
        None => 100,
    };
    let units = p.get("units").map_or("", String::as_str);
    let format = p.get("format").map_or("folded", String::as_str);
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let depth = st.limits.max_stack_depth;
    let _turn = ingest_permit(st).await?;
    let mut budget = RequestBudget::new(&st.limits);
    let mut profile = if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, st).await.map_err(|e| {
            ApiError::bad_request("invalid_multipart", format!("invalid multipart body: {e}"))
        })?;
        let mut profile = None;
        let mut config = None;
        while let Some(field) = mp.next_field().await.map_err(|e| {
            ApiError::bad_request("invalid_multipart", format!("invalid multipart body: {e}"))
        })? {
            let fname = field.name().unwrap_or("").to_owned();
            let data = tokio::time::timeout(BODY_READ_TIMEOUT, field.bytes())
                .await
                .map_err(|_| body_timeout())?
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("multipart field {fname}: {e}"),
                    )
                })?;
            match fname.as_str() {
                "profile" => {
                    if profile.is_some() {
                        return Err(ApiError::bad_request(
                            "invalid_multipart",
                            "multipart body has more than one `profile` field",
                        ));
                    }
                    profile = Some(budget.decode_profile(&data)?)
                }
                "sample_type_config" => {
                    config = Some(
                        serde_json::from_slice::<HashMap<String, SampleTypeConfig>>(&data)
                            .map_err(|e| {
                                ApiError::bad_request(
                                    "invalid_multipart",
                                    format!("invalid sample_type_config: {e}"),
                                )
                            })?,
                    )
                }
                _ => {}
            }
        }
        let mut profile = profile.ok_or_else(|| {
            ApiError::bad_request("invalid_multipart", "multipart body has no `profile` field")
        })?;
        if let Some(c) = config {
            apply_sample_type_config(&mut profile, &c);
        }
        profile
    } else {
        let body = read_body(req.into_body(), st.limits.max_body_bytes).await?;
        match format {
            "pprof" => budget.decode_profile(&body)?,
            "folded" | "lines" => {
                let raw = budget.decompress(&body)?;
                // One sample per line at most: refuse at once when the lines alone are
                // over the sample budget.
                let lines = raw.iter().filter(|&&c| c == b'\n').count() as u64;
                if lines > budget.samples_left() + 1 {
                    budget.charge_samples(lines)?;
                }
                let text = std::str::from_utf8(&raw).map_err(|_| {
                    ApiError::bad_request("invalid_folded", "body is not UTF-8 text")
                })?;
                text_profile(
                    format,
                    text,
                    units,
                    &suffix,
                    sample_rate,
                    depth,
                    &mut budget,
                )?
            }
            other => {
                return Err(ApiError::bad_request(
                    "unsupported_format",
                    format!("format {other:?} is not supported: use folded, lines or pprof"),
                ))
            }
        }
    };
    if profile.time_nanos == 0 {
        profile.time_nanos = from;
    }
    let mut labels = tags;
    labels.push(("service_name".into(), service));
    labels.push(("__name__".into(), family.into()));
    if let Some(spy) = p.get("spyName").filter(|s| !s.is_empty()) {
        labels.push(("pyroscope_spy".into(), spy.clone()));
    }
    let req = IngestRequest {
        labels,
        profile,
        from_nanos: from,
        until_nanos: until,
    };
    let store = st.store.clone();
    let out = tokio::task::spawn_blocking(move || store.ingest(req))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    st.metrics
        .pushed_profiles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    st.metrics
        .pushed_samples
        .fetch_add(out.samples, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_bodies_never_panic(text in "[a-z;_ 0-9\\-\n]{0,200}", units in "(samples|objects|bytes|x)") {
            for format in ["folded", "lines"] {
                let mut b = RequestBudget::new(&Limits::default());
                if let Ok(p) = text_profile(format, &text, &units, "cpu", 100, 5, &mut b) {
                    prop_assert!(kiln_proto::validate(&p).is_ok());
                }
            }
        }

        #[test]
        fn app_names_never_panic(name in "\\PC{0,40}") {
            let _ = parse_app_name(&name);
        }
    }

    #[test]
    fn app_names() {
        let a = parse_app_name("my.app.cpu{env=prod, region = us}").unwrap();
        assert_eq!(
            (a.service.as_str(), a.family, a.suffix.as_str()),
            ("my.app", "process_cpu", "cpu")
        );
        assert_eq!(
            a.tags,
            vec![
                ("env".into(), "prod".into()),
                ("region".into(), "us".into())
            ]
        );
        let a = parse_app_name("plain").unwrap();
        assert_eq!((a.service.as_str(), a.family), ("plain", "process_cpu"));
        let a = parse_app_name("svc.alloc_space").unwrap();
        assert_eq!(
            (a.service.as_str(), a.family, a.suffix.as_str()),
            ("svc", "memory", "alloc_space")
        );
        assert!(parse_app_name("x{a}").is_err());
        assert!(parse_app_name("{a=b}").is_err());
    }

    #[test]
    fn folded_profile() {
        let mut b = RequestBudget::new(&Limits::default());
        let p = profile_from_stacks(
            folded_entries("a;b 3\na;c 1\n\n"),
            "",
            "cpu",
            100,
            1000,
            &mut b,
        )
        .unwrap();
        kiln_proto::validate(&p).unwrap();
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.sample[0].value, vec![30_000_000]);
        assert!(profile_from_stacks(folded_entries("a;b x"), "", "", 100, 10, &mut b).is_err());
        assert!(profile_from_stacks(folded_entries("a;b -1"), "", "", 100, 10, &mut b).is_err());
        // Distinct frames are charged as they are interned: a budget for about 100 stops
        // the build early.
        let text: String = (0..10_000).map(|i| format!("f{i} 1\n")).collect();
        let mut small = RequestBudget::new(&Limits {
            max_request_memory: 100 * (BUILT_FRAME_BYTES + BUILT_SAMPLE_BYTES + 32),
            ..Limits::default()
        });
        let e =
            profile_from_stacks(folded_entries(&text), "", "", 100, 10, &mut small).unwrap_err();
        assert_eq!(e.reason, "over_memory_budget");
    }
}
