//! Timelines of a steady service are flat: a series of 15 s profiles (what `kiln run`
//! stores) over the last 70 minutes, ingested through the store's real API, read back
//! through every query the UI draws a timeline from (render, group totals with their
//! sparklines, diff sides, plain timeline), at the default step (10 s, finer than the
//! profiles) and coarser steps served by raw rows and by 5-minute rollups.

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;
use kiln_store::{IngestRequest, QueryRange, RenderOptions, Store, StoreOptions, Timeline};

const S: i64 = 1_000_000_000;
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const WINDOW: i64 = 15 * S;
/// CPU samples per window and region: 97 Hz over 15 s at ~half a core.
const SAMPLES: i64 = 700;

fn profile(region: &str, samples: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    let frame = |name| FrameSpec {
        name,
        filename: "svc.rs",
        line: 1,
    };
    let leaf = b.location(0, 0, &[frame(region)]);
    let main = b.location(0, 0, &[frame("main")]);
    b.add_sample(&[leaf, main], &[samples, samples * 10_000_000], &[]);
    b.build()
}

/// Two regions of one service, a 15 s profile each per window, over the 70 minutes
/// before `end`. Returns the data's span `[first start, last end)`.
fn ingest_steady(store: &Store, end: i64) -> (i64, i64) {
    let first = end - 70 * 60 * S;
    let mut batch = Vec::new();
    let mut t = first;
    while t + WINDOW <= end {
        for region in ["us-east", "eu-west"] {
            batch.push(IngestRequest {
                labels: vec![
                    ("__name__".into(), "process_cpu".into()),
                    ("service_name".into(), "steady".into()),
                    ("region".into(), region.into()),
                ],
                profile: profile(region, SAMPLES),
                from_nanos: t,
                until_nanos: t + WINDOW,
            });
        }
        if batch.len() >= 40 {
            store.ingest_many(std::mem::take(&mut batch)).unwrap();
        }
        t += WINDOW;
    }
    store.ingest_many(batch).unwrap();
    (first, t)
}

/// Flat: every step wholly inside the data's span `[first, last)` is non-zero and the
/// largest is at most 1.6 times the smallest. Steps at the edges hold part of a step's
/// data by construction and are not judged. Returns how many steps were judged.
fn assert_flat(what: &str, tl: &Timeline, (first, last): (i64, i64)) -> usize {
    let step = tl.duration_delta * S;
    let inside: Vec<u64> = tl
        .samples
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let b = tl.start_time * S + *i as i64 * step;
            b >= first && b + step <= last
        })
        .map(|(_, &v)| v)
        .collect();
    let min = inside.iter().copied().min().unwrap_or(0);
    let max = inside.iter().copied().max().unwrap_or(0);
    assert!(
        min > 0 && max as f64 <= 1.6 * min as f64,
        "{what}: not flat (min {min}, max {max}, step {} s): {:?}",
        tl.duration_delta,
        tl.samples
    );
    inside.len()
}

/// No drop at the right edge: the timeline reaches to within a window and the arrival
/// grace of `until` (later steps wait for their data), and its last step is as full as
/// the others.
fn assert_no_edge_drop(what: &str, tl: &Timeline, until: i64) {
    let step = tl.duration_delta * S;
    let end = tl.start_time * S + tl.samples.len() as i64 * step;
    assert!(
        end >= until - WINDOW - 10 * S - step,
        "{what}: ends {} s before the range",
        (until - end) / S
    );
    let max = tl.samples.iter().copied().max().unwrap_or(0);
    let last = tl.samples.last().copied().unwrap_or(0);
    assert!(
        last as f64 * 1.6 >= max as f64,
        "{what}: drops at the right edge: {:?}",
        tl.samples
    );
}

fn range_steps(range: i64, step: i64) -> usize {
    // Steps of the range wholly inside the data (the range ends at the data's end, the
    // first step may start before the range, the last may end after it).
    (range / step - 2) as usize
}

#[test]
fn steady_profiles_give_flat_timelines_at_every_range_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Windows end at a time that is no multiple of 10 s, as a live agent's do.
    let now = kiln_store::now_nanos() / (10 * S) * (10 * S) - 3 * S;
    let data = ingest_steady(&store, now);
    // Roll up what is older than the grace, so coarse steps read 5-minute buckets.
    let report = store.maintain(now).unwrap();
    assert!(report.watermarks[0] > data.0, "{report:?}");
    let q = format!("{CPU}{{service_name=\"steady\"}}");
    for minutes in [5, 15, 30, 60] {
        let (from, until) = (now - minutes * 60 * S, now);
        let range = until - from;
        let what = |endpoint: &str| format!("{endpoint}, last {minutes} min");
        let render = store
            .render(&q, from, until, &RenderOptions::default())
            .unwrap();
        let step = render.timeline.duration_delta * S;
        assert_eq!(step, 10 * S, "the default step is finer than the profiles");
        let n = assert_flat(&what("render"), &render.timeline, data);
        assert!(n >= range_steps(range, step), "{n} steps judged");
        assert_no_edge_drop(&what("render"), &render.timeline, until);
        let grouped = store
            .render(
                &q,
                from,
                until,
                &RenderOptions {
                    group_by: Some("region".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        for (region, tl) in grouped.groups.as_ref().unwrap() {
            assert_flat(&what(&format!("render groupBy {region}")), tl, data);
        }
        let g = store.group_totals(&q, from, until, "region", 0).unwrap();
        assert_eq!(g.groups.len(), 2);
        for group in &g.groups {
            // The tag explorer's chart and sparklines.
            let name = what(&format!("group-totals {}", group.value));
            assert_flat(&name, &group.timeline, data);
            assert_no_edge_drop(&name, &group.timeline, until);
        }
        // Diff / comparison: each side's timeline over its own range.
        let half = from + range / 2;
        let d = store
            .render_diff(
                &QueryRange {
                    query: &q,
                    from_nanos: from,
                    until_nanos: half,
                },
                &QueryRange {
                    query: &q,
                    from_nanos: half,
                    until_nanos: until,
                },
                1024,
            )
            .unwrap();
        for (side, tl) in [("left", &d.left_timeline), ("right", &d.right_timeline)] {
            assert_flat(&what(&format!("render-diff {side}")), tl, data);
        }
        assert_no_edge_drop(&what("render-diff right"), &d.right_timeline, until);
        let tl = store.timeline(&q, from, until, 0).unwrap();
        assert_flat(&what("timeline"), &tl, data);
    }
    // Coarser steps over the last hour: raw rows (15 s, 60 s) and 5-minute rollups
    // (300 s: whole buckets, read from the `totals` rollup level).
    let from = now - 3600 * S;
    for step in [15, 60, 300, 900] {
        let tl = store.timeline(&q, from, now, step).unwrap();
        assert_eq!(tl.duration_delta, step);
        let n = assert_flat(&format!("timeline step {step} s"), &tl, data);
        assert!(n >= range_steps(3600 * S, step * S), "{n} steps judged");
        let g = store.group_totals(&q, from, now, "region", step).unwrap();
        for group in &g.groups {
            assert_flat(
                &format!("group-totals {} step {step} s", group.value),
                &group.timeline,
                data,
            );
        }
    }
}

#[test]
fn timeline_totals_equal_the_values_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Data that ended an hour ago: no step waits for more.
    let end = kiln_store::now_nanos() / (10 * S) * (10 * S) - 3603 * S;
    let (first, last) = ingest_steady(&store, end);
    let q = format!("{CPU}{{service_name=\"steady\"}}");
    let per_window = 2 * SAMPLES as u64 * 10_000_000;
    let windows = ((last - first) / WINDOW) as u64;
    // The whole span, at steps that do and do not divide the profiles' 15 s.
    for step in [10, 15, 7, 60, 300] {
        let tl = store.timeline(&q, first, last, step).unwrap();
        assert_eq!(
            tl.samples.iter().sum::<u64>(),
            windows * per_window,
            "step {step} s"
        );
        let g = store.group_totals(&q, first, last, "region", step).unwrap();
        assert_eq!(g.total, windows * per_window, "group totals, step {step} s");
        assert_eq!(
            g.groups.iter().map(|g| g.total).sum::<u64>(),
            g.total,
            "step {step} s"
        );
    }
    // A range of whole 30 s steps that starts and ends on profile boundaries: exactly the
    // profiles inside it, nothing from the neighbours that end at or start after it.
    let from = first + 20 * WINDOW;
    let until = from + 40 * WINDOW;
    let tl = store.timeline(&q, from, until, 30).unwrap();
    let expected = 40 * per_window;
    let inside: u64 = tl
        .samples
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let b = tl.start_time * S + *i as i64 * 30 * S;
            b >= from && b < until
        })
        .map(|(_, &v)| v)
        .sum();
    assert_eq!(inside, expected);
    // The flame graph of that range holds the same profiles.
    let render = store
        .render(&q, from, until, &RenderOptions::default())
        .unwrap();
    assert_eq!(render.flamebearer.num_ticks, expected);
}

#[test]
fn a_profile_that_started_before_the_range_counts_in_its_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t0 = 1_700_000_000 * S;
    // One 60 s profile at t0; a range starting 30 s into it sees half, in 10 s steps.
    store
        .ingest(IngestRequest {
            labels: vec![("service_name".into(), "once".into())],
            profile: profile("x", 60),
            from_nanos: t0,
            until_nanos: t0 + 60 * S,
        })
        .unwrap();
    let q = format!("{CPU}{{service_name=\"once\"}}");
    let tl = store.timeline(&q, t0 + 30 * S, t0 + 90 * S, 10).unwrap();
    let tenth = 60 * 10_000_000 / 6;
    assert_eq!(tl.samples, vec![tenth, tenth, tenth, 0, 0, 0]);
    // Reopened, the store still knows how far back to look.
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let tl = store.timeline(&q, t0 + 30 * S, t0 + 90 * S, 10).unwrap();
    assert_eq!(tl.samples, vec![tenth, tenth, tenth, 0, 0, 0]);
}

#[test]
fn a_stopped_service_drops_to_zero_and_recent_steps_wait_for_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let now = kiln_store::now_nanos() / (10 * S) * (10 * S);
    // 20 minutes of data that stopped 10 minutes ago.
    let stopped = now - 10 * 60 * S;
    let mut t = stopped - 20 * 60 * S;
    while t < stopped {
        store
            .ingest(IngestRequest {
                labels: vec![("service_name".into(), "stopped".into())],
                profile: profile("x", SAMPLES),
                from_nanos: t,
                until_nanos: t + WINDOW,
            })
            .unwrap();
        t += WINDOW;
    }
    let q = format!("{CPU}{{service_name=\"stopped\"}}");
    let before = kiln_store::now_nanos();
    let tl = store.timeline(&q, now - 15 * 60 * S, now, 10).unwrap();
    let after = kiln_store::now_nanos();
    let full = (SAMPLES * 10_000_000 * 10 / 15) as u64;
    // 5 minutes of data, then zeros up to the steps that end within a window and the
    // grace of now (those wait for data that may still arrive).
    assert!(
        tl.samples[..30].iter().all(|&v| v.abs_diff(full) <= 1),
        "{:?}",
        tl.samples
    );
    let zeros = &tl.samples[30..];
    assert!(zeros.iter().all(|&v| v == 0), "{:?}", tl.samples);
    let end = tl.start_time * S + tl.samples.len() as i64 * 10 * S;
    let pending = WINDOW + 10 * S;
    assert!(
        end <= after - pending && end > before - pending - 10 * S,
        "ends {} s before now",
        (after - end) / S
    );
}
