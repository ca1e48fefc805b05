//! `kiln agent` end to end (root, real eBPF): a burst of hundreds of short-lived processes,
//! each burning ~40 ms of CPU in a known function and exiting, is labeled (container id,
//! env label) and symbolized: the function shows up under their labels, for nearly all of
//! them.

use std::{collections::HashSet, time::Duration};

use kiln_tests::{agent::*, *};

const PROCESSES: usize = 300;
const BURN_MS: u32 = 40;

#[test]
fn agent_labels_and_symbolizes_short_lived_processes() {
    if skip_unless_root("agent_labels_and_symbolizes_short_lived_processes") {
        return;
    }
    if !CgroupTree::available(UNIFIED) {
        skip_unless(
            false,
            "agent_burst",
            &format!("no cgroup v2 hierarchy at {UNIFIED}"),
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let id = random_container_id();
    let out = tmp.path().join("profiles");
    let mut tree = CgroupTree::new(UNIFIED);
    let cg = tree.create_procs(&format!("system.slice/docker-{id}.scope"));
    // Rules from a separate file (--relabel-config): only this test's processes.
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
            "REGION=region",
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
    let region = format!("burst-{tok}");
    let burst = spawn_in_cgroups(
        &exe,
        &["burst", &PROCESSES.to_string(), &BURN_MS.to_string(), "2"],
        &[
            ("REGION", region.as_str()),
            ("SECRET", SECRET_VALUE),
            ("KILN_TEST", tok.as_str()),
        ],
        &[cg.as_path()],
    );
    let report = burst.wait_stdout(Duration::from_secs(120));
    assert_eq!(
        report.trim(),
        format!("{PROCESSES} 0"),
        "burst driver report"
    );
    std::thread::sleep(Duration::from_millis(300));
    let metrics = agent.metrics();
    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");

    let files = read_output_dir(&out);
    let mut pids = HashSet::new();
    let mut samples = 0i64;
    for (path, e) in &files {
        assert_eq!(
            e.label("kiln_test"),
            Some(tok.as_str()),
            "{}",
            path.display()
        );
        assert_no_secret(&path.display().to_string(), &e.raw, SECRET_VALUE);
        let by_pid = e.samples_in("kiln_agent_burn_short", "pid");
        if by_pid.is_empty() {
            continue;
        }
        assert_eq!(
            e.label("container_id"),
            Some(id.as_str()),
            "{}",
            path.display()
        );
        assert_eq!(
            e.label("region"),
            Some(region.as_str()),
            "{}",
            path.display()
        );
        assert_eq!(
            e.label("service_name"),
            Some("agent_burn"),
            "{}",
            path.display()
        );
        for (pid, n) in by_pid {
            pids.insert(pid);
            samples += n;
        }
    }
    let expected = PROCESSES as f64 * f64::from(BURN_MS) / 1000.0 * 97.0;
    eprintln!(
        "short-lived: {} of {PROCESSES} processes labeled and symbolized, {samples} samples (~{expected:.0} expected); unlabeled samples host-wide: {}",
        pids.len(),
        metric(&metrics, "kiln_samples_unlabeled_total", &[])
    );
    assert!(
        pids.len() as f64 >= 0.8 * PROCESSES as f64,
        "only {} of {PROCESSES} short-lived processes appear labeled with kiln_agent_burn_short",
        pids.len()
    );
    assert!(
        samples as f64 >= 0.6 * expected,
        "only {samples} samples of kiln_agent_burn_short, expected ~{expected:.0}"
    );
    drop(tree);
}

/// Processes that live ~2 ms: their samples are exported under the service their name
/// suggests, whether they were read from /proc in time or labeled after they exited with
/// what outlives them; most are symbolized, the rest keep [unknown]+address frames.
#[test]
fn processes_that_exit_before_discovery_keep_their_samples() {
    if skip_unless_root("processes_that_exit_before_discovery_keep_their_samples") {
        return;
    }
    const BLIPS: usize = 400;
    const BLIP_MS: u32 = 2;
    let tmp = tempfile::tempdir().expect("tempdir");
    let built = build_workload("agent_burn", &[]);
    // A unique executable name, which becomes the processes' comm and service name.
    let name = format!("kb{}", &token()[..8]);
    let exe = tmp.path().join(&name);
    std::fs::copy(&built, &exe).expect("copy workload");
    let out = tmp.path().join("profiles");
    let agent = Agent::start(
        &[
            "--collect-interval",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let burst = spawn_in_cgroups(
        &exe,
        &["burst", &BLIPS.to_string(), &BLIP_MS.to_string(), "2"],
        &[],
        &[],
    );
    let report = burst.wait_stdout(Duration::from_secs(120));
    assert_eq!(report.trim(), format!("{BLIPS} 0"), "burst driver report");
    std::thread::sleep(Duration::from_millis(300));
    let metrics = agent.metrics();
    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");

    let (mut samples, mut symbolized) = (0i64, 0i64);
    for (_, e) in read_output_dir(&out) {
        if e.label("service_name") == Some(name.as_str()) {
            // All of them: a process gone before its maps were read keeps its samples but
            // not its symbols (the addresses stay as [unknown]+address).
            samples += e.profile.sample.iter().map(|s| s.value[0]).sum::<i64>();
            symbolized += e.total_in("kiln_agent_burn_short");
        }
    }
    let after_exit = metric(&metrics, "kiln_samples_labeled_after_exit_total", &[]);
    let expected = BLIPS as f64 * f64::from(BLIP_MS) / 1000.0 * 97.0;
    eprintln!(
        "{BLIPS} processes of {BLIP_MS} ms: {samples} samples exported under service_name={name} (~{expected:.0} expected), {symbolized} in kiln_agent_burn_short; labeled after exit host-wide: {after_exit}"
    );
    assert!(
        samples as f64 >= 0.5 * expected,
        "only {samples} samples of the {BLIP_MS} ms processes exported, expected ~{expected:.0}"
    );
    // The agent wakes on the kernel's first-sample event and reads the maps while the
    // process still runs (about half of them here; a 10 ms polling timer got ~13%).
    assert!(
        symbolized as f64 >= 0.25 * samples as f64,
        "only {symbolized} of {samples} samples of the {BLIP_MS} ms processes symbolized"
    );
}
