//! A real `kiln server` child process on the port it binds (`--listen 127.0.0.1:0`),
//! talked to with `kiln-testkit`'s raw HTTP client.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

pub use kiln_testkit::pprof::{one_frame_profile, push_request};
use kiln_testkit::{random_u64, wait_for_announced_addr};
pub use kiln_testkit::{request, Answer};

use crate::{kiln_bin, SERVING_MARKER};

/// The labels of a `process_cpu` series of `service`, for [`push_request`].
pub fn cpu_series(service: &str) -> [(&'static str, &str); 2] {
    [("__name__", "process_cpu"), ("service_name", service)]
}

/// A `kiln server` child, killed on drop.
pub struct KilnServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

impl KilnServer {
    /// `kiln server --listen 127.0.0.1:0 --data-dir <dir>/data-<id> <args>`, once /healthz
    /// answers 200.
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        Self::start_on(dir, "127.0.0.1:0", args)
    }

    /// Like [`start`](Self::start) with `--listen listen` (port 0 or not); the address the
    /// server announces is read from its log, and `/healthz` is polled on 127.0.0.1 and
    /// that port.
    pub fn start_on(dir: &Path, listen: &str, args: &[&str]) -> Self {
        let id = format!("{:012x}", random_u64() & 0xffff_ffff_ffff);
        let log_path = dir.join(format!("server-{id}.log"));
        let log = std::fs::File::create(&log_path).expect("server log");
        let mut child = Command::new(kiln_bin())
            .args(["server", "--listen", listen, "--data-dir"])
            .arg(dir.join(format!("data-{id}")))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kiln server");
        let announced = wait_for_announced_addr(
            &mut child,
            &log_path,
            SERVING_MARKER,
            Duration::from_secs(30),
        );
        let mut s = KilnServer {
            child: Some(child),
            addr: ([127, 0, 0, 1], announced.port()).into(),
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
        request(self.addr, method, path, headers, body)
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
