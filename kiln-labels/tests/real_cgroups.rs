//! Root-only: real cgroups in the v2 unified hierarchy and v1 hierarchies,
//! a real child process moved into them, discovered through the real /proc.
//!
//! Each test builds its own `kiln-test-<pid>-<random>` subtree, so tests
//! can run in parallel and alongside other runs; guards kill the child and
//! remove the cgroups even when an assertion fails (locals drop in reverse
//! order: child first, then the tree).

use std::sync::Arc;

use kiln_labels::targets::format_target;
use kiln_labels::{AgentConfig, Discoverer, Labels, MetaLabelProvider, Target, Workload};
use kiln_testkit::{
    random_container_id, random_pod_uid, skip_unless, skip_unless_root, CgroupTree, ChildGuard,
    SECRET_VALUE, UNIFIED,
};

fn discoverer(extra_toml: &str) -> Discoverer {
    let config =
        AgentConfig::from_toml_str(&format!("[env_labels]\nREGION = \"region\"\n{extra_toml}"))
            .expect("valid config");
    Discoverer::new(config.discovery_options().expect("options")).expect("discoverer")
}

/// Everything a caller can see of a target must be free of the secret,
/// of the names of non-allowed variables, and of the command line.
fn assert_no_leak(target: &Target) {
    let debug = format!("{target:?}");
    let shown = format_target(target);
    for text in [&debug, &shown] {
        assert!(!text.contains(SECRET_VALUE), "secret leaked: {text}");
        assert!(!text.contains("SECRET"), "non-allowed name leaked: {text}");
        assert!(!text.contains("XREGION"), "non-allowed name leaked: {text}");
        assert!(!text.contains("/usr/bin:/bin"), "PATH leaked: {text}");
        assert!(!text.contains("cmdline"), "cmdline not enabled: {text}");
    }
}

/// Common expectations for a `sleep` child carrying REGION=us-west-1.
fn assert_sleep_basics(target: &Target, pid: u32, cgroup_path: &str) {
    let meta = target.meta_labels();
    assert_eq!(meta["__meta_process_pid"], pid.to_string());
    assert_eq!(meta["__meta_process_comm"], "sleep");
    assert_eq!(meta["__meta_process_executable_name"], "sleep");
    assert!(meta["__meta_process_executable_path"].ends_with("/sleep"));
    assert_eq!(meta["__meta_cgroup_path"], cgroup_path);
    assert_eq!(meta["__meta_env_var_REGION"], "us-west-1");
    let labels = target.labels();
    assert_eq!(labels["region"], "us-west-1");
    assert_eq!(labels["service_name"], "sleep");
    assert_eq!(labels["process"], "sleep");
    assert!(
        labels.keys().all(|k| !k.starts_with("__")),
        "meta labels must not survive: {labels:?}"
    );
    assert_no_leak(target);
}

/// Creates `relative` under a fresh tree in `mount`, moves a new sleep
/// child there and discovers it.
fn run_in_cgroup(mount: &str, relative: &str, check: impl FnOnce(&Target, &str)) {
    let mut tree = CgroupTree::new(mount);
    let path = tree.create(relative);
    let child = ChildGuard::sleep_with_secret();
    tree.move_into(&path, child.pid());
    let mut d = discoverer("");
    let target = d
        .target(child.pid())
        .unwrap_or_else(|| panic!("no target for live child; stats {:?}", d.stats()));
    assert_sleep_basics(&target, child.pid(), &path);
    check(&target, &path);
}

fn skip(test: &str, mount: &str) -> bool {
    if skip_unless_root(test) {
        return true;
    }
    let why = format!("no cgroup hierarchy at {mount}");
    skip_unless(CgroupTree::available(mount), test, &why)
}

fn assert_container(target: &Target, id: &str) {
    assert_eq!(target.meta_labels()["__meta_container_id"], id);
    assert_eq!(target.labels()["container_id"], id);
}

fn assert_pod(target: &Target, uid: &str, qos: &str) {
    assert_eq!(target.meta_labels()["__meta_kubernetes_pod_uid"], uid);
    assert_eq!(target.meta_labels()["__meta_kubernetes_pod_qos_class"], qos);
    assert_eq!(target.labels()["pod_uid"], uid);
    assert_eq!(target.labels()["qos_class"], qos);
}

fn assert_no_pod(target: &Target) {
    assert!(!target
        .meta_labels()
        .contains_key("__meta_kubernetes_pod_uid"));
    assert!(!target.labels().contains_key("pod_uid"));
    assert!(!target.labels().contains_key("qos_class"));
}

#[test]
fn v2_docker_cgroupfs() {
    if skip("v2_docker_cgroupfs", UNIFIED) {
        return;
    }
    let id = random_container_id();
    run_in_cgroup(UNIFIED, &format!("docker/{id}"), |t, _| {
        assert_container(t, &id);
        assert_no_pod(t);
    });
}

#[test]
fn v2_docker_systemd_scope() {
    if skip("v2_docker_systemd_scope", UNIFIED) {
        return;
    }
    let id = random_container_id();
    run_in_cgroup(
        UNIFIED,
        &format!("system.slice/docker-{id}.scope"),
        |t, _| assert_container(t, &id),
    );
}

#[test]
fn v2_kubepods_cgroupfs_burstable() {
    if skip("v2_kubepods_cgroupfs_burstable", UNIFIED) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    run_in_cgroup(
        UNIFIED,
        &format!("kubepods/burstable/pod{uid}/{id}"),
        |t, _| {
            assert_container(t, &id);
            assert_pod(t, &uid, "burstable");
        },
    );
}

#[test]
fn v2_kubepods_cgroupfs_guaranteed_directly_under_kubepods() {
    if skip("v2_kubepods_cgroupfs_guaranteed", UNIFIED) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    run_in_cgroup(UNIFIED, &format!("kubepods/pod{uid}/{id}"), |t, _| {
        assert_container(t, &id);
        assert_pod(t, &uid, "guaranteed");
    });
}

#[test]
fn v2_kubepods_systemd_cri_containerd_besteffort() {
    if skip("v2_kubepods_systemd_cri_containerd", UNIFIED) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    let underscored = uid.replace('-', "_");
    run_in_cgroup(
        UNIFIED,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod{underscored}.slice/cri-containerd-{id}.scope"
        ),
        |t, _| {
            assert_container(t, &id);
            // Normalized from the systemd slice's underscores.
            assert_pod(t, &uid, "besteffort");
        },
    );
}

#[test]
fn v2_kubepods_systemd_crio_burstable() {
    if skip("v2_kubepods_systemd_crio", UNIFIED) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    let underscored = uid.replace('-', "_");
    run_in_cgroup(
        UNIFIED,
        &format!(
            "kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod{underscored}.slice/crio-{id}.scope"
        ),
        |t, _| {
            assert_container(t, &id);
            assert_pod(t, &uid, "burstable");
        },
    );
}

#[test]
fn v2_podman_libpod_scope() {
    if skip("v2_podman_libpod_scope", UNIFIED) {
        return;
    }
    let id = random_container_id();
    run_in_cgroup(
        UNIFIED,
        &format!("machine.slice/libpod-{id}.scope"),
        |t, _| {
            assert_container(t, &id);
            assert_no_pod(t);
        },
    );
}

#[test]
fn v2_plain_cgroup_has_no_container() {
    if skip("v2_plain_cgroup_has_no_container", UNIFIED) {
        return;
    }
    run_in_cgroup(UNIFIED, "system.slice/cron.service", |t, _| {
        assert!(!t.meta_labels().contains_key("__meta_container_id"));
        assert!(!t.labels().contains_key("container_id"));
        assert_no_pod(t);
    });
}

#[test]
fn v1_pids_hierarchy_docker() {
    const PIDS: &str = "/sys/fs/cgroup/pids";
    if skip("v1_pids_hierarchy_docker", PIDS) {
        return;
    }
    // The unified path stays where the test runs; only the v1 pids
    // hierarchy names the container, and discovery must still find it.
    let id = random_container_id();
    run_in_cgroup(PIDS, &format!("docker/{id}"), |t, _| {
        assert_container(t, &id);
    });
}

#[test]
fn v1_systemd_hierarchy_kubepods_guaranteed_slice() {
    const SYSTEMD: &str = "/sys/fs/cgroup/systemd";
    if skip("v1_systemd_hierarchy_kubepods", SYSTEMD) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    let underscored = uid.replace('-', "_");
    run_in_cgroup(
        SYSTEMD,
        &format!("kubepods.slice/kubepods-pod{underscored}.slice/cri-containerd-{id}.scope"),
        |t, _| {
            assert_container(t, &id);
            assert_pod(t, &uid, "guaranteed");
        },
    );
}

/// A stand-in for the Kubernetes watcher: knows one pod by UID.
struct FakeKubernetes {
    pod_uid: String,
}

impl MetaLabelProvider for FakeKubernetes {
    fn meta_labels(&self, workload: &Workload<'_>) -> Labels {
        let mut labels = Labels::new();
        if workload.pod_uid == Some(self.pod_uid.as_str()) {
            for (k, v) in [
                ("__meta_kubernetes_namespace", "shop"),
                ("__meta_kubernetes_pod_name", "checkout-7d9f"),
                ("__meta_kubernetes_container_name", "api"),
                // Not a meta label: must be ignored.
                ("service_name", "hijacked"),
                // Must not override what /proc says.
                ("__meta_process_comm", "hijacked"),
            ] {
                labels.insert(k.into(), v.into());
            }
        }
        labels
    }
}

#[test]
fn provider_labels_drive_service_name_and_pod_labels() {
    if skip("provider_labels_drive_service_name", UNIFIED) {
        return;
    }
    let (id, uid) = (random_container_id(), random_pod_uid());
    let mut tree = CgroupTree::new(UNIFIED);
    let path = tree.create(&format!("kubepods/burstable/pod{uid}/{id}"));
    let child = ChildGuard::sleep_with_secret();
    tree.move_into(&path, child.pid());

    let mut d = discoverer("");
    let before = d.target(child.pid()).expect("target");
    assert_eq!(before.labels()["service_name"], "sleep");
    // Registering a provider invalidates the cache, so the next lookup sees it.
    d.add_provider(Arc::new(FakeKubernetes {
        pod_uid: uid.clone(),
    }));
    let t = d.target(child.pid()).expect("target");
    let labels = t.labels();
    assert_eq!(labels["service_name"], "shop/api");
    assert_eq!(labels["namespace"], "shop");
    assert_eq!(labels["pod"], "checkout-7d9f");
    assert_eq!(labels["container"], "api");
    assert_eq!(t.meta_labels()["__meta_process_comm"], "sleep");
    assert_ne!(before.series_key(), t.series_key());
    assert_no_leak(&t);
}

#[test]
fn relabel_drop_by_container_and_cache_refresh_on_exec() {
    if skip("relabel_drop_by_container", UNIFIED) {
        return;
    }
    let dropped_id = random_container_id();
    let kept_id = random_container_id();
    let mut tree = CgroupTree::new(UNIFIED);
    let dropped_path = tree.create(&format!("docker/{dropped_id}"));
    let kept_path = tree.create(&format!("docker/{kept_id}"));
    let child = ChildGuard::sleep_with_secret();
    tree.move_into(&dropped_path, child.pid());

    let mut d = discoverer(&format!(
        "[[relabel_configs]]\nsource_labels = [\"__meta_container_id\"]\n\
         regex = \"{dropped_id}\"\naction = \"drop\"\n\
         [[relabel_configs]]\nsource_labels = [\"__meta_process_pid\"]\ntarget_label = \"pid\"\n"
    ));
    assert!(d.target(child.pid()).is_none(), "dropped by rule");
    let shown = d.lookup(child.pid()).expect("lookup still describes it");
    assert!(shown.is_dropped());
    assert!(shown.labels().is_empty());
    assert_eq!(d.stats().dropped, 1);

    // The cache keeps the decision until told the process changed.
    tree.move_into(&kept_path, child.pid());
    assert!(d.target(child.pid()).is_none(), "cached decision");
    let t = d
        .refresh_on_exec(child.pid())
        .expect("re-read after refresh");
    assert_container(&t, &kept_id);
    assert_eq!(t.labels()["pid"], child.pid().to_string(), "user rule ran");
    assert_no_leak(&t);
}
