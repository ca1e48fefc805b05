//! The metadata index against a local fake API server: initial list, watch
//! events (ADDED, MODIFIED, DELETED, BOOKMARK), a watch the server drops
//! (resumed from the last resourceVersion), and a 410 Gone (relist that
//! removes stale pods).

use std::time::Duration;

use kiln_kube::KubeConfig;
use kiln_testkit::kube::*;
use kiln_testkit::{random_container_id, random_pod_uid};
use serde_json::json;

const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_drop_resume_and_relist() {
    let mut api = FakeApiServer::start().await;
    let (uid_a, uid_b, uid_c, uid_d, uid_e) = (
        random_pod_uid(),
        random_pod_uid(),
        random_pod_uid(),
        random_pod_uid(),
        random_pod_uid(),
    );
    let ids: Vec<String> = (0..7).map(|_| random_container_id()).collect();
    let pod_a = |rv: &str, version: &str| {
        pod_json(
            &uid_a,
            "shop",
            "api-7d9f-x2x",
            rv,
            NODE,
            &[
                Container {
                    name: "api",
                    id: &ids[0],
                },
                Container {
                    name: "envoy",
                    id: &ids[1],
                },
            ],
            json!({"app": "api", "version": version, "pod-template-hash": "7d9f"}),
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"}),
        )
    };
    let pod_b = pod_json(
        &uid_b,
        "shop",
        "worker-0",
        "101",
        NODE,
        &[Container {
            name: "worker",
            id: &ids[2],
        }],
        json!({"app": "worker"}),
        json!({"pyroscope.io/service-name": "shop-worker"}),
    );
    api.set_pods("120", vec![pod_a("100", "v1"), pod_b.clone()]);
    api.set_nodes("50", vec![node_json(NODE, "50", "eu-west-1", "eu-west-1a")]);

    let meta = kiln_kube::start(KubeConfig::with_url(NODE, &api.url))
        .await
        .expect("start");
    let pod_watch = api.next_pod_watch().await;
    let node_watch = api.next_node_watch().await;
    assert_eq!(
        pod_watch.resource_version(),
        Some("120"),
        "watch starts at the list's resourceVersion"
    );
    assert_eq!(
        pod_watch.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(
        node_watch.query.get("fieldSelector").map(String::as_str),
        Some("metadata.name=node-a")
    );
    assert!(meta.wait_synced(WAIT).await, "initial lists complete");
    eprintln!("requests: {:#?}", api.requests());

    // Initial list.
    let (pod, c) = meta.container(&ids[0]).expect("pod A's api container");
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str(), c.name.as_str()),
        ("shop", "api-7d9f-x2x", "api")
    );
    assert_eq!(pod.labels.get("version").map(String::as_str), Some("v1"));
    assert!(
        !pod.labels.contains_key("pod-template-hash"),
        "not allow-listed"
    );
    assert!(
        pod.annotations.is_empty(),
        "last-applied-configuration is not allow-listed"
    );
    assert_eq!(
        meta.container(&format!("containerd://{}", ids[1]))
            .unwrap()
            .1
            .name,
        "envoy"
    );
    assert_eq!(meta.pod(&uid_b).expect("pod B").name, "worker-0");
    let node = meta.node().expect("node listed");
    assert_eq!(node.labels["topology.kubernetes.io/region"], "eu-west-1");
    assert!(
        !node.labels.contains_key("kubernetes.io/hostname"),
        "not allow-listed"
    );
    let s = meta.stats();
    assert_eq!((s.pods_indexed, s.containers_indexed, s.relists), (2, 3, 2));

    // Watch events: ADDED C, MODIFIED A (new label value), DELETED B, BOOKMARK.
    let pod_c = pod_json(
        &uid_c,
        "batch",
        "report-1",
        "121",
        NODE,
        &[Container {
            name: "report",
            id: &ids[3],
        }],
        json!({}),
        json!({}),
    );
    let g = meta.generation();
    pod_watch.send("ADDED", pod_c.clone());
    pod_watch.send("MODIFIED", pod_a("122", "v2"));
    let mut deleted_b = pod_b.clone();
    deleted_b["metadata"]["resourceVersion"] = json!("123");
    pod_watch.send("DELETED", deleted_b);
    pod_watch.send(
        "BOOKMARK",
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "130"}}),
    );
    eventually("ADDED, MODIFIED, DELETED applied", WAIT, || {
        meta.pod(&uid_c).is_some()
            && meta.pod(&uid_b).is_none()
            && meta
                .pod(&uid_a)
                .is_some_and(|p| p.labels["version"] == "v2")
    })
    .await;
    assert!(
        meta.container(&ids[2]).is_none(),
        "deleted pod's container is gone"
    );
    assert!(meta.generation() > g, "subscribers hear about changes");

    // The node is relabeled: the zone changes.
    node_watch.send("MODIFIED", node_json(NODE, "51", "eu-west-1", "eu-west-1b"));
    eventually("node zone updated", WAIT, || {
        meta.node()
            .is_some_and(|n| n.labels["topology.kubernetes.io/zone"] == "eu-west-1b")
    })
    .await;

    // The server drops the pod watch; the client resumes from the bookmark.
    drop(pod_watch);
    let pod_watch = api.next_pod_watch().await;
    assert_eq!(
        pod_watch.resource_version(),
        Some("130"),
        "a dropped watch resumes from the last resourceVersion seen (the bookmark)"
    );
    let pod_d = pod_json(
        &uid_d,
        "shop",
        "cart-0",
        "131",
        NODE,
        &[Container {
            name: "cart",
            id: &ids[4],
        }],
        json!({"app.kubernetes.io/name": "cart"}),
        json!({"kiln.dev/service-name": "cart-svc"}),
    );
    pod_watch.send("ADDED", pod_d.clone());
    eventually("pod added after the drop appears", WAIT, || {
        meta.container(&ids[4]).is_some()
    })
    .await;
    assert!(meta.stats().watch_restarts >= 1);
    assert_eq!(meta.stats().relists, 2, "a dropped watch does not relist");

    // The resourceVersion expired (410 Gone): the client relists. In the
    // meantime C was deleted (no event seen) and E was added.
    let pod_e = pod_json(
        &uid_e,
        "shop",
        "search-0",
        "140",
        NODE,
        &[Container {
            name: "search",
            id: &ids[5],
        }],
        json!({}),
        json!({}),
    );
    api.set_pods("141", vec![pod_a("122", "v2"), pod_d, pod_e]);
    pod_watch.send_error(410, "Expired", "too old resource version: 131 (135)");
    let pod_watch = api.next_pod_watch().await;
    assert_eq!(
        pod_watch.resource_version(),
        Some("141"),
        "watch from the relist's version"
    );
    eventually("relist replaces the index", WAIT, || {
        meta.pod(&uid_e).is_some() && meta.pod(&uid_c).is_none()
    })
    .await;
    assert!(
        meta.container(&ids[3]).is_none(),
        "stale pod's container is gone"
    );
    let s = meta.stats();
    assert_eq!(s.pods_indexed, 3);
    assert_eq!(s.containers_indexed, 4);
    assert_eq!(s.stale_pods_removed, 1);
    assert_eq!(s.relists, 3);
    assert!(s.watch_errors >= 1, "the 410 is counted");
    assert!(s.watch_restarts >= 2);
    assert!(s.pod_events >= 8, "{s:?}");

    // The node is deleted: node labels go away.
    node_watch.send("DELETED", node_json(NODE, "60", "eu-west-1", "eu-west-1b"));
    eventually("node deleted", WAIT, || meta.node().is_none()).await;
    drop(node_watch);
    drop(pod_watch);
}

#[tokio::test]
async fn bad_inputs_are_reported() {
    let err = kiln_kube::start(KubeConfig::with_url("", "http://127.0.0.1:1")).await;
    // NODE_NAME may be set in the environment of a pod running the tests.
    if std::env::var_os("NODE_NAME").is_none() {
        assert!(matches!(err, Err(kiln_kube::Error::NoNodeName)), "{err:?}");
    }
    let err = kiln_kube::start(KubeConfig::with_url("n", "not a url")).await;
    assert!(
        matches!(err, Err(kiln_kube::Error::BadUrl { .. })),
        "{err:?}"
    );
    let err = kiln_kube::start(KubeConfig {
        api: kiln_kube::ApiSource::Kubeconfig("/nonexistent/kubeconfig".into()),
        ..KubeConfig::new("n")
    })
    .await;
    assert!(matches!(err, Err(kiln_kube::Error::Config(_))), "{err:?}");
}
