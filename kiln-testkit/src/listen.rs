//! Servers under test bind port 0 and say which address they got; tests read it from
//! the server's log instead of picking a port and hoping it stays free.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::ChildGuard;

/// The address in the first line of `log` containing `marker` followed by
/// `http://HOST:PORT` (e.g. `serving metrics on `), with an unspecified host (0.0.0.0,
/// `[::]`) turned into loopback so a test can connect to it.
pub fn announced_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        let rest = &line[line.find(marker)? + marker.len()..];
        let rest = rest.strip_prefix("http://")?;
        let end = rest.find('/').unwrap_or(rest.len());
        let end = rest[..end].find(char::is_whitespace).unwrap_or(end);
        let mut addr: SocketAddr = rest[..end].parse().ok()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        Some(addr)
    })
}

/// Waits until `child`, logging to the file `log`, announces its address after `marker`
/// (see [`announced_addr`]); panics with the log when it exits first or after `timeout`.
pub fn wait_for_announced_addr(
    child: &mut Child,
    log: &Path,
    marker: &str,
    timeout: Duration,
) -> SocketAddr {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = announced_addr(&text, marker) {
            return addr;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "pid {} exited ({status}) before announcing \"{marker}\":\n{text}",
                child.id()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no \"{marker}\" after {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawns `cmd` with its stderr in the file `log` and waits (up to 30 s) until it
/// announces its address after `marker` there.
pub fn spawn_announced(cmd: &mut Command, log: &Path, marker: &str) -> (ChildGuard, SocketAddr) {
    let file =
        std::fs::File::create(log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
    let mut child = ChildGuard::spawn(cmd.stderr(file));
    let addr = wait_for_announced_addr(&mut child.0, log, marker, Duration::from_secs(30));
    (child, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_announced_address() {
        let log = "[INFO] starting\n[INFO x] serving metrics on http://127.0.0.1:4321/metrics and /healthz\n";
        assert_eq!(
            announced_addr(log, "serving metrics on "),
            Some(([127, 0, 0, 1], 4321).into())
        );
        assert_eq!(
            announced_addr(
                "kiln: serving the UI and API on http://0.0.0.0:80\n",
                "API on "
            ),
            Some(([127, 0, 0, 1], 80).into())
        );
        assert_eq!(
            announced_addr("serving metrics on nothing", "serving metrics on "),
            None
        );
    }

    #[test]
    fn spawned_child_announces_its_address() {
        let dir = std::env::temp_dir().join(format!("kiln-testkit-{}", crate::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("child.log");
        let (_child, addr) = spawn_announced(
            Command::new("sh").args(["-c", "echo 'up on http://127.0.0.1:9/x' >&2; sleep 30"]),
            &log,
            "up on ",
        );
        assert_eq!(addr, ([127, 0, 0, 1], 9).into());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
