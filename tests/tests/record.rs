//! `kiln record` end to end: the real binary loads the real eBPF sampler and profiles C
//! workloads whose ground truth is known. Needs root.

use std::{collections::HashMap, path::Path, process::Command, time::Duration};

use kiln_tests::*;

fn require_root() -> bool {
    !skip_unless_root("kiln record end to end (loads eBPF)")
}

fn share_of(stacks: &[FoldedStack], frame: &str) -> f64 {
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    let with: u64 = stacks
        .iter()
        .filter(|s| s.frames.iter().any(|f| f == frame))
        .map(|s| s.count)
        .sum();
    with as f64 / total.max(1) as f64
}

#[test]
fn shares_match_ground_truth_with_full_chains() {
    if !require_root() {
        return;
    }
    let exe = build_workload("shares", &[]);
    // The workload outlives the recording by a wide margin: start-up is slow on a loaded host.
    let workload = spawn_workload(&exe, &["15", "5", "3", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("out.folded");
    let pid = workload.pid().to_string();
    let out = kiln(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "5",
        "--frequency",
        "999",
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert_success(&out);
    let truth: serde_json::Value =
        serde_json::from_str(&workload.wait_stdout(Duration::from_secs(40))).unwrap();
    let stacks = read_folded(&folded);
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    assert!(total > 1000, "too few samples: {total}");

    let cpu_total = truth["total"].as_f64().unwrap();
    for f in ["work_a", "work_b", "work_c"] {
        let want = truth["cpu"][f].as_f64().unwrap() / cpu_total;
        let got = share_of(&stacks, f);
        assert!(
            (got - want).abs() < 0.03,
            "{f}: measured {:.1}% but the workload spent {:.1}%",
            got * 100.0,
            want * 100.0
        );
    }
    // Every sample in spin() carries the whole chain from main.
    let spin: Vec<&FoldedStack> = stacks
        .iter()
        .filter(|s| s.frames.last().is_some_and(|f| f == "spin"))
        .collect();
    assert!(!spin.is_empty());
    for s in &spin {
        let n = s.frames.len();
        assert!(
            n >= 5
                && s.frames[n - 4] == "main"
                && s.frames[n - 3] == "dispatch"
                && s.frames[n - 2].starts_with("work_"),
            "incomplete chain: {}",
            s.frames.join(";")
        );
        assert_eq!(s.frames[0], "shares", "root is the process name");
    }
}

#[test]
fn kernel_frames_for_a_syscall_heavy_workload() {
    if !require_root() {
        return;
    }
    let exe = build_workload("syscalls", &[]);
    let workload = spawn_workload(&exe, &["15"]);
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("out.folded");
    let pid = workload.pid().to_string();
    let out = kiln(&[
        "record",
        "--pid",
        &pid,
        "-d",
        "3",
        "-F",
        "499",
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert_success(&out);
    let stacks = read_folded(&folded);
    let kernel_share: f64 = {
        let total: u64 = stacks.iter().map(|s| s.count).sum();
        let k: u64 = stacks
            .iter()
            .filter(|s| s.frames.iter().any(|f| f.ends_with("_[k]")))
            .map(|s| s.count)
            .sum();
        k as f64 / total as f64
    };
    assert!(
        kernel_share > 0.5,
        "kernel frames in only {:.0}% of samples",
        kernel_share * 100.0
    );
    // Kernel frames sit on top of the user frames that made the syscall. (With frame
    // pointers only, libc's leaf wrappers hide syscall_loop: they set up no frame.)
    assert!(
        stacks.iter().any(|s| {
            let joined = s.frames.join(";");
            joined.starts_with("syscalls;")
                && joined.contains(";main;")
                && (joined.contains("read;entry_SYSCALL_64")
                    || joined.contains("write;entry_SYSCALL_64"))
                && (joined.contains("ksys_read_[k]") || joined.contains("ksys_write_[k]"))
        }),
        "no syscall_loop -> ksys_read/ksys_write chain in:\n{}",
        stacks
            .iter()
            .take(20)
            .map(|s| s.frames.join(";"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn pid_filter_excludes_other_processes() {
    if !require_root() {
        return;
    }
    let exe = build_workload("shares", &[]);
    let wanted = spawn_workload(&exe, &["15"]);
    let other = spawn_workload(&exe, &["15"]);
    let dir = tempfile::tempdir().unwrap();
    let pprof = dir.path().join("out.pb.gz");
    let out = kiln(&[
        "record",
        "--pid",
        &wanted.pid().to_string(),
        "-d",
        "2",
        "-F",
        "499",
        "-o",
        pprof.to_str().unwrap(),
    ]);
    assert_success(&out);
    let p = read_pprof(&pprof);
    assert!(!p.sample.is_empty());
    let pids: std::collections::HashSet<&str> = p
        .sample
        .iter()
        .filter_map(|s| sample_label(&p, s, "pid"))
        .collect();
    assert_eq!(
        pids,
        [wanted.pid().to_string().as_str()].into_iter().collect()
    );
    drop(other);
}

#[test]
fn a_process_that_exits_mid_recording_keeps_its_symbols() {
    if !require_root() {
        return;
    }
    // Run a copy of the binary and delete it, so symbols can only come from what kiln
    // captured while the process lived.
    let exe = build_workload("shares", &[]);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("short-lived");
    std::fs::copy(&exe, &copy).unwrap();
    // Give kiln time to start before the workload runs (exec keeps the pid), so it lives
    // ~3 s inside the recording and exits in the middle of it.
    let workload = ChildGuard::spawn(
        Command::new("sh")
            .arg("-c")
            .arg(format!("sleep 4; exec {} 3", copy.display()))
            .stdout(std::process::Stdio::piped()),
    );
    let deleter = {
        let copy = copy.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(4500));
            std::fs::remove_file(&copy).unwrap();
        })
    };
    let folded = dir.path().join("out.folded");
    // Drain only once, at the end, long after the process is gone.
    let out = kiln(&[
        "record",
        "--pid",
        &workload.pid().to_string(),
        "-d",
        "12",
        "-F",
        "499",
        "--drain-interval-ms",
        "60000",
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert_success(&out);
    workload.wait_stdout(Duration::from_secs(10));
    deleter.join().unwrap();
    // Only the workload's own samples (not the shell's before the exec).
    let stacks: Vec<FoldedStack> = read_folded(&folded)
        .into_iter()
        .filter(|s| s.frames[0] == "short-lived")
        .collect();
    assert!(
        share_of(&stacks, "work_a") > 0.3,
        "work_a not symbolized: {stacks:?}"
    );
    assert!(share_of(&stacks, "main") > 0.95, "{stacks:?}");
}

#[test]
fn pprof_is_valid_and_agrees_with_folded() {
    if !require_root() {
        return;
    }
    let exe = build_workload("shares", &[]);
    let workload = spawn_workload(&exe, &["15"]);
    let dir = tempfile::tempdir().unwrap();
    let folded = dir.path().join("out.folded");
    let pprof = dir.path().join("out.pb.gz");
    let svg = dir.path().join("out.svg");
    let out = kiln(&[
        "record",
        "--pid",
        &workload.pid().to_string(),
        "-d",
        "2",
        "-F",
        "499",
        "-o",
        folded.to_str().unwrap(),
        "-o",
        pprof.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert_success(&out);

    let p = read_pprof(&pprof);
    kiln_proto::validate(&p).expect("structurally valid pprof");
    let types: Vec<(&str, &str)> = p
        .sample_type
        .iter()
        .map(|t| (p.string(t.r#type), p.string(t.unit)))
        .collect();
    assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
    assert!(
        p.mapping.iter().any(|m| !p.string(m.build_id).is_empty()),
        "build ids recorded"
    );
    assert!(
        p.location
            .iter()
            .any(|l| l.line.iter().any(|ln| ln.line > 0)),
        "line numbers"
    );

    let from_pprof = pprof_to_folded(&p);
    let from_folded: HashMap<String, u64> = read_folded(&folded)
        .into_iter()
        .map(|s| (s.frames.join(";"), s.count))
        .collect();
    assert_eq!(
        from_pprof, from_folded,
        "pprof and folded outputs of one run differ"
    );

    // go tool pprof is an independent reader.
    let top = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&pprof)
        .output()
        .expect("go not installed: run `cargo xtask setup`");
    assert!(
        top.status.success(),
        "go tool pprof: {}",
        String::from_utf8_lossy(&top.stderr)
    );
    assert!(String::from_utf8_lossy(&top.stdout).contains("work_a"));

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("work_a"),
        "flame graph names work_a"
    );
}

fn stderr_of(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "kiln should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn clear_errors_for_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let ok_out = dir.path().join("x.folded");
    let ok_out = ok_out.to_str().unwrap();

    let e = stderr_of(&kiln(&[
        "record",
        "--pid",
        "999999999",
        "-d",
        "1",
        "-o",
        ok_out,
    ]));
    assert!(e.contains("no process with pid 999999999"), "{e}");

    let e = stderr_of(&kiln(&[
        "record",
        "-d",
        "1",
        "-o",
        "/nonexistent-dir/x.folded",
    ]));
    assert!(e.contains("cannot write the output file"), "{e}");

    let e = stderr_of(&kiln(&["record", "-d", "1", "-o", "out.unknown"]));
    assert!(e.contains("cannot tell the format"), "{e}");

    if is_root() {
        let e = stderr_of(&kiln(&["record", "-d", "1", "-F", "0", "-o", ok_out]));
        assert!(e.contains("frequency 0 Hz is out of range"), "{e}");
        let e = stderr_of(&kiln(&[
            "record",
            "-d",
            "1",
            "-F",
            "100000000",
            "-o",
            ok_out,
        ]));
        assert!(e.contains("out of range"), "{e}");

        // Drop to an unprivileged user: kiln names what is missing.
        let out = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(kiln_bin())
            .args(["record", "-d", "1", "-o", "/tmp/kiln-unpriv-test.folded"])
            .output()
            .expect("setpriv (util-linux)");
        let e = stderr_of(&out);
        assert!(e.contains("CAP_BPF") && e.contains("CAP_PERFMON"), "{e}");
    }
    assert!(!Path::new("/tmp/kiln-unpriv-test.folded").exists());
}
