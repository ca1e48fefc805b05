//! Root-only: real processes in real kubepods cgroups, labeled by
//! `kiln_labels::Discoverer` with the Kubernetes provider fed by a local
//! fake API server.

use std::sync::Arc;
use std::time::Duration;

use kiln_kube::KubeConfig;
use kiln_labels::{Discoverer, DiscoveryOptions};
use kiln_testkit::kube::*;
use kiln_testkit::{
    cgroup2_mount, random_container_id, random_pod_uid, skip_unless, skip_unless_root, CgroupTree,
    ChildGuard,
};
use serde_json::json;

const NODE: &str = "node-b";
const WAIT: Duration = Duration::from_secs(15);

fn kubepods_path(uid: &str, container_id: &str) -> String {
    let u = uid.replace('-', "_");
    format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/\
         cri-containerd-{container_id}.scope"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discoverer_labels_processes_in_pod_cgroups() {
    const TEST: &str = "discoverer_labels_processes_in_pod_cgroups";
    if skip_unless_root(TEST) {
        return;
    }
    let mount = cgroup2_mount();
    if skip_unless(mount.is_some(), TEST, "no cgroup v2 hierarchy") {
        return;
    }
    let mount = mount.unwrap();
    let mut api = FakeApiServer::start().await;
    let (uid_api, uid_worker) = (random_pod_uid(), random_pod_uid());
    let (id_api, id_envoy, id_worker, id_pause) = (
        random_container_id(),
        random_container_id(),
        random_container_id(),
        random_container_id(),
    );
    api.set_pods(
        "10",
        vec![
            pod_json(
                &uid_api,
                "shop",
                "api-7d9f-x2x",
                "8",
                NODE,
                &[
                    Container {
                        name: "api",
                        id: &id_api,
                    },
                    Container {
                        name: "envoy",
                        id: &id_envoy,
                    },
                ],
                json!({"app.kubernetes.io/name": "api", "team": "payments"}),
                json!({}),
            ),
            pod_json(
                &uid_worker,
                "jobs",
                "worker-0",
                "9",
                NODE,
                &[Container {
                    name: "worker",
                    id: &id_worker,
                }],
                json!({}),
                json!({"pyroscope.io/service-name": "jobs-worker"}),
            ),
        ],
    );
    api.set_nodes("5", vec![node_json(NODE, "5", "us-east-2", "us-east-2c")]);
    let meta = kiln_kube::start(KubeConfig::with_url(NODE, &api.url))
        .await
        .expect("start");
    let _pod_watch = api.next_pod_watch().await;
    let node_watch = api.next_node_watch().await;
    assert!(meta.wait_synced(WAIT).await);

    // Declared first so they drop last: children die before their cgroups go.
    let mut tree = CgroupTree::new(mount);
    let api_cg = tree.create(&kubepods_path(&uid_api, &id_api));
    let worker_cg = tree.create(&kubepods_path(&uid_worker, &id_worker));
    // The sandbox (pause) container of the api pod: not in containerStatuses.
    let pause_cg = tree.create(&kubepods_path(&uid_api, &id_pause));
    let host_cg = tree.create("system.slice/host-daemon.service");
    let children = [
        ChildGuard::sleep(),
        ChildGuard::sleep(),
        ChildGuard::sleep(),
        ChildGuard::sleep(),
    ];
    for (child, cg) in children
        .iter()
        .zip([&api_cg, &worker_cg, &pause_cg, &host_cg])
    {
        tree.move_into(cg, child.pid());
    }

    let mut discoverer = Discoverer::new(DiscoveryOptions {
        hostname: Some("host-1".into()),
        ..DiscoveryOptions::default()
    })
    .expect("discoverer");
    discoverer.add_provider(Arc::clone(&meta) as Arc<dyn kiln_labels::MetaLabelProvider>);

    let labels = |d: &mut Discoverer, pid: u32| {
        d.target(pid)
            .unwrap_or_else(|| panic!("target for pid {pid}"))
            .labels()
            .clone()
    };
    let l = labels(&mut discoverer, children[0].pid());
    eprintln!("api container: {l:?}");
    assert_eq!(l["namespace"], "shop");
    assert_eq!(l["pod"], "api-7d9f-x2x");
    assert_eq!(l["container"], "api");
    assert_eq!(l["region"], "us-east-2");
    assert_eq!(l["zone"], "us-east-2c");
    assert_eq!(
        l["service_name"], "shop/api",
        "namespace/container as Grafana's agent"
    );
    assert_eq!(l["pod_uid"], uid_api);
    assert_eq!(l["container_id"], id_api);
    assert_eq!(l["qos_class"], "burstable");
    assert!(
        l.keys().all(|k| !k.starts_with("__")),
        "no meta labels leak"
    );
    let t = discoverer.target(children[0].pid()).unwrap();
    assert_eq!(
        t.meta_labels()["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "api"
    );
    assert!(
        !t.meta_labels()
            .contains_key("__meta_kubernetes_pod_label_team"),
        "not allow-listed"
    );
    assert_eq!(
        t.meta_labels()["__meta_kubernetes_pod_container_name"],
        "api"
    );
    assert_eq!(t.meta_labels()["__meta_kubernetes_node_name"], NODE);

    let l = labels(&mut discoverer, children[1].pid());
    eprintln!("worker container: {l:?}");
    assert_eq!(
        (
            l["namespace"].as_str(),
            l["pod"].as_str(),
            l["container"].as_str()
        ),
        ("jobs", "worker-0", "worker")
    );
    assert_eq!(
        l["service_name"], "jobs-worker",
        "the pyroscope.io annotation names the service"
    );

    let l = labels(&mut discoverer, children[2].pid());
    eprintln!("pause container: {l:?}");
    assert_eq!(
        (l["namespace"].as_str(), l["pod"].as_str()),
        ("shop", "api-7d9f-x2x")
    );
    assert!(
        !l.contains_key("container"),
        "sandbox is no named container"
    );
    assert_eq!(l["service_name"], "shop/api-7d9f-x2x");

    let l = labels(&mut discoverer, children[3].pid());
    eprintln!("host process: {l:?}");
    assert!(!l.contains_key("namespace") && !l.contains_key("pod"));
    assert_eq!(
        l["region"], "us-east-2",
        "node labels apply to host processes too"
    );
    assert_eq!(l["service_name"], "sleep");

    // A node relabel reaches new lookups once the agent invalidates its cache.
    let mut changes = meta.subscribe();
    node_watch.send("MODIFIED", node_json(NODE, "6", "us-east-2", "us-east-2a"));
    tokio::time::timeout(WAIT, changes.changed())
        .await
        .expect("change notified")
        .unwrap();
    discoverer.invalidate_all();
    assert_eq!(
        labels(&mut discoverer, children[0].pid())["zone"],
        "us-east-2a"
    );
    assert!(meta.stats().lookups_hit >= 3);
    drop(children);
}
