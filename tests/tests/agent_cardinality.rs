//! `kiln agent` end to end (root, real eBPF): the series count stays bounded on a real
//! host. Kernel threads are one service, `kernel`, with their kind in `kernel_thread`;
//! and `--max-new-series-per-window` refuses (and counts) new series over the cap.

use std::{
    collections::BTreeSet,
    io::Write as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use kiln_tests::{agent::*, *};

/// Keeps kernel threads busy (writeback, journal) while the agent samples: writes and
/// fsyncs a file in `dir` until stopped.
fn disk_churn(dir: &std::path::Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let path = dir.join("churn.bin");
    std::thread::spawn(move || {
        let block = vec![0x5au8; 256 << 10];
        while !stop.load(Ordering::Relaxed) {
            let mut f = std::fs::File::create(&path).expect("churn file");
            f.write_all(&block).expect("write");
            f.sync_all().expect("fsync");
        }
        let _ = std::fs::remove_file(&path);
    })
}

#[test]
fn agent_groups_kernel_threads_under_one_service() {
    if skip_unless_root("agent_groups_kernel_threads_under_one_service") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
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
    let stop = Arc::new(AtomicBool::new(false));
    let churn = disk_churn(tmp.path(), stop.clone());
    std::thread::sleep(Duration::from_secs(7));
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");

    let files = read_output_dir(&out);
    let mut kinds = BTreeSet::new();
    for (path, e) in &files {
        let service = e.label("service_name").unwrap_or_default();
        match e.label("kernel_thread") {
            Some(kind) => {
                assert_eq!(service, "kernel", "{}: {:?}", path.display(), e.labels);
                assert!(!kind.contains(['/', ':', '+']), "kind {kind:?}");
                kinds.insert(kind.to_owned());
            }
            None => assert_ne!(service, "kernel", "{}: {:?}", path.display(), e.labels),
        }
        // No per-instance or per-work-item kernel thread name became a service.
        for prefix in ["kworker", "ksoftirqd/", "migration/", "rcu_", "jbd2/"] {
            assert!(
                !service.starts_with(prefix),
                "{}: service {service:?}",
                path.display()
            );
        }
    }
    assert!(
        !kinds.is_empty(),
        "no kernel thread was sampled in 7 s of disk churn ({} files):\n{log}",
        files.len()
    );
}

#[test]
fn agent_caps_new_series_per_window_and_counts_the_rest() {
    if skip_unless_root("agent_caps_new_series_per_window_and_counts_the_rest") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let out = tmp.path().join("profiles");
    // Only this test's processes, each its own series (the pid is copied into a label).
    let config = write_file(
        tmp.path(),
        "agent.toml",
        &format!(
            r#"
[[relabel_configs]]
source_labels = ["__meta_env_var_KILN_TEST"]
regex = "{tok}"
action = "keep"

[[relabel_configs]]
source_labels = ["__meta_process_pid"]
target_label = "pid_series"
"#
        ),
    );
    let agent = Agent::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--env-label",
            "KILN_TEST=kiln_test",
            "--max-new-series-per-window",
            "1",
            "--collect-interval",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let burners: Vec<_> = (0..6)
        .map(|_| spawn_in_cgroups(&exe, &["60000"], &[("KILN_TEST", tok.as_str())], &[]))
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    let metrics = agent.metrics();
    let (status, log) = agent.stop(Duration::from_secs(20));
    drop(burners);
    assert!(status.success(), "agent exit {status}:\n{log}");

    let files = read_output_dir(&out);
    let windows: BTreeSet<i64> = files.iter().map(|(_, e)| e.profile.time_nanos).collect();
    let series: BTreeSet<&str> = files
        .iter()
        .filter_map(|(_, e)| e.label("pid_series"))
        .collect();
    assert!(!series.is_empty(), "nothing exported:\n{log}");
    // At most one new series per window, so never more series than windows.
    assert!(
        series.len() <= windows.len() && series.len() < 6,
        "{} series in {} windows",
        series.len(),
        windows.len()
    );
    assert!(metric(&metrics, "kiln_series_limited_total", &[]) >= 1.0);
    assert!(metric(&metrics, "kiln_samples_series_limited_total", &[]) >= 1.0);
    assert!(
        log.contains("new series over --max-new-series-per-window"),
        "{log}"
    );
}
