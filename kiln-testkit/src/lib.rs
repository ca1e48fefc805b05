//! What Kiln's integration and end-to-end tests share: root checks, unique ids, real
//! cgroups removed on drop, and child processes killed (by pid) and reaped on drop.
//!
//! A dev-dependency only; nothing here runs in the profiler.

mod cgroup;
mod child;

pub use cgroup::{cgroup2_mount, CgroupTree, UNIFIED};
pub use child::ChildGuard;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether the test runs as root (eBPF and cgroups need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True, after saying so on stderr, when a root-only test must be skipped.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIP {test}: needs root (eBPF, cgroups)");
    true
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
