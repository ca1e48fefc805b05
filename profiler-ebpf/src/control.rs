//! The control map userspace writes and every sample reads: the control flags (which
//! buffer samples go to, which runtimes' lookups are on: `profiler_common::control_flags`)
//! and the unwind epoch.

use aya_ebpf::{macros::map, maps::Array};
use profiler_common::control_index;

/// Indexed by `profiler_common::control_index`: the control flags and the unwind epoch.
#[map]
pub static ACTIVE_BUFFER: Array<u32> = Array::with_max_entries(2, 0);

/// The control flags (`profiler_common::control_flags`).
#[inline(always)]
pub fn flags() -> u32 {
    ACTIVE_BUFFER
        .get(control_index::FLAGS)
        .copied()
        .unwrap_or(0)
}

/// The unwind epoch (see `profiler_common::control_index::UNWIND_EPOCH`).
#[inline(always)]
pub fn unwind_epoch() -> u32 {
    ACTIVE_BUFFER
        .get(control_index::UNWIND_EPOCH)
        .copied()
        .unwrap_or(0)
}
