//! DWARF unwinding end to end (root): workloads built without frame pointers must come
//! out with complete stacks, true shares, and agree with `perf --call-graph dwarf`.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use kiln_tests::*;

fn require_root() -> bool {
    !skip_unless_root("DWARF unwinding end to end (loads eBPF)")
}

const NO_FP: &[&str] = &["-O2", "-fomit-frame-pointer"];

/// Builds libunwind_lib.so and unwind_chains against it, both -O2 without frame pointers,
/// once per test process: tests run in parallel threads, and rebuilding a binary that
/// another test (or perf, reading it afterwards) is using would break that test.
fn build_chains() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_chains_now).clone()
}

fn build_chains_now() -> PathBuf {
    let root = workspace_root();
    let dir = root.join("target/test-workloads/unwind");
    std::fs::create_dir_all(&dir).unwrap();
    let lib = dir.join("libunwind_lib.so");
    let exe = dir.join("unwind_chains");
    let tmp = dir.join(format!("build.{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let gcc = |args: &[&str]| {
        let st = Command::new("gcc").args(args).status().expect("gcc");
        assert!(st.success(), "gcc {args:?}");
    };
    let w = root.join("tests/workloads");
    let tlib = tmp.join("libunwind_lib.so");
    let texe = tmp.join("unwind_chains");
    gcc(&[
        &[
            "-g",
            "-shared",
            "-fPIC",
            "-o",
            tlib.to_str().unwrap(),
            w.join("unwind_lib.c").to_str().unwrap(),
        ],
        NO_FP,
    ]
    .concat());
    gcc(&[
        &[
            "-g",
            "-o",
            texe.to_str().unwrap(),
            w.join("unwind_chains.c").to_str().unwrap(),
        ][..],
        NO_FP,
        &[
            "-L",
            dir.to_str().unwrap(),
            &format!("-L{}", tmp.display()),
            "-lunwind_lib",
            &format!("-Wl,-rpath,{}", dir.display()),
        ],
    ]
    .concat());
    std::fs::rename(&tlib, &lib).unwrap();
    std::fs::rename(&texe, &exe).unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    exe
}

fn build_rust() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_rust_now).clone()
}

fn build_rust_now() -> PathBuf {
    let root = workspace_root();
    let dir = root.join("target/test-workloads/unwind");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("rust_unwind");
    let tmp = dir.join(format!("rust_unwind.{}", std::process::id()));
    let st = Command::new("rustc")
        .args([
            "-O",
            "-C",
            "force-frame-pointers=no",
            "-C",
            "debuginfo=1",
            "--edition",
            "2021",
            "-o",
        ])
        .arg(&tmp)
        .arg(root.join("tests/workloads/rust_unwind.rs"))
        .status()
        .expect("rustc");
    assert!(st.success());
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}

fn truth(out: &str) -> (HashMap<String, f64>, f64) {
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("workload JSON");
    let cpu = v["cpu"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s.as_f64().unwrap()))
        .collect();
    (cpu, v["total"].as_f64().unwrap())
}

/// Share (0..1) of samples whose stack contains `frame`.
fn share(stacks: &[FoldedStack], frame: &str) -> f64 {
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    // C symbols are bare; Rust ones carry their path (rust_unwind::task_deep).
    let is = |f: &String| f == frame || f.ends_with(&format!("::{frame}"));
    let hit: u64 = stacks
        .iter()
        .filter(|s| s.frames.iter().any(is))
        .map(|s| s.count)
        .sum();
    hit as f64 / total.max(1) as f64
}

/// Records `pid` with kiln; returns the folded stacks of that process.
fn record(pid: u32, secs: &str, extra: &[&str]) -> Vec<FoldedStack> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.folded");
    let pid_s = pid.to_string();
    let mut args = vec![
        "record",
        "--pid",
        &pid_s,
        "-d",
        secs,
        "-F",
        "999",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = kiln(&args);
    assert_success(&o);
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    read_folded(&out)
}

/// Fraction of samples whose stack reaches `main` with nothing unknown or truncated.
fn complete_fraction(stacks: &[FoldedStack]) -> f64 {
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    let ok: u64 = stacks
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f == "main" || f.ends_with("::main"))
                && !s
                    .frames
                    .iter()
                    .any(|f| f.contains("[truncated]") || f.contains("[unknown]"))
        })
        .map(|s| s.count)
        .sum();
    let bad: Vec<_> = stacks
        .iter()
        .filter(|s| !s.frames.iter().any(|f| f == "main"))
        .take(5)
        .collect();
    eprintln!("incomplete examples: {bad:?}");
    ok as f64 / total.max(1) as f64
}

fn check_shares(stacks: &[FoldedStack], out: &str) {
    let (cpu, total) = truth(out);
    for (task, secs) in &cpu {
        let want = secs / total;
        let got = share(stacks, task);
        eprintln!(
            "{task}: kiln {:.1}% truth {:.1}%",
            got * 100.0,
            want * 100.0
        );
        assert!(
            (got - want).abs() <= 0.03,
            "{task}: kiln {got:.3} vs truth {want:.3}"
        );
    }
}

#[test]
fn optimized_c_without_frame_pointers_has_complete_stacks() {
    if !require_root() {
        return;
    }
    let exe = build_chains();
    let mut child = spawn_workload(&exe, &["7", "70"]);
    child.wait_for_line("ready");
    let stacks = record(child.pid(), "5", &[]);
    let out = child.wait_stdout(Duration::from_secs(20));
    let complete = complete_fraction(&stacks);
    eprintln!("complete: {:.2}%", complete * 100.0);
    assert!(
        complete >= 0.99,
        "only {:.2}% complete stacks",
        complete * 100.0
    );
    // The recursion is there in full: 70 recurse frames under task_deep.
    let deep = stacks
        .iter()
        .find(|s| s.frames.iter().any(|f| f == "deep_leaf"))
        .expect("deep_leaf sampled");
    assert_eq!(
        deep.frames.iter().filter(|f| *f == "recurse").count(),
        70,
        "{:?}",
        deep.frames
    );
    let chain = ["main", "run", "task_lib", "lib_outer", "lib_inner"];
    assert!(
        stacks
            .iter()
            .any(|s| s.frames.windows(5).any(|w| w == chain)),
        "the call through the shared library keeps its frames"
    );
    check_shares(&stacks, &out);
}

#[test]
fn rust_release_without_frame_pointers_has_complete_stacks() {
    if !require_root() {
        return;
    }
    let exe = build_rust();
    let mut child = spawn_workload(&exe, &["7"]);
    child.wait_for_line("ready");
    let stacks = record(child.pid(), "5", &[]);
    let out = child.wait_stdout(Duration::from_secs(20));
    let complete = complete_fraction(&stacks);
    eprintln!("complete: {:.2}%", complete * 100.0);
    assert!(
        complete >= 0.99,
        "only {:.2}% complete stacks",
        complete * 100.0
    );
    check_shares(&stacks, &out);
}

#[test]
fn frame_pointers_only_flag_disables_dwarf() {
    if !require_root() {
        return;
    }
    let exe = build_chains();
    let mut child = spawn_workload(&exe, &["5", "70"]);
    child.wait_for_line("ready");
    let stacks = record(child.pid(), "3", &["--no-dwarf-unwind"]);
    drop(child);
    let complete = complete_fraction(&stacks);
    eprintln!(
        "complete with frame pointers only: {:.2}%",
        complete * 100.0
    );
    assert!(
        complete < 0.5,
        "-O2 code without frame pointers should break FP stacks"
    );
}

/// Inclusive shares of `names` in `perf script` output of one pid.
fn perf_shares(script: &str, names: &[&str]) -> (HashMap<String, f64>, Vec<Vec<String>>) {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    let mut stacks = Vec::new();
    for block in script.split("\n\n") {
        let frames: Vec<String> = block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(|f| f.split('+').next().unwrap().to_owned())
            .collect();
        if frames.is_empty() {
            continue;
        }
        total += 1;
        for n in names {
            if frames.iter().any(|f| f == n) {
                *counts.entry(n.to_string()).or_default() += 1;
            }
        }
        stacks.push(frames);
    }
    (
        names
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    counts.get(*n).copied().unwrap_or(0) as f64 / total.max(1) as f64,
                )
            })
            .collect(),
        stacks,
    )
}

#[test]
fn agrees_with_perf_dwarf_unwinding() {
    if !require_root() {
        return;
    }
    let exe = build_chains();
    let mut child = spawn_workload(&exe, &["8", "70"]);
    child.wait_for_line("ready");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    let perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-o",
        ])
        .arg(&data)
        .args(["-p", &child.pid().to_string(), "--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf");
    let stacks = record(child.pid(), "5", &[]);
    let mut perf = ChildGuard(perf);
    let _ = perf.0.wait();
    drop(child);
    let script = Command::new("perf")
        .args(["script", "-F", "ip,sym", "-i"])
        .arg(&data)
        .output()
        .expect("perf script");
    let names = [
        "task_deep",
        "task_lib",
        "task_chain",
        "lib_inner",
        "chain_c",
        "deep_leaf",
    ];
    let (perf_share, perf_stacks) = perf_shares(&String::from_utf8_lossy(&script.stdout), &names);
    assert!(
        perf_stacks.len() > 500,
        "perf recorded {} samples",
        perf_stacks.len()
    );
    for n in names {
        let k = share(&stacks, n);
        let p = perf_share[n];
        eprintln!("{n}: kiln {:.1}% perf {:.1}%", k * 100.0, p * 100.0);
        assert!((k - p).abs() <= 0.05, "{n}: kiln {k:.3} perf {p:.3}");
    }
    // Same chains: perf's stacks (leaf first) through the library read like kiln's.
    let want = ["lib_inner", "lib_outer", "task_lib", "run", "main"];
    assert!(perf_stacks.iter().any(|s| s.windows(5).any(|w| w == want)));
    let want_root_first: Vec<&str> = want.iter().rev().copied().collect();
    assert!(stacks
        .iter()
        .any(|s| s.frames.windows(5).any(|w| w == want_root_first.as_slice())));
}
