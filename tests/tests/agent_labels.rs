//! `kiln agent` end to end (root, real eBPF): CPU burners started inside cgroups that
//! look like Docker, containerd, CRI-O and Kubernetes ones get the right container id,
//! pod UID, env and static labels in the exported pprof files; relabel rules from the
//! config file keep, drop and rename; the SECRET variable never shows up; windows are
//! contiguous; SIGINT stops the agent cleanly.

use std::time::Duration;

use kiln_tests::{agent::*, *};

struct Workload {
    name: &'static str,
    container_id: String,
    pod_uid: Option<String>,
    qos: Option<&'static str>,
    region: String,
}

#[test]
fn agent_labels_containers_env_static_and_relabel() {
    if skip_unless_root("agent_labels_containers_env_static_and_relabel") {
        return;
    }
    for mount in [UNIFIED, "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd"] {
        let why = format!("cgroup hierarchy {mount} not mounted");
        if skip_unless(CgroupTree::available(mount), "agent_labels", &why) {
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let out = tmp.path().join("profiles");

    let mut unified = CgroupTree::new(UNIFIED);
    let mut v1_pids = CgroupTree::new("/sys/fs/cgroup/pids");
    let mut v1_systemd = CgroupTree::new("/sys/fs/cgroup/systemd");

    let ids: Vec<String> = (0..5).map(|_| random_container_id()).collect();
    let containerd_uid = random_pod_uid();
    let crio_uid = random_pod_uid();
    let kube_uid = random_pod_uid();
    let workloads = [
        Workload {
            name: "docker (v1 pids hierarchy)",
            container_id: ids[0].clone(),
            pod_uid: None,
            qos: None,
            region: format!("docker-{tok}"),
        },
        Workload {
            name: "containerd (v2, systemd driver, besteffort pod)",
            container_id: ids[1].clone(),
            pod_uid: Some(containerd_uid.clone()),
            qos: Some("besteffort"),
            region: format!("containerd-{tok}"),
        },
        Workload {
            name: "CRI-O (v1 name=systemd hierarchy, burstable pod)",
            container_id: ids[2].clone(),
            pod_uid: Some(crio_uid.clone()),
            qos: Some("burstable"),
            region: format!("crio-{tok}"),
        },
        Workload {
            name: "kubepods cgroupfs (v2, guaranteed pod)",
            container_id: ids[3].clone(),
            pod_uid: Some(kube_uid.clone()),
            qos: Some("guaranteed"),
            region: format!("kube-{tok}"),
        },
    ];
    let dropped_id = ids[4].clone();
    let cgroups = [
        v1_pids.create_procs(&format!("docker/{}", ids[0])),
        unified.create_procs(&format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{}.scope",
            containerd_uid.replace('-', "_"),
            ids[1]
        )),
        v1_systemd.create_procs(&format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/crio-{}.scope",
            crio_uid.replace('-', "_"),
            ids[2]
        )),
        unified.create_procs(&format!("kubepods/pod{kube_uid}/{}", ids[3])),
        unified.create_procs(&format!("docker/{dropped_id}")),
    ];

    let config = write_file(
        tmp.path(),
        "agent.toml",
        &format!(
            r#"
[static_labels]
team = "kiln-e2e"

[env_labels]
KILN_TEST = "kiln_test"

# Only this test's processes: everything else on the host is dropped.
[[relabel_configs]]
source_labels = ["__meta_env_var_KILN_TEST"]
regex = "{tok}"
action = "keep"

[[relabel_configs]]
source_labels = ["__meta_container_id"]
regex = "{dropped_id}"
action = "drop"

# Rename `process` to `binary`.
[[relabel_configs]]
source_labels = ["process"]
target_label = "binary"

[[relabel_configs]]
regex = "process"
action = "labeldrop"
"#
        ),
    );

    let agent = Agent::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--env-label",
            "REGION=region",
            "--label",
            "suite=agent-labels",
            "--collect-interval",
            "2",
            "--output-dir",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );

    let mut children = Vec::new();
    for (i, cg) in cgroups.iter().enumerate() {
        let region = workloads
            .get(i)
            .map_or(format!("dropped-{tok}"), |w| w.region.clone());
        children.push(spawn_in_cgroups(
            &exe,
            &["60000"],
            &[
                ("REGION", region.as_str()),
                ("SECRET", SECRET_VALUE),
                ("KILN_TEST", tok.as_str()),
            ],
            &[cg.as_path()],
        ));
    }
    std::thread::sleep(Duration::from_secs(7));
    let metrics = agent.metrics();
    let (status, log) = agent.stop(Duration::from_secs(20));
    drop(children);
    assert!(status.success(), "agent exit {status}:\n{log}");
    assert!(!log.contains(SECRET_VALUE), "secret in the agent log");

    let files = read_output_dir(&out);
    assert!(!files.is_empty(), "no profiles written:\n{log}");
    // The shell that joins the cgroups and then execs the workload runs for a moment with
    // the same environment and cgroups; a sample that lands in it makes a series of its
    // own, labeled like the workload's but named after the shell. It must pass every
    // label check except the ones about the workload's binary.
    let is_shell = |e: &Exported| matches!(e.label("binary"), Some("sh" | "dash" | "bash"));
    for (path, e) in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        assert_eq!(
            e.label("kiln_test"),
            Some(tok.as_str()),
            "{name}: the keep rule must exclude every other process: {:?}",
            e.labels
        );
        assert_eq!(
            e.label("team"),
            Some("kiln-e2e"),
            "{name}: static label from the file"
        );
        assert_eq!(
            e.label("suite"),
            Some("agent-labels"),
            "{name}: static label from --label"
        );
        if !is_shell(e) {
            assert_eq!(
                e.label("binary"),
                Some("agent_burn"),
                "{name}: renamed label"
            );
            assert!(
                name.starts_with("agent_burn-") && name.ends_with(".pb.gz"),
                "file name {name}"
            );
        }
        assert!(
            e.label("process").is_none(),
            "{name}: `process` was renamed away"
        );
        assert_ne!(
            e.label("container_id"),
            Some(dropped_id.as_str()),
            "{name}: dropped container exported"
        );
        assert!(e.label("hostname").is_some(), "{name}");
        assert_no_secret(&name, &e.raw, SECRET_VALUE);
    }
    for w in &workloads {
        let mine: Vec<_> = files
            .iter()
            .filter(|(_, e)| e.label("container_id") == Some(w.container_id.as_str()))
            .filter(|(_, e)| !is_shell(e))
            .collect();
        assert!(
            !mine.is_empty(),
            "{}: no profile with its container id; exported: {:#?}\n{log}",
            w.name,
            files
                .iter()
                .map(|(p, e)| (p.file_name().unwrap().to_owned(), e.labels.clone()))
                .collect::<Vec<_>>()
        );
        let mut burned = 0;
        for (path, e) in &mine {
            assert_eq!(
                e.label("region"),
                Some(w.region.as_str()),
                "{}: {}",
                w.name,
                path.display()
            );
            assert_eq!(e.label("service_name"), Some("agent_burn"), "{}", w.name);
            assert_eq!(e.label("pod_uid"), w.pod_uid.as_deref(), "{}", w.name);
            assert_eq!(e.label("qos_class"), w.qos, "{}", w.name);
            burned += e.total_in("kiln_agent_burn_long");
        }
        assert!(
            burned > 20,
            "{}: only {burned} samples in kiln_agent_burn_long",
            w.name
        );
    }

    // Windows of one series are contiguous: each starts where the previous ended.
    let mut windows: Vec<(i64, i64)> = files
        .iter()
        .filter(|(_, e)| e.label("container_id") == Some(ids[0].as_str()) && !is_shell(e))
        .map(|(_, e)| (e.profile.time_nanos, e.profile.duration_nanos))
        .collect();
    windows.sort();
    assert!(windows.len() >= 2, "expected several windows: {windows:?}");
    for pair in windows.windows(2) {
        assert_eq!(
            pair[0].0 + pair[0].1,
            pair[1].0,
            "gap or overlap: {windows:?}"
        );
    }
    // A window ends at the drain after its boundary; on a host this loaded (five burners
    // on two CPUs, plus whatever else runs) that drain may start late, by seconds when
    // the agent first symbolizes large binaries of other processes.
    for &(_, d) in &windows {
        assert!(
            d > 0 && d < 6_000_000_000,
            "window far longer than the interval: {d}"
        );
    }

    assert!(
        metric(&metrics, "kiln_samples_relabel_dropped_total", &[]) > 0.0,
        "processes dropped by relabeling are counted"
    );
    assert!(metric(&metrics, "kiln_windows_collected_total", &[]) >= 2.0);
    assert!(metric(&metrics, "kiln_samples_recorded_total", &[]) > 0.0);
    assert!(
        metric(
            &metrics,
            "kiln_exporter_windows_exported_total",
            &[("exporter", "dir")]
        ) >= 2.0
    );
    drop((unified, v1_pids, v1_systemd));
}
