//! A local HTTP server playing the Kubernetes API server's list and watch endpoints for
//! pods and nodes, driven step by step by the test (each list answer and watch event is
//! the test's). It runs on the test's tokio runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// One watch request the client made; send events with [`Watch::send`],
/// drop it to close the stream (the client sees a dropped watch).
pub struct Watch {
    pub query: HashMap<String, String>,
    tx: mpsc::UnboundedSender<Value>,
}

impl Watch {
    pub fn send(&self, kind: &str, object: Value) {
        self.tx
            .send(json!({"type": kind, "object": object}))
            .expect("client still reading the watch");
    }

    /// An `ERROR` event with a `Status` (e.g. 410 Gone).
    pub fn send_error(&self, code: u16, reason: &str, message: &str) {
        self.send(
            "ERROR",
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                   "status": "Failure", "message": message, "reason": reason, "code": code}),
        );
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.query.get("resourceVersion").map(String::as_str)
    }
}

#[derive(Default)]
struct Resource {
    /// `kind` of the list and of its items.
    list_kind: &'static str,
    items: Vec<Value>,
    resource_version: String,
    watches: Option<mpsc::UnboundedSender<Watch>>,
}

#[derive(Clone, Default)]
struct AppState {
    pods: Arc<Mutex<Resource>>,
    nodes: Arc<Mutex<Resource>>,
    log: Arc<Mutex<Vec<String>>>,
}

/// The fake API server; shut down on drop.
pub struct FakeApiServer {
    pub url: String,
    state: AppState,
    pod_watches: mpsc::UnboundedReceiver<Watch>,
    node_watches: mpsc::UnboundedReceiver<Watch>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    resource: Arc<Mutex<Resource>>,
    log: Arc<Mutex<Vec<String>>>,
    path: &str,
    query: HashMap<String, String>,
) -> Response {
    let mut sorted: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    log.lock()
        .unwrap()
        .push(format!("GET {path}?{}", sorted.join("&")));
    if query.get("watch").map(String::as_str) == Some("true") {
        let (tx, rx) = mpsc::unbounded_channel::<Value>();
        let sender = resource
            .lock()
            .unwrap()
            .watches
            .clone()
            .expect("watch channel");
        if sender.send(Watch { query, tx }).is_err() {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            let event = rx.recv().await?;
            let mut line = serde_json::to_vec(&event).expect("json");
            line.push(b'\n');
            Some((Ok::<_, std::io::Error>(Bytes::from(line)), rx))
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let r = resource.lock().unwrap();
    let list = json!({
        "kind": r.list_kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": r.resource_version},
        "items": r.items,
    });
    axum::Json(list).into_response()
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on a free port.
    pub async fn start() -> Self {
        let (pod_tx, pod_watches) = mpsc::unbounded_channel();
        let (node_tx, node_watches) = mpsc::unbounded_channel();
        let state = AppState::default();
        {
            let mut p = state.pods.lock().unwrap();
            p.list_kind = "PodList";
            p.watches = Some(pod_tx);
            let mut n = state.nodes.lock().unwrap();
            n.list_kind = "NodeList";
            n.watches = Some(node_tx);
        }
        let app = Router::new()
            .route(
                "/api/v1/pods",
                get(
                    |State(s): State<AppState>, Query(q): Query<HashMap<String, String>>| async move {
                        serve(s.pods.clone(), s.log.clone(), "/api/v1/pods", q).await
                    },
                ),
            )
            .route(
                "/api/v1/nodes",
                get(
                    |State(s): State<AppState>, Query(q): Query<HashMap<String, String>>| async move {
                        serve(s.nodes.clone(), s.log.clone(), "/api/v1/nodes", q).await
                    },
                ),
            )
            .fallback(|uri: axum::http::Uri| async move {
                eprintln!("fake API server: unexpected request {uri}");
                (StatusCode::NOT_FOUND, "not found")
            })
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url,
            state,
            pod_watches,
            node_watches,
            task,
        }
    }

    /// What the next pod list returns.
    pub fn set_pods(&self, resource_version: &str, items: Vec<Value>) {
        let mut r = self.state.pods.lock().unwrap();
        r.items = items;
        r.resource_version = resource_version.to_owned();
    }

    /// What the next node list returns.
    pub fn set_nodes(&self, resource_version: &str, items: Vec<Value>) {
        let mut r = self.state.nodes.lock().unwrap();
        r.items = items;
        r.resource_version = resource_version.to_owned();
    }

    /// The next pod watch the client opens.
    pub async fn next_pod_watch(&mut self) -> Watch {
        tokio::time::timeout(Duration::from_secs(20), self.pod_watches.recv())
            .await
            .expect("the client opens a pod watch within 20 s")
            .expect("server alive")
    }

    /// The next node watch the client opens.
    pub async fn next_node_watch(&mut self) -> Watch {
        tokio::time::timeout(Duration::from_secs(20), self.node_watches.recv())
            .await
            .expect("the client opens a node watch within 20 s")
            .expect("server alive")
    }

    /// Requests so far, as `GET path?sorted query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }
}

/// Polls `cond` until true or `timeout`, then panics with `what`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
