//! The control map userspace writes and every sample reads: which buffer samples go to,
//! which runtimes' lookups are on (`profiler_common::control`), and the unwind epoch.

use aya_ebpf::{macros::map, maps::Array};
use profiler_common::control;

/// Index 0: the control word (`profiler_common::control`): which buffer samples go to,
/// and whether any Go process is registered; index 1: the unwind epoch.
#[map]
pub static ACTIVE_BUFFER: Array<u32> = Array::with_max_entries(2, 0);

/// The control word.
#[inline(always)]
pub fn word() -> u32 {
    ACTIVE_BUFFER.get(control::WORD).copied().unwrap_or(0)
}

/// The unwind epoch (see `profiler_common::control::UNWIND_EPOCH`).
#[inline(always)]
pub fn unwind_epoch() -> u32 {
    ACTIVE_BUFFER
        .get(control::UNWIND_EPOCH)
        .copied()
        .unwrap_or(0)
}
