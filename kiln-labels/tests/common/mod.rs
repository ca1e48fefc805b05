//! Helpers shared by the integration tests: unique names, real cgroups
//! that clean up after themselves, and child processes killed on drop.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The secret every test child carries; it must never surface.
pub const SECRET_VALUE: &str = "hunter2-kiln-secret";

/// Whether we run as root (cgroup tests need it).
pub fn is_root() -> bool {
    procfs::process::Process::myself()
        .and_then(|p| p.uid())
        .is_ok_and(|uid| uid == 0)
}

/// Returns true (and says why) when a root-only test must be skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root to create cgroups");
    true
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// 64 lowercase hex characters, like a container id.
pub fn random_container_id() -> String {
    (0..4).map(|_| format!("{:016x}", random_u64())).collect()
}

/// A random RFC 4122-shaped UID.
pub fn random_pod_uid() -> String {
    let hex = random_container_id();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A cgroup subtree `<mount>/kiln-test-<unique>/...` removed on drop,
/// deepest directories first. Drop it after the processes in it are dead.
pub struct CgroupTree {
    mount: PathBuf,
    created: Vec<PathBuf>,
    base: String,
}

/// cgroup v2 unified hierarchy on this machine (hybrid layout).
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

impl CgroupTree {
    /// Starts a tree in the hierarchy mounted at `mount`; nothing is created yet.
    pub fn new(mount: &str) -> Self {
        Self {
            mount: PathBuf::from(mount),
            created: Vec::new(),
            base: format!(
                "/kiln-test-{}-{:08x}",
                std::process::id(),
                random_u64() as u32
            ),
        }
    }

    /// Whether the hierarchy exists on this machine.
    pub fn available(mount: &str) -> bool {
        Path::new(mount).join("cgroup.procs").exists()
    }

    /// Creates `<base>/<relative>` (each level separately, so each is
    /// recorded for removal) and returns its cgroup path as the process
    /// will see it in `/proc/<pid>/cgroup`.
    pub fn create(&mut self, relative: &str) -> String {
        let mut path = self.base.clone();
        self.mkdir(&path);
        for component in relative.split('/').filter(|c| !c.is_empty()) {
            path.push('/');
            path.push_str(component);
            self.mkdir(&path);
        }
        path
    }

    fn mkdir(&mut self, cgroup_path: &str) {
        let dir = self.dir(cgroup_path);
        if dir.exists() {
            return;
        }
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.created.push(dir);
    }

    fn dir(&self, cgroup_path: &str) -> PathBuf {
        self.mount.join(cgroup_path.trim_start_matches('/'))
    }

    /// Moves `pid` into the cgroup at `cgroup_path`.
    pub fn move_into(&self, cgroup_path: &str, pid: u32) {
        let procs = self.dir(cgroup_path).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", procs.display()));
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // A just-killed task can keep a cgroup busy for a moment.
            for attempt in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if attempt == 49 => {
                        eprintln!("warning: cannot remove {}: {e}", dir.display())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

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
