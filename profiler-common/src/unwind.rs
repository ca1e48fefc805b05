//! DWARF CFI unwinding, shared by the kernel unwinder and the daemon that feeds it.
//!
//! Userspace compiles every binary's `.eh_frame` (and `.debug_frame`) into [`UnwindRow`]s,
//! 8 bytes each, sorted by pc, and writes them into one big array map (`UNWIND_ROWS`);
//! each binary owns one contiguous range of it, shared by every process that maps it.
//! Per process, `UNWIND_PROCS` maps the tgid to a slot of `UNWIND_MAPPINGS`, which holds
//! that process's executable mappings ([`ProcUnwindInfo`]), sorted, each naming its
//! binary's row range and load bias. The kernel walks the user stack with these rows
//! (frame pointers for mappings without rows) into the sampler's user-stack maps
//! (`USER_STACKS`, the same as the frame-pointer path), and flags stacks it could
//! not finish in `SampleKey::flags` ([`stack_flags`]).

use crate::MAX_STACK_DEPTH;

/// Executable mappings kept per process; further ones (sorted by address) are dropped
/// and counted by the daemon.
pub const MAX_UNWIND_MAPPINGS: usize = 128;

/// Frames the unwinder walks: the same depth `bpf_get_stackid` records.
pub const MAX_UNWIND_FRAMES: usize = MAX_STACK_DEPTH;

/// Map and global names.
pub mod names {
    pub const ROWS: &str = "UNWIND_ROWS";
    pub const PROCS: &str = "UNWIND_PROCS";
    pub const MAPPINGS: &str = "UNWIND_MAPPINGS";
    /// Read-only global: 1 = unwind registered processes with their tables.
    pub const GLOBAL_ENABLED: &str = "UNWIND_ENABLED";
}

/// Default sizes; all overridable from the command line.
pub mod defaults {
    /// Bytes of kernel memory for unwind rows (8 bytes per row): 64 MiB = 8 Mi rows,
    /// enough for ~40 typical binaries as big as libc + python3 together ~100 times.
    pub const TABLE_BYTES: u64 = 64 << 20;
    /// Processes with unwind information at once (4 KiB each).
    pub const PROCESSES: u32 = 2_048;
}

/// One row of a compiled unwind table: the rule for `[pc, next row's pc)`.
///
/// `pc` is relative to the binary's table base (see [`UnwindMapping::bias`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnwindRow {
    pub pc: u32,
    /// CFA = base register + `cfa_offset` (for [`row_kind::PLT`]: rsp + `cfa_offset`,
    /// plus 8 once the pc's low 4 bits reach `rbp_offset`).
    pub cfa_offset: u16,
    /// One of [`row_kind`].
    pub kind: u8,
    /// rbp was saved at CFA + 8 * `rbp_offset`; 0 = rbp still holds the caller's value.
    pub rbp_offset: i8,
}

/// Values of [`UnwindRow::kind`].
pub mod row_kind {
    /// CFA = rsp + offset; return address at CFA - 8.
    pub const CFA_RSP: u8 = 0;
    /// CFA = rbp + offset; return address at CFA - 8.
    pub const CFA_RBP: u8 = 1;
    /// The PLT's well-known CFA expression: rsp + offset + 8 * ((rip & 15) >= threshold).
    pub const PLT: u8 = 2;
    /// A signal trampoline (`__restore_rt`): the interrupted registers are in the
    /// `ucontext_t` at rsp.
    pub const SIGNAL: u8 = 3;
    /// Return address undefined: the outermost frame (`_start`, `clone`). The stack is
    /// complete.
    pub const END: u8 = 4;
    /// No FDE covers this pc (the space between two functions).
    pub const GAP: u8 = 5;
    /// A rule the kernel does not evaluate (DWARF expression, CFA based on another
    /// register, rbp or the return address saved somewhere unusual).
    pub const UNSUPPORTED: u8 = 6;
}

/// Offsets in the `ucontext_t` a signal frame's rsp points at (x86_64):
/// `uc_mcontext.gregs[REG_RBP|REG_RSP|REG_RIP]`.
pub mod sigframe {
    pub const RBP: u64 = 40 + 10 * 8;
    pub const RSP: u64 = 40 + 15 * 8;
    pub const RIP: u64 = 40 + 16 * 8;
}

/// One executable mapping of a process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindMapping {
    pub start: u64,
    pub end: u64,
    /// Row pc = address - bias (wrapping); covers the load address, the ELF segment's
    /// vaddr/offset and the table base.
    pub bias: u64,
    /// First row in `UNWIND_ROWS`.
    pub table_start: u32,
    /// Rows of this binary; 0 = no table: unwind this mapping with frame pointers.
    pub table_len: u32,
}

/// The executable mappings of one process, sorted by start (`len` used).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcUnwindInfo {
    pub len: u32,
    /// Changes (never 0) every time userspace writes the entry: rows the kernel side
    /// cached for this process are valid only under the generation they were found in.
    pub generation: u32,
    pub mappings: [UnwindMapping; MAX_UNWIND_MAPPINGS],
}

impl Default for ProcUnwindInfo {
    fn default() -> Self {
        Self {
            len: 0,
            generation: 0,
            mappings: [UnwindMapping::default(); MAX_UNWIND_MAPPINGS],
        }
    }
}

/// Bits of `SampleKey::flags` the unwinder sets.
pub mod stack_flags {
    /// The walk stopped before the outermost frame (depth limit, missing or
    /// unsupported unwind information, unreadable memory): the root is unknown.
    pub const TRUNCATED: u32 = 1;
    /// The Python frames (`SampleKey::python_stack`) stop before the outermost one
    /// (deeper than `MAX_PY_FRAMES`, or a frame could not be read).
    pub const PYTHON_TRUNCATED: u32 = 2;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, #[repr(C)], no padding-dependent invariants.
    unsafe impl aya::Pod for super::UnwindRow {}
    unsafe impl aya::Pod for super::UnwindMapping {}
    unsafe impl aya::Pod for super::ProcUnwindInfo {}
}
