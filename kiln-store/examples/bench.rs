//! Store benchmark on a generated, realistic dataset. Run in release:
//!
//! ```text
//! cargo run --release -p kiln-store --example bench            # full run (~2-4 min)
//! cargo run --release -p kiln-store --example bench -- --quick # smaller, for a smoke test
//! ```
//!
//! Comparing two builds on a busy machine: see `KILN_BENCH_TURNS` below and
//! docs/benchmarks.md ("Store").
//!
//! Dataset (see docs/benchmarks.md, "Store"): 20 services x 10 label sets, one CPU profile per 15 s
//! each, ~2000 distinct stacks per service at depths 10-40, ~250 distinct stacks per
//! profile with Zipf-like weights. Ingest is measured on one thread (ingest_many with one
//! batch = every series' profile for one 15 s step: one transaction, one fsync).
//! To keep the run short, only the last hour has all 20 services; `svc-0` (the one
//! queried) has full density for the last 25 h and one profile per 5 minutes per label
//! set for the 6 days before.

use std::time::{Duration, Instant};

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;
use kiln_store::{IngestRequest, RenderOptions, Store, StoreOptions};
use prost::Message;

const S: i64 = 1_000_000_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One service's stacks (root first) over a shared-prefix function vocabulary.
fn service_stacks(svc: usize, rng: &mut Rng) -> Vec<Vec<String>> {
    let common = ["main", "runtime.main", "app.run", "server.serve"];
    let handlers: Vec<String> = (0..40).map(|i| format!("svc{svc}::handler_{i}")).collect();
    let funcs: Vec<String> = (0..800)
        .map(|i| format!("svc{svc}::module_{}::fn_{i}", i % 37))
        .collect();
    let libs: Vec<String> = (0..200).map(|i| format!("libstd::sys::op_{i}")).collect();
    let mut out = Vec::with_capacity(2000);
    // A branching tree: each stack extends a random earlier stack's prefix sometimes.
    while out.len() < 2000 {
        let depth = 10 + rng.below(31) as usize;
        let mut s: Vec<String> = if !out.is_empty() && rng.below(3) > 0 {
            let base: &Vec<String> = &out[rng.below(out.len() as u64) as usize];
            let keep = (base.len() * (3 + rng.below(5) as usize) / 10).clamp(4, base.len());
            base[..keep].to_vec()
        } else {
            let mut v: Vec<String> = common.iter().map(|s| s.to_string()).collect();
            v.push(handlers[rng.below(handlers.len() as u64) as usize].clone());
            v
        };
        while s.len() < depth {
            let f = if s.len() + 3 >= depth {
                &libs[rng.below(libs.len() as u64) as usize]
            } else {
                &funcs[rng.below(funcs.len() as u64) as usize]
            };
            s.push(f.clone());
        }
        out.push(s);
    }
    out
}

fn profile(stacks: &[Vec<String>], rng: &mut Rng, n: usize, t: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    for _ in 0..n {
        // Zipf-ish: small indices much more likely.
        let r = rng.below(1 << 20) as f64 / (1 << 20) as f64;
        let i = ((r * r * r) * stacks.len() as f64) as usize;
        let locs: Vec<u64> = stacks[i]
            .iter()
            .rev()
            .map(|f| {
                b.location(
                    1,
                    0,
                    &[FrameSpec {
                        name: f,
                        filename: "src.rs",
                        line: 0,
                    }],
                )
            })
            .collect();
        b.add_sample(&locs, &[(1 + rng.below(20) as i64) * 10_000_000], &[]);
    }
    b.set_time(t, 15 * S);
    let mut p = b.build();
    // Mapping 1 so locations are valid: add it.
    p.mapping.push(kiln_proto::pprof::Mapping {
        id: 1,
        ..Default::default()
    });
    p
}

fn labels(svc: usize, set: usize) -> Vec<(String, String)> {
    vec![
        ("__name__".into(), "process_cpu".into()),
        ("service_name".into(), format!("svc-{svc}")),
        (
            "region".into(),
            ["us-east-1", "us-west-2", "eu-west-1"][set % 3].into(),
        ),
        ("pod".into(), format!("svc-{svc}-pod-{set}")),
    ]
}

/// CPU time of the calling thread: "per core" rates that other load on the machine does
/// not distort (much).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let services = if quick { 4 } else { 20 };
    let sets = 10;
    let stacks: Vec<Vec<Vec<String>>> =
        (0..services).map(|s| service_stacks(s, &mut rng)).collect();
    let per_profile = 250;
    let now = (kiln_store::now_nanos() / (15 * S)) * 15 * S;
    let full_all = if quick { 900 * S } else { 3600 * S };
    let full_svc0 = if quick { 4 * 3600 * S } else { 25 * 3600 * S };
    let sparse_from = if quick { 2 * 86400 * S } else { 7 * 86400 * S };

    // Timestamps: sparse (every 5 min) for svc-0 from now-7d to now-25h, then 15 s.
    let mut steps: Vec<(i64, bool)> = Vec::new();
    let mut t = now - sparse_from;
    while t < now - full_svc0 {
        steps.push((t, false));
        t += 300 * S;
    }
    while t < now {
        steps.push((t, t >= now - full_all));
        t += 15 * S;
    }

    // KILN_BENCH_TURNS=MINE,THEIRS (two FIFOs): take turns with a twin process, one
    // generate+ingest step each, so that two builds compared side by side see the same
    // load from the rest of the machine (see docs/benchmarks.md, "Store").
    let mut turns = std::env::var("KILN_BENCH_TURNS").ok().map(|v| {
        let (a, b) = v.split_once(',').expect("KILN_BENCH_TURNS=MINE,THEIRS");
        let open = |p: &str| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .expect("KILN_BENCH_TURNS: open FIFO")
        };
        (open(a), open(b))
    });
    let mut ingest_time = Duration::ZERO;
    let mut ingest_cpu = Duration::ZERO;
    let mut gen_time = Duration::ZERO;
    let (mut profiles, mut samples, mut encoded_bytes) = (0u64, 0u64, 0u64);
    let mut decoded_samples = 0u64;
    let mut decode_time = Duration::ZERO;
    let started = Instant::now();
    for (i, &(t, all)) in steps.iter().enumerate() {
        if let Some((mine, _)) = turns.as_mut() {
            let mut b = [0u8; 1];
            std::io::Read::read_exact(mine, &mut b).expect("KILN_BENCH_TURNS: wait");
        }
        let g = Instant::now();
        let mut batch = Vec::new();
        for (svc, svc_stacks) in stacks
            .iter()
            .enumerate()
            .take(if all { services } else { 1 })
        {
            for set in 0..sets {
                let p = profile(svc_stacks, &mut rng, per_profile, t);
                samples += p.sample.len() as u64;
                batch.push(IngestRequest {
                    labels: labels(svc, set),
                    profile: p,
                    from_nanos: t,
                    until_nanos: t + 15 * S,
                });
            }
        }
        // Decode cost of what a server would receive (measured on a sample of batches).
        if i % 50 == 0 {
            let bytes: Vec<Vec<u8>> = batch.iter().map(|r| r.profile.encode_to_vec()).collect();
            let d = Instant::now();
            for b in &bytes {
                encoded_bytes += b.len() as u64;
                let p = Profile::decode(b.as_slice()).expect("decode");
                decoded_samples += p.sample.len() as u64;
                std::hint::black_box(p);
            }
            decode_time += d.elapsed();
        }
        gen_time += g.elapsed();
        profiles += batch.len() as u64;
        let s = Instant::now();
        let c = thread_cpu();
        store.ingest_many(batch).expect("ingest");
        ingest_cpu += thread_cpu() - c;
        ingest_time += s.elapsed();
        if let Some((_, theirs)) = turns.as_mut() {
            std::io::Write::write_all(theirs, b"t").expect("KILN_BENCH_TURNS: pass");
        }
    }
    let wall = started.elapsed();
    let file_before_compact = store.file_bytes();
    let c = Instant::now();
    store.maintain(kiln_store::now_nanos()).expect("maintain");
    let compact_time = c.elapsed();
    let used = store.used_bytes().expect("used");
    let file = store.file_bytes();
    let stats = store.stats();
    let v = Instant::now();
    store.vacuum().expect("vacuum");
    let vacuum_time = v.elapsed();
    let file_vacuumed = store.file_bytes();

    println!(
        "# kiln-store benchmark{}",
        if quick { " (quick)" } else { "" }
    );
    println!("dataset: {services} services x {sets} label sets, 15 s profiles, {per_profile} stack draws/profile, ~2000 stacks/service");
    println!(
        "profiles ingested: {profiles}, pprof samples: {samples} (stored pairs: {})",
        stats.ingested_samples
    );
    println!(
        "distinct stacks (trie nodes): {}, functions: {}, series: {}",
        stats.stacks, stats.functions, stats.series
    );
    println!(
        "ingest (1 thread, store only): {:.1} s -> {:.0} profiles/s, {:.0} samples/s",
        ingest_time.as_secs_f64(),
        profiles as f64 / ingest_time.as_secs_f64(),
        stats.ingested_samples as f64 / ingest_time.as_secs_f64()
    );
    println!(
        "ingest CPU time of the ingesting thread: {:.1} s -> {:.0} profiles/s, {:.0} samples/s per core",
        ingest_cpu.as_secs_f64(),
        profiles as f64 / ingest_cpu.as_secs_f64(),
        stats.ingested_samples as f64 / ingest_cpu.as_secs_f64()
    );
    println!(
        "pprof decode (prost, every 50th batch, wall time): {:.0} samples/s, {:.1} bytes/sample encoded",
        decoded_samples as f64 / decode_time.as_secs_f64().max(1e-9),
        encoded_bytes as f64 / decoded_samples.max(1) as f64
    );
    println!(
        "generation time (not counted): {:.1} s, wall: {:.1} s",
        gen_time.as_secs_f64(),
        wall.as_secs_f64()
    );
    println!(
        "rollup compaction of the whole dataset: {:.1} s",
        compact_time.as_secs_f64()
    );
    println!(
        "file after vacuum (redb compact, {:.1} s): {} bytes -> {:.2} bytes/sample",
        vacuum_time.as_secs_f64(),
        file_vacuumed,
        file_vacuumed as f64 / stats.ingested_samples as f64
    );
    println!(
        "disk: file {} bytes (before rollups {}), pages in use {} bytes -> {:.2} bytes/sample (file), {:.2} bytes/sample (in use)",
        file,
        file_before_compact,
        used,
        file as f64 / stats.ingested_samples as f64,
        used as f64 / stats.ingested_samples as f64
    );

    let q = r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="svc-0"}"#;
    let ranges: Vec<(&str, i64)> = if quick {
        vec![
            ("1h", 3600 * S),
            ("4h", 4 * 3600 * S),
            ("2d", 2 * 86400 * S),
        ]
    } else {
        vec![("1h", 3600 * S), ("24h", 86400 * S), ("7d", 7 * 86400 * S)]
    };
    let opts = RenderOptions::default();
    println!("flame graph of svc-0 (10 label sets), median of 5, render = tree + flamebearer (8192 nodes) + timeline:");
    for &(name, span) in &ranges {
        let from = now - span;
        let mut with = Vec::new();
        let mut nodes = 0;
        for _ in 0..5 {
            let s = Instant::now();
            let r = store.render(q, from, now, &opts).expect("render");
            with.push(s.elapsed());
            nodes = r
                .flamebearer
                .levels
                .iter()
                .map(|l| l.len() / 4)
                .sum::<usize>();
        }
        let mut tree_only = Vec::new();
        let mut ticks = 0;
        for _ in 0..5 {
            let s = Instant::now();
            ticks = store.tree(q, from, now).expect("tree").total(0);
            tree_only.push(s.elapsed());
        }
        let mut naive = Vec::new();
        let mut naive_ticks = 0;
        for _ in 0..3 {
            let s = Instant::now();
            naive_ticks = store
                .tree_without_rollups(q, from, now)
                .expect("tree")
                .total(0);
            naive.push(s.elapsed());
        }
        assert_eq!(ticks, naive_ticks, "rollups and raw rows disagree");
        println!(
            "  {name:>4}: render {:>8.1} ms | tree {:>8.1} ms | naive raw-rows tree {:>8.1} ms | {nodes} nodes",
            median(with).as_secs_f64() * 1e3,
            median(tree_only).as_secs_f64() * 1e3,
            median(naive).as_secs_f64() * 1e3,
        );
    }
    // Timelines alone (the tag explorer asks for group totals, the comparison view for a
    // render with a few nodes): CPU time of this thread, which load from other processes
    // distorts less than wall time.
    println!(
        "timelines of svc-0 at the default step, median of 21, CPU time of the querying thread:"
    );
    for &(name, span) in &ranges {
        let from = now - span;
        let mut timeline = Vec::new();
        let mut groups = Vec::new();
        let mut points = 0;
        for _ in 0..21 {
            let c = thread_cpu();
            points = store
                .timeline(q, from, now, 0)
                .expect("timeline")
                .samples
                .len();
            timeline.push(thread_cpu() - c);
            let c = thread_cpu();
            store
                .group_totals(q, from, now, "pod", 0)
                .expect("group totals");
            groups.push(thread_cpu() - c);
        }
        println!(
            "  {name:>4}: timeline {:>8.2} ms | group totals by pod {:>8.2} ms | {points} points",
            median(timeline).as_secs_f64() * 1e3,
            median(groups).as_secs_f64() * 1e3,
        );
    }
    store.close().expect("close");
}
