//! End-to-end tests of the store: ingest → query, rollups, retention, reopen.

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;

use crate::*;

const S: i64 = 1_000_000_000;
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds";

/// A cpu profile: each entry is (stack root→leaf, count, sample labels); values are
/// count and count*10ms.
/// `(frames root→leaf, count, sample labels)`.
pub type StackSpec<'a> = (&'a [&'a str], i64, &'a [(&'a str, &'a str)]);

pub fn cpu_profile(stacks: &[StackSpec<'_>]) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    for (frames, n, labels) in stacks {
        let locs: Vec<u64> = frames
            .iter()
            .rev()
            .map(|f| {
                b.location(
                    0,
                    0,
                    &[FrameSpec {
                        name: f,
                        filename: "x.py",
                        line: 1,
                    }],
                )
            })
            .collect();
        b.add_sample(&locs, &[*n, n * 10_000_000], labels);
    }
    b.build()
}

fn req(service: &str, region: &str, t: i64, p: Profile) -> IngestRequest {
    IngestRequest {
        labels: vec![
            ("__name__".into(), "process_cpu".into()),
            ("service_name".into(), service.into()),
            ("region".into(), region.into()),
        ],
        profile: p,
        from_nanos: t,
        until_nanos: t + 10 * S,
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    (dir, store)
}

fn seed(store: &Store, t0: i64) {
    for i in 0..6 {
        let t = t0 + i * 10 * S;
        store
            .ingest(req(
                "app",
                "us-west-1",
                t,
                cpu_profile(&[
                    (&["main", "work", "hot"], 5, &[]),
                    (&["main", "only_west"], 2, &[("vehicle", "car")]),
                ]),
            ))
            .unwrap();
        store
            .ingest(req(
                "app",
                "eu-north-1",
                t,
                cpu_profile(&[(&["main", "work", "hot"], 3, &[("vehicle", "bike")])]),
            ))
            .unwrap();
    }
}

#[test]
fn ingest_render_and_select() {
    let (_d, store) = open();
    let t0 = 1_700_000_000 * S;
    seed(&store, t0);
    assert_eq!(
        store.profile_types(),
        vec![CPU.to_owned(), SAMPLES.to_owned()]
    );
    let until = t0 + 3600 * S;
    let tree = store
        .tree(&format!("{CPU}{{service_name=\"app\"}}"), t0, until)
        .unwrap();
    assert_eq!(tree.total(0), 6 * 10 * 10_000_000);
    assert_eq!(tree.function_total("hot", 0), 6 * 8 * 10_000_000);
    // Series label selection.
    let west = store
        .tree(&format!("{SAMPLES}{{region=\"us-west-1\"}}"), t0, until)
        .unwrap();
    assert_eq!(west.total(0), 42);
    assert_eq!(west.function_total("only_west", 0), 12);
    let eu = store
        .tree(&format!("{SAMPLES}{{region=~\"eu-.*\"}}"), t0, until)
        .unwrap();
    assert_eq!(eu.function_total("only_west", 0), 0);
    // Sample label (dynamic tag) selection, including absent = "".
    let car = store
        .tree(&format!("{SAMPLES}{{vehicle=\"car\"}}"), t0, until)
        .unwrap();
    assert_eq!(car.total(0), 12);
    let not_car = store
        .tree(&format!("{SAMPLES}{{vehicle!=\"car\"}}"), t0, until)
        .unwrap();
    assert_eq!(not_car.total(0), 48);
    // Legacy name.
    let legacy = store.tree("app.cpu", t0, until).unwrap();
    assert_eq!(legacy.total(0), 60 * 10_000_000);
    assert!(matches!(
        store.tree("nope:x:y:z:w", t0, until),
        Err(StoreError::UnknownProfileType(_))
    ));
    // Labels.
    let names = store.label_names("", t0, until).unwrap();
    for n in ["__name__", "region", "service_name", "vehicle"] {
        assert!(names.contains(&n.to_owned()), "{names:?}");
    }
    assert_eq!(
        store.label_values("region", CPU, t0, until).unwrap(),
        vec!["eu-north-1", "us-west-1"]
    );
    assert!(store
        .label_values("region", "", until, until + S)
        .unwrap()
        .is_empty());
    // Render JSON shape.
    let r = store
        .render(
            &format!("{SAMPLES}{{}}"),
            t0,
            until,
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(r.flamebearer.num_ticks, 60);
    assert_eq!(r.flamebearer.names[0], "total");
    assert_eq!(r.metadata.sample_rate, 100);
    assert_eq!(r.timeline.duration_delta, 10);
    assert_eq!(r.timeline.samples.iter().sum::<u64>(), 60);
    // Group totals.
    let g = store.group_totals(SAMPLES, t0, until, "region", 0).unwrap();
    assert_eq!(g.total, 60);
    assert_eq!(g.groups[0].value, "us-west-1");
    assert_eq!(g.groups[0].total, 42);
    let g = store
        .group_totals(SAMPLES, t0, until, "vehicle", 0)
        .unwrap();
    let values: Vec<&str> = g.groups.iter().map(|g| g.value.as_str()).collect();
    assert_eq!(values, vec!["", "bike", "car"]);
    // Exports.
    let folded = store.export_folded(SAMPLES, t0, until).unwrap();
    assert!(folded.contains("main;work;hot 48\n"), "{folded}");
    let p = store.export_pprof(SAMPLES, t0, until).unwrap();
    kiln_proto::validate(&p).unwrap();
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 60);
    // Reversed range.
    assert!(store.tree(CPU, until, t0).unwrap_err().is_client_error());
}

#[test]
fn diff_of_two_ranges() {
    let (_d, store) = open();
    let t0 = 1_700_000_000 * S;
    store
        .ingest(req(
            "a",
            "x",
            t0,
            cpu_profile(&[(&["main", "grows"], 1, &[]), (&["main", "same"], 4, &[])]),
        ))
        .unwrap();
    store
        .ingest(req(
            "a",
            "x",
            t0 + 100 * S,
            cpu_profile(&[(&["main", "grows"], 9, &[]), (&["main", "same"], 4, &[])]),
        ))
        .unwrap();
    let d = store
        .render_diff(
            &QueryRange {
                query: SAMPLES,
                from_nanos: t0,
                until_nanos: t0 + 50 * S,
            },
            &QueryRange {
                query: SAMPLES,
                from_nanos: t0 + 50 * S,
                until_nanos: t0 + 200 * S,
            },
            100,
        )
        .unwrap();
    assert_eq!((d.left_ticks, d.right_ticks), (5, 13));
    assert_eq!(d.flamebearer.num_ticks, 18);
    let grows = d
        .flamebearer
        .names
        .iter()
        .position(|n| n == "grows")
        .unwrap() as u64;
    let lvl = &d.flamebearer.levels[2];
    let node = lvl.chunks(7).find(|c| c[6] == grows).unwrap();
    assert_eq!((node[1], node[4]), (1, 9));
}

#[test]
fn rollups_agree_with_raw_and_late_data_is_counted() {
    let (_d, store) = open();
    let t0 = 1_700_000_000 * S - 7200 * S;
    let mut expected = 0;
    for i in 0..(3 * 360) {
        let t = t0 + i * 10 * S;
        store
            .ingest(req(
                "svc",
                "r",
                t,
                cpu_profile(&[(&["main", &format!("f{}", i % 7)], 1 + i % 3, &[])]),
            ))
            .unwrap();
        expected += 1 + i % 3;
    }
    let now = t0 + 4 * 3600 * S;
    let rep = store.maintain(now).unwrap();
    assert!(rep.watermarks[0] > t0 && rep.watermarks[1] > t0, "{rep:?}");
    let q = format!("{SAMPLES}{{service_name=\"svc\"}}");
    for (from, until) in [
        (t0, t0 + 3 * 3600 * S),
        (t0 + 17 * S, t0 + 2 * 3600 * S + 301 * S),
        (t0 - 86400 * S, now),
    ] {
        let a = store.tree(&q, from, until).unwrap();
        let b = store.tree_without_rollups(&q, from, until).unwrap();
        assert_eq!(a.total(0), b.total(0));
        assert_eq!(a.folded(), b.folded());
    }
    // Timelines at steps served by hour, 5-minute and raw totals agree on aligned ranges.
    let from = crate::buckets::floor(t0, 3600 * S);
    for step in [3600, 300, 10] {
        let tl = store.timeline(&q, from, from + 4 * 3600 * S, step).unwrap();
        assert_eq!(
            tl.samples.iter().sum::<u64>(),
            expected as u64,
            "step {step}"
        );
        assert_eq!(tl.samples.len() as i64, 4 * 3600 / step);
    }
    assert_eq!(store.tree(&q, t0, now).unwrap().total(0), expected as u64);
    // Late data into an already rolled-up bucket.
    store
        .ingest(req(
            "svc",
            "r",
            t0 + 5 * S,
            cpu_profile(&[(&["main", "late"], 7, &[])]),
        ))
        .unwrap();
    let a = store.tree(&q, t0, now).unwrap();
    assert_eq!(a.total(0), expected as u64 + 7);
    assert_eq!(a.function_total("late", 0), 7);
    assert_eq!(
        store
            .timeline(&q, t0, now, 3600)
            .unwrap()
            .samples
            .iter()
            .sum::<u64>(),
        expected as u64 + 7
    );
}

#[test]
fn data_survives_reopen_and_retention_deletes_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000 * S;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        seed(&store, t0);
        store.maintain(t0 + 86400 * S).unwrap();
        store.close().unwrap();
        assert!(matches!(store.tree(CPU, 0, 1), Err(StoreError::Closed)));
    }
    let opts = StoreOptions {
        retention_age: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.tree(SAMPLES, t0, t0 + 3600 * S).unwrap().total(0), 60);
    assert_eq!(
        store
            .label_values("vehicle", "", t0, t0 + 3600 * S)
            .unwrap(),
        vec!["bike", "car"]
    );
    // Retention: a day later everything is past the 1 h age.
    let rep = store.maintain(t0 + 3 * 86400 * S).unwrap();
    assert!(rep.deleted_rows > 0);
    assert_eq!(store.tree(SAMPLES, t0, t0 + 3600 * S).unwrap().total(0), 0);
    let tl = store.timeline(SAMPLES, t0, t0 + 3600 * S, 10).unwrap();
    assert_eq!(tl.samples.iter().sum::<u64>(), 0, "raw totals deleted too");
    // Still usable.
    seed(&store, t0 + 3 * 86400 * S);
    assert_eq!(
        store
            .tree(SAMPLES, t0, t0 + 4 * 86400 * S)
            .unwrap()
            .total(0),
        60
    );
}

#[test]
fn size_retention_keeps_newest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        retention_bytes: Some(1 << 20),
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let t0 = 1_700_000_000 * S;
    // Several MB of distinct stacks over 60 hours.
    let names: Vec<String> = (0..400)
        .map(|i| format!("some_longer_function_name_{i}"))
        .collect();
    for h in 0..60 {
        let stacks: Vec<(Vec<&str>, i64)> = (0..400)
            .map(|i| {
                (
                    vec![
                        "main",
                        names[(i + h) % 400].as_str(),
                        names[(i * 7 + h) % 400].as_str(),
                    ],
                    1 + (i as i64 % 5),
                )
            })
            .collect();
        let refs: Vec<StackSpec<'_>> = stacks
            .iter()
            .map(|(s, n)| (s.as_slice(), *n, &[][..]))
            .collect();
        let reqs = (0..6)
            .map(|k| {
                req(
                    "svc",
                    &format!("r{k}"),
                    t0 + h as i64 * 3600 * S,
                    cpu_profile(&refs),
                )
            })
            .collect();
        store.ingest_many(reqs).unwrap();
    }
    let before = store.used_bytes().unwrap();
    assert!(before > 1 << 20, "{before}");
    let rep = store.maintain(t0 + 60 * 3600 * S).unwrap();
    assert!(rep.deleted_rows > 0);
    assert!(store.used_bytes().unwrap() <= 1 << 20);
    let newest = store
        .tree(SAMPLES, t0 + 59 * 3600 * S, t0 + 60 * 3600 * S)
        .unwrap();
    assert!(newest.total(0) > 0, "the newest hour is kept");
    assert_eq!(store.tree(SAMPLES, t0, t0 + 3600 * S).unwrap().total(0), 0);
}

#[test]
fn limits_and_bad_input_are_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        max_series: 2,
        max_stack_depth: 2,
        ..Default::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let t0 = 1_700_000_000 * S;
    store
        .ingest(req(
            "a",
            "x",
            t0,
            cpu_profile(&[(&["a", "b", "c", "d"], 1, &[])]),
        ))
        .unwrap();
    // Two series exist (two types); a third label set is refused, the store stays fine.
    let e = store
        .ingest(req("b", "x", t0, cpu_profile(&[(&["a"], 1, &[])])))
        .unwrap_err();
    assert!(matches!(e, StoreError::Limit(_)), "{e}");
    assert!(e.is_client_error());
    // Depth truncated to the two leaf-most frames.
    assert_eq!(store.export_folded(SAMPLES, t0, t0 + S).unwrap(), "c;d 1\n");
    let mut bad = cpu_profile(&[(&["a"], 1, &[])]);
    bad.sample[0].location_id = vec![99];
    assert!(store
        .ingest(req("a", "x", t0, bad))
        .unwrap_err()
        .is_client_error());
    assert_eq!(store.profile_types().len(), 2);
}

#[test]
fn concurrent_ingest_group_commits() {
    let (_d, store) = open();
    let store = std::sync::Arc::new(store);
    let t0 = 1_700_000_000 * S;
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .ingest(req(
                            "c",
                            &format!("r{k}"),
                            t0 + i * 10 * S,
                            cpu_profile(&[(&["m", "x"], 1, &[])]),
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        store.tree(SAMPLES, t0, t0 + 3600 * S).unwrap().total(0),
        100
    );
    assert_eq!(store.stats().ingested_profiles, 100);
}

#[test]
fn schema_1_store_is_migrated_and_its_raw_totals_kept() {
    use redb::{ReadableDatabase, ReadableTable};
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000 * S;
    {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        seed(&store, t0);
        store.close().unwrap();
    }
    // Rewrite the file into schema 1's layout: raw totals at level 0 of `totals`, no
    // durations, no `raw_totals` table.
    {
        let db = redb::Database::open(dir.path().join("kiln.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let raw_totals = txn.open_table(schema::RAW_TOTALS).unwrap();
            let mut totals = txn.open_table(schema::TOTALS).unwrap();
            for row in raw_totals.iter().unwrap() {
                let (k, v) = row.unwrap();
                let (series, time) = k.value();
                totals.insert((0u8, series, time), v.value().0).unwrap();
            }
            let mut meta = txn.open_table(schema::META).unwrap();
            meta.insert(schema::KEY_SCHEMA, 1).unwrap();
            meta.remove(schema::KEY_MAX_RAW_DURATION).unwrap();
        }
        txn.delete_table(schema::RAW_TOTALS).unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    // Schema 1 knew no durations: its rows stay points in time, none is lost.
    let tl = store.timeline(SAMPLES, t0, t0 + 60 * S, 10).unwrap();
    assert_eq!(tl.samples, vec![10; 6]);
    // 30 s steps start 20 s before t0: rows t0 | t0+10..t0+30 | t0+40, t0+50.
    let tl = store.timeline(SAMPLES, t0, t0 + 60 * S, 30).unwrap();
    assert_eq!(tl.samples, vec![10, 30, 20]);
    store.close().unwrap();
    let db = redb::Database::open(dir.path().join("kiln.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(schema::META).unwrap();
    assert_eq!(
        meta.get(schema::KEY_SCHEMA).unwrap().unwrap().value(),
        schema::SCHEMA_VERSION
    );
    let totals = txn.open_table(schema::TOTALS).unwrap();
    assert_eq!(
        totals
            .range((0u8, 0u32, i64::MIN)..=(0u8, u32::MAX, i64::MAX))
            .unwrap()
            .count(),
        0,
        "level 0 moved out of totals"
    );
}
