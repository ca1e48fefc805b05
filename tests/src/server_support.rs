//! A real `kiln server` child process on a free port, and a raw HTTP/1.1 client over
//! `TcpStream` (any method, headers and body; no client library between the test and the
//! server's behaviour).
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use kiln_proto::ProfileBuilder;
pub use kiln_tests::metric;
use kiln_tests::{free_port, kiln_bin};
use prost::Message as _;

/// A CPU profile stamped now, with one sample of `nanos` in `function`.
pub fn one_frame_profile(function: &str, nanos: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    let l = b.location(
        0,
        0,
        &[FrameSpec {
            name: function,
            filename: "",
            line: 0,
        }],
    );
    b.add_sample(&[l], &[nanos], &[]);
    let mut p = b.build();
    p.time_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    p
}

/// An encoded Connect `PushRequest`: `profiles` (encoded pprof, gzip'd or not) as one
/// `process_cpu` series of `service`.
pub fn push_request(profiles: Vec<Vec<u8>>, service: &str) -> Vec<u8> {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                LabelPair::new("__name__", "process_cpu"),
                LabelPair::new("service_name", service),
            ],
            samples: profiles
                .into_iter()
                .map(|raw_profile| RawSample {
                    raw_profile,
                    id: String::new(),
                })
                .collect(),
            annotations: vec![],
        }],
    }
    .encode_to_vec()
}

/// A `kiln server` child, killed on drop.
pub struct KilnServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl KilnServer {
    /// `kiln server --listen 127.0.0.1:<free> --data-dir <dir>/data <args>`, once /healthz
    /// answers 200.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        Self::start_on(dir, addr, args)
    }

    /// Like [`start`](Self::start) on `addr`; `/healthz` is polled on 127.0.0.1 and the
    /// port of `addr`.
    pub fn start_on(dir: &Path, addr: SocketAddr, args: &[&str]) -> Self {
        let log_path = dir.join(format!("server-{}.log", addr.port()));
        let log = std::fs::File::create(&log_path).expect("server log");
        let child = Command::new(kiln_bin())
            .arg("server")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir.join(format!("data-{}", addr.port())))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kiln server");
        let mut s = KilnServer {
            child: Some(child),
            addr: ([127, 0, 0, 1], addr.port()).into(),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = s.try_wait() {
                panic!("kiln server exited at start ({st}):\n{}", s.log());
            }
            if let Ok(a) = s.request("GET", "/healthz", &[], b"") {
                if a.status == 200 {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kiln server not healthy after 30 s:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the process still runs.
    pub fn try_wait_alive(&self) -> bool {
        std::path::Path::new(&format!("/proc/{}/status", self.pid())).exists()
            && !std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
                .unwrap_or_default()
                .contains("State:\tZ")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Peak resident memory of the server process so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("server /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    /// One request with `Host: 127.0.0.1:<port>` unless `headers` set a Host.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Answer> {
        http(self.addr, method, path, headers, body)
    }

    /// SIGINT, then waits for the exit (SIGKILL and panic after 30 s).
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kiln server ignored SIGINT:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KilnServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw HTTP/1.1 request (`Connection: close`); reads the whole answer.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes())?;
    // The server may answer (and close) before reading a refused body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> std::io::Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < i + 2 + n {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[(i + 4 + n).min(b.len())..];
    }
    out
}
