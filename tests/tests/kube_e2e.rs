//! `kiln agent --kube-api-server` end to end (root, real eBPF, real cgroups): a local HTTP
//! server plays the Kubernetes API server (pods and node, list and watch); CPU burners run
//! in kubepods cgroups of two pods. The exported pprof files carry the pod's namespace,
//! pod, container, the node's region and zone, and `service_name = <namespace>/<container>`:
//!
//! - pod A is listed before the agent starts, so every profile of its process is labeled
//!   (the agent waits for the initial lists before it samples);
//! - pod B appears only later, through the watch, after its process was already profiled
//!   (and labeled without pod labels): the agent relabels it, later profiles carry pod B;
//! - `/metrics` exports the watcher's `kiln_kube_*` counters; SIGINT stops it cleanly;
//! - `kiln targets` with the same flags shows the same pod labels.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use kiln_tests::{agent::*, kube::*, *};

/// Exported profiles of `pid`, oldest window first (file names end in the window start).
fn profiles_of(dir: &Path, pid: u32) -> Vec<Exported> {
    let pid = pid.to_string();
    let mut files: Vec<_> = read_output_dir(dir)
        .into_iter()
        .filter(|(_, e)| {
            e.profile
                .sample
                .iter()
                .any(|s| sample_label(&e.profile, s, "pid") == Some(pid.as_str()))
        })
        .collect();
    files.sort_by_key(|(path, _)| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let start = name
            .trim_end_matches(".pb.gz")
            .rsplit('-')
            .next()
            .unwrap_or("");
        start.parse::<u128>().unwrap_or(0)
    });
    files.into_iter().map(|(_, e)| e).collect()
}

/// Polls `f` every 200 ms until it returns `Some`, or panics after `timeout`.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    log: &dyn Fn() -> String,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; agent log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_pod_labels(
    e: &Exported,
    namespace: &str,
    pod: &str,
    container: &str,
    uid: &str,
    id: &str,
) {
    let want = [
        ("namespace", namespace),
        ("pod", pod),
        ("container", container),
        ("region", "eu-west-1"),
        ("zone", "eu-west-1b"),
        ("service_name", &format!("{namespace}/{container}")),
        ("pod_uid", uid),
        ("container_id", id),
    ];
    for (name, value) in want {
        assert_eq!(e.label(name), Some(value), "label {name} of {:?}", e.labels);
    }
    assert!(
        e.labels.keys().all(|k| !k.starts_with("__")),
        "no meta labels leak: {:?}",
        e.labels
    );
}

#[test]
fn agent_labels_profiles_with_pod_and_node_metadata() {
    if skip_unless_root("agent_labels_profiles_with_pod_and_node_metadata") {
        return;
    }
    let why = format!("no cgroup v2 at {UNIFIED}");
    let test = "agent_labels_profiles_with_pod_and_node_metadata";
    if skip_unless(CgroupTree::available(UNIFIED), test, &why) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let out = tmp.path().join("profiles");
    let node = format!("node-{}", token());
    let (uid_a, id_a) = (random_pod_uid(), random_container_id());
    let (uid_b, id_b) = (random_pod_uid(), random_container_id());

    let api = FakeApiServer::start();
    api.add_node(node_json(&node, "eu-west-1", "eu-west-1b"));
    api.add_node(node_json("some-other-node", "us-east-1", "us-east-1a"));
    api.add_pod(pod_json(
        &uid_a,
        "shop",
        "checkout-5f7d9-x2x4q",
        &node,
        "checkout",
        &id_a,
    ));
    // Scheduled elsewhere: the agent's field selector must leave it out.
    api.add_pod(pod_json(
        &random_pod_uid(),
        "shop",
        "checkout-5f7d9-zz9zz",
        "some-other-node",
        "checkout",
        &random_container_id(),
    ));

    // Declared before the children: dropped (rmdir, deepest first) after they are dead.
    let mut cgroups = CgroupTree::new(UNIFIED);
    let cg_a = cgroups.create_procs(&kubepods_path(&uid_a, &id_a));
    let cg_b = cgroups.create_procs(&kubepods_path(&uid_b, &id_b));
    let exe_arg = exe.to_str().unwrap();
    // Niced: the machine is shared; the samples only need to exist.
    let burn = ["-n", "19", exe_arg, "300000"];
    let child_a = spawn_in_cgroups(Path::new("/usr/bin/nice"), &burn, &[], &[cg_a.as_path()]);
    let child_b = spawn_in_cgroups(Path::new("/usr/bin/nice"), &burn, &[], &[cg_b.as_path()]);
    let (pid_a, pid_b) = (child_a.pid(), child_b.pid());
    // The shell joins the cgroup, then execs: wait until the workload runs in it.
    for (pid, id) in [(pid_a, &id_a), (pid_b, &id_b)] {
        wait_for(
            "the workload in its cgroup",
            Duration::from_secs(10),
            &String::new,
            || {
                let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (cg.contains(id.as_str()) && comm.trim() == "agent_burn").then_some(())
            },
        );
    }

    let agent = Agent::start(
        &[
            "--kube-api-server",
            &api.url,
            "--node-name",
            &node,
            "--output-dir",
            out.to_str().unwrap(),
            "--collect-interval",
            "2",
            "--pid",
            &pid_a.to_string(),
            "--pid",
            &pid_b.to_string(),
        ],
        tmp.path(),
    );
    let log = || agent.log();

    // B's process is profiled while its pod is unknown: node labels only.
    let early_b = wait_for(
        "a profile of B's process",
        Duration::from_secs(30),
        &log,
        || profiles_of(&out, pid_b).into_iter().next(),
    );
    assert_eq!(early_b.label("pod"), None, "{:?}", early_b.labels);
    assert_eq!(early_b.label("namespace"), None, "{:?}", early_b.labels);
    assert_eq!(
        early_b.label("container_id"),
        Some(id_b.as_str()),
        "from the cgroup path"
    );
    assert_eq!(
        early_b.label("region"),
        Some("eu-west-1"),
        "node labels apply to every process"
    );
    assert_eq!(early_b.label("zone"), Some("eu-west-1b"));

    // Pod B is scheduled: it reaches the agent through its watch only.
    api.add_pod(pod_json(&uid_b, "jobs", "worker-0", &node, "worker", &id_b));
    let late_b = wait_for(
        "a profile of B with pod labels",
        Duration::from_secs(30),
        &log,
        || {
            profiles_of(&out, pid_b)
                .into_iter()
                .find(|e| e.label("pod").is_some())
        },
    );
    assert_pod_labels(&late_b, "jobs", "worker-0", "worker", &uid_b, &id_b);

    // Pod A was listed before sampling began: every profile of A carries it.
    let profiles_a = profiles_of(&out, pid_a);
    assert!(!profiles_a.is_empty(), "no profile of A:\n{}", agent.log());
    for e in &profiles_a {
        assert_pod_labels(e, "shop", "checkout-5f7d9-x2x4q", "checkout", &uid_a, &id_a);
    }

    let metrics = agent.metrics();
    let m = |name: &str| metric(&metrics, name, &[]);
    assert_eq!(m("kiln_kube_synced"), 1.0, "{metrics}");
    assert_eq!(
        m("kiln_kube_pods_indexed"),
        2.0,
        "only this node's pods: {metrics}"
    );
    assert_eq!(m("kiln_kube_containers_indexed"), 2.0, "{metrics}");
    assert!(m("kiln_kube_pod_events_total") >= 2.0, "{metrics}");
    assert!(m("kiln_kube_node_events_total") >= 1.0, "{metrics}");
    assert!(m("kiln_kube_relists_total") >= 2.0, "{metrics}");
    assert!(m("kiln_kube_list_requests_total") >= 2.0, "{metrics}");
    assert!(m("kiln_kube_watch_requests_total") >= 2.0, "{metrics}");
    assert_eq!(m("kiln_kube_watch_errors_total"), 0.0, "{metrics}");
    assert!(
        metric(&metrics, "kiln_kube_lookups_total", &[("result", "hit")]) >= 2.0,
        "{metrics}"
    );
    let requests = api.requests();
    for (path, selector) in [
        (
            "/api/v1/pods?",
            format!("fieldSelector=spec.nodeName={node}"),
        ),
        (
            "/api/v1/nodes?",
            format!("fieldSelector=metadata.name={node}"),
        ),
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.contains(path) && r.contains(&selector) && r.contains("watch=true")),
            "no watch of {path} with {selector}: {requests:#?}"
        );
    }

    // `kiln targets` shows what the agent attaches, pod metadata included.
    let targets = std::process::Command::new(kiln_bin())
        .args([
            "targets",
            "--kube-api-server",
            &api.url,
            "--node-name",
            &node,
        ])
        .args(["--pid", &pid_a.to_string()])
        .output()
        .expect("run kiln targets");
    let text = String::from_utf8_lossy(&targets.stdout);
    assert!(
        targets.status.success(),
        "kiln targets: {}\n{text}",
        String::from_utf8_lossy(&targets.stderr)
    );
    for want in [
        "namespace=\"shop\"",
        "pod=\"checkout-5f7d9-x2x4q\"",
        "service_name=\"shop/checkout\"",
        "zone=\"eu-west-1b\"",
        "__meta_kubernetes_pod_label_app_kubernetes_io_name=\"checkout\"",
    ] {
        assert!(text.contains(want), "kiln targets lacks {want}:\n{text}");
    }

    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("kubernetes: node"),
        "startup sync logged:\n{log}"
    );
    drop((child_a, child_b));
}
