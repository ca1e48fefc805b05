//! Kubernetes API objects shaped like the API server's, for tests of pod and node
//! metadata, and (feature `kube`) a fake API server driven step by step by the test.

use serde_json::{json, Value};

use crate::random_pod_uid;

#[cfg(feature = "kube")]
mod fake_api;
#[cfg(feature = "kube")]
pub use fake_api::{eventually, FakeApiServer, Watch};

/// A container status as the kubelet reports it.
pub struct Container<'a> {
    pub name: &'a str,
    pub id: &'a str,
}

/// A Pod object shaped like the API server's.
#[allow(clippy::too_many_arguments)] // mirrors the fields a test varies
pub fn pod_json(
    uid: &str,
    namespace: &str,
    name: &str,
    resource_version: &str,
    node: &str,
    containers: &[Container<'_>],
    labels: Value,
    annotations: Value,
) -> Value {
    let specs: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": format!("registry.example/{}:1.0", c.name),
                        "resources": {}})
        })
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "ready": true, "restartCount": 0, "started": true,
                "image": format!("registry.example/{}:1.0", c.name),
                "imageID": format!("registry.example/{}@sha256:{}", c.name, "0".repeat(64)),
                "containerID": format!("containerd://{}", c.id),
                "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}}
            })
        })
        .collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": resource_version,
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-rs"), "uid": random_pod_uid(),
                "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "nodeName": node,
            "containers": specs,
            "restartPolicy": "Always",
            "serviceAccountName": "default"
        },
        "status": {
            "phase": "Running",
            "qosClass": "Burstable",
            "hostIP": "10.0.0.1",
            "podIP": "10.1.0.7",
            "containerStatuses": statuses
        }
    })
}

/// A Node object with topology labels.
pub fn node_json(name: &str, resource_version: &str, region: &str, zone: &str) -> Value {
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": random_pod_uid(),
            "resourceVersion": resource_version,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/region": region,
                "topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": "m5.large"
            }
        },
        "spec": {"podCIDR": "10.1.0.0/24"},
        "status": {"nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://1.7.0",
            "architecture": "amd64", "bootID": "", "kernelVersion": "6.1.0", "kubeProxyVersion": "",
            "machineID": "", "operatingSystem": "linux", "osImage": "Debian", "systemUUID": ""}}
    })
}
