//! The sampled thread's own state that runtimes read their thread-local data through.

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_get_current_task};

/// Set by the loader from the kernel's BTF: offset of `task_struct.thread.fsbase`; 0 =
/// unknown, and thread-local runtime data (Go labels, Python thread states) is not read.
#[no_mangle]
static FSBASE_OFFSET: u64 = 0;

/// Whether the loader found the offset of fsbase.
#[inline(always)]
pub fn fsbase_known() -> bool {
    (unsafe { core::ptr::read_volatile(&FSBASE_OFFSET) }) != 0
}

/// The current thread's thread pointer (x86_64 fsbase); None if it cannot be read.
#[inline(always)]
pub fn current_fsbase() -> Option<u64> {
    let offset = unsafe { core::ptr::read_volatile(&FSBASE_OFFSET) };
    if offset == 0 {
        return None;
    }
    let task = unsafe { bpf_get_current_task() };
    unsafe { bpf_probe_read_kernel((task + offset) as *const u64) }.ok()
}
