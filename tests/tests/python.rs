//! Python frames of unmodified CPython processes, end to end: Debian's `python3.11`
//! running `tests/workloads/py_shares.py` (whose functions measure their own CPU time),
//! recorded by `kiln record --pid`. Python frames must replace the interpreter's
//! `_PyEval_EvalFrameDefault` activations, with shares within 3 points of the truth,
//! complete chains up to `<module>`, per-thread stacks, native frames of C extensions
//! under their Python caller, and deep recursion. Needs root; samples are filtered by pid.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{ChildStdout, Command, Stdio},
    time::Duration,
};

use kiln_proto::pprof::Profile;
use kiln_tests::*;

const PYTHON: &str = "/usr/bin/python3.11";

fn workload_path() -> PathBuf {
    workspace_root().join("tests/workloads/py_shares.py")
}

/// A running `py_shares.py` that printed its ready line.
struct PyWorkload {
    child: ChildGuard,
    stdout: BufReader<ChildStdout>,
}

impl PyWorkload {
    fn start(python: &str, mode: &str) -> Self {
        Self::start_with(python, &[mode])
    }

    fn start_with(python: &str, args: &[&str]) -> Self {
        let mode = args[0];
        assert!(
            Path::new(python).exists(),
            "{python} is missing: run `cargo xtask setup` (Debian package python3.11)"
        );
        let mut cmd = Command::new(python);
        cmd.arg(workload_path()).args(args);
        Self::spawn(&mut cmd, mode)
    }

    /// Runs `cmd` (which must exec the workload in its own process) until its ready line.
    fn spawn(cmd: &mut Command, mode: &str) -> Self {
        let mut child = ChildGuard::spawn(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()));
        let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{mode}: no ready line");
        Self { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the workload and returns its truth.
    fn finish(self) -> serde_json::Value {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        self.truth()
    }

    /// The truth of a workload that ends by itself.
    fn truth(mut self) -> serde_json::Value {
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "workload failed: {status}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad truth {out:?}: {e}"))
    }
}

/// py-spy from PyPI, installed once into `target/py-spy/`; None (and a loud SKIP) when the
/// registry is unreachable.
fn py_spy() -> Option<PathBuf> {
    let dir = workspace_root().join("target/py-spy");
    let exe = dir.join("bin/py-spy");
    if !exe.is_file() {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(["--no-deps", "--target"])
            .arg(&dir)
            .arg("py-spy==0.4.3")
            .status()
            .is_ok_and(|s| s.success());
        let installed = ok && exe.is_file();
        if skip_unless(
            installed,
            "py-spy comparison",
            "`pip install py-spy` failed",
        ) {
            return None;
        }
    }
    Some(exe)
}

/// Inclusive share of each function in py-spy's raw (folded) output, frames written as
/// `name (file:line)`.
fn py_spy_shares(path: &Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut all = 0;
    for line in text.lines() {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let n: u64 = n.parse().unwrap_or(0);
        all += n;
        let mut seen: Vec<&str> = stack
            .split(';')
            .map(|f| f.split(" (").next().unwrap_or(f))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        for f in seen {
            *counts.entry(f.to_owned()).or_default() += n;
        }
    }
    assert!(all > 0, "py-spy recorded nothing");
    counts
        .into_iter()
        .map(|(f, n)| (f, n as f64 / all as f64))
        .collect()
}

/// Records `pid` for `seconds`; returns the profile and kiln's stderr (its summary).
fn record(pid: u32, seconds: u32) -> (Profile, String) {
    record_with(pid, seconds, &[])
}

/// [`record`] with more arguments for `kiln record`.
fn record_with(pid: u32, seconds: u32, extra: &[&str]) -> (Profile, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pb.gz");
    let (pid, seconds) = (pid.to_string(), seconds.to_string());
    let o = kiln(
        &[
            "record",
            "--pid",
            &pid,
            "-F",
            "999",
            "-d",
            &seconds,
            "-o",
            out.to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>(),
    );
    assert_success(&o);
    (
        read_pprof(&out),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[derive(Clone, Debug)]
struct Frame {
    function: String,
    file: String,
    line: i64,
}

/// One sample: its thread name, count and frames, leaf first.
struct Stack {
    thread: String,
    count: u64,
    frames: Vec<Frame>,
}

impl Stack {
    fn has(&self, function: &str) -> bool {
        self.frames.iter().any(|f| f.function == function)
    }

    fn position(&self, function: &str) -> Option<usize> {
        self.frames.iter().position(|f| f.function == function)
    }

    /// Function names root first, for messages.
    fn folded(&self) -> String {
        let names: Vec<&str> = self.frames.iter().rev().map(|f| &*f.function).collect();
        names.join(";")
    }

    /// Whether the Python part reaches the script's entry: `<module>` then `main`.
    fn complete(&self) -> bool {
        match (self.position("<module>"), self.position("main")) {
            (Some(m), Some(main)) => main < m,
            _ => false,
        }
    }
}

fn stacks(p: &Profile, pid: u32) -> Vec<Stack> {
    let functions: HashMap<u64, &kiln_proto::pprof::Function> =
        p.function.iter().map(|f| (f.id, f)).collect();
    let locations: HashMap<u64, &kiln_proto::pprof::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    let pid = pid.to_string();
    p.sample
        .iter()
        .filter(|s| sample_label(p, s, "pid") == Some(pid.as_str()))
        .map(|s| Stack {
            thread: sample_label(p, s, "thread").unwrap_or("").to_owned(),
            count: s.value[0] as u64,
            frames: s
                .location_id
                .iter()
                .flat_map(|id| locations[id].line.iter())
                .map(|l| {
                    let f = functions[&l.function_id];
                    Frame {
                        function: p.string(f.name).to_owned(),
                        file: p.string(f.filename).to_owned(),
                        line: l.line,
                    }
                })
                .collect(),
        })
        .collect()
}

fn total(stacks: &[Stack], keep: impl Fn(&Stack) -> bool) -> u64 {
    stacks.iter().filter(|s| keep(s)).map(|s| s.count).sum()
}

/// Asserts that the share of samples `keep` selects is within 3 points of `truth`.
fn assert_share(name: &str, stacks: &[Stack], all: u64, truth: f64, keep: impl Fn(&Stack) -> bool) {
    let got = total(stacks, keep) as f64 / all as f64;
    eprintln!(
        "{name}: {:.1}% of samples, truth {:.1}%",
        got * 100.0,
        truth * 100.0
    );
    assert!(
        (got - truth).abs() <= 0.03,
        "{name}: {got:.3} of samples vs truth {truth:.3}"
    );
}

/// The line of the first source line of the workload containing `text`.
fn source_line(text: &str) -> i64 {
    let src = std::fs::read_to_string(workload_path()).unwrap();
    src.lines().position(|l| l.contains(text)).expect(text) as i64 + 1
}

/// A counter from kiln record's summary (`name=value` among the losses), 0 if absent.
fn summary_count(summary: &str, name: &str) -> u64 {
    summary
        .split(|c: char| c == ',' || c.is_whitespace())
        .find_map(|part| part.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Python frames that could not be named or placed are counted fallbacks, not errors,
/// but rare: at most 1% of the samples.
fn assert_few_python_losses(summary: &str, all: u64) {
    let lost = summary_count(summary, "python_code_unreadable")
        + summary_count(summary, "python_merge_mismatch");
    assert!(
        lost * 100 <= all,
        "{lost} of {all} samples lost their Python frames: {summary}"
    );
}

/// At least 95% of the samples reach `<module>` → `main`.
fn assert_complete_chains(stacks: &[Stack], keep: impl Fn(&Stack) -> bool) {
    let all = total(stacks, &keep);
    let complete = total(stacks, |s| keep(s) && s.complete());
    let example = stacks
        .iter()
        .find(|s| keep(s) && !s.complete())
        .map(Stack::folded);
    assert!(
        complete as f64 >= 0.95 * all as f64,
        "{complete} of {all} samples reach <module>; e.g. {example:?}"
    );
}

#[test]
fn pure_python_frames_replace_the_interpreter_loop_with_true_shares() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let w = PyWorkload::start(PYTHON, "pure");
    let pid = w.pid();
    // py-spy, a real peer, on the same process in the same run.
    let spy_out = tempfile::NamedTempFile::new().unwrap();
    let spy = py_spy().map(|exe| {
        ChildGuard::spawn(
            Command::new(exe)
                .args(["record", "--pid", &pid.to_string(), "--rate", "999"])
                .args(["--duration", "10", "--format", "raw", "--nonblocking", "-o"])
                .arg(spy_out.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    });
    let (profile, summary) = record(pid, 10);
    let spy_shares = spy.map(|spy| {
        spy.wait_stdout(Duration::from_secs(60));
        py_spy_shares(spy_out.path())
    });
    let truth = w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 300, "only {all} samples");
    let cpu = |f: &str| truth["functions"][f].as_f64().unwrap() / truth["total"].as_f64().unwrap();

    assert_complete_chains(&stacks, |_| true);
    assert_share("Walrus.dive", &stacks, all, cpu("Walrus.dive"), |s| {
        s.has("Walrus.dive")
    });
    assert_share("swim", &stacks, all, cpu("swim"), |s| s.has("swim"));
    if let Some(spy) = spy_shares {
        for f in ["Walrus.dive", "swim"] {
            let kiln_error = (total(&stacks, |s| s.has(f)) as f64 / all as f64 - cpu(f)).abs();
            let spy_error = (spy.get(f).copied().unwrap_or(0.0) - cpu(f)).abs();
            eprintln!(
                "{f}: error kiln {:.1} points, py-spy {:.1} points",
                kiln_error * 100.0,
                spy_error * 100.0
            );
            // At least as close as py-spy, give or take a point of sampling noise.
            assert!(
                kiln_error <= spy_error + 0.01,
                "{f}: kiln {kiln_error:.3} from the truth, py-spy {spy_error:.3}"
            );
        }
    }

    // Merged like py-spy --native: native frames around, the loop itself replaced.
    let with_loop = total(&stacks, |s| s.has("_PyEval_EvalFrameDefault"));
    assert!(
        with_loop as f64 <= 0.05 * all as f64,
        "{with_loop} of {all} samples still show _PyEval_EvalFrameDefault"
    );
    let native_root = total(
        &stacks,
        |s| matches!((s.position("Py_RunMain"), s.position("<module>")), (Some(r), Some(m)) if r > m),
    );
    assert!(
        native_root as f64 >= 0.95 * all as f64,
        "only {native_root} of {all} samples have Python frames under Py_RunMain"
    );

    // File and line of the leaf Python frame: inside Walrus.dive's loop.
    let def = source_line("    def dive(self, n):");
    let dive: Vec<&Frame> = stacks
        .iter()
        .flat_map(|s| s.frames.iter().filter(|f| f.function == "Walrus.dive"))
        .collect();
    assert!(
        dive.iter().all(|f| f.file.ends_with("py_shares.py")),
        "{:?}",
        dive[0]
    );
    let in_body = dive
        .iter()
        .filter(|f| f.line > def && f.line <= def + 4)
        .count();
    assert!(
        in_body as f64 >= 0.9 * dive.len() as f64,
        "{in_body} of {} Walrus.dive frames in its body (def at line {def}): {:?}",
        dive.len(),
        dive.iter().map(|f| f.line).collect::<Vec<_>>()
    );
    assert_few_python_losses(&summary, all);
}

#[test]
fn native_frames_of_a_c_extension_sit_under_their_python_caller() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let w = PyWorkload::start(PYTHON, "hashlib");
    let pid = w.pid();
    let (profile, _) = record(pid, 15);
    let truth = w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 300, "only {all} samples");
    let cpu = |f: &str| truth["functions"][f].as_f64().unwrap() / truth["total"].as_f64().unwrap();
    assert_complete_chains(&stacks, |_| true);

    // Native SHA-256 code (OpenSSL) leafward of the Python function that called it.
    let native_sha = |s: &Stack| {
        s.position("sha256_native").is_some_and(|caller| {
            s.frames[..caller]
                .iter()
                .any(|f| f.function.to_lowercase().contains("sha256") && !f.file.ends_with(".py"))
        })
    };
    // The function's share (inclusive, as it measures itself), and its native part.
    assert_share("sha256_native", &stacks, all, cpu("sha256_native"), |s| {
        s.has("sha256_native")
    });
    assert_share("count_bytes", &stacks, all, cpu("count_bytes"), |s| {
        s.has("count_bytes")
    });
    let in_hashing = total(&stacks, |s| s.has("sha256_native"));
    let under = total(&stacks, |s| {
        native_sha(s) && s.position("hashing") > s.position("sha256_native")
    });
    assert!(
        under as f64 >= 0.9 * in_hashing as f64,
        "{under} of {in_hashing} sha256_native samples show native hashing under it, inside hashing"
    );
}

#[test]
fn each_thread_has_its_own_python_stack() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let w = PyWorkload::start(PYTHON, "threads");
    let pid = w.pid();
    let (profile, _) = record(pid, 10);
    let truth = w.finish();
    let stacks = stacks(&profile, pid);
    let threads = ["py-alpha", "py-beta"];
    let of_threads = total(&stacks, |s| threads.contains(&s.thread.as_str()));
    assert!(
        of_threads > 300,
        "only {of_threads} samples of the two threads"
    );
    let thread_cpu = |t: &str| truth["threads"][t].as_f64().unwrap();
    let both = thread_cpu("py-alpha") + thread_cpu("py-beta");
    for (thread, mine, other) in [("py-alpha", "alpha", "beta"), ("py-beta", "beta", "alpha")] {
        let of_thread = |s: &Stack| s.thread == thread;
        let n = total(&stacks, of_thread);
        let wrong = total(&stacks, |s| of_thread(s) && s.has(other));
        assert_eq!(
            wrong, 0,
            "{thread}: samples with the other thread's {other}"
        );
        let in_thread_fn = total(&stacks, |s| of_thread(s) && s.has("run_thread"));
        assert!(
            in_thread_fn as f64 >= 0.95 * n as f64,
            "{thread}: {in_thread_fn} of {n} samples reach run_thread"
        );
        assert_share(
            &format!("{mine} in {thread}"),
            &stacks,
            of_threads,
            thread_cpu(thread) / both
                * (truth["functions"][mine].as_f64().unwrap() / thread_cpu(thread)),
            |s| of_thread(s) && s.has(mine),
        );
    }
}

#[test]
fn deep_recursion_keeps_every_frame() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let w = PyWorkload::start(PYTHON, "deep");
    let pid = w.pid();
    let (profile, _) = record(pid, 5);
    w.finish();
    let stacks = stacks(&profile, pid);
    let in_leaf = total(&stacks, |s| s.has("leaf"));
    assert!(in_leaf > 200, "only {in_leaf} samples in leaf");
    let full = total(&stacks, |s| {
        s.has("leaf")
            && s.complete()
            && s.frames.iter().filter(|f| f.function == "recurse").count() == 151
    });
    let example = stacks.iter().find(|s| s.has("leaf")).map(Stack::folded);
    assert!(
        full as f64 >= 0.95 * in_leaf as f64,
        "{full} of {in_leaf} leaf samples have all 151 recurse frames and <module>; e.g. {example:?}"
    );
}

/// A CPython whose layout Kiln does not know (3.7, from pyenv where installed): its
/// samples keep their native stack, no Python frame is invented, and the cause is
/// counted in the recording's summary.
#[test]
fn an_unsupported_version_keeps_native_stacks_and_is_counted() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let python = "/root/.pyenv/versions/3.7.16/bin/python3.7";
    let missing = format!("{python} is not installed (pyenv)");
    if skip_unless(Path::new(python).exists(), python, &missing) {
        return;
    }
    let w = PyWorkload::start(python, "pure");
    let pid = w.pid();
    let (profile, summary) = record(pid, 3);
    w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 100, "only {all} samples");
    let python_frames = total(&stacks, |s| {
        s.frames.iter().any(|f| f.file.ends_with(".py"))
    });
    assert_eq!(
        python_frames, 0,
        "Python frames from a version without a layout"
    );
    let native_loop = total(&stacks, |s| s.has("_PyEval_EvalFrameDefault"));
    assert!(
        native_loop as f64 >= 0.9 * all as f64,
        "{native_loop} of {all} samples keep the native interpreter loop"
    );
    let counted = summary_count(&summary, "python_unsupported");
    assert!(
        counted as f64 >= 0.9 * all as f64,
        "python_unsupported={counted} for {all} samples: {summary}"
    );
}

/// `--no-python-frames` leaves CPython processes alone: their samples keep the native
/// interpreter loop and no Python stack is read (what `bench python` compares against).
#[test]
fn no_python_frames_keeps_the_native_interpreter_loop() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let w = PyWorkload::start(PYTHON, "pure");
    let pid = w.pid();
    let (profile, summary) = record_with(pid, 3, &["--no-python-frames"]);
    w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 100, "only {all} samples");
    let python_frames = total(&stacks, |s| {
        s.frames.iter().any(|f| f.file.ends_with(".py"))
    });
    assert_eq!(python_frames, 0, "Python frames despite --no-python-frames");
    let native_loop = total(&stacks, |s| s.has("_PyEval_EvalFrameDefault"));
    assert!(
        native_loop as f64 >= 0.9 * all as f64,
        "{native_loop} of {all} samples keep the native interpreter loop"
    );
    for stat in ["python_stacks", "python_unsupported"] {
        assert_eq!(summary_count(&summary, stat), 0, "{stat}: {summary}");
    }
}

/// A process that exits in the middle of the recording still has its Python frames: its
/// code objects are named while it lives, not only at the next drain.
#[test]
fn a_process_that_exits_mid_recording_keeps_its_python_frames() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let mut w = PyWorkload::start_with(PYTHON, &["pure", "7"]);
    let pid = w.pid();
    // Recording first; the workload's 7 s start once kiln samples.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pb.gz");
    let mut kiln = ChildGuard::spawn(
        Command::new(kiln_bin())
            .args([
                "record",
                "--pid",
                &pid.to_string(),
                "-F",
                "999",
                "-d",
                "12",
                "-o",
            ])
            .arg(&out)
            .env("RUST_LOG", "kiln::cmd::record=debug")
            .stderr(Stdio::piped()),
    );
    let mut stderr = BufReader::new(kiln.0.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("sampling started") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "kiln ended: {log}"
        );
        log += &line;
    }
    std::io::Write::write_all(w.child.0.stdin.as_mut().unwrap(), b"go\n").unwrap();
    let truth = w.truth();
    stderr.read_to_string(&mut log).unwrap();
    let status = kiln.0.wait().unwrap();
    assert!(status.success(), "kiln failed: {log}");
    let (profile, summary) = (read_pprof(&out), log);
    let stacks = stacks(&profile, pid);
    // The truth covers the work loop (`pure`), not the interpreter's exit after it.
    let all = total(&stacks, |s| s.has("pure"));
    assert!(all > 150, "only {all} samples");
    let cpu = |f: &str| truth["functions"][f].as_f64().unwrap() / truth["total"].as_f64().unwrap();
    assert_complete_chains(&stacks, |_| true);
    assert_share("Walrus.dive", &stacks, all, cpu("Walrus.dive"), |s| {
        s.has("Walrus.dive")
    });
    assert_share("swim", &stacks, all, cpu("swim"), |s| s.has("swim"));
    eprintln!("{summary}");
}

/// CPython 3.12 (pyenv's build where installed; Debian 12 ships none), whose activations
/// are marked by shim frames instead of `is_entry`: the same shares, chains and merge.
#[test]
fn python_3_12_frames_replace_the_interpreter_loop_with_true_shares() {
    check_pyenv_python("/root/.pyenv/versions/3.12.1/bin/python3.12", "Walrus.dive");
}

/// CPython 3.13, whose layout comes from the `_Py_DebugOffsets` it publishes.
#[test]
fn python_3_13_frames_replace_the_interpreter_loop_with_true_shares() {
    check_pyenv_python("/root/.pyenv/versions/3.13.0/bin/python3.13", "Walrus.dive");
}

/// CPython 3.8 to 3.10: frame objects, one interpreter activation per frame, and no
/// qualname (py-spy too shows `co_name` for them).
#[test]
fn python_3_8_frames_replace_the_interpreter_loop_with_true_shares() {
    check_pyenv_python("/root/.pyenv/versions/3.8.18/bin/python3.8", "dive");
}

#[test]
fn python_3_9_and_3_10_frames_replace_the_interpreter_loop_with_true_shares() {
    check_pyenv_python("/root/.pyenv/versions/3.10.13/bin/python3.10", "dive");
    check_pyenv_python("/root/.pyenv/versions/3.9.18/bin/python3.9", "dive");
}

/// The pure workload on another interpreter; `dive` is how it names `Walrus.dive`.
fn check_pyenv_python(python: &str, dive: &str) {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let missing = format!("{python} is not installed (pyenv)");
    if skip_unless(Path::new(python).exists(), python, &missing) {
        return;
    }
    let w = PyWorkload::start(python, "pure");
    let pid = w.pid();
    let (profile, summary) = record(pid, 10);
    let truth = w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 300, "only {all} samples");
    let cpu = |f: &str| truth["functions"][f].as_f64().unwrap() / truth["total"].as_f64().unwrap();
    assert_complete_chains(&stacks, |_| true);
    assert_share(
        &format!("{python}: {dive}"),
        &stacks,
        all,
        cpu("Walrus.dive"),
        |s| s.has(dive),
    );
    assert_share(&format!("{python}: swim"), &stacks, all, cpu("swim"), |s| {
        s.has("swim")
    });
    let with_loop = total(&stacks, |s| s.has("_PyEval_EvalFrameDefault"));
    assert!(
        with_loop as f64 <= 0.05 * all as f64,
        "{with_loop} of {all} samples still show _PyEval_EvalFrameDefault"
    );
    assert_few_python_losses(&summary, all);
}

/// A Python whose interpreter exists only in its own mount namespace (as in a container):
/// found, read and named through `/proc/<pid>/map_files` and `/proc/<pid>/mem`.
#[test]
fn a_python_in_another_mount_namespace() {
    if skip_unless_root("Python frames end to end (loads eBPF)") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kiln-py-ns-{:x}", kiln_testkit::random_u64()));
    std::fs::create_dir(&dir).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = RemoveDir(dir.clone());
    let d = dir.display();
    // unshare without --fork: the shell, then the interpreter, keep the pid spawned.
    let script = format!(
        "mount -t tmpfs kiln-test {d} && cp {PYTHON} {d}/python3.11 && exec {d}/python3.11 {} pure",
        workload_path().display()
    );
    let w = PyWorkload::spawn(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(&script),
        "pure",
    );
    let pid = w.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.starts_with(&dir), "{exe:?}");
    assert!(
        !exe.exists(),
        "the interpreter must not be visible from the host"
    );
    let (profile, summary) = record(pid, 8);
    let truth = w.finish();
    let stacks = stacks(&profile, pid);
    let all = total(&stacks, |_| true);
    assert!(all > 300, "only {all} samples");
    let cpu = |f: &str| truth["functions"][f].as_f64().unwrap() / truth["total"].as_f64().unwrap();
    assert_complete_chains(&stacks, |_| true);
    assert_share("Walrus.dive", &stacks, all, cpu("Walrus.dive"), |s| {
        s.has("Walrus.dive")
    });
    assert!(!summary.contains("python_"), "{summary}");
}
