//! Kiln's server in this process, over a store in a temp directory, on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kiln_store::{Store, StoreOptions};

use crate::http::{request, Answer};

/// A server on `127.0.0.1:0`, with its own runtime thread; stopped and its store closed
/// on drop (the temp dir goes with it).
pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<Store>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(kiln_server::Limits::default())
    }

    pub fn start_with(limits: kiln_server::Limits) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("open"));
        let mut s = Self::serve(store, limits);
        s.dir = Some(dir);
        s
    }

    /// Serves an already open store (not closed on drop when shared elsewhere).
    pub fn serve(store: Arc<Store>, limits: kiln_server::Limits) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let st = store.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                kiln_server::serve_listener(st, listener, limits, async {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server start");
        TestServer {
            addr,
            store,
            shutdown: Some(tx),
            thread: Some(thread),
            dir: None,
        }
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, &[], &[])
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.request("POST", path, headers, body)
    }

    /// Any request; panics when the server does not answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        request(self.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
    }
}

impl TestServer {
    /// Stops serving and closes the store, panicking when closing fails.
    pub fn stop(mut self) {
        self.halt();
        self.store.close().expect("close store");
        self.dir.take();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.dir.is_some() {
            let _ = self.store.close();
        }
    }
}
