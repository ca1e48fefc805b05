//! Kubernetes metadata for Kiln profiles.
//!
//! [`start`] connects to the API server (in-cluster service account, an
//! explicit kubeconfig, or a plain URL), then two tasks on the current tokio
//! runtime watch
//!
//! - the pods scheduled to this node (`fieldSelector=spec.nodeName=<node>`),
//! - this node (`fieldSelector=metadata.name=<node>`),
//!
//! with `kube::runtime::watcher`, which lists, watches from the list's
//! `resourceVersion`, resumes a dropped watch from the last seen
//! `resourceVersion` (bookmarks included), and relists after `410 Gone`.
//! A relist is buffered and then replaces the index, so pods deleted while
//! the watch was down disappear.
//!
//! [`KubeMetadata`] implements [`kiln_labels::MetaLabelProvider`]: for a
//! process whose cgroup names a container id (or at least a pod UID) it
//! returns Prometheus `kubernetes_sd`-style meta labels (see [`labels`]):
//! `__meta_kubernetes_namespace`, `_pod_name`, `_pod_uid`,
//! `_pod_container_name` (and kiln-labels' `__meta_kubernetes_container_name`),
//! `_pod_container_id`, `_pod_container_image`, `_pod_container_init`,
//! `_pod_node_name`, `_pod_controller_kind`/`_name`,
//! `_pod_label_<name>`/`_pod_labelpresent_<name>` for allow-listed pod labels,
//! `_pod_annotation_<name>` for allow-listed annotations; and for every
//! process (host processes too) `__meta_kubernetes_node_name` and
//! `__meta_kubernetes_node_label_<name>` for allow-listed node labels.
//! kiln-labels' default rules turn these into `namespace`, `pod`,
//! `container`, `region`, `zone` and `service_name` (`<namespace>/<container>`
//! unless a `pyroscope.io/service_name` or `kiln.dev/service-name`
//! annotation says otherwise).
//!
//! Profiles of a process seen before its pod was indexed carry no pod
//! labels; [`KubeMetadata::subscribe`] tells the agent when the index
//! changed so it can invalidate its target cache.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kiln_labels::{Labels, MetaLabelProvider, Workload};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::task::JoinHandle;

pub mod index;
pub mod labels;

pub use index::{strip_container_id_scheme, ContainerMeta, NodeMeta, PodMeta};
pub use labels::{sanitize_label_name, AllowList};

use index::{Filters, PodIndex};

/// Pod label keys kept by default.
pub const DEFAULT_POD_LABELS: &[&str] = &[
    "app",
    "version",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
];
/// Pod annotation keys kept by default: service name overrides
/// (`pyroscope.io/service_name` also admits `pyroscope.io/service-name`,
/// since keys match after sanitizing).
pub const DEFAULT_POD_ANNOTATIONS: &[&str] =
    &["pyroscope.io/service_name", "kiln.dev/service-name"];
/// Node label keys kept by default.
pub const DEFAULT_NODE_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
];

/// Where the service account token is mounted in a pod.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How to reach the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiSource {
    /// The in-cluster service account when present, else the kubeconfig
    /// (`KUBECONFIG` or `~/.kube/config`).
    Infer,
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT` and the
    /// token under `/var/run/secrets/kubernetes.io/serviceaccount`).
    InCluster,
    /// An explicit kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// A URL without credentials, e.g. `kubectl proxy` at
    /// `http://127.0.0.1:8001`, or a test server.
    Url(String),
}

/// What to watch and which keys to keep.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    /// The node this agent runs on (`spec.nodeName` of its pods); usually
    /// from the downward API as `NODE_NAME`.
    pub node_name: String,
    /// How to reach the API server.
    pub api: ApiSource,
    /// Pod label keys exposed as `__meta_kubernetes_pod_label_<name>` (`*`: all).
    pub pod_labels: Vec<String>,
    /// Pod annotation keys exposed as `__meta_kubernetes_pod_annotation_<name>`.
    pub pod_annotations: Vec<String>,
    /// Node label keys exposed as `__meta_kubernetes_node_label_<name>`.
    pub node_labels: Vec<String>,
}

impl KubeConfig {
    /// Defaults for a node: inferred API access and the default allow-lists.
    pub fn new(node_name: impl Into<String>) -> Self {
        let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        Self {
            node_name: node_name.into(),
            api: ApiSource::Infer,
            pod_labels: own(DEFAULT_POD_LABELS),
            pod_annotations: own(DEFAULT_POD_ANNOTATIONS),
            node_labels: own(DEFAULT_NODE_LABELS),
        }
    }

    /// Like [`KubeConfig::new`] with the API server at `url` (no credentials).
    pub fn with_url(node_name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            api: ApiSource::Url(url.into()),
            ..Self::new(node_name)
        }
    }

    fn filters(&self) -> Filters {
        Filters {
            pod_labels: AllowList::new(&self.pod_labels),
            pod_annotations: AllowList::new(&self.pod_annotations),
            node_labels: AllowList::new(&self.node_labels),
        }
    }
}

/// Whether this process runs in a pod with a service account: the
/// `KUBERNETES_SERVICE_HOST` variable and the token file are present.
pub fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
        && std::path::Path::new(SERVICE_ACCOUNT_TOKEN).is_file()
}

/// Why metadata could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No node name was given (set `NODE_NAME` from the downward API).
    #[error(
        "the node name is unknown: pass --node-name or set NODE_NAME (downward API spec.nodeName)"
    )]
    NoNodeName,
    /// The API server URL is invalid.
    #[error("invalid Kubernetes API server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The kubeconfig or in-cluster configuration could not be loaded.
    #[error("cannot load the Kubernetes client configuration: {0}")]
    Config(String),
    /// The client could not be built (e.g. TLS setup).
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Counters and gauges, for the agent's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KubeStats {
    /// Pod watch events applied (added, modified, deleted, listed).
    pub pod_events: u64,
    /// Node watch events applied.
    pub node_events: u64,
    /// Pods in the index.
    pub pods_indexed: u64,
    /// Container ids in the index.
    pub containers_indexed: u64,
    /// Completed (re)lists of pods and the node; 2 after the initial sync.
    pub relists: u64,
    /// Pods removed by a relist because they were no longer listed.
    pub stale_pods_removed: u64,
    /// Watch requests sent to the API server.
    pub watch_requests: u64,
    /// Watch requests beyond the first per resource: resumed or restarted
    /// watches (the server closed them, or they failed).
    pub watch_restarts: u64,
    /// List requests sent to the API server.
    pub list_requests: u64,
    /// Errors from the watch streams (failed requests, `ERROR` events);
    /// each is retried with backoff.
    pub watch_errors: u64,
    /// Provider lookups that found a pod.
    pub lookups_hit: u64,
    /// Provider lookups for a container id or pod UID that is not indexed.
    pub lookups_miss: u64,
}

#[derive(Default)]
struct Counters {
    pod_events: AtomicU64,
    node_events: AtomicU64,
    relists: AtomicU64,
    stale_pods_removed: AtomicU64,
    pod_watch_requests: AtomicU64,
    node_watch_requests: AtomicU64,
    list_requests: AtomicU64,
    watch_errors: AtomicU64,
    lookups_hit: AtomicU64,
    lookups_miss: AtomicU64,
}

struct Shared {
    node_name: String,
    filters: Filters,
    pods: RwLock<PodIndex>,
    node: RwLock<Option<Arc<NodeMeta>>>,
    pending_node: RwLock<Option<Arc<NodeMeta>>>,
    pods_synced: AtomicBool,
    node_synced: AtomicBool,
    counters: Counters,
    generation: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// The live index of this node's pods and the node's labels; a
/// [`MetaLabelProvider`]. Dropping the last handle stops the watches.
pub struct KubeMetadata {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMetadata")
            .field("node_name", &self.shared.node_name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for KubeMetadata {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects (see [`ApiSource`]) and spawns the pod and node watches on the
/// current tokio runtime. Returns at once; use
/// [`KubeMetadata::wait_synced`] to wait for the initial lists. An empty
/// `node_name` is taken from the `NODE_NAME` environment variable.
pub async fn start(mut config: KubeConfig) -> Result<Arc<KubeMetadata>, Error> {
    if config.node_name.is_empty() {
        config.node_name = std::env::var("NODE_NAME").unwrap_or_default();
    }
    if config.node_name.is_empty() {
        return Err(Error::NoNodeName);
    }
    let kube_config = match &config.api {
        ApiSource::Url(url) => {
            let uri: http::Uri = url
                .parse()
                .map_err(|e: http::uri::InvalidUri| Error::BadUrl {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            if uri.scheme().is_none() || uri.host().is_none() {
                return Err(Error::BadUrl {
                    url: url.clone(),
                    reason: "expected http(s)://HOST[:PORT]".into(),
                });
            }
            kube::Config::new(uri)
        }
        ApiSource::InCluster => {
            kube::Config::incluster().map_err(|e| Error::Config(e.to_string()))?
        }
        ApiSource::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        ApiSource::Infer => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    let (generation, _) = tokio::sync::watch::channel(0);
    let shared = Arc::new(Shared {
        node_name: config.node_name.clone(),
        filters: config.filters(),
        pods: RwLock::new(PodIndex::default()),
        node: RwLock::new(None),
        pending_node: RwLock::new(None),
        pods_synced: AtomicBool::new(false),
        node_synced: AtomicBool::new(false),
        counters: Counters::default(),
        generation,
    });
    let counting = Arc::clone(&shared);
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        count_request(&counting.counters, req.uri());
        req
    });
    let client = kube::client::ClientBuilder::try_from(kube_config)?
        .with_layer(&layer)
        .build();
    Ok(Arc::new(start_with_client(client, shared)))
}

fn count_request(c: &Counters, uri: &http::Uri) {
    let query = uri.query().unwrap_or("");
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let path = uri.path();
    match (watch, path.ends_with("/pods"), path.ends_with("/nodes")) {
        (true, true, _) => c.pod_watch_requests.fetch_add(1, Relaxed),
        (true, _, true) => c.node_watch_requests.fetch_add(1, Relaxed),
        (false, true, _) | (false, _, true) => c.list_requests.fetch_add(1, Relaxed),
        _ => 0,
    };
}

fn start_with_client(client: Client, shared: Arc<Shared>) -> KubeMetadata {
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    let pod_cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.node_name));
    let node_cfg =
        watcher::Config::default().fields(&format!("metadata.name={}", shared.node_name));

    let s = Arc::clone(&shared);
    let pod_task = tokio::spawn(async move {
        let mut stream = watcher::watcher(pods, pod_cfg).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => on_pod_event(&s, event),
                Err(e) => {
                    s.counters.watch_errors.fetch_add(1, Relaxed);
                    log::warn!("kubernetes pod watch (node {}): {e}; retrying", s.node_name);
                }
            }
        }
    });
    let s = Arc::clone(&shared);
    let node_task = tokio::spawn(async move {
        let mut stream = watcher::watcher(nodes, node_cfg).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => on_node_event(&s, event),
                Err(e) => {
                    s.counters.watch_errors.fetch_add(1, Relaxed);
                    log::warn!("kubernetes node watch ({}): {e}; retrying", s.node_name);
                }
            }
        }
    });
    KubeMetadata {
        shared,
        tasks: vec![pod_task, node_task],
    }
}

fn on_pod_event(s: &Shared, event: Event<Pod>) {
    let c = &s.counters;
    let changed = {
        let mut index = s.pods.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => {
                index.begin_relist();
                false
            }
            Event::InitApply(pod) => {
                c.pod_events.fetch_add(1, Relaxed);
                if let Some(p) = PodMeta::from_pod(&pod, &s.filters) {
                    index.relist_apply(p);
                }
                false
            }
            Event::InitDone => {
                let stale = index.finish_relist();
                c.stale_pods_removed.fetch_add(stale as u64, Relaxed);
                c.relists.fetch_add(1, Relaxed);
                s.pods_synced.store(true, Relaxed);
                log::debug!(
                    "kubernetes: {} pods on node {}",
                    index.pods_len(),
                    s.node_name
                );
                true
            }
            Event::Apply(pod) => {
                c.pod_events.fetch_add(1, Relaxed);
                PodMeta::from_pod(&pod, &s.filters).is_some_and(|p| index.apply(p))
            }
            Event::Delete(pod) => {
                c.pod_events.fetch_add(1, Relaxed);
                pod.metadata
                    .uid
                    .as_deref()
                    .is_some_and(|uid| index.remove(uid))
            }
        }
    };
    if changed {
        s.changed();
    }
}

fn on_node_event(s: &Shared, event: Event<Node>) {
    let c = &s.counters;
    let lock = |l: &RwLock<Option<Arc<NodeMeta>>>| {
        // A poisoned lock only means a panic elsewhere; the data is whole.
        l.write().unwrap_or_else(|e| e.into_inner()).take()
    };
    let set = |value: Option<Arc<NodeMeta>>| {
        let mut node = s.node.write().unwrap_or_else(|e| e.into_inner());
        let changed = *node != value;
        *node = value;
        changed
    };
    let changed = match event {
        Event::Init => {
            lock(&s.pending_node);
            false
        }
        Event::InitApply(node) => {
            c.node_events.fetch_add(1, Relaxed);
            *s.pending_node.write().unwrap_or_else(|e| e.into_inner()) =
                Some(Arc::new(NodeMeta::from_node(&node, &s.filters)));
            false
        }
        Event::InitDone => {
            c.relists.fetch_add(1, Relaxed);
            s.node_synced.store(true, Relaxed);
            let listed = lock(&s.pending_node);
            if listed.is_none() {
                log::warn!(
                    "kubernetes: node {:?} is not listed by the API server",
                    s.node_name
                );
            }
            set(listed)
        }
        Event::Apply(node) => {
            c.node_events.fetch_add(1, Relaxed);
            set(Some(Arc::new(NodeMeta::from_node(&node, &s.filters))))
        }
        Event::Delete(_) => {
            c.node_events.fetch_add(1, Relaxed);
            set(None)
        }
    };
    if changed {
        s.changed();
    }
}

impl KubeMetadata {
    /// The node whose pods are watched.
    pub fn node_name(&self) -> &str {
        &self.shared.node_name
    }

    /// Whether the initial list of pods and of the node completed.
    pub fn is_synced(&self) -> bool {
        self.shared.pods_synced.load(Relaxed) && self.shared.node_synced.load(Relaxed)
    }

    /// Waits until [`KubeMetadata::is_synced`] or the timeout; returns
    /// whether synced.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.generation.subscribe();
        let wait = async {
            while !self.is_synced() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.is_synced()
    }

    /// A receiver whose value (a generation number) changes whenever the
    /// index changes: call `Discoverer::invalidate_all` then.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The current generation (see [`KubeMetadata::subscribe`]).
    pub fn generation(&self) -> u64 {
        *self.shared.generation.borrow()
    }

    /// The pod with this UID.
    pub fn pod(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.shared
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pod(uid)
            .cloned()
    }

    /// The pod and container of a container id (with or without a
    /// `containerd://`-style scheme).
    pub fn container(&self, id: &str) -> Option<(Arc<PodMeta>, ContainerMeta)> {
        let index = self.shared.pods.read().unwrap_or_else(|e| e.into_inner());
        index
            .container(strip_container_id_scheme(id))
            .map(|(p, c)| (Arc::clone(p), c.clone()))
    }

    /// All indexed pods, in no particular order.
    pub fn pods(&self) -> Vec<Arc<PodMeta>> {
        let index = self.shared.pods.read().unwrap_or_else(|e| e.into_inner());
        index.pods().cloned().collect()
    }

    /// The node, once listed.
    pub fn node(&self) -> Option<Arc<NodeMeta>> {
        self.shared
            .node
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> KubeStats {
        let c = &self.shared.counters;
        let index = self.shared.pods.read().unwrap_or_else(|e| e.into_inner());
        let pod_watches = c.pod_watch_requests.load(Relaxed);
        let node_watches = c.node_watch_requests.load(Relaxed);
        KubeStats {
            pod_events: c.pod_events.load(Relaxed),
            node_events: c.node_events.load(Relaxed),
            pods_indexed: index.pods_len() as u64,
            containers_indexed: index.containers_len() as u64,
            relists: c.relists.load(Relaxed),
            stale_pods_removed: c.stale_pods_removed.load(Relaxed),
            watch_requests: pod_watches + node_watches,
            watch_restarts: pod_watches.saturating_sub(1) + node_watches.saturating_sub(1),
            list_requests: c.list_requests.load(Relaxed),
            watch_errors: c.watch_errors.load(Relaxed),
            lookups_hit: c.lookups_hit.load(Relaxed),
            lookups_miss: c.lookups_miss.load(Relaxed),
        }
    }
}

impl MetaLabelProvider for KubeMetadata {
    fn meta_labels(&self, workload: &Workload<'_>) -> Labels {
        let mut out = Labels::new();
        let c = &self.shared.counters;
        {
            let index = self.shared.pods.read().unwrap_or_else(|e| e.into_inner());
            let by_container = workload.container_id.and_then(|id| index.container(id));
            match by_container {
                Some((pod, container)) => index::pod_meta_labels(pod, Some(container), &mut out),
                // The sandbox (pause) container, or a container whose status
                // has not arrived yet: the pod is still known by its UID.
                None => {
                    if let Some(pod) = workload.pod_uid.and_then(|uid| index.pod(uid)) {
                        index::pod_meta_labels(pod, None, &mut out);
                    }
                }
            }
            if workload.container_id.is_some() || workload.pod_uid.is_some() {
                let counter = if out.is_empty() {
                    &c.lookups_miss
                } else {
                    &c.lookups_hit
                };
                counter.fetch_add(1, Relaxed);
            }
        }
        if let Some(node) = self.node() {
            index::node_meta_labels(&node, &mut out);
        }
        out
    }
}
