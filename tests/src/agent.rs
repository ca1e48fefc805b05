//! Helpers for the `agent_*` end-to-end tests: the real `kiln` binary run as an agent (and
//! stopped by pid), workloads started inside cgroups the test creates (removed on drop),
//! a real HTTP push receiver on 127.0.0.1, and readers for what the agent exported.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kiln_proto::pprof::Profile;
use prost::Message;

use kiln_testkit::{random_u64, request, wait_for_announced_addr, ChildGuard};

use crate::{kiln_bin, sample_label};

/// A short random token to tell this test's processes apart from everything else.
pub fn token() -> String {
    format!("t{:012x}", random_u64() & 0xffff_ffff_ffff)
}

/// Starts `exe args` with exactly `env` (plus PATH) after moving itself into every
/// `cgroup.procs` in `cgroups`: a shell joins the cgroups, then execs the workload, so
/// the workload never runs outside them.
pub fn spawn_in_cgroups(
    exe: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    cgroups: &[&Path],
) -> ChildGuard {
    let script =
        r#"while [ "$1" != "--" ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@""#;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).arg("sh");
    for c in cgroups {
        cmd.arg(c);
    }
    cmd.arg("--").arg(exe).args(args);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    ChildGuard(cmd.spawn().expect("spawn workload"))
}

/// A running `kiln agent`, stopped by pid.
pub struct Agent {
    child: Option<Child>,
    pub metrics_addr: SocketAddr,
    stderr_path: PathBuf,
}

impl Agent {
    /// Starts `kiln agent <args> --metrics-listen 127.0.0.1:0` with stderr in `dir`, reads
    /// the metrics address it announces (`serving metrics on http://ADDR/metrics`, logged
    /// at info), and waits until /healthz answers 200.
    pub fn start(args: &[&str], dir: &Path) -> Self {
        let stderr_path = dir.join(format!("agent-{}.log", token()));
        let stderr = std::fs::File::create(&stderr_path).expect("agent log");
        let mut child = Command::new(kiln_bin())
            .arg("agent")
            .args(args)
            .args(["--metrics-listen", "127.0.0.1:0"])
            // KILN_AGENT_LOG sets the agent's log level (info or more verbose, so the
            // metrics address is logged) when a test needs debugging.
            .env(
                "RUST_LOG",
                std::env::var("KILN_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn kiln agent");
        let metrics_addr = wait_for_announced_addr(
            &mut child,
            &stderr_path,
            "serving metrics on ",
            Duration::from_secs(30),
        );
        let mut agent = Self {
            child: Some(child),
            metrics_addr,
            stderr_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("kiln agent exited at start ({status}):\n{}", agent.log());
            }
            if get_text(metrics_addr, "/healthz").is_some_and(|(status, _)| status == 200) {
                return agent;
            }
            assert!(
                Instant::now() < deadline,
                "kiln agent not healthy after 30 s:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        match get_text(self.metrics_addr, "/metrics") {
            Some((200, body)) => body,
            other => panic!("GET /metrics failed: {other:?}\n{}", self.log()),
        }
    }

    /// SIGINT, then waits up to `timeout` (SIGKILL and panic after). Returns the exit
    /// status and the agent's log.
    pub fn stop(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return (status, self.log());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kiln agent ignored SIGINT for {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` on `addr`: status and body text, `None` when nothing answers.
pub fn get_text(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let a = request(addr, "GET", path, &[], b"").ok()?;
    Some((a.status, a.text()))
}

/// Decodes gzip'd (or plain) pprof bytes.
pub fn decode_pprof(bytes: &[u8]) -> Profile {
    let raw = kiln_proto::gzip::maybe_decompress(bytes, 256 << 20).expect("pprof gzip");
    Profile::decode(raw.as_ref()).expect("pprof decodes")
}

/// One exported profile: its series labels and the decoded pprof.
#[derive(Clone, Debug)]
pub struct Exported {
    pub labels: BTreeMap<String, String>,
    pub profile: Profile,
    pub raw: Vec<u8>,
}

impl Exported {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// Samples (first value) whose stack contains `function`, by value of sample label
    /// `by` (or "" when absent).
    pub fn samples_in(&self, function: &str, by: &str) -> HashMap<String, i64> {
        let p = &self.profile;
        let functions: HashMap<u64, &str> = p
            .function
            .iter()
            .map(|f| (f.id, p.string(f.name)))
            .collect();
        let locations: HashMap<u64, &kiln_proto::pprof::Location> =
            p.location.iter().map(|l| (l.id, l)).collect();
        let mut out = HashMap::new();
        for s in &p.sample {
            let hit = s.location_id.iter().any(|id| {
                locations[id]
                    .line
                    .iter()
                    .any(|l| functions.get(&l.function_id) == Some(&function))
            });
            if hit {
                let key = sample_label(p, s, by).unwrap_or("").to_owned();
                *out.entry(key).or_default() += s.value[0];
            }
        }
        out
    }

    pub fn total_in(&self, function: &str) -> i64 {
        self.samples_in(function, "").values().sum()
    }
}

/// Reads every `*.pb.gz` in an `--output-dir`; series labels are taken from the sample
/// labels (the agent puts them on every sample), which must agree across samples.
pub fn read_output_dir(dir: &Path) -> Vec<(PathBuf, Exported)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read output dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        assert!(name.ends_with(".pb.gz"), "unexpected file {name}");
        let raw = std::fs::read(&path).expect("read profile");
        let profile = decode_pprof(&raw);
        let mut labels = BTreeMap::new();
        if let Some(s) = profile.sample.first() {
            for l in &s.label {
                let k = profile.string(l.key);
                if !matches!(k, "pid" | "process" | "thread") {
                    labels.insert(k.to_owned(), profile.string(l.str).to_owned());
                }
            }
        }
        for s in &profile.sample {
            for (k, v) in &labels {
                assert_eq!(sample_label(&profile, s, k), Some(v.as_str()), "{name}");
            }
        }
        out.push((
            path,
            Exported {
                labels,
                profile,
                raw,
            },
        ));
    }
    out
}

/// What one push request carried.
#[derive(Clone, Debug)]
pub struct PushReceived {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub series: Vec<Exported>,
}

/// A real Connect push endpoint (`POST /push.v1.PusherService/Push`) on 127.0.0.1 that
/// decodes each request and records it. `start(0, ..)` binds a port of the system's
/// choosing (see `port`); `stop` kills it and all its connections (its runtime is
/// dropped); `start` on the same port brings it back.
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<PushReceived>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start(port: u16, received: Arc<Mutex<Vec<PushReceived>>>) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<u16, String>>();
        let store = received.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
                let _ = ready_tx.send(Ok(bound));
                let app = axum::Router::new()
                    .route(
                        "/push.v1.PusherService/Push",
                        axum::routing::post(push_handler),
                    )
                    .with_state(store);
                let server = axum::serve(listener, app);
                tokio::select! {
                    _ = server => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime here cancels every connection task.
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            match ready_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(bound)) => break bound,
                Ok(Err(e)) if Instant::now() < deadline && e.contains("in use") => {
                    // The old socket may linger a moment; try again.
                    std::thread::sleep(Duration::from_millis(200));
                    return Self::start(port, received);
                }
                Ok(Err(e)) => panic!("receiver cannot bind 127.0.0.1:{port}: {e}"),
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => panic!("receiver did not start"),
            }
        };
        Self {
            port,
            received,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn push_handler(
    axum::extract::State(store): axum::extract::State<Arc<Mutex<Vec<PushReceived>>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    let hdrs: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let raw = if hdrs.get("content-encoding").map(String::as_str) == Some("gzip") {
        match kiln_proto::gzip::decompress_capped(&body, 64 << 20) {
            Ok(b) => b,
            Err(_) => return (axum::http::StatusCode::BAD_REQUEST, vec![]),
        }
    } else {
        body.to_vec()
    };
    let Ok(req) = kiln_proto::push::PushRequest::decode(raw.as_slice()) else {
        return (axum::http::StatusCode::BAD_REQUEST, vec![]);
    };
    let series = req
        .series
        .iter()
        .flat_map(|s| {
            let labels: BTreeMap<String, String> = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            s.samples.iter().map(move |r| Exported {
                labels: labels.clone(),
                profile: decode_pprof(&r.raw_profile),
                raw: r.raw_profile.clone(),
            })
        })
        .collect();
    store.lock().unwrap().push(PushReceived {
        headers: hdrs,
        body: raw,
        series,
    });
    (
        axum::http::StatusCode::OK,
        kiln_proto::push::PushResponse {}.encode_to_vec(),
    )
}

/// Writes `text` to `<dir>/<name>` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// The raw bytes (decompressed) of everything exported must not contain `secret`.
pub fn assert_no_secret(what: &str, bytes: &[u8], secret: &str) {
    let raw = kiln_proto::gzip::maybe_decompress(bytes, 256 << 20).expect("gzip");
    let hay = String::from_utf8_lossy(&raw);
    assert!(!hay.contains(secret), "{what} contains the secret");
    assert!(!hay.contains("SECRET"), "{what} names the SECRET variable");
}
