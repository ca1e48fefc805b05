//! Per-CPU scratch state of a sample: the user stack being taken and the DWARF walk's
//! registers, window and row cache, in one per-CPU value. Its own module so that the
//! sampler (which fills the stack by frame pointers) and the unwinder (which walks it)
//! both use it without importing each other.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use profiler_common::UserStack;

/// The walk's registers and progress. It lives in per-CPU map memory, not on the
/// sampler's stack: the verifier treats values read from a map as unknown, so the
/// callback's entry state is the same on every iteration and it is verified a couple of
/// times, instead of once per combination of the constants that steps store (stop
/// reasons, the exact-pc flag), which made it the bulk of the program's verification.
#[repr(C)]
pub(crate) struct Walk {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) bp: u64,
    /// FNV-1a over the frames pushed so far (`crate::hash`).
    pub(crate) hash: u64,
    pub(crate) slot: u32,
    /// The process's `ProcUnwindInfo::generation`.
    pub(crate) generation: u32,
    pub(crate) len: u32,
    /// 1 while `ip` is an exact pc (leaf frame, frame interrupted by a signal), not a
    /// return address.
    pub(crate) exact: u32,
    pub(crate) result: u32,
    pub(crate) _pad: u32,
}

/// Bytes of user stack copied per `bpf_probe_read_user`.
pub(crate) const WINDOW_BYTES: u64 = 512;
pub(crate) const WINDOW_WORDS: usize = WINDOW_BYTES as usize / 8;

/// A copy of the stretch of user stack the walk is reading. Each `bpf_probe_read_user`
/// has a fixed cost far above that of copying a few hundred bytes, and a walk reads
/// upwards through adjacent frames: one copy serves several frames.
#[repr(C)]
pub(crate) struct StackWindow {
    /// User address of `words[0]`.
    pub(crate) base: u64,
    /// Bytes of `words` copied; 0 = empty.
    pub(crate) len: u64,
    pub(crate) words: [u64; WINDOW_WORDS],
}

/// A row found for a pc of a process, like a TLB entry: a hot frame then costs one cache
/// line instead of the two binary searches (a dozen or more cold cache lines per frame).
/// 16 bytes: the row without its pc, which `pc` makes redundant.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CachedRow {
    pub(crate) pc: u64,
    /// `ProcUnwindInfo::generation` when the row was found; 0 = empty.
    pub(crate) generation: u32,
    pub(crate) cfa_offset: u16,
    pub(crate) kind: u8,
    pub(crate) rbp_offset: i8,
}

/// Direct-mapped, per CPU, in [`ROW_CACHE_GROUPS`] page-sized groups: a process's rows
/// go to one group (chosen by its generation), so that the frames of a walk share a
/// page or two instead of touching one page each.
pub(crate) const ROW_CACHE_ENTRIES: u32 = 1024;
pub(crate) const ROW_CACHE_GROUP_ENTRIES: u32 = 4096 / core::mem::size_of::<CachedRow>() as u32;
pub(crate) const ROW_CACHE_GROUPS: u32 = ROW_CACHE_ENTRIES / ROW_CACHE_GROUP_ENTRIES;

/// Everything a sample writes besides the maps it stores into: the user stack being
/// taken (by frame pointers or by the walk) and the walk's state, in one per-CPU value
/// (~18 KiB, under the 32 KiB a per-CPU value may have), the small parts first. One
/// value, not one map each: each is a separate allocation, so one more page per sample.
#[repr(C)]
pub struct CpuScratch {
    pub(crate) walk: Walk,
    /// The process this CPU unwound last, its slot and generation: the next sample of
    /// it then reads neither `UNWIND_PROCS` nor `UNWIND_MAPPINGS` unless a row is
    /// missing from the cache. Trusted while the unwind epoch is `last_epoch`.
    pub(crate) last_tgid: u32,
    pub(crate) last_slot: u32,
    pub(crate) last_generation: u32,
    pub(crate) last_epoch: u32,
    pub(crate) window: StackWindow,
    /// The user stack of the current sample, whichever way it was taken.
    pub stack: UserStack,
    pub(crate) rows: [CachedRow; ROW_CACHE_ENTRIES as usize],
}

#[map]
static CPU_SCRATCH: PerCpuArray<CpuScratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch value.
#[inline(always)]
pub fn cpu_scratch() -> Option<*mut CpuScratch> {
    CPU_SCRATCH.get_ptr_mut(0)
}
