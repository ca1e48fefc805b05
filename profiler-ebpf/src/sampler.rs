use core::{
    ffi::c_void,
    intrinsics::{atomic_xadd, AtomicOrdering},
};

use crate::{
    hash::{hash_finish, hash_step, HASH_SEED},
    scratch::cpu_scratch,
};
use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid,
        generated::{bpf_get_stack, bpf_loop},
    },
    macros::{map, perf_event, raw_tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, PerfEventContext, RawTracePointContext},
};
use profiler_common::{
    control_flags, defaults, proc_event, ProcEvent, SampleKey, Stat, UserStack, MAX_STACK_DEPTH,
    STAT_COUNT,
};

const EFAULT: i32 = 14;
const EEXIST: i32 = 17;

/// Set by the loader: 1 = record only tgids present in `PID_FILTER`.
#[no_mangle]
static FILTER_PIDS: u8 = 0;
/// Set by the loader: 1 = also record the idle task (pid 0).
#[no_mangle]
static INCLUDE_IDLE: u8 = 0;

#[map]
static COUNTS_0: HashMap<SampleKey, u64> = HashMap::with_max_entries(defaults::COUNTS_ENTRIES, 0);
#[map]
static COUNTS_1: HashMap<SampleKey, u64> = HashMap::with_max_entries(defaults::COUNTS_ENTRIES, 0);
/// User stacks of both buffers: a stack is copied in once and then only looked up, until
/// it is the least recently used one when room is needed.
#[map]
static USER_STACKS: LruHashMap<u64, UserStack> =
    LruHashMap::with_max_entries(2 * defaults::STACK_ENTRIES, 0);
#[map]
static STACKS_0: StackTrace = StackTrace::with_max_entries(defaults::STACK_ENTRIES, 0);
#[map]
static STACKS_1: StackTrace = StackTrace::with_max_entries(defaults::STACK_ENTRIES, 0);
#[map]
static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(defaults::PID_FILTER_ENTRIES, 0);
/// Processes userspace already heard of, so each new one is announced once.
#[map]
static KNOWN_PIDS: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(defaults::KNOWN_PIDS_ENTRIES, 0);
#[map]
static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(defaults::PROC_EVENTS_BYTES, 0);
/// All counters of a CPU in one value: a sample's few increments share its cache lines
/// (one entry per counter would be one allocation each).
#[map]
static STATS: PerCpuArray<[u64; STAT_COUNT as usize]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn count(stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(0) {
        // Per-CPU value and perf-event programs do not nest on one CPU: a plain add is safe.
        unsafe { (*p)[stat as usize] += 1 };
    }
}

/// [`count`] for a stat chosen at run time. The index is made opaque to LLVM right
/// before its bounds check, so that the check and the access use the same register (LLVM
/// would otherwise check a copy, or drop the check, and the verifier reject the access).
#[inline(always)]
fn count_dynamic(stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(0) {
        let i = core::hint::black_box(stat as usize);
        if let Some(n) = unsafe { (*p).get_mut(i) } {
            *n += 1;
        }
    }
}

/// Atomic increment across CPUs (BPF_ATOMIC_ADD); `AtomicU64` has no `fetch_add` on the
/// bpf target, so use the intrinsic it is built on.
#[inline(always)]
fn add_one(p: *mut u64) {
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, 1) };
}

#[inline(always)]
fn global(v: &'static u8) -> u8 {
    // The loader rewrites .rodata; volatile keeps the compiler from folding the default.
    unsafe { core::ptr::read_volatile(v) }
}

#[inline(always)]
fn tgid_wanted(tgid: u32) -> bool {
    global(&FILTER_PIDS) == 0 || unsafe { PID_FILTER.get(&tgid) }.is_some()
}

#[inline(always)]
fn announce(kind: u32, tgid: u32) {
    let event = ProcEvent { kind, tgid };
    if PROC_EVENTS.output::<ProcEvent>(&event, 0).is_err() {
        count(Stat::EventsLost);
    }
}

/// The user stack by frame pointers, copied into per-CPU scratch.
#[inline(always)]
fn frame_pointer_stack(ctx: &PerfEventContext) -> Option<&'static UserStack> {
    let scratch = unsafe { &mut (*cpu_scratch()?).stack };
    let bytes = unsafe {
        bpf_get_stack(
            ctx.ctx.cast(),
            scratch.ips.as_mut_ptr().cast(),
            (MAX_STACK_DEPTH * 8) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if bytes <= 0 {
        return None;
    }
    scratch.len = (bytes as u64 / 8).min(MAX_STACK_DEPTH as u64);
    Some(scratch)
}

/// The hash of the frame-pointer stack in `CpuScratch::stack`. A `bpf_loop` over its
/// frames: an unrolled loop with an exit per depth made the verifier check everything
/// after it once per depth.
#[inline(always)]
fn stack_hash(len: u64) -> u64 {
    let mut hash = HASH_SEED;
    unsafe {
        bpf_loop(
            len.min(MAX_STACK_DEPTH as u64) as u32,
            hash_frame as *mut c_void,
            &mut hash as *mut u64 as *mut c_void,
            0,
        )
    };
    hash_finish(hash, len)
}

extern "C" fn hash_frame(index: u64, ctx: *mut c_void) -> i64 {
    let hash = unsafe { &mut *(ctx as *mut u64) };
    let Some(cpu) = cpu_scratch() else {
        return 1;
    };
    if index >= MAX_STACK_DEPTH as u64 {
        return 1;
    }
    *hash = hash_step(*hash, unsafe { (*cpu).stack.ips[index as usize] });
    0
}

/// Stores the stack in `CpuScratch::stack` under `hash` unless already there (the lookup
/// also marks it recently used, so it is likely to outlive the drain that reads it).
/// False if it could not be stored.
#[inline(always)]
fn user_stack_stored(hash: u64) -> bool {
    if unsafe { USER_STACKS.get(&hash) }.is_some() {
        return true;
    }
    let Some(cpu) = cpu_scratch() else {
        return false;
    };
    match USER_STACKS.insert(&hash, unsafe { &(*cpu).stack }, BPF_NOEXIST as u64) {
        Ok(()) => true,
        // Another CPU stored the same stack meanwhile.
        Err(e) => e == -EEXIST,
    }
}

#[perf_event]
pub fn kiln_sample(ctx: PerfEventContext) -> u32 {
    let _ = try_sample(&ctx);
    0
}

#[inline(always)]
fn try_sample(ctx: &PerfEventContext) -> Result<(), ()> {
    count(Stat::Samples);
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 && global(&INCLUDE_IDLE) == 0 {
        count(Stat::IdleSkipped);
        return Ok(());
    }
    if !tgid_wanted(tgid) {
        count(Stat::FilteredOut);
        return Ok(());
    }
    // The low two bits of CS are the privilege level the CPU was interrupted in.
    let user_mode = unsafe { (*ctx.ctx).regs.cs } & 3 == 3;
    let flags = crate::control::flags();
    let buffer = flags & control_flags::BUFFER;

    // Everything that does not depend on the buffer comes first: the verifier checks code
    // after the buffer's branch once per branch, and this is the expensive part.
    let go_labels = if flags & control_flags::GO_PROCESSES != 0 {
        crate::golabels::current_labels(tgid, buffer, count_dynamic)
    } else {
        0
    };
    let (python_stack, python_flags) = if flags & control_flags::PY_PROCESSES != 0 {
        crate::python::current_stack(tgid, count_dynamic)
    } else {
        (0, 0)
    };
    // Processes with unwind tables: the DWARF unwinder; the others: frame pointers. Both
    // leave the stack in `CpuScratch::stack`.
    let mut sample = Sample {
        tgid,
        tid,
        user_mode,
        user_hash: 0,
        flags: 0,
        stacks_full: Stat::UserStacksFull,
        go_labels,
        python_stack,
    };
    match crate::unwinder::unwind_user(ctx, tgid, user_mode, count, count_dynamic) {
        Some(Ok((flags, hash))) => {
            sample.flags = flags;
            sample.stacks_full = Stat::DwarfStacksFull;
            sample.user_hash = hash;
        }
        // No user registers: already counted by the unwinder.
        Some(Err(())) => {}
        None => match frame_pointer_stack(ctx) {
            Some(stack) => sample.user_hash = stack_hash(stack.len),
            None => count_dynamic(if user_mode {
                Stat::UserStackMissing
            } else {
                Stat::NoUserStack
            }),
        },
    }
    sample.flags |= python_flags;
    if buffer == 0 {
        record(ctx, &sample, &COUNTS_0, &STACKS_0);
    } else {
        record(ctx, &sample, &COUNTS_1, &STACKS_1);
    }
    Ok(())
}

/// What [`record`] stores for one sample.
struct Sample {
    tgid: u32,
    tid: u32,
    user_mode: bool,
    /// Hash of the user stack in `CpuScratch::stack`; 0: none. (A flag and a second lookup of
    /// the scratch map, not a pointer: the verifier loses pointers stored in a struct.)
    user_hash: u64,
    flags: u32,
    /// What to count if the user stack map is full.
    stacks_full: Stat,
    go_labels: u64,
    /// Key of the Python frames in `PY_STACKS`; 0: none.
    python_stack: u64,
}

/// Stores the stacks and counts the sample in one buffer's maps.
#[inline(always)]
fn record(
    ctx: &PerfEventContext,
    s: &Sample,
    counts: &HashMap<SampleKey, u64>,
    stacks: &StackTrace,
) {
    let kernel_stack_id = if s.user_mode {
        -EFAULT
    } else {
        match ctx.get_stackid(stacks, 0) {
            Ok(id) => id as i32,
            Err(e) => {
                count_dynamic(if e == -EEXIST {
                    Stat::KernelStackCollision
                } else {
                    Stat::KernelStackMissing
                });
                e
            }
        }
    };
    if s.user_hash == 0 && kernel_stack_id < 0 {
        count(Stat::NoStack);
        return;
    }

    let mut key = SampleKey {
        tgid: s.tgid,
        tid: s.tid,
        user_stack: s.user_hash,
        kernel_stack_id,
        flags: s.flags,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        go_labels: s.go_labels,
        python_stack: s.python_stack,
    };
    // Userspace zeroes the keys it drains instead of deleting them, so a recurring key
    // costs one lookup. Its user stack need not stay in the LRU map: userspace keeps the
    // stacks of the keys it keeps, and deletes a key whose stack it could not read.
    if let Some(p) = counts.get_ptr_mut(&key) {
        add_one(p);
        count(Stat::Recorded);
        return;
    }
    if s.user_hash != 0 && !user_stack_stored(s.user_hash) {
        count_dynamic(s.stacks_full);
        if kernel_stack_id < 0 {
            count(Stat::NoStack);
            return;
        }
        key.user_stack = 0;
    }
    match counts.insert(&key, &1, BPF_NOEXIST as u64) {
        Ok(()) => count(Stat::Recorded),
        // Another CPU inserted the same key between our lookup and insert.
        Err(e) if e == -EEXIST => match counts.get_ptr_mut(&key) {
            Some(p) => {
                add_one(p);
                count(Stat::Recorded);
            }
            None => count(Stat::CountsMapFull),
        },
        Err(_) => {
            count(Stat::CountsMapFull);
            return;
        }
    }
    // A key new to this buffer is the cheap moment to check whether the process is new.
    if unsafe { KNOWN_PIDS.get(&s.tgid) }.is_none() {
        let _ = KNOWN_PIDS.insert(&s.tgid, &1, 0);
        announce(proc_event::FIRST_SAMPLE, s.tgid);
    }
}

// Raw tracepoints attach by name with no tracefs mounted (often absent in containers).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn kiln_sched_exec(_ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Only processes userspace knows (sampled before) need forgetting; the new program is
    // announced by its own first sample. Skipping the rest keeps a fork+exec storm from
    // waking the agent for processes that never run on a sampled tick.
    if KNOWN_PIDS.remove(&tgid).is_ok() {
        announce(proc_event::EXEC, tgid);
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn kiln_sched_exit(_ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only the thread-group leader's exit ends the process.
    if tgid == pid_tgid as u32 && KNOWN_PIDS.remove(&tgid).is_ok() {
        announce(proc_event::EXIT, tgid);
    }
    0
}
