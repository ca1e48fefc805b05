//! The timelines the UI draws, from a real server on a free port: a steady service
//! pushing one 15 s profile per window (what `kiln run` stores) over the last 70
//! minutes must draw flat in `/pyroscope/render` (single view, comparison sides),
//! `/api/v1/group-totals` (tag explorer chart and sparklines) and
//! `/pyroscope/render-diff`, for the last 5, 15, 30 and 60 minutes at the UI's default
//! step (10 s, finer than the profiles), with no drop at the right edge either.

use kiln_testkit::{pprof::*, *};
use prost::Message;

const WINDOW: i64 = 15 * S;

/// One Connect push of a window's profiles, one series per region.
fn push_window(srv: &TestServer, t: i64) {
    let series = ["us-east", "eu-west"]
        .iter()
        .map(|region| {
            let mut p = cpu_profile(&[(&["main", region], 700, &[])], t);
            p.duration_nanos = WINDOW;
            kiln_proto::push::RawProfileSeries {
                labels: [
                    ("__name__", "process_cpu"),
                    ("service_name", "steady"),
                    ("region", region),
                ]
                .iter()
                .map(|(k, v)| kiln_proto::push::LabelPair::new(*k, *v))
                .collect(),
                samples: vec![kiln_proto::push::RawSample {
                    raw_profile: p.encode_to_vec(),
                    id: String::new(),
                }],
                annotations: vec![],
            }
        })
        .collect();
    let body = kiln_proto::push::PushRequest { series }.encode_to_vec();
    let r = srv.post(
        "/push.v1.PusherService/Push",
        &[("content-type", "application/proto")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `(start s, step s, samples)` of a timeline JSON object.
fn timeline(v: &serde_json::Value) -> (i64, i64, Vec<u64>) {
    let samples = v["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline in {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (
        v["startTime"].as_i64().unwrap(),
        v["durationDelta"].as_i64().unwrap(),
        samples,
    )
}

/// Every step wholly inside the data's span `[first, last)` (unix s) is non-zero and
/// the largest is at most 1.6 times the smallest; at least `min_steps` are judged.
fn assert_flat(what: &str, v: &serde_json::Value, (first, last): (i64, i64), min_steps: usize) {
    let (start, step, samples) = timeline(v);
    let inside: Vec<u64> = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let b = start + *i as i64 * step;
            b >= first && b + step <= last
        })
        .map(|(_, &v)| v)
        .collect();
    let min = inside.iter().copied().min().unwrap_or(0);
    let max = inside.iter().copied().max().unwrap_or(0);
    assert!(
        inside.len() >= min_steps && min > 0 && max as f64 <= 1.6 * min as f64,
        "{what}: not flat ({} steps judged, min {min}, max {max}, step {step} s): {samples:?}",
        inside.len()
    );
}

/// No drop at the right edge: the timeline reaches to within a window, the arrival
/// grace and a step of `until` (later steps wait for their data) and its last step is as
/// full as the others.
fn assert_no_edge_drop(what: &str, v: &serde_json::Value, until: i64) {
    let (start, step, samples) = timeline(v);
    let end = start + samples.len() as i64 * step;
    assert!(
        end >= until - WINDOW / S - 10 - step,
        "{what}: ends {} s before the range",
        until - end
    );
    let max = samples.iter().copied().max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    assert!(
        last as f64 * 1.6 >= max as f64,
        "{what}: drops at the right edge: {samples:?}"
    );
}

#[test]
fn steady_service_draws_flat_timelines_in_every_ui_query() {
    let srv = TestServer::start();
    // Windows end 3 s after a multiple of 10 s, as a live agent's may.
    let now = kiln_store::now_nanos() / (10 * S) * (10 * S) - 7 * S;
    let first = now - 70 * 60 * S;
    let mut t = first;
    while t + WINDOW <= now {
        push_window(&srv, t);
        t += WINDOW;
    }
    let data = (first / S, t / S);
    let q = urlencode(&format!("{CPU}{{service_name=\"steady\"}}"));
    let until = now / S;
    for minutes in [5, 15, 30, 60] {
        let from = until - minutes * 60;
        // Steps of 10 s wholly inside the range, less the partial ones at its edges.
        let steps = (minutes * 6 - 2) as usize;
        let what = |e: &str| format!("{e}, last {minutes} min");
        // Single view and comparison sides (the UI asks for a few nodes only there).
        for max_nodes in [1024, 16] {
            let r = srv.get_json(&format!(
                "/pyroscope/render?query={q}&from={from}&until={until}&format=json&maxNodes={max_nodes}"
            ));
            assert_eq!(r["timeline"]["durationDelta"], 10);
            assert_flat(&what("render"), &r["timeline"], data, steps);
            assert_no_edge_drop(&what("render"), &r["timeline"], until);
        }
        // Tag explorer: the chart and each value's sparkline.
        let g = srv.get_json(&format!(
            "/api/v1/group-totals?query={q}&from={from}&until={until}&groupBy=region"
        ));
        let groups = g["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2, "{g}");
        for group in groups {
            let name = format!("group-totals {}", group["value"]);
            assert_flat(&what(&name), &group["timeline"], data, steps);
            assert_no_edge_drop(&what(&name), &group["timeline"], until);
        }
        // Diff view: the first and second half of the range.
        let half = from + minutes * 30;
        let d = srv.get_json(&format!(
            "/pyroscope/render-diff?leftQuery={q}&leftFrom={from}&leftUntil={half}&rightQuery={q}&rightFrom={half}&rightUntil={until}&format=json"
        ));
        for side in ["leftTimeline", "rightTimeline"] {
            assert_flat(&what(side), &d[side], data, steps / 2 - 1);
        }
    }
}
