//! The in-memory index of this node's pods and the node itself, fed by
//! watch events. Pure data structure: no I/O, so it is unit-tested directly.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::labels::{sanitize_label_name, AllowList};

/// What is known about one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Container name from the pod spec.
    pub name: String,
    /// Container id without the runtime scheme (`containerd://` etc.).
    pub id: String,
    /// Image as reported in the container status (or the spec).
    pub image: String,
    /// Whether it is an init container.
    pub init: bool,
    /// Whether it is an ephemeral (debug) container.
    pub ephemeral: bool,
}

/// What is known about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// Allow-listed labels, raw keys.
    pub labels: BTreeMap<String, String>,
    /// Allow-listed annotations, raw keys.
    pub annotations: BTreeMap<String, String>,
    /// Kind and name of the controlling owner (e.g. `ReplicaSet`, `api-7d9f`).
    pub controller: Option<(String, String)>,
    /// Containers that have a container id (i.e. were started).
    pub containers: Vec<ContainerMeta>,
    /// `metadata.resourceVersion` of the object this was built from.
    pub resource_version: String,
}

/// What is known about the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeMeta {
    /// `metadata.name`.
    pub name: String,
    /// Allow-listed labels, raw keys.
    pub labels: BTreeMap<String, String>,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
}

/// Strips the runtime scheme from a `containerID` status field:
/// `containerd://abc` → `abc`, `cri-o://abc` → `abc`, `docker://abc` → `abc`.
pub fn strip_container_id_scheme(id: &str) -> &str {
    id.split_once("://").map_or(id, |(_, rest)| rest)
}

/// Which pod and node labels and annotations are kept.
#[derive(Debug, Clone)]
pub struct Filters {
    pub pod_labels: AllowList,
    pub pod_annotations: AllowList,
    pub node_labels: AllowList,
}

fn filter(map: Option<&BTreeMap<String, String>>, allow: &AllowList) -> BTreeMap<String, String> {
    map.into_iter()
        .flatten()
        .filter(|(k, _)| allow.allows(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl PodMeta {
    /// Builds the entry for a pod object; `None` without a UID.
    pub fn from_pod(pod: &Pod, filters: &Filters) -> Option<Self> {
        let md = &pod.metadata;
        let uid = md.uid.clone().filter(|u| !u.is_empty())?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut images: HashMap<&str, &str> = HashMap::new();
        if let Some(spec) = spec {
            for c in spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
            {
                images.insert(&c.name, c.image.as_deref().unwrap_or(""));
            }
            for c in spec.ephemeral_containers.iter().flatten() {
                images.insert(&c.name, c.image.as_deref().unwrap_or(""));
            }
        }
        let mut containers = Vec::new();
        if let Some(status) = status {
            let groups = [
                (status.container_statuses.as_ref(), false, false),
                (status.init_container_statuses.as_ref(), true, false),
                (status.ephemeral_container_statuses.as_ref(), false, true),
            ];
            for (statuses, init, ephemeral) in groups {
                for cs in statuses.into_iter().flatten() {
                    let Some(raw) = cs.container_id.as_deref().filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    let image = if cs.image.is_empty() {
                        images.get(cs.name.as_str()).copied().unwrap_or("")
                    } else {
                        &cs.image
                    };
                    containers.push(ContainerMeta {
                        name: cs.name.clone(),
                        id: strip_container_id_scheme(raw).to_owned(),
                        image: image.to_owned(),
                        init,
                        ephemeral,
                    });
                    // A restarted container's previous instance can still
                    // have live processes for a moment; keep its id too.
                    if let Some(prev) = cs
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .and_then(|t| t.container_id.as_deref())
                        .filter(|s| !s.is_empty())
                    {
                        containers.push(ContainerMeta {
                            name: cs.name.clone(),
                            id: strip_container_id_scheme(prev).to_owned(),
                            image: image.to_owned(),
                            init,
                            ephemeral,
                        });
                    }
                }
            }
        }
        let controller = md
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| (o.kind.clone(), o.name.clone()));
        Some(Self {
            uid,
            namespace: md.namespace.clone().unwrap_or_default(),
            name: md.name.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            labels: filter(md.labels.as_ref(), &filters.pod_labels),
            annotations: filter(md.annotations.as_ref(), &filters.pod_annotations),
            controller,
            containers,
            resource_version: md.resource_version.clone().unwrap_or_default(),
        })
    }
}

impl NodeMeta {
    /// Builds the entry for a node object.
    pub fn from_node(node: &Node, filters: &Filters) -> Self {
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: filter(node.metadata.labels.as_ref(), &filters.node_labels),
            resource_version: node.metadata.resource_version.clone().unwrap_or_default(),
        }
    }
}

/// Pods by UID and containers by id.
#[derive(Debug, Default)]
pub struct PodIndex {
    pods: HashMap<String, Arc<PodMeta>>,
    /// container id → (pod uid, position in `containers`)
    containers: HashMap<String, (String, usize)>,
    /// Pods listed since the last `Init`; swapped in on `InitDone`.
    relist: Option<HashMap<String, Arc<PodMeta>>>,
}

impl PodIndex {
    /// Inserts or replaces a pod. Returns whether anything changed.
    pub fn apply(&mut self, pod: PodMeta) -> bool {
        if self.pods.get(&pod.uid).is_some_and(|p| **p == pod) {
            return false;
        }
        self.remove(&pod.uid.clone());
        self.insert(Arc::new(pod));
        true
    }

    fn insert(&mut self, pod: Arc<PodMeta>) {
        for (i, c) in pod.containers.iter().enumerate() {
            self.containers.insert(c.id.clone(), (pod.uid.clone(), i));
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// Removes a pod by UID. Returns whether it was present.
    pub fn remove(&mut self, uid: &str) -> bool {
        let Some(old) = self.pods.remove(uid) else {
            return false;
        };
        for c in &old.containers {
            if self.containers.get(&c.id).is_some_and(|(u, _)| u == uid) {
                self.containers.remove(&c.id);
            }
        }
        true
    }

    /// A relist started: collect the listed pods separately.
    pub fn begin_relist(&mut self) {
        self.relist = Some(HashMap::new());
    }

    /// A pod from the relist.
    pub fn relist_apply(&mut self, pod: PodMeta) {
        match &mut self.relist {
            Some(buffer) => {
                buffer.insert(pod.uid.clone(), Arc::new(pod));
            }
            // InitApply without Init should not happen; treat it as Apply.
            None => {
                self.apply(pod);
            }
        }
    }

    /// The relist is complete: the listed set replaces the index, so pods
    /// deleted while the watch was down disappear. Returns how many stale
    /// pods were removed.
    pub fn finish_relist(&mut self) -> usize {
        let Some(listed) = self.relist.take() else {
            return 0;
        };
        let stale = self
            .pods
            .keys()
            .filter(|k| !listed.contains_key(*k))
            .count();
        self.pods.clear();
        self.containers.clear();
        for pod in listed.into_values() {
            self.insert(pod);
        }
        stale
    }

    /// The pod with this UID.
    pub fn pod(&self, uid: &str) -> Option<&Arc<PodMeta>> {
        self.pods.get(uid)
    }

    /// The pod and container running a container id.
    pub fn container(&self, id: &str) -> Option<(&Arc<PodMeta>, &ContainerMeta)> {
        let (uid, i) = self.containers.get(id)?;
        let pod = self.pods.get(uid)?;
        Some((pod, pod.containers.get(*i)?))
    }

    /// Number of pods.
    pub fn pods_len(&self) -> usize {
        self.pods.len()
    }

    /// Number of container ids.
    pub fn containers_len(&self) -> usize {
        self.containers.len()
    }

    /// All pods (for diagnostics).
    pub fn pods(&self) -> impl Iterator<Item = &Arc<PodMeta>> {
        self.pods.values()
    }
}

/// Appends the `__meta_kubernetes_pod_*` labels of `pod` (and of
/// `container`, when known) to `out`.
pub fn pod_meta_labels(
    pod: &PodMeta,
    container: Option<&ContainerMeta>,
    out: &mut kiln_labels::Labels,
) {
    use crate::labels as l;
    let mut put = |k: &str, v: &str| {
        out.insert(k.to_owned(), v.to_owned());
    };
    put(l::NAMESPACE, &pod.namespace);
    put(l::POD_NAME, &pod.name);
    put(l::POD_UID, &pod.uid);
    if !pod.node_name.is_empty() {
        put(l::POD_NODE_NAME, &pod.node_name);
    }
    if let Some((kind, name)) = &pod.controller {
        put(l::POD_CONTROLLER_KIND, kind);
        put(l::POD_CONTROLLER_NAME, name);
    }
    if let Some(c) = container {
        put(l::POD_CONTAINER_NAME, &c.name);
        put(kiln_labels::meta::KUBERNETES_CONTAINER_NAME, &c.name);
        put(l::POD_CONTAINER_ID, &c.id);
        if !c.image.is_empty() {
            put(l::POD_CONTAINER_IMAGE, &c.image);
        }
        put(l::POD_CONTAINER_INIT, if c.init { "true" } else { "false" });
    }
    for (k, v) in &pod.labels {
        let name = sanitize_label_name(k);
        put(&format!("{}{name}", l::POD_LABEL_PREFIX), v);
        put(&format!("{}{name}", l::POD_LABELPRESENT_PREFIX), "true");
    }
    for (k, v) in &pod.annotations {
        let name = sanitize_label_name(k);
        put(&format!("{}{name}", l::POD_ANNOTATION_PREFIX), v);
    }
}

/// Appends the `__meta_kubernetes_node_*` labels.
pub fn node_meta_labels(node: &NodeMeta, out: &mut kiln_labels::Labels) {
    use crate::labels as l;
    out.insert(l::NODE_NAME.to_owned(), node.name.clone());
    for (k, v) in &node.labels {
        out.insert(
            format!("{}{}", l::NODE_LABEL_PREFIX, sanitize_label_name(k)),
            v.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters() -> Filters {
        Filters {
            pod_labels: AllowList::new(["app"]),
            pod_annotations: AllowList::new(["pyroscope.io/service-name"]),
            node_labels: AllowList::new(["topology.kubernetes.io/region"]),
        }
    }

    fn pod(uid: &str, containers: &[(&str, &str)], init: &[(&str, &str)]) -> Pod {
        let statuses = |list: &[(&str, &str)]| -> serde_json::Value {
            list.iter()
                .map(|(name, id)| {
                    serde_json::json!({
                        "name": name, "containerID": id, "image": format!("{name}:1"),
                        "imageID": "", "ready": true, "restartCount": 0
                    })
                })
                .collect()
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("pod-{uid}"), "namespace": "ns", "uid": uid,
                "resourceVersion": "1",
                "labels": {"app": "a", "pod-template-hash": "x"},
                "annotations": {"pyroscope.io/service-name": "svc", "other": "y"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": "o", "controller": true}]
            },
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"containerStatuses": statuses(containers),
                       "initContainerStatuses": statuses(init)}
        }))
        .expect("pod json")
    }

    #[test]
    fn schemes_are_stripped() {
        assert_eq!(strip_container_id_scheme("containerd://abc"), "abc");
        assert_eq!(strip_container_id_scheme("cri-o://abc"), "abc");
        assert_eq!(strip_container_id_scheme("docker://abc"), "abc");
        assert_eq!(strip_container_id_scheme("abc"), "abc");
    }

    #[test]
    fn pod_entry_filters_and_indexes_containers() {
        let p = PodMeta::from_pod(
            &pod(
                "u1",
                &[("c", "containerd://c1"), ("s", "cri-o://c2")],
                &[("i", "docker://c3")],
            ),
            &filters(),
        )
        .expect("uid");
        assert_eq!(p.labels.len(), 1, "only allow-listed labels");
        assert_eq!(p.annotations.len(), 1);
        assert_eq!(p.controller, Some(("ReplicaSet".into(), "rs".into())));
        let mut idx = PodIndex::default();
        assert!(idx.apply(p.clone()));
        assert!(!idx.apply(p), "identical apply is not a change");
        assert_eq!(idx.container("c2").map(|(_, c)| c.name.as_str()), Some("s"));
        let (_, init) = idx.container("c3").expect("init container indexed");
        assert!(init.init);
        // A modification that drops a container drops its id.
        let p2 =
            PodMeta::from_pod(&pod("u1", &[("c", "containerd://c1")], &[]), &filters()).unwrap();
        idx.apply(p2);
        assert!(idx.container("c2").is_none());
        assert_eq!(idx.containers_len(), 1);
        assert!(idx.remove("u1"));
        assert_eq!((idx.pods_len(), idx.containers_len()), (0, 0));
    }

    #[test]
    fn relist_replaces_and_drops_stale() {
        let f = filters();
        let mut idx = PodIndex::default();
        idx.apply(PodMeta::from_pod(&pod("a", &[("c", "containerd://1")], &[]), &f).unwrap());
        idx.apply(PodMeta::from_pod(&pod("b", &[("c", "containerd://2")], &[]), &f).unwrap());
        idx.begin_relist();
        idx.relist_apply(
            PodMeta::from_pod(&pod("b", &[("c", "containerd://2")], &[]), &f).unwrap(),
        );
        // Until InitDone the old view still answers.
        assert!(idx.pod("a").is_some());
        assert_eq!(idx.finish_relist(), 1);
        assert!(idx.pod("a").is_none());
        assert!(idx.container("1").is_none());
        assert!(idx.container("2").is_some());
    }

    #[test]
    fn meta_label_names() {
        let f = filters();
        let p = PodMeta::from_pod(&pod("u", &[("c", "containerd://1")], &[]), &f).unwrap();
        let mut out = kiln_labels::Labels::new();
        pod_meta_labels(&p, p.containers.first(), &mut out);
        assert_eq!(out["__meta_kubernetes_namespace"], "ns");
        assert_eq!(out["__meta_kubernetes_pod_name"], "pod-u");
        assert_eq!(out["__meta_kubernetes_pod_container_name"], "c");
        assert_eq!(out["__meta_kubernetes_container_name"], "c");
        assert_eq!(out["__meta_kubernetes_pod_label_app"], "a");
        assert_eq!(out["__meta_kubernetes_pod_labelpresent_app"], "true");
        assert_eq!(
            out["__meta_kubernetes_pod_annotation_pyroscope_io_service_name"],
            "svc"
        );
        assert_eq!(out["__meta_kubernetes_pod_controller_kind"], "ReplicaSet");
        assert!(!out.contains_key("__meta_kubernetes_pod_label_pod_template_hash"));
        assert!(out
            .keys()
            .all(|k| kiln_labels::labels::is_valid_label_name(k)));
    }
}
