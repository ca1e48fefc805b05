//! Python frames of unmodified CPython processes, read at sample time.
//!
//! thread pointer (fsbase) → glibc `struct pthread.specific_1stblock[key].data`, where
//! `key` is the interpreter's own TLS key (`_PyRuntime.gilstate.autoTSSkey`) → the
//! thread's `PyThreadState` → `cframe->current_frame` → the `_PyInterpreterFrame` chain
//! by `previous`. Each frame records its code object's address, a tag hashed from the
//! code object's fields (so that userspace, which reads the names later, can tell a freed
//! and reused code object from the sampled one), its instruction offset and whether it
//! is an entry frame (the first frame of an interpreter activation), which is what lets
//! userspace put the frames in place of the `_PyEval_EvalFrameDefault` activations of the
//! native stack. The TLS slot, not the GIL holder, names the thread's state: a thread
//! waiting for the GIL or running C code still shows its Python caller.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_probe_read_user, generated::bpf_loop, generated::bpf_probe_read_user as raw},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
};
use profiler_common::{
    defaults,
    python::{
        py_code_tag, PyFrame, PyProcess, PyStack, MAX_PY_FRAMES, PY_CODE_TAG_BYTES, PY_FRAME_ENTRY,
        PY_INSTR_UNKNOWN, PY_NO_FIELD,
    },
    unwind::stack_flags,
    Stat,
};

use crate::hash::{hash_finish, hash_step, HASH_SEED};

#[map]
static PY_PROCS: HashMap<u32, PyProcess> = HashMap::with_max_entries(defaults::PY_PROCS_ENTRIES, 0);
#[map]
static PY_STACKS: LruHashMap<u64, PyStack> =
    LruHashMap::with_max_entries(defaults::PY_STACKS_ENTRIES, 0);

const EEXIST: i32 = 17;

const RUNNING: u32 = 0;
const COMPLETE: u32 = 1;
const TRUNCATED: u32 = 2;
const FAILED: u32 = 3;

/// Words of a frame read at once: `_PyInterpreterFrame` up to its locals is 72 bytes in
/// 3.11 and 3.12; 16 words so that a masked index always lies inside.
const FRAME_WORDS: usize = 16;

/// The walk's state, in per-CPU map memory like the unwinder's (one verified callback).
#[repr(C)]
struct PyScratch {
    process: PyProcess,
    frame: u64,
    hash: u64,
    len: u32,
    result: u32,
    frame_words: [u64; FRAME_WORDS],
    code_words: [u64; PY_CODE_TAG_BYTES / 8],
    stack: PyStack,
}

#[map]
static PY_SCRATCH: PerCpuArray<PyScratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn scratch() -> Option<&'static mut PyScratch> {
    Some(unsafe { &mut *PY_SCRATCH.get_ptr_mut(0)? })
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// The word of `words` holding byte offset `off`.
#[inline(always)]
fn word_at(words: &[u64; FRAME_WORDS], off: u32) -> u64 {
    words[(off as usize / 8) & (FRAME_WORDS - 1)]
}

/// The Python stack of the current thread of `tgid`, stored in `PY_STACKS`: its key
/// (0 = none) and `stack_flags` for it. Every outcome but "not a Python process" is
/// counted.
#[inline(always)]
pub fn current_stack(tgid: u32, count: impl Fn(Stat)) -> (u64, u32) {
    let Some(process) = (unsafe { PY_PROCS.get(&tgid) }) else {
        return (0, 0);
    };
    match read_stack(tgid, process) {
        Ok((hash, flags, stat, stored)) => {
            count(stat);
            if stored {
                count(Stat::PythonStacksStored);
            }
            (hash, flags)
        }
        Err(stat) => {
            count(stat);
            (0, 0)
        }
    }
}

/// Ok: (key, flags, what to count: `PythonStacks`, or why the frames stop early, and
/// whether the stack was new to `PY_STACKS`).
#[inline(always)]
fn read_stack(tgid: u32, process: &PyProcess) -> Result<(u64, u32, Stat, bool), Stat> {
    if process.supported == 0 {
        return Err(Stat::PythonUnsupported);
    }
    let fsbase = crate::task::current_fsbase().ok_or(Stat::PythonReadFailure)?;
    if fsbase == 0 {
        return Err(Stat::PythonNoThread);
    }
    // `Py_tss_t`: `_is_initialized`, then `_key`.
    let tss = read_u64(process.tss_addr).ok_or(Stat::PythonReadFailure)?;
    if tss as u32 == 0 {
        // The interpreter is still starting: no thread state yet.
        return Err(Stat::PythonNoThread);
    }
    let key = (tss >> 32) as u32;
    // Keys past the first block live in a second-level array glibc allocates on demand;
    // CPython creates its key at startup, among the first.
    if key >= 32 {
        return Err(Stat::PythonUnsupported);
    }
    let slot = fsbase + process.pthread_specific as u64 + key as u64 * 16 + 8;
    let tstate = read_u64(slot).ok_or(Stat::PythonReadFailure)?;
    if tstate == 0 {
        return Err(Stat::PythonNoThread);
    }
    // 3.11 and 3.12 reach the frame through a `_PyCFrame`; 3.13 keeps it in the state.
    let holder = if process.tstate_cframe == PY_NO_FIELD {
        tstate
    } else {
        read_u64(tstate + process.tstate_cframe as u64).ok_or(Stat::PythonReadFailure)?
    };
    if holder == 0 {
        return Err(Stat::PythonNoThread);
    }
    let frame = read_u64(holder + process.current_frame as u64).ok_or(Stat::PythonReadFailure)?;
    if frame == 0 {
        return Err(Stat::PythonNoThread);
    }
    let s = scratch().ok_or(Stat::PythonReadFailure)?;
    s.process = *process;
    s.frame = frame;
    // The process is part of the key: forked workers run the same code at the same
    // addresses, and a stack's frames are named from its own process's memory.
    s.hash = hash_step(HASH_SEED, u64::from(tgid));
    s.len = 0;
    s.result = RUNNING;
    unsafe {
        bpf_loop(
            MAX_PY_FRAMES as u32 + SHIM_FRAMES,
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    let s = scratch().ok_or(Stat::PythonReadFailure)?;
    let len = s.len as u64;
    if len == 0 {
        return Err(Stat::PythonReadFailure);
    }
    let (flags, stat) = match s.result {
        COMPLETE => (0, Stat::PythonStacks),
        FAILED => (stack_flags::PYTHON_TRUNCATED, Stat::PythonReadFailure),
        _ => (stack_flags::PYTHON_TRUNCATED, Stat::PythonTruncated),
    };
    s.stack.len = len as u32;
    s.stack.tgid = tgid;
    let hash = hash_finish(s.hash, len);
    let mut stored = false;
    if unsafe { PY_STACKS.get(&hash) }.is_none() {
        match PY_STACKS.insert(&hash, &s.stack, BPF_NOEXIST as u64) {
            Ok(()) => stored = true,
            // Another CPU stored the same stack meanwhile.
            Err(e) if e == -EEXIST => {}
            Err(_) => return Err(Stat::PythonStacksFull),
        }
    }
    Ok((hash, flags, stat, stored))
}

/// Iterations beyond [`MAX_PY_FRAMES`] for 3.12+'s shim frames, which are walked but not
/// recorded.
const SHIM_FRAMES: u32 = 32;

/// The byte at `off` of the frame read.
#[inline(always)]
fn byte_at(words: &[u64; FRAME_WORDS], off: u32) -> u64 {
    (word_at(words, off) >> ((off & 7) * 8)) & 0xff
}

/// One frame; returns 0 to go on, 1 to stop.
extern "C" fn step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(s) = scratch() else {
        return 1;
    };
    // The slot is the count of frames recorded, not the iteration: shims are skipped.
    let index = s.len as u64;
    if index >= MAX_PY_FRAMES as u64 {
        s.result = TRUNCATED;
        return 1;
    }
    let frame = s.frame;
    let rc = unsafe {
        raw(
            s.frame_words.as_mut_ptr().cast(),
            (FRAME_WORDS * 8) as u32,
            frame as *const c_void,
        )
    };
    if rc != 0 {
        s.result = FAILED;
        return 1;
    }
    let p = &s.process;
    let code = word_at(&s.frame_words, p.frame_code);
    let previous = word_at(&s.frame_words, p.frame_previous);
    let prev_instr = word_at(&s.frame_words, p.frame_prev_instr);
    if p.frame_owner != PY_NO_FIELD
        && byte_at(&s.frame_words, p.frame_owner) == u64::from(p.cstack_owner)
    {
        // 3.12+: the shim at the base of an activation; the frame above it entered it.
        if index > 0 {
            if let Some(above) = s.stack.frames.get_mut(index as usize - 1) {
                above.instr |= PY_FRAME_ENTRY;
            }
            s.hash = hash_step(s.hash, PY_FRAME_ENTRY as u64);
        }
        if previous == 0 {
            s.result = COMPLETE;
            return 1;
        }
        s.frame = previous;
        return 0;
    }
    let is_entry = if p.frame_is_entry != PY_NO_FIELD {
        byte_at(&s.frame_words, p.frame_is_entry)
    } else {
        0
    };
    let rc = unsafe {
        raw(
            s.code_words.as_mut_ptr().cast(),
            PY_CODE_TAG_BYTES as u32,
            (code + p.code_tag_offset as u64) as *const c_void,
        )
    };
    if code == 0 || rc != 0 {
        s.result = FAILED;
        return 1;
    }
    let tag = py_code_tag(&s.code_words);
    let offset = if p.frame_lasti != PY_NO_FIELD {
        // An int; negative (not started) becomes unknown.
        word_at(&s.frame_words, p.frame_lasti) as u32 as i32 as i64 as u64
    } else {
        prev_instr.wrapping_sub(code)
    };
    let mut instr = if offset < PY_INSTR_UNKNOWN as u64 {
        offset as u32
    } else {
        PY_INSTR_UNKNOWN
    };
    if is_entry != 0 || p.every_frame_entry != 0 {
        instr |= PY_FRAME_ENTRY;
    }
    if let Some(slot) = s.stack.frames.get_mut(index as usize) {
        *slot = PyFrame { code, tag, instr };
    }
    s.hash = hash_step(hash_step(s.hash, code), ((tag as u64) << 32) | instr as u64);
    s.len = index as u32 + 1;
    if previous == 0 {
        s.result = COMPLETE;
        return 1;
    }
    s.frame = previous;
    0
}
