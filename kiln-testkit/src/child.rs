use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The secret test processes carry in their environment; it must never surface in
/// anything Kiln exports, logs or serves.
pub const SECRET_VALUE: &str = "hunter2-kiln-secret";

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

    /// `sleep 30` with exactly `PATH` and `env`, no stdin.
    pub fn sleep_with_env(env: &[(&str, &str)]) -> Self {
        // spawn() returns after a successful exec, so /proc/<pid>/exe is sleep.
        Self::spawn(
            Command::new("sleep")
                .arg("30")
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .envs(env.iter().copied())
                .stdin(Stdio::null()),
        )
    }

    /// `sleep 30` with `REGION=us-west-1`, `SECRET=<SECRET_VALUE>` and decoys whose names
    /// only resemble `REGION`.
    pub fn sleep_with_secret() -> Self {
        Self::sleep_with_env(&[
            ("REGION", "us-west-1"),
            ("SECRET", SECRET_VALUE),
            ("REGION_SECRET", SECRET_VALUE),
            ("XREGION", SECRET_VALUE),
        ])
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Reads the child's piped stdout up to and including the first line that is `line`
    /// (a workload's readiness signal) and returns; panics when stdout ends first. Reads a
    /// byte at a time, so what follows stays for [`wait_stdout`](Self::wait_stdout).
    pub fn wait_for_line(&mut self, line: &str) {
        let stdout = self.0.stdout.as_mut().expect("the child's stdout is piped");
        let mut current = Vec::new();
        let mut seen = String::new();
        let mut byte = [0u8; 1];
        loop {
            match stdout.read(&mut byte) {
                Ok(0) | Err(_) => panic!(
                    "pid {}: stdout ended before a line {line:?}; it said {seen:?}",
                    self.0.id()
                ),
                Ok(_) if byte[0] == b'\n' => {
                    let text = String::from_utf8_lossy(&current).into_owned();
                    if text == line {
                        return;
                    }
                    seen.push_str(&text);
                    seen.push('\n');
                    current.clear();
                }
                Ok(_) => current.push(byte[0]),
            }
        }
    }

    /// Kills and reaps the child now, so its pid is gone; returns the pid.
    pub fn kill_and_reap(self) -> u32 {
        self.pid()
        // Dropped here: killed and reaped.
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
    fn wait_for_line_leaves_the_rest() {
        let mut child = ChildGuard::spawn(
            Command::new("sh")
                .args(["-c", "echo starting; echo ready; echo result"])
                .stdout(Stdio::piped()),
        );
        child.wait_for_line("ready");
        assert_eq!(child.wait_stdout(Duration::from_secs(10)), "result\n");
    }

    #[test]
    fn wait_stdout_returns_output() {
        let child = ChildGuard::spawn(Command::new("echo").arg("hi").stdout(Stdio::piped()));
        assert_eq!(child.wait_stdout(Duration::from_secs(10)), "hi\n");
    }
}
