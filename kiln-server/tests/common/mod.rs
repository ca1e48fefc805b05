//! Shared test helpers: an in-process server on a free port, a tiny HTTP/1.1 client over
//! `std::net::TcpStream` (no mocks, no client library), and profile builders.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::ProfileBuilder;
use kiln_store::{Store, StoreOptions};

pub const S: i64 = 1_000_000_000;
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
pub const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds";

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

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], &[])
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        request(self.addr, "POST", path, headers, body)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
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

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// One HTTP/1.1 request with `Connection: close`; reads the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    // The server may answer (413) before reading everything; keep going regardless.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let n =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + n]);
            rest = &rest[i + 2 + n + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// `(frames root→leaf, count, sample labels)`.
pub type StackSpec<'a> = (&'a [&'a str], i64, &'a [(&'a str, &'a str)]);

/// A CPU pprof like the eBPF agent's: samples/count and cpu/nanoseconds at 10 ms.
pub fn cpu_profile(stacks: &[StackSpec<'_>], time_nanos: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    for (frames, n, labels) in stacks {
        let locs: Vec<u64> = frames
            .iter()
            .rev()
            .map(|f| {
                b.location(
                    0,
                    0,
                    &[FrameSpec {
                        name: f,
                        filename: "app.rs",
                        line: 1,
                    }],
                )
            })
            .collect();
        b.add_sample(&locs, &[*n, n * 10_000_000], labels);
    }
    b.set_time(time_nanos, 10 * S);
    b.build()
}

/// A `PushRequest` protobuf with one series and one profile.
pub fn push_body(labels: &[(&str, &str)], profile: &Profile, gzip_profile: bool) -> Vec<u8> {
    use prost::Message;
    let raw = profile.encode_to_vec();
    let raw = if gzip_profile {
        kiln_proto::gzip::compress(&raw)
    } else {
        raw
    };
    kiln_proto::push::PushRequest {
        series: vec![kiln_proto::push::RawProfileSeries {
            labels: labels
                .iter()
                .map(|(k, v)| kiln_proto::push::LabelPair::new(*k, *v))
                .collect(),
            samples: vec![kiln_proto::push::RawSample {
                raw_profile: raw,
                id: String::new(),
            }],
            annotations: vec![],
        }],
    }
    .encode_to_vec()
}

/// Sum of the `total` of the nodes named `name` in a single flamebearer, not counting
/// nested occurrences twice (recursion aside, a name at several depths counts each).
pub fn function_total(fb: &serde_json::Value, name: &str) -> u64 {
    let names: Vec<&str> = fb["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let Some(idx) = names.iter().position(|n| *n == name) else {
        return 0;
    };
    let mut sum = 0;
    for level in fb["levels"].as_array().unwrap() {
        let l: Vec<u64> = level
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        for node in l.chunks(4) {
            if node[3] as usize == idx {
                sum += node[1];
            }
        }
    }
    sum
}

pub fn names(fb: &serde_json::Value) -> Vec<String> {
    fb["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// The workspace root (tests run with the crate dir as cwd).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}
