//! The C workloads in `tests/workloads/`, built from source with frame pointers and
//! debug info into a cache shared by every test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kiln-testkit/ has a parent")
        .to_path_buf()
}

/// Compiles `tests/workloads/<name>.c` with `-O0 -g -fno-omit-frame-pointer` and
/// `extra_flags` into `target/test-workloads/` (again only when the source is newer) and
/// returns the executable.
pub fn build_workload(name: &str, extra_flags: &[&str]) -> PathBuf {
    // One build at a time in this process: tests running side by side ask for the same
    // workload, and replacing a file another test just started would leave its process
    // mapping a deleted file (which cannot be symbolized).
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let src = workspace_root()
        .join("tests/workloads")
        .join(format!("{name}.c"));
    let dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&dir).expect("create target/test-workloads");
    let tag: String = extra_flags.join("").replace(['-', '=', ' ', '/'], "");
    let exe = dir.join(if tag.is_empty() {
        name.to_owned()
    } else {
        format!("{name}-{tag}")
    });
    let newer = |a: &Path, b: &Path| match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.modified().unwrap() >= b.modified().unwrap(),
        _ => false,
    };
    if exe.is_file() && newer(&exe, &src) {
        return exe;
    }
    // Build under a unique name, then rename: test processes side by side share the cache
    // and never see a half-written file.
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(extra_flags)
        .status()
        .expect("gcc not found: run `cargo xtask setup`");
    assert!(status.success(), "compiling {} failed", src.display());
    std::fs::rename(&tmp, &exe).unwrap();
    exe
}
