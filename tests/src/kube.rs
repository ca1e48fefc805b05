//! A local HTTP server playing the Kubernetes API server for the `kube_*` end-to-end tests:
//! `GET /api/v1/pods` and `/api/v1/nodes`, list and watch, with `fieldSelector` applied as
//! the API server applies it (`spec.nodeName=`, `metadata.name=`), and resource versions.
//!
//! A watch from resource version R answers every event newer than R that matches its
//! selector, waiting up to [`WATCH_HOLD`] for the first one, then ends the response, as
//! an API server does when a watch times out; the client then watches again from the last
//! version it saw. Objects added with [`FakeApiServer::add_pod`] are both in later lists
//! and delivered as `ADDED` events, so list and watch agree.
//!
//! The server runs on its own tokio runtime, shut down on drop.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use kiln_testkit::kube::Container;
use serde_json::{json, Value};

/// How long a watch waits for an event before its response ends.
pub const WATCH_HOLD: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Pods,
    Nodes,
}

#[derive(Default)]
struct Inner {
    /// Current objects, keyed by name (nodes) or uid (pods).
    pods: Vec<Value>,
    nodes: Vec<Value>,
    /// (resource version, kind, event type, object) in order.
    events: Vec<(u64, Kind, &'static str, Value)>,
    resource_version: u64,
    requests: Vec<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The latest resource version: wakes waiting watches.
    latest: tokio::sync::watch::Sender<u64>,
}

/// The fake API server at [`FakeApiServer::url`].
pub struct FakeApiServer {
    pub url: String,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Whether `object` matches a `fieldSelector` of `a=b` terms, comma separated.
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let Some((field, want)) = term.split_once('=') else {
            return false;
        };
        let pointer = format!("/{}", field.replace('.', "/"));
        object.pointer(&pointer).and_then(Value::as_str) == Some(want.trim_start_matches('='))
    })
}

async fn handle(shared: Arc<Shared>, kind: Kind, query: HashMap<String, String>) -> Response {
    {
        let mut sorted: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        sorted.sort();
        let path = match kind {
            Kind::Pods => "/api/v1/pods",
            Kind::Nodes => "/api/v1/nodes",
        };
        shared
            .inner
            .lock()
            .unwrap()
            .requests
            .push(format!("GET {path}?{}", sorted.join("&")));
    }
    let selector = query.get("fieldSelector");
    if query.get("watch").map(String::as_str) != Some("true") {
        let inner = shared.inner.lock().unwrap();
        let items: Vec<Value> = match kind {
            Kind::Pods => &inner.pods,
            Kind::Nodes => &inner.nodes,
        }
        .iter()
        .filter(|o| selected(o, selector))
        .cloned()
        .collect();
        let list = json!({
            "kind": if kind == Kind::Pods { "PodList" } else { "NodeList" },
            "apiVersion": "v1",
            "metadata": {"resourceVersion": inner.resource_version.to_string()},
            "items": items,
        });
        return axum::Json(list).into_response();
    }
    let Some(since) = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse::<u64>().ok())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "this fake API server needs a watch resourceVersion",
        )
            .into_response();
    };
    let pending = || -> Vec<u8> {
        let inner = shared.inner.lock().unwrap();
        let mut body = Vec::new();
        for (rv, k, ty, object) in &inner.events {
            if *rv > since && *k == kind && selected(object, selector) {
                serde_json::to_writer(&mut body, &json!({"type": ty, "object": object}))
                    .expect("json");
                body.push(b'\n');
            }
        }
        body
    };
    let mut latest = shared.latest.subscribe();
    let deadline = tokio::time::Instant::now() + WATCH_HOLD;
    let mut body = pending();
    while body.is_empty() {
        match tokio::time::timeout_at(deadline, latest.changed()).await {
            Ok(Ok(())) => body = pending(),
            _ => break,
        }
    }
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl FakeApiServer {
    /// Serves on 127.0.0.1 at a free port.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-kube-api")
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (latest, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                resource_version: 1,
                ..Inner::default()
            }),
            latest,
        });
        let app = Router::new()
            .route(
                "/api/v1/pods",
                get(
                    |State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>| {
                        handle(s, Kind::Pods, q)
                    },
                ),
            )
            .route(
                "/api/v1/nodes",
                get(
                    |State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>| {
                        handle(s, Kind::Nodes, q)
                    },
                ),
            )
            .fallback(|uri: axum::http::Uri| async move {
                eprintln!("fake API server: unexpected request {uri}");
                (StatusCode::NOT_FOUND, "not found")
            })
            .with_state(shared.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        rt.spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url,
            shared,
            rt: Some(rt),
        }
    }

    fn publish(&self, kind: Kind, ty: &'static str, mut object: Value) {
        let rv = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.resource_version += 1;
            let rv = inner.resource_version;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            let key = |o: &Value| match kind {
                Kind::Pods => o["metadata"]["uid"].clone(),
                Kind::Nodes => o["metadata"]["name"].clone(),
            };
            let list = match kind {
                Kind::Pods => &mut inner.pods,
                Kind::Nodes => &mut inner.nodes,
            };
            let k = key(&object);
            list.retain(|o| key(o) != k);
            if ty != "DELETED" {
                list.push(object.clone());
            }
            inner.events.push((rv, kind, ty, object));
            rv
        };
        self.shared.latest.send_replace(rv);
    }

    /// Adds (or replaces) a pod: in later lists, and as an `ADDED` event to watches.
    pub fn add_pod(&self, pod: Value) {
        self.publish(Kind::Pods, "ADDED", pod);
    }

    /// Adds (or replaces) a node.
    pub fn add_node(&self, node: Value) {
        self.publish(Kind::Nodes, "ADDED", node);
    }

    /// Changes a node (`MODIFIED` event).
    pub fn modify_node(&self, node: Value) {
        self.publish(Kind::Nodes, "MODIFIED", node);
    }

    /// Requests so far, as `GET path?sorted query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }
}

/// A running Pod with one container (labelled `app.kubernetes.io/name=<container>`),
/// shaped like the API server's; `add_pod` gives it its resource version.
pub fn pod_json(
    uid: &str,
    namespace: &str,
    name: &str,
    node: &str,
    container: &str,
    container_id: &str,
) -> Value {
    kiln_testkit::kube::pod_json(
        uid,
        namespace,
        name,
        "",
        node,
        &[Container {
            name: container,
            id: container_id,
        }],
        json!({ "app.kubernetes.io/name": container }),
        json!({}),
    )
}

/// A Node with topology labels; `add_node` gives it its resource version.
pub fn node_json(name: &str, region: &str, zone: &str) -> Value {
    kiln_testkit::kube::node_json(name, "", region, zone)
}

/// The cgroup (relative to a test's base) of a container of a burstable pod with the
/// systemd cgroup driver and containerd, as the kubelet creates it.
pub fn kubepods_path(pod_uid: &str, container_id: &str) -> String {
    format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
         cri-containerd-{container_id}.scope",
        pod_uid.replace('-', "_")
    )
}
