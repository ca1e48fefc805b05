use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (by pid) and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")),
        )
    }

    /// `sleep 60`, with no stdin or stdout: a process to label, move or kill.
    pub fn sleep() -> Self {
        Self::spawn(
            Command::new("sleep")
                .arg("60")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until the child exits, asserts that it succeeded, and returns its stdout
    /// (piped, or empty).
    pub fn wait_stdout(mut self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                let mut out = String::new();
                if let Some(mut s) = self.0.stdout.take() {
                    let _ = s.read_to_string(&mut out);
                }
                assert!(status.success(), "child failed: {status}: {out}");
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "child still running after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_kills_and_reaps() {
        let child = ChildGuard::sleep();
        let pid = child.pid();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        // Reaped, so the pid is gone (not a zombie).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn wait_stdout_returns_output() {
        let child = ChildGuard::spawn(Command::new("echo").arg("hi").stdout(Stdio::piped()));
        assert_eq!(child.wait_stdout(Duration::from_secs(10)), "hi\n");
    }
}
