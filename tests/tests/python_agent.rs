//! `kiln agent` end to end on a CPython process (root, real eBPF): the pprof files it
//! exports carry the Python functions with their file and line, merged in place of the
//! interpreter loop, and the series is named after the script (`service_name`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::{agent::*, *};

const PYTHON: &str = "/usr/bin/python3.11";

#[test]
fn agent_exports_python_frames_and_names_the_service_after_the_script() {
    if skip_unless_root("kiln agent with Python frames (loads eBPF)") {
        return;
    }
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run `cargo xtask setup` (Debian package python3.11)"
    );
    let mut workload = ChildGuard::spawn(
        Command::new(PYTHON)
            .arg(workspace_root().join("tests/workloads/py_shares.py"))
            .arg("pure")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(workload.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = workload.pid().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let agent = Agent::start(
        &[
            "--pid",
            &pid,
            "--collect-interval",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    // Windows are written every 2 s; the first may cover the agent's start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let files = read_output_dir(&out);
        let with_python: Vec<_> = files
            .into_iter()
            .filter(|(_, e)| e.total_in("Walrus.dive") > 0)
            .collect();
        if with_python.len() >= 2 {
            break with_python;
        }
        assert!(
            Instant::now() < deadline,
            "no two windows with Walrus.dive after 30 s:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let metrics = agent.metrics();
    let (status, log) = agent.stop(Duration::from_secs(20));
    drop(workload);
    assert!(status.success(), "agent exit {status}:\n{log}");

    // A full window (not the first, which may start mid-way).
    let (path, e) = &exported[1];
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        e.label("service_name"),
        Some("py_shares"),
        "{name}: series labels {:?}",
        e.labels
    );
    let p = &e.profile;
    let all: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    assert!(all > 50, "{name}: only {all} samples");
    let dive = e.total_in("Walrus.dive");
    let swim = e.total_in("swim");
    let module = e.total_in("<module>");
    let interpreter_loop = e.total_in("_PyEval_EvalFrameDefault");
    assert!(
        (dive + swim) as f64 >= 0.8 * all as f64,
        "{name}: Walrus.dive {dive} + swim {swim} of {all} samples"
    );
    assert!(
        module as f64 >= 0.95 * all as f64,
        "{name}: <module> in {module} of {all} samples"
    );
    assert!(
        interpreter_loop as f64 <= 0.05 * all as f64,
        "{name}: {interpreter_loop} of {all} samples still show _PyEval_EvalFrameDefault"
    );
    // Python functions carry their file and a line inside it.
    let dive_fn = p
        .function
        .iter()
        .find(|f| p.string(f.name) == "Walrus.dive")
        .expect("Walrus.dive function");
    assert!(
        p.string(dive_fn.filename)
            .ends_with("tests/workloads/py_shares.py"),
        "Walrus.dive's file is {:?}",
        p.string(dive_fn.filename)
    );
    // The body of `dive` is the 4 lines after its `def`.
    let source =
        std::fs::read_to_string(workspace_root().join("tests/workloads/py_shares.py")).unwrap();
    let def = source
        .lines()
        .position(|l| l.trim_start().starts_with("def dive("))
        .expect("def dive in py_shares.py") as i64
        + 1;
    let lines: Vec<i64> = p
        .location
        .iter()
        .flat_map(|l| &l.line)
        .filter(|l| l.function_id == dive_fn.id)
        .map(|l| l.line)
        .collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|&l| l > def && l <= def + 4),
        "Walrus.dive's lines {lines:?} should lie in its body after line {def}"
    );
    // The kernel read Python stacks, counted as such in /metrics.
    let python_stacks: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("python_stacks"))
        .collect();
    assert!(
        python_stacks
            .iter()
            .any(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) > Some(0.0)),
        "no Python stacks counted in /metrics: {python_stacks:?}"
    );
}
