//! A `sleep` child with a known environment, shared by the integration tests (the rest
//! comes from `kiln-testkit`).

#![allow(dead_code)] // each test binary uses a different subset

use std::process::{Child, Command, Stdio};

/// The secret every test child carries; it must never surface.
pub const SECRET_VALUE: &str = "hunter2-kiln-secret";

/// A `sleep 30` child with a small, known environment; killed and reaped
/// on drop.
pub struct SleepChild {
    child: Child,
}

impl SleepChild {
    /// Spawns `sleep 30` with `REGION=us-west-1`, `SECRET=<SECRET_VALUE>`
    /// and decoys whose names only resemble allowed ones.
    pub fn spawn() -> Self {
        Self::spawn_with_env(&[
            ("REGION", "us-west-1"),
            ("SECRET", SECRET_VALUE),
            ("REGION_SECRET", SECRET_VALUE),
            ("XREGION", SECRET_VALUE),
        ])
    }

    /// Spawns `sleep 30` with exactly `PATH` and `env`.
    pub fn spawn_with_env(env: &[(&str, &str)]) -> Self {
        let child = Command::new("sleep")
            .arg("30")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        // spawn() returns after a successful exec, so /proc/<pid>/exe is sleep.
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills and reaps the child now; the pid is then gone.
    pub fn kill_and_reap(mut self) -> u32 {
        let pid = self.pid();
        self.stop();
        pid
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SleepChild {
    fn drop(&mut self) {
        self.stop();
    }
}
