use std::path::{Path, PathBuf};
use std::time::Duration;

/// cgroup v2's unified hierarchy in the hybrid layout (this machine's).
pub const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The cgroup v2 mount: the hybrid layout's `unified`, else the root of a pure v2 system.
pub fn cgroup2_mount() -> Option<&'static str> {
    [UNIFIED, "/sys/fs/cgroup"]
        .into_iter()
        .find(|m| CgroupTree::available(m))
}

/// A cgroup subtree `<mount>/kiln-test-<pid>-<random>/...`, removed deepest first on
/// drop. Drop it after the processes in it are dead.
pub struct CgroupTree {
    mount: PathBuf,
    /// The subtree's root as a cgroup path (`/kiln-test-...`).
    base: String,
    created: Vec<PathBuf>,
}

impl CgroupTree {
    /// A tree in the hierarchy mounted at `mount`; nothing is created yet.
    pub fn new(mount: &str) -> Self {
        Self {
            mount: PathBuf::from(mount),
            base: format!(
                "/kiln-test-{}-{:08x}",
                std::process::id(),
                crate::random_u64() as u32
            ),
            created: Vec::new(),
        }
    }

    /// Whether a hierarchy is mounted at `mount` on this machine.
    pub fn available(mount: &str) -> bool {
        Path::new(mount).join("cgroup.procs").exists()
    }

    /// Creates `<base>/<relative>`, each level separately so that each is removed on
    /// drop, and returns its cgroup path as `/proc/<pid>/cgroup` shows it.
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

    /// Like [`create`](Self::create), but returns the new cgroup's `cgroup.procs` file.
    pub fn create_procs(&mut self, relative: &str) -> PathBuf {
        let path = self.create(relative);
        self.procs(&path)
    }

    /// The directory of the cgroup at `cgroup_path`.
    pub fn dir(&self, cgroup_path: &str) -> PathBuf {
        self.mount.join(cgroup_path.trim_start_matches('/'))
    }

    /// The `cgroup.procs` file of the cgroup at `cgroup_path`: a pid written there joins it.
    pub fn procs(&self, cgroup_path: &str) -> PathBuf {
        self.dir(cgroup_path).join("cgroup.procs")
    }

    /// Moves `pid` into the cgroup at `cgroup_path`.
    pub fn move_into(&self, cgroup_path: &str, pid: u32) {
        let procs = self.procs(cgroup_path);
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", procs.display()));
    }

    fn mkdir(&mut self, cgroup_path: &str) {
        let dir = self.dir(cgroup_path);
        if dir.exists() {
            return;
        }
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.created.push(dir);
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            // A just-killed task can keep its cgroup busy for a moment.
            for attempt in 0..100 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if attempt == 99 => {
                        eprintln!("warning: cannot remove {}: {e}", dir.display())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_levels_and_removes_them_on_drop() {
        const TEST: &str = "creates_levels_and_removes_them_on_drop";
        if crate::skip_unless_root(TEST) {
            return;
        }
        let mount = cgroup2_mount();
        if crate::skip_unless(mount.is_some(), TEST, "no cgroup v2 hierarchy") {
            return;
        }
        let mount = mount.unwrap();
        let mut tree = CgroupTree::new(mount);
        let path = tree.create("a/b");
        assert!(
            path.starts_with("/kiln-test-") && path.ends_with("/a/b"),
            "{path}"
        );
        let dir = tree.dir(&path);
        assert!(tree.procs(&path).exists());
        assert_eq!(tree.create_procs("a/b"), tree.procs(&path));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        tree.move_into(&path, child.id());
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(cgroup.contains(&path), "{cgroup}");
        let _ = child.kill();
        let _ = child.wait();
        drop(tree);
        assert!(!dir.exists());
        assert!(!dir.parent().unwrap().exists());
    }
}
