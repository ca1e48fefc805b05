//! What Kiln's integration and end-to-end tests share: root checks, unique ids, real
//! cgroups removed on drop, child processes killed (by pid) and reaped on drop, a raw
//! HTTP client, pprof and push builders, the C workloads, servers' announced addresses,
//! and (feature `server`) Kiln's server in-process on port 0.
//!
//! A dev-dependency only; nothing here runs in the profiler. Helpers for the end-to-end
//! tests of the `kiln` binary live in the `kiln-tests` library.

mod cgroup;
mod child;
pub mod flamebearer;
pub mod http;
pub mod kube;
pub mod listen;
pub mod pprof;
#[cfg(feature = "server")]
pub mod server;
pub mod workload;

pub use cgroup::{cgroup2_mount, CgroupTree, UNIFIED};
pub use child::{ChildGuard, SECRET_VALUE};
pub use http::{get_json, http_get, request, urlencode, Answer};
pub use listen::{announced_addr, spawn_announced, wait_for_announced_addr};
#[cfg(feature = "server")]
pub use server::TestServer;
pub use workload::{build_workload, workspace_root};

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the test runs as root (eBPF and cgroups need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Set to `1` by `cargo xtask test` (and so by CI): a test that lacks root, a tool or a
/// host file fails instead of skipping, so a green run cannot hide untested features.
pub const REQUIRE_ENV: &str = "KILN_REQUIRE_ROOT";

/// Whether skipping is forbidden in this run (see [`REQUIRE_ENV`]).
pub fn skipping_forbidden() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1")
}

/// True, after saying so on stderr, when `test` must be skipped because `missing` (what
/// it needs and lacks) is unavailable; panics instead under `KILN_REQUIRE_ROOT=1`.
/// Returns false when `available`.
pub fn skip_unless(available: bool, test: &str, missing: &str) -> bool {
    if available {
        return false;
    }
    if skipping_forbidden() {
        panic!(
            "{test} cannot run: {missing}. {REQUIRE_ENV}=1 makes this a failure instead of a skip \
             (run `cargo xtask setup` as root to install what the tests use)"
        );
    }
    eprintln!("SKIP {test}: {missing}");
    true
}

/// True, after saying so on stderr, when a root-only test must be skipped; panics under
/// `KILN_REQUIRE_ROOT=1`.
pub fn skip_unless_root(test: &str) -> bool {
    skip_unless(is_root(), test, "needs root (eBPF, cgroups)")
}

/// Whether `name` is an executable on PATH.
pub fn has_command(name: &str) -> bool {
    which(name).is_some()
}

/// The path of the executable `name` on PATH.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt as _;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A value no other call in any process is likely to return: tests running side by side
/// on one host name their cgroups, pods and containers with it.
pub fn random_u64() -> u64 {
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

/// A random RFC 4122-shaped UID, like a pod's.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_is_a_failure_when_required() {
        // The variable is read per call; set it only inside a child test process so
        // parallel tests in this binary are not affected.
        if std::env::var_os("KILN_TESTKIT_CHILD").is_some() {
            skip_unless(false, "child", "a thing that is missing");
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let run = |require: &str| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "tests::skip_is_a_failure_when_required",
                    "--nocapture",
                ])
                .env("KILN_TESTKIT_CHILD", "1")
                .env(REQUIRE_ENV, require)
                .output()
                .unwrap()
        };
        let required = run("1");
        assert!(
            !required.status.success(),
            "a skip under {REQUIRE_ENV}=1 must fail"
        );
        let text = String::from_utf8_lossy(&required.stdout).into_owned()
            + &String::from_utf8_lossy(&required.stderr);
        assert!(text.contains("a thing that is missing"), "{text}");
        let allowed = run("0");
        assert!(
            allowed.status.success(),
            "without {REQUIRE_ENV}=1 a skip passes"
        );
        assert!(!skip_unless(true, "x", "y"));
    }

    #[test]
    fn which_finds_sh() {
        assert!(has_command("sh"));
        assert!(!has_command("kiln-no-such-command"));
    }

    #[test]
    fn ids_are_unique_and_shaped() {
        let a = random_container_id();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, random_container_id());
        let uid = random_pod_uid();
        let parts: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
    }
}
