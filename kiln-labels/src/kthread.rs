//! Kernel threads as one service.
//!
//! A kernel thread's `comm` names its work, not a program: `kworker/u8:3+flush-254:0`
//! changes with the work item, `ksoftirqd/1` and `migration/1` exist once per CPU. Used as
//! `service_name`, each of those would be its own service. Kiln labels every kernel thread
//! `service_name="kernel"` and puts a normalized thread name in the `kernel_thread` label
//! (see [`normalize`]), so the series count stays bounded by the kinds of kernel threads,
//! not by their instances or work items.

/// `service_name` of every kernel thread.
pub const KERNEL_SERVICE_NAME: &str = "kernel";

/// Final label carrying the normalized kernel thread name.
pub const KERNEL_THREAD_LABEL: &str = "kernel_thread";

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags (field 9): the task is a kernel thread.
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// The kind of a kernel thread, from its name: the part before the first `/`, `:` or `+`
/// (which carry the CPU, pool, device or work item), without a trailing `_<digits>` or
/// `-<digits>` instance number.
///
/// `kworker/u8:3+flush-254:0` → `kworker`, `ksoftirqd/1` → `ksoftirqd`,
/// `irq/24-ahci[0000:00:1f.2]` → `irq`, `jbd2/vda1-8` → `jbd2`, `scsi_eh_0` → `scsi_eh`,
/// `rcu_preempt` → `rcu_preempt`. A name that normalizes to nothing becomes `unknown`.
pub fn normalize(comm: &str) -> String {
    let base = comm.split(['/', ':', '+']).next().unwrap_or_default();
    let trimmed = base.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = match trimmed.strip_suffix(['_', '-']) {
        Some(stem) if trimmed.len() < base.len() && !stem.is_empty() => stem,
        _ => base,
    };
    if base.is_empty() {
        "unknown".to_owned()
    } else {
        base.to_owned()
    }
}

/// Whether a `/proc/<pid>/stat` flags word marks a kernel thread.
pub fn is_kernel_thread(flags: u32) -> bool {
    flags & PF_KTHREAD != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_to_their_kind() {
        for (comm, kind) in [
            ("kworker/u8:3+flush-254:0", "kworker"),
            ("kworker/1:1H", "kworker"),
            ("kworker/R-rcu_gp", "kworker"),
            ("ksoftirqd/1", "ksoftirqd"),
            ("migration/0", "migration"),
            ("cpuhp/1", "cpuhp"),
            ("irq/24-ahci[0000:00:1f.2]", "irq"),
            ("jbd2/vda1-8", "jbd2"),
            ("scsi_eh_0", "scsi_eh"),
            ("scsi_tmf_12", "scsi_tmf"),
            ("rcu_preempt", "rcu_preempt"),
            ("kthreadd", "kthreadd"),
            ("khugepaged", "khugepaged"),
            ("md0_raid1", "md0_raid1"),
            ("_0", "_0"),
            ("/0", "unknown"),
            ("", "unknown"),
        ] {
            assert_eq!(normalize(comm), kind, "{comm:?}");
        }
    }

    #[test]
    fn kthread_flag() {
        assert!(is_kernel_thread(0x0020_8040));
        assert!(!is_kernel_thread(0x0040_0100));
    }
}
