//! DWARF CFI user-stack unwinder.
//!
//! For a process userspace registered in `UNWIND_PROCS` (one with at least one compiled
//! unwind table), walk the user stack frame by frame inside `bpf_loop` (one verified
//! callback, up to [`MAX_UNWIND_FRAMES`] iterations):
//!
//! 1. find the executable mapping of the pc (binary search over the process's sorted
//!    mappings in `UNWIND_MAPPINGS[slot]`);
//! 2. mapping with a table: binary-search the binary's rows in `UNWIND_ROWS` for the
//!    last row at or below `pc - bias` (the return address minus one for callers, so a
//!    call that ends a function is looked up in that function), then
//!    CFA = rsp|rbp + offset (or the PLT rule), return address = *(CFA - 8),
//!    rbp = *(CFA + 8k) when saved, rsp = CFA; signal trampolines restore rip/rsp/rbp
//!    from the `ucontext_t`;
//! 3. mapping without a table (no CFI, JIT, vdso): one frame-pointer step.
//!
//! The walk ends complete at a row whose return address is undefined (`_start`,
//! `clone`), a zero return address or a zero frame pointer; anything else that stops it
//! (depth limit, pc outside every mapping or table, an unsupported rule, unreadable
//! memory, a frame that does not move up the stack) marks the stack truncated and counts
//! the reason in `STATS`. Frames are never invented: a truncated stack keeps the frames
//! found so far.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::generated::{self, bpf_get_current_task_btf, bpf_loop, bpf_task_pt_regs},
    macros::map,
    maps::{Array, HashMap},
    programs::PerfEventContext,
};
use profiler_common::{
    unwind::{
        defaults, row_kind, sigframe, stack_flags, ProcUnwindInfo, UnwindRow, MAX_UNWIND_FRAMES,
        MAX_UNWIND_MAPPINGS,
    },
    Stat,
};

use crate::scratch::{
    cpu_scratch, CachedRow, CpuScratch, StackWindow, Walk, ROW_CACHE_ENTRIES, ROW_CACHE_GROUPS,
    ROW_CACHE_GROUP_ENTRIES, WINDOW_BYTES, WINDOW_WORDS,
};

/// Set by the loader: 1 = unwind registered processes with their tables.
#[no_mangle]
static UNWIND_ENABLED: u8 = 0;

/// All binaries' rows; resized by the loader to the memory cap, mmapped by userspace.
#[map]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(1, BPF_F_MMAPABLE);
/// tgid -> slot of `UNWIND_MAPPINGS`.
#[map]
static UNWIND_PROCS: HashMap<u32, u32> = HashMap::with_max_entries(defaults::PROCESSES, 0);
#[map]
static UNWIND_MAPPINGS: Array<ProcUnwindInfo> = Array::with_max_entries(defaults::PROCESSES, 0);

/// Rows per table the search covers: 2^24 (128 MiB of rows, above any cap we allow).
const ROW_SEARCH_STEPS: u32 = 24;
/// 2^8 > MAX_UNWIND_MAPPINGS.
const MAPPING_SEARCH_STEPS: u32 = 8;

const RUNNING: u32 = 0;
const COMPLETE: u32 = 1;
/// Otherwise `result` is STOPPED + the Stat that explains the stop.
const STOPPED: u32 = 0x100;

/// A `kind` for cached pcs of mappings without a table (unwound by frame pointer).
const KIND_FRAME_POINTER: u8 = 0xfe;

/// The word at `addr`, through the window.
#[inline(always)]
fn read_word(window: &mut StackWindow, addr: u64) -> Option<u64> {
    let i = window_index(window, addr, 8)?;
    Some(window.words[i & (WINDOW_WORDS - 1)])
}

/// The two words at `addr` (a saved rbp and the return address above it), through the
/// window.
#[inline(always)]
fn read_pair(window: &mut StackWindow, addr: u64) -> Option<[u64; 2]> {
    let i = window_index(window, addr, 16)?;
    Some([
        window.words[i & (WINDOW_WORDS - 1)],
        window.words[(i + 1) & (WINDOW_WORDS - 1)],
    ])
}

/// The index in `window.words` of `bytes` at `addr`, copying the stack from `addr` up
/// first unless the window already holds them.
#[inline(always)]
fn window_index(window: &mut StackWindow, addr: u64, bytes: u64) -> Option<usize> {
    let off = addr.wrapping_sub(window.base);
    if off & 7 == 0 && off < WINDOW_BYTES && off + bytes <= window.len {
        // Opaque to LLVM: the conditions above imply the caller's mask, so it would drop
        // the mask, and the verifier cannot see bounds in the combined test LLVM emits.
        return Some(core::hint::black_box((off / 8) as usize));
    }
    refill(window, addr, bytes)?;
    Some(0)
}

/// Copies the user stack from `addr` up into the window: a full window, or, when that
/// crosses into unmapped memory (the top of a stack), up to the end of `addr`'s page,
/// or at least the `bytes` asked for.
#[inline(always)]
fn refill(window: &mut StackWindow, addr: u64, bytes: u64) -> Option<()> {
    window.len = 0;
    let dst = window.words.as_mut_ptr() as *mut c_void;
    let src = addr as *const c_void;
    if unsafe { generated::bpf_probe_read_user(dst, WINDOW_BYTES as u32, src) } != 0 {
        let to_page_end = 4096 - (addr & 4095);
        let mut len = if to_page_end < bytes {
            bytes
        } else {
            to_page_end
        };
        if len > WINDOW_BYTES {
            len = WINDOW_BYTES;
        }
        if unsafe { generated::bpf_probe_read_user(dst, len as u32, src) } != 0 {
            return None;
        }
        window.len = len;
    } else {
        window.len = WINDOW_BYTES;
    }
    window.base = addr;
    Some(())
}

#[inline(always)]
fn stop(walk: &mut Walk, why: Stat) -> i64 {
    walk.result = STOPPED + why as u32;
    1
}

/// 1 if `a <= b`, else 0, without a branch (BPF has no conditional move). Both must be
/// below 2^63: user addresses and row offsets are; a wild pc from a corrupt stack only
/// makes the search land on a mapping that the bounds check after it rejects.
#[inline(always)]
fn at_or_below(a: u64, b: u64) -> u32 {
    // The round trip through a volatile slot hides the comparison from LLVM, which would
    // otherwise turn it back into a branch.
    let mut diff = 0i64;
    unsafe { core::ptr::write_volatile(&mut diff, (b as i64).wrapping_sub(a as i64)) };
    ((unsafe { core::ptr::read_volatile(&diff) } >> 63) + 1) as u32
}

/// One frame; returns 0 to go on, 1 to stop.
extern "C" fn step(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(cpu) = cpu_scratch() else {
        return 1;
    };
    let cpu = unsafe { &mut *cpu };
    let walk = &mut cpu.walk;
    // The frame slot comes from bpf_loop's index, not from a counter in `walk`: the
    // verifier then sees one unknown index instead of 127 distinct states, and the
    // callback converges after a couple of passes.
    if index >= MAX_UNWIND_FRAMES as u64 {
        return stop(walk, Stat::UnwindTruncated);
    }
    unsafe { *cpu.stack.ips.as_mut_ptr().add(index as usize) = walk.ip };
    walk.len = index as u32 + 1;
    walk.hash = crate::hash::hash_step(walk.hash, walk.ip);

    let pc = if walk.exact != 0 {
        walk.ip
    } else {
        walk.ip.wrapping_sub(1)
    };

    let generation = walk.generation;
    let group = generation.wrapping_mul(0x9e37_79b9) >> 16;
    let slot = (group % ROW_CACHE_GROUPS) * ROW_CACHE_GROUP_ENTRIES
        + ((pc ^ (pc >> 9)) as u32 & (ROW_CACHE_GROUP_ENTRIES - 1));
    let cached = &mut cpu.rows[slot as usize & (ROW_CACHE_ENTRIES as usize - 1)];
    let row = if cached.pc == pc && cached.generation == generation {
        UnwindRow {
            pc: 0,
            cfa_offset: cached.cfa_offset,
            kind: cached.kind,
            rbp_offset: cached.rbp_offset,
        }
    } else {
        let Some(info) = UNWIND_MAPPINGS.get(walk.slot) else {
            return stop(walk, Stat::UnwindMappingMiss);
        };
        let Some(row) = find_row(walk, info, pc) else {
            return 1;
        };
        *cached = CachedRow {
            pc,
            generation,
            cfa_offset: row.cfa_offset,
            kind: row.kind,
            rbp_offset: row.rbp_offset,
        };
        row
    };
    let window = &mut cpu.window;
    if row.kind == KIND_FRAME_POINTER {
        return frame_pointer_step(walk, window);
    }

    let cfa = match row.kind {
        row_kind::CFA_RSP => walk.sp.wrapping_add(row.cfa_offset as u64),
        row_kind::CFA_RBP => walk.bp.wrapping_add(row.cfa_offset as u64),
        row_kind::PLT => {
            let extra = if (walk.ip & 15) >= (row.rbp_offset as u8) as u64 {
                8
            } else {
                0
            };
            walk.sp.wrapping_add(row.cfa_offset as u64 + extra)
        }
        row_kind::SIGNAL => return signal_step(walk, window),
        row_kind::END => {
            walk.result = COMPLETE;
            return 1;
        }
        row_kind::GAP => return stop(walk, Stat::UnwindTableMiss),
        _ => return stop(walk, Stat::UnwindUnsupportedRule),
    };
    if cfa <= walk.sp {
        return stop(walk, Stat::UnwindBadFrame);
    }
    let rbp_offset = if row.kind == row_kind::PLT {
        0
    } else {
        row.rbp_offset
    };
    let ra = if rbp_offset == -2 {
        // rbp saved right below the return address (`push rbp` on entry), the common
        // case: both in one read.
        let Some([bp, ra]) = read_pair(window, cfa - 16) else {
            return stop(walk, Stat::UnwindReadFailure);
        };
        walk.bp = bp;
        ra
    } else {
        let Some(ra) = read_word(window, cfa - 8) else {
            return stop(walk, Stat::UnwindReadFailure);
        };
        if rbp_offset != 0 {
            let at = cfa.wrapping_add((rbp_offset as i64 * 8) as u64);
            match read_word(window, at) {
                Some(bp) => walk.bp = bp,
                None => return stop(walk, Stat::UnwindReadFailure),
            }
        }
        ra
    };
    advance(walk, ra, cfa, 0)
}

/// Moves the walk to the caller's frame (`exact`: `ip` is an interrupted instruction,
/// not a return address); returns 1 (complete) at a zero `ip`, else 0.
#[inline(always)]
fn advance(walk: &mut Walk, ip: u64, sp: u64, exact: u32) -> i64 {
    walk.ip = ip;
    walk.sp = sp;
    walk.exact = exact;
    if ip == 0 {
        walk.result = COMPLETE;
        return 1;
    }
    0
}

/// The row for `pc` in the process's tables (a [`KIND_FRAME_POINTER`] row for a mapping
/// without one); None when there is none (the stop is recorded in `walk`).
#[inline(always)]
fn find_row(walk: &mut Walk, info: &ProcUnwindInfo, pc: u64) -> Option<UnwindRow> {
    // Last mapping starting at or below pc: a branch-free binary search (the answer lies
    // in [base, base + n); each step halves n). With no data-dependent branch the verifier
    // walks the search once instead of exploring both sides of every comparison.
    let len = info.len & (2 * MAX_UNWIND_MAPPINGS as u32 - 1);
    if len == 0 {
        stop(walk, Stat::UnwindMappingMiss);
        return None;
    }
    let mut base: u32 = 0;
    let mut n: u32 = len;
    for _ in 0..MAPPING_SEARCH_STEPS {
        let half = n >> 1;
        let start = info.mappings[((base + half) as usize) & (MAX_UNWIND_MAPPINGS - 1)].start;
        base += half * at_or_below(start, pc);
        n -= half;
    }
    let m = &info.mappings[(base as usize) & (MAX_UNWIND_MAPPINGS - 1)];
    if m.start > pc || pc >= m.end {
        stop(walk, Stat::UnwindMappingMiss);
        return None;
    }

    if m.table_len == 0 {
        return Some(UnwindRow {
            kind: KIND_FRAME_POINTER,
            ..Default::default()
        });
    }

    let rel = pc.wrapping_sub(m.bias);
    if rel > u32::MAX as u64 {
        stop(walk, Stat::UnwindTableMiss);
        return None;
    }
    let rel = rel as u32;
    // Last row at or below rel, branch-free like the mapping search.
    let mut base = m.table_start;
    let mut n = m.table_len;
    for _ in 0..ROW_SEARCH_STEPS {
        let half = n >> 1;
        let Some(row) = UNWIND_ROWS.get(base + half) else {
            stop(walk, Stat::UnwindTableMiss);
            return None;
        };
        base += half * at_or_below(u64::from(row.pc), u64::from(rel));
        n -= half;
    }
    let Some(row) = UNWIND_ROWS.get(base) else {
        stop(walk, Stat::UnwindTableMiss);
        return None;
    };
    if row.pc > rel {
        stop(walk, Stat::UnwindTableMiss);
        return None;
    }
    Some(*row)
}

/// Code without unwind information: trust the frame pointer for one frame.
#[inline(always)]
fn frame_pointer_step(walk: &mut Walk, window: &mut StackWindow) -> i64 {
    let bp = walk.bp;
    if bp == 0 {
        walk.result = COMPLETE;
        return 1;
    }
    if bp < walk.sp {
        return stop(walk, Stat::UnwindBadFrame);
    }
    let Some([next_bp, ra]) = read_pair(window, bp) else {
        return stop(walk, Stat::UnwindReadFailure);
    };
    walk.bp = next_bp;
    advance(walk, ra, bp + 16, 0)
}

/// `__restore_rt`: the kernel's signal frame holds the interrupted registers.
#[inline(always)]
fn signal_step(walk: &mut Walk, window: &mut StackWindow) -> i64 {
    let sp = walk.sp;
    let (Some(ip), Some(new_sp), Some(bp)) = (
        read_word(window, sp + sigframe::RIP),
        read_word(window, sp + sigframe::RSP),
        read_word(window, sp + sigframe::RBP),
    ) else {
        return stop(walk, Stat::UnwindReadFailure);
    };
    walk.bp = bp;
    // The interrupted instruction itself, not a return address.
    advance(walk, ip, new_sp, 1)
}

/// x86_64 `struct pt_regs`, the fields we read.
#[repr(C)]
struct PtRegs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    bp: u64,
    bx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    ax: u64,
    cx: u64,
    dx: u64,
    si: u64,
    di: u64,
    orig_ax: u64,
    ip: u64,
    cs: u64,
    flags: u64,
    sp: u64,
    ss: u64,
}

/// The user registers of the current task: the interrupted ones for a user-mode
/// sample, else those saved at kernel entry.
#[inline(always)]
fn user_regs(ctx: &PerfEventContext, user_mode: bool) -> Option<(u64, u64, u64)> {
    if user_mode {
        let r = unsafe { &(*ctx.ctx).regs };
        return Some((r.rip, r.rsp, r.rbp));
    }
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const PtRegs;
    if regs.is_null() {
        return None;
    }
    // The helper returns a BTF pointer to `struct pt_regs`: the verifier lets us load its
    // fields directly (faulting loads are caught), cheaper than a probe read of all of it.
    // Volatile: LLVM would otherwise share one load instruction between this pointer and
    // the context's registers above, which the verifier rejects.
    unsafe {
        Some((
            core::ptr::read_volatile(&(*regs).ip),
            core::ptr::read_volatile(&(*regs).sp),
            core::ptr::read_volatile(&(*regs).bp),
        ))
    }
}

/// Walks the current task's user stack with the unwind tables into `CpuScratch::stack` and
/// returns its [`stack_flags`] (truncated or not) and hash, for the sampler to store it
/// like a frame-pointer stack. None: not a process with unwind tables,
/// or DWARF unwinding is off (use frame pointers). Err: no user registers (counted).
#[inline(always)]
pub fn unwind_user(
    ctx: &PerfEventContext,
    tgid: u32,
    user_mode: bool,
    count: impl Fn(Stat) + Copy,
    count_dynamic: impl Fn(Stat),
) -> Option<Result<(u32, u64), ()>> {
    if unsafe { core::ptr::read_volatile(&UNWIND_ENABLED) } == 0 {
        return None;
    }
    let cpu = unsafe { &mut *cpu_scratch()? };
    let (slot, generation) = process_slot(cpu, tgid)?;
    let Some((ip, sp, bp)) = user_regs(ctx, user_mode) else {
        count(Stat::UserStackMissing);
        return Some(Err(()));
    };
    if ip == 0 {
        // A task without user context (exiting).
        count(Stat::NoUserStack);
        return Some(Err(()));
    }
    // A window of another walk holds another moment's (or process's) stack.
    cpu.window.len = 0;
    let walk = &mut cpu.walk;
    *walk = Walk {
        ip,
        sp,
        bp,
        hash: crate::hash::HASH_SEED,
        slot,
        generation,
        len: 0,
        exact: 1,
        result: RUNNING,
        _pad: 0,
    };
    unsafe {
        bpf_loop(
            MAX_UNWIND_FRAMES as u32 + 1,
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    count(Stat::DwarfStacks);
    let mut flags = 0;
    if walk.result != COMPLETE {
        flags = stack_flags::TRUNCATED;
        if walk.result >= STOPPED {
            count_raw(walk.result - STOPPED, count_dynamic);
        } else {
            count(Stat::UnwindTruncated);
        }
    }
    let len = walk.len as u64;
    cpu.stack.len = len;
    Some(Ok((flags, crate::hash::hash_finish(walk.hash, len))))
}

/// The `UNWIND_MAPPINGS` slot of `tgid` and its generation, or None if it has no unwind
/// tables.
#[inline(always)]
fn process_slot(cpu: &mut CpuScratch, tgid: u32) -> Option<(u32, u32)> {
    // Read before the entry: userspace writes the entry, then the epoch, so an epoch that
    // changes between the two reads only makes the next sample read them again.
    let epoch = crate::control::unwind_epoch();
    if cpu.last_tgid == tgid && tgid != 0 && cpu.last_epoch == epoch {
        return Some((cpu.last_slot, cpu.last_generation));
    }
    let slot = *unsafe { UNWIND_PROCS.get(&tgid) }?;
    let generation = UNWIND_MAPPINGS.get(slot)?.generation;
    cpu.last_tgid = tgid;
    cpu.last_slot = slot;
    cpu.last_generation = generation;
    cpu.last_epoch = epoch;
    Some((slot, generation))
}

/// Counts the stop reason stored as a raw Stat index.
#[inline(always)]
fn count_raw(stat: u32, count: impl Fn(Stat)) {
    let s = match stat {
        x if x == Stat::UnwindTableMiss as u32 => Stat::UnwindTableMiss,
        x if x == Stat::UnwindMappingMiss as u32 => Stat::UnwindMappingMiss,
        x if x == Stat::UnwindUnsupportedRule as u32 => Stat::UnwindUnsupportedRule,
        x if x == Stat::UnwindReadFailure as u32 => Stat::UnwindReadFailure,
        x if x == Stat::UnwindBadFrame as u32 => Stat::UnwindBadFrame,
        _ => Stat::UnwindTruncated,
    };
    count(s);
}
