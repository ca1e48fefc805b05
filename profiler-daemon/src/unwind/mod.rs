//! DWARF CFI unwinding, userspace half: compile each binary's call frame information
//! into compact rows ([`table`]), keep the kernel's tables and per-process mapping lists
//! in step with the processes being profiled ([`loader`]). The kernel stores the
//! stacks it walks like frame-pointer stacks; truncated ones carry a flag that
//! [`mark_truncated`] turns into a `[truncated]` root frame.
//!
//! Which path a process takes: one with at least one mapped binary that has CFI is
//! registered and every sample of it is walked with the tables (mappings without a
//! table — no CFI, JIT code, the vdso — are stepped with frame pointers, frame by
//! frame); a process none of whose binaries has CFI (Go, most static binaries built
//! without unwind tables) is not registered and keeps the cheaper `bpf_get_stack`.

pub mod loader;
pub mod table;

use aya::EbpfLoader;
use profiler_common::unwind::{defaults, names};

pub use loader::{BpfUnwindMaps, LoaderStats, UnwindLoader};

/// Settings of the DWARF unwinder.
#[derive(Clone, Debug)]
pub struct UnwindConfig {
    pub enabled: bool,
    /// Kernel memory for unwind rows, in bytes (the cap; preallocated).
    pub table_bytes: u64,
    /// Processes unwound with tables at once.
    pub max_processes: u32,
}

impl Default for UnwindConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            table_bytes: defaults::TABLE_BYTES,
            max_processes: defaults::PROCESSES,
        }
    }
}

impl UnwindConfig {
    /// Rows `UNWIND_ROWS` gets (1 when disabled: maps cannot be empty).
    pub fn rows(&self) -> u32 {
        if self.enabled {
            (self.table_bytes / 8).clamp(1, 1 << 24) as u32
        } else {
            1
        }
    }

    /// Sets the unwinder's global and map sizes before the object is loaded.
    pub fn configure(&self, loader: &mut EbpfLoader<'_>) {
        static ON: u8 = 1;
        static OFF: u8 = 0;
        let procs = if self.enabled {
            self.max_processes.max(1)
        } else {
            1
        };
        loader
            .override_global(
                names::GLOBAL_ENABLED,
                if self.enabled { &ON } else { &OFF },
                true,
            )
            .map_max_entries(names::ROWS, self.rows())
            .map_max_entries(names::PROCS, procs)
            .map_max_entries(names::MAPPINGS, procs);
    }
}

/// Appended (root-most) to a user stack the unwinder could not finish, so the
/// aggregate shows a `[truncated]` root frame instead of a made-up caller.
pub const TRUNCATED_FRAME: u64 = u64::MAX;

/// Marks `user` (leaf first) truncated when the sample's flags say so.
pub fn mark_truncated(flags: u32, user: &mut Vec<u64>) {
    if flags & profiler_common::unwind::stack_flags::TRUNCATED != 0 && !user.is_empty() {
        user.push(TRUNCATED_FRAME);
    }
}
