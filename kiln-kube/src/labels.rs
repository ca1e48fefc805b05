//! Meta label names (as Prometheus' `kubernetes_sd` role `pod` and `node`
//! name them), label-name sanitizing and key allow-lists.

use std::collections::BTreeSet;

/// `metadata.namespace` of the pod.
pub const NAMESPACE: &str = "__meta_kubernetes_namespace";
/// `metadata.name` of the pod.
pub const POD_NAME: &str = "__meta_kubernetes_pod_name";
/// `metadata.uid` of the pod (the cgroup path already yields it).
pub const POD_UID: &str = "__meta_kubernetes_pod_uid";
/// `spec.nodeName`.
pub const POD_NODE_NAME: &str = "__meta_kubernetes_pod_node_name";
/// Kind of the controlling owner, e.g. `ReplicaSet`, `DaemonSet`.
pub const POD_CONTROLLER_KIND: &str = "__meta_kubernetes_pod_controller_kind";
/// Name of the controlling owner.
pub const POD_CONTROLLER_NAME: &str = "__meta_kubernetes_pod_controller_name";
/// Container name (Prometheus' name). kiln-labels' default rules read
/// [`kiln_labels::meta::KUBERNETES_CONTAINER_NAME`], which is set too.
pub const POD_CONTAINER_NAME: &str = "__meta_kubernetes_pod_container_name";
/// Container id without the runtime scheme.
pub const POD_CONTAINER_ID: &str = "__meta_kubernetes_pod_container_id";
/// Container image.
pub const POD_CONTAINER_IMAGE: &str = "__meta_kubernetes_pod_container_image";
/// `true` for init containers.
pub const POD_CONTAINER_INIT: &str = "__meta_kubernetes_pod_container_init";
/// Prefix of allow-listed pod labels.
pub const POD_LABEL_PREFIX: &str = "__meta_kubernetes_pod_label_";
/// Prefix of `true` markers for allow-listed pod labels.
pub const POD_LABELPRESENT_PREFIX: &str = "__meta_kubernetes_pod_labelpresent_";
/// Prefix of allow-listed pod annotations.
pub const POD_ANNOTATION_PREFIX: &str = "__meta_kubernetes_pod_annotation_";
/// Name of this node.
pub const NODE_NAME: &str = "__meta_kubernetes_node_name";
/// Prefix of allow-listed node labels.
pub const NODE_LABEL_PREFIX: &str = "__meta_kubernetes_node_label_";

/// Replaces every character outside `[a-zA-Z0-9_]` with `_`, as
/// Prometheus does for label and annotation keys:
/// `topology.kubernetes.io/region` → `topology_kubernetes_io_region`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Which label or annotation keys to keep. Keys match after sanitizing, so
/// `pyroscope.io/service_name` also admits `pyroscope.io/service-name`;
/// `*` admits every key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    all: bool,
    keys: BTreeSet<String>,
}

impl AllowList {
    /// An allow-list of these keys (`*` for all).
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Self::default();
        for k in keys {
            let k = k.as_ref();
            if k == "*" {
                list.all = true;
            } else if !k.is_empty() {
                list.keys.insert(sanitize_label_name(k));
            }
        }
        list
    }

    /// Whether `key` is admitted.
    pub fn allows(&self, key: &str) -> bool {
        self.all || self.keys.contains(&sanitize_label_name(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing() {
        assert_eq!(
            sanitize_label_name("topology.kubernetes.io/region"),
            "topology_kubernetes_io_region"
        );
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(
            sanitize_label_name("kiln.dev/service-name"),
            "kiln_dev_service_name"
        );
        assert_eq!(sanitize_label_name("a_B9"), "a_B9");
        assert_eq!(sanitize_label_name("é"), "_");
    }

    #[test]
    fn allow_list() {
        let l = AllowList::new(["pyroscope.io/service_name", "app"]);
        assert!(l.allows("pyroscope.io/service-name"));
        assert!(l.allows("app"));
        assert!(!l.allows("apps"));
        assert!(AllowList::new(["*"]).allows("anything"));
        assert!(!AllowList::default().allows("x"));
    }
}
