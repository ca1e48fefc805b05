use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_get_stack},
    macros::{map, perf_event, raw_tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, PerfEventContext, RawTracePointContext},
};
use profiler_common::{
    defaults, proc_event, ProcEvent, SampleKey, Stat, UserStack, MAX_STACK_DEPTH, STAT_COUNT,
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
#[map]
static USER_STACKS_0: HashMap<u64, UserStack> =
    HashMap::with_max_entries(defaults::STACK_ENTRIES, 0);
#[map]
static USER_STACKS_1: HashMap<u64, UserStack> =
    HashMap::with_max_entries(defaults::STACK_ENTRIES, 0);
/// Per-CPU room to copy a frame-pointer user stack into: too big for the BPF stack.
#[map]
static STACK_SCRATCH: PerCpuArray<UserStack> = PerCpuArray::with_max_entries(1, 0);
#[map]
static STACKS_0: StackTrace = StackTrace::with_max_entries(defaults::STACK_ENTRIES, 0);
#[map]
static STACKS_1: StackTrace = StackTrace::with_max_entries(defaults::STACK_ENTRIES, 0);
/// Index 0 holds the buffer (0 or 1) samples go to; userspace flips it before draining.
#[map]
static ACTIVE_BUFFER: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static PID_FILTER: HashMap<u32, u8> = HashMap::with_max_entries(defaults::PID_FILTER_ENTRIES, 0);
/// Processes userspace already heard of, so each new one is announced once.
#[map]
static KNOWN_PIDS: LruHashMap<u32, u8> =
    LruHashMap::with_max_entries(defaults::KNOWN_PIDS_ENTRIES, 0);
#[map]
static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(defaults::PROC_EVENTS_BYTES, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

#[inline(always)]
fn count(stat: Stat) {
    if let Some(p) = STATS.get_ptr_mut(stat as u32) {
        // Per-CPU slot and perf-event programs do not nest on one CPU: a plain add is safe.
        unsafe { *p += 1 };
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
    let scratch = unsafe { &mut *STACK_SCRATCH.get_ptr_mut(0)? };
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

/// Stores `stack` under a hash of its frames unless already there; returns the hash
/// (never 0).
#[inline(always)]
fn store_user_stack(stack: &UserStack, user_stacks: &HashMap<u64, UserStack>) -> Result<u64, ()> {
    // FNV-1a over whole words: cheap, and 64 bits make collisions negligible.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..MAX_STACK_DEPTH {
        if i as u64 >= stack.len {
            break;
        }
        hash = (hash ^ stack.ips[i]).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hash = (hash ^ stack.len).wrapping_mul(0x0000_0100_0000_01b3) | 1;
    if unsafe { user_stacks.get(&hash) }.is_none() {
        match user_stacks.insert(&hash, stack, BPF_NOEXIST as u64) {
            Ok(()) => {}
            // Another CPU stored the same stack meanwhile.
            Err(e) if e == -EEXIST => {}
            Err(_) => return Err(()),
        }
    }
    Ok(hash)
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

    let buffer = ACTIVE_BUFFER.get(0).copied().unwrap_or(0) & 1;
    let (counts, stacks, user_stacks) = if buffer == 0 {
        (&COUNTS_0, &STACKS_0, &USER_STACKS_0)
    } else {
        (&COUNTS_1, &STACKS_1, &USER_STACKS_1)
    };

    // Processes with unwind tables: the DWARF unwinder; the others: frame pointers.
    let mut flags = 0;
    let user_stack = match crate::unwinder::unwind_user(ctx, tgid, user_mode, count) {
        Some(Ok((stack, stack_flags))) => {
            flags = stack_flags;
            store_user_stack(unsafe { &*stack }, user_stacks).unwrap_or_else(|()| {
                count(Stat::DwarfStacksFull);
                0
            })
        }
        // No user registers: already counted by the unwinder.
        Some(Err(())) => 0,
        None => match frame_pointer_stack(ctx) {
            Some(stack) => store_user_stack(stack, user_stacks).unwrap_or_else(|()| {
                count(Stat::UserStacksFull);
                0
            }),
            None => {
                count(if user_mode {
                    Stat::UserStackMissing
                } else {
                    Stat::NoUserStack
                });
                0
            }
        },
    };
    let kernel_stack_id = if user_mode {
        -EFAULT
    } else {
        match ctx.get_stackid(stacks, 0) {
            Ok(id) => id as i32,
            Err(e) => {
                count(if e == -EEXIST {
                    Stat::KernelStackCollision
                } else {
                    Stat::KernelStackMissing
                });
                e
            }
        }
    };
    if user_stack == 0 && kernel_stack_id < 0 {
        count(Stat::NoStack);
        return Ok(());
    }

    let key = SampleKey {
        tgid,
        tid,
        user_stack,
        kernel_stack_id,
        flags,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        go_labels: crate::golabels::current_labels(tgid, buffer, count),
    };
    if let Some(p) = counts.get_ptr_mut(&key) {
        add_one(p);
        count(Stat::Recorded);
        return Ok(());
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
            return Ok(());
        }
    }
    // A key new to this buffer is the cheap moment to check whether the process is new.
    if unsafe { KNOWN_PIDS.get(&tgid) }.is_none() {
        let _ = KNOWN_PIDS.insert(&tgid, &1, 0);
        announce(proc_event::FIRST_SAMPLE, tgid);
    }
    Ok(())
}

// Raw tracepoints attach by name with no tracefs mounted (often absent in containers).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn kiln_sched_exec(_ctx: RawTracePointContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid_wanted(tgid) {
        let _ = KNOWN_PIDS.remove(&tgid);
        announce(proc_event::EXEC, tgid);
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn kiln_sched_exit(_ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // Only the thread-group leader's exit ends the process.
    if tgid == pid_tgid as u32 && tgid_wanted(tgid) {
        let _ = KNOWN_PIDS.remove(&tgid);
        announce(proc_event::EXIT, tgid);
    }
    0
}
