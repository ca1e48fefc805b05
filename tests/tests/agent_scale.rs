//! `kiln agent` end to end (root, real eBPF) at a small scale: a few hundred live processes
//! that each use a little CPU are tracked within a memory bound, their function is
//! exported, and every cache that grows with the host reports its size and evictions in
//! `/metrics`. The full-size measurement is `cargo xtask bench scale`
//! (docs/benchmarks.md, "Agent at scale").

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kiln_tests::{agent::*, *};

const PROCESSES: usize = 300;
/// Each burns 1 ms every 600 ms: together half a CPU, so at 97 Hz every process is
/// sampled within seconds.
const PERIOD_MS: u32 = 600;
/// Peak RSS the agent may reach: a guard against regressions (an unbounded cache, a whole
/// file read at once), not the goal. The goals (under 50 MB at 1,000 processes) are
/// measured by `cargo xtask bench scale`; here the agent also captures, and builds unwind
/// tables for, whatever else this shared host runs (other tests' compilers, browsers):
/// measured 85 MB on 2026-12-04 while neighbours built Rust.
const PEAK_RSS_MB: f64 = 128.0;

/// The live processes; killed and reaped on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn vm_hwm_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

#[test]
fn agent_tracks_hundreds_of_processes_within_its_memory_budget() {
    if skip_unless_root("agent_tracks_hundreds_of_processes_within_its_memory_budget") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let out = tmp.path().join("profiles");
    // Only this test's processes are symbolized and exported.
    let rules = write_file(
        tmp.path(),
        "rules.toml",
        &format!(
            "[[relabel_configs]]\nsource_labels = [\"__meta_env_var_KILN_TEST\"]\nregex = \"{tok}\"\naction = \"keep\"\n"
        ),
    );
    let agent = Agent::start(
        &[
            "--env-label",
            "KILN_TEST=kiln_test",
            "--relabel-config",
            rules.to_str().unwrap(),
            "--collect-interval",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let lifetime = 90;
    let procs = Processes(
        (0..PROCESSES)
            .map(|_| {
                Command::new(&exe)
                    .args(["pulse", "1", &PERIOD_MS.to_string(), &lifetime.to_string()])
                    .env("KILN_TEST", &tok)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn agent_burn pulse")
            })
            .collect(),
    );
    let pids: HashSet<u32> = procs.0.iter().map(Child::id).collect();

    // Until most of them are tracked, then two more windows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tracked = 0.0;
    while Instant::now() < deadline {
        tracked = metric(&agent.metrics(), "kiln_processes_tracked", &[]);
        if tracked >= 0.9 * PROCESSES as f64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let metrics = agent.metrics();
    let peak = vm_hwm_mb(agent.pid());
    let (status, log) = agent.stop(Duration::from_secs(20));
    drop(procs);
    assert!(status.success(), "agent exit {status}:\n{log}");
    eprintln!("{PROCESSES} live processes: {tracked} tracked, agent peak RSS {peak:.1} MB");
    assert!(
        tracked >= 0.9 * PROCESSES as f64,
        "only {tracked} processes tracked of {PROCESSES} started (and the host's own)"
    );
    assert!(
        peak < PEAK_RSS_MB,
        "agent peak RSS {peak:.1} MB with {PROCESSES} processes, budget {PEAK_RSS_MB} MB"
    );

    // Every cache that grows with the host: its size and its evictions.
    for family in [
        "kiln_processes_tracked",
        "kiln_processes_evicted_total",
        "kiln_binaries_open",
        "kiln_unwind_tables",
        "kiln_unwind_table_bytes",
        "kiln_unwind_table_capacity_bytes",
        "kiln_unwind_tables_evicted_total",
        "kiln_unwind_tables_refused_total",
        "kiln_symbolizer_cache_entries",
        "kiln_symbolizer_cache_evicted_total",
        "kiln_targets_cached",
        "kiln_targets_evicted_total",
        "kiln_go_binaries_cached",
        "kiln_go_binaries_evicted_total",
        "kiln_python_code_names_cached",
        "kiln_python_code_names_evicted_total",
        "kiln_series_known",
        "kiln_series_limited_total",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(family) && l[family.len()..].starts_with([' ', '{'])),
            "{family} missing from /metrics:\n{metrics}"
        );
    }
    assert!(
        metric(&metrics, "kiln_unwind_table_capacity_bytes", &[]) > 0.0,
        "DWARF unwinding is on by default: its table memory is reported"
    );
    assert!(
        metric(&metrics, "kiln_targets_cached", &[]) >= 0.9 * PROCESSES as f64,
        "the label cache holds the processes it labeled"
    );

    // Their function is exported, from most of them.
    let mut seen = HashSet::new();
    for (_, e) in read_output_dir(&out) {
        assert_eq!(e.label("kiln_test"), Some(tok.as_str()));
        for pid in e.samples_in("kiln_agent_pulse", "pid").into_keys() {
            if let Ok(pid) = pid.parse::<u32>() {
                if pids.contains(&pid) {
                    seen.insert(pid);
                }
            }
        }
    }
    assert!(
        seen.len() as f64 >= 0.8 * PROCESSES as f64,
        "kiln_agent_pulse exported for only {} of {PROCESSES} processes",
        seen.len()
    );
}
