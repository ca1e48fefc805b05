//! Python (CPython) frames read by the kernel side at sample time.
//!
//! Userspace registers each CPython process in `PY_PROCS` with where its interpreter
//! keeps what the walk needs ([`PyProcess`]); the sampler then finds the sampled thread's
//! `PyThreadState` through its pthread TLS slot, follows the frame chain and stores the
//! frames ([`PyStack`]) under a hash of them, named in [`crate::SampleKey::python_stack`].
//! Names (qualname, file, line) are read by userspace from the code objects.

/// Python frames read per sample (the innermost ones; deeper stacks are flagged
/// truncated).
pub const MAX_PY_FRAMES: usize = 192;

/// Bytes of a code object read per frame, from [`PyProcess::code_tag_offset`]: hashed
/// into [`PyFrame::tag`], so that a code object freed and another allocated at its
/// address is told apart from the one sampled.
pub const PY_CODE_TAG_BYTES: usize = 64;

/// Bit of [`PyFrame::instr`]: the frame is the first one its `_PyEval_EvalFrameDefault`
/// activation ran (3.11 `_PyInterpreterFrame.is_entry`); frames from the leaf up to and
/// including such a frame belong to one activation of the interpreter loop.
pub const PY_FRAME_ENTRY: u32 = 1 << 31;
/// [`PyFrame::instr`] without the entry bit: this many or more means the instruction
/// pointer was not inside the code object (line unknown: the first line is used).
pub const PY_INSTR_UNKNOWN: u32 = PY_FRAME_ENTRY - 1;

/// One Python frame as the kernel read it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    /// Address of the `PyCodeObject`.
    pub code: u64,
    /// Hash of [`PY_CODE_TAG_BYTES`] of the code object (see [`py_code_tag`]).
    pub tag: u32,
    /// `prev_instr - code` in bytes (up to 3.10: `f_lasti`), or [`PY_INSTR_UNKNOWN`];
    /// | [`PY_FRAME_ENTRY`].
    pub instr: u32,
}

/// The Python frames of one sample, innermost first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyStack {
    pub len: u32,
    /// The process the frames belong to (code addresses mean something only in it).
    pub tgid: u32,
    pub frames: [PyFrame; MAX_PY_FRAMES],
}

/// Where a CPython process keeps what the walk needs (offsets from CPython's headers for
/// its version, addresses in the process). Values of this map, keyed by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyProcess {
    /// 0: a Python whose layout Kiln does not know; samples are counted
    /// (`Stat::PythonUnsupported`) and keep their native stack only.
    pub supported: u32,
    /// Offset from the thread pointer of glibc's `struct pthread.specific_1stblock`
    /// (`struct pthread_key_data { seq, data }[32]`).
    pub pthread_specific: u32,
    /// Address of `_PyRuntime.gilstate.autoTSSkey` (3.11), a `Py_tss_t`
    /// (`{int _is_initialized; pthread_key_t _key;}`, fixed by the C API): the pthread
    /// key whose value is the thread's `PyThreadState`, once initialized.
    pub tss_addr: u64,
    /// `PyThreadState.cframe` (3.11, 3.12), or [`PY_NO_FIELD`] (3.13+: the thread state
    /// holds the current frame itself).
    pub tstate_cframe: u32,
    /// `_PyCFrame.current_frame`, or `PyThreadState.current_frame` without a cframe.
    pub current_frame: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_prev_instr: u32,
    /// 3.11: offset of `_PyInterpreterFrame.is_entry`; [`PY_NO_FIELD`] from 3.12 on.
    pub frame_is_entry: u32,
    /// Where in a code object the [`PY_CODE_TAG_BYTES`] hashed into a frame's tag start.
    pub code_tag_offset: u32,
    /// 3.12+: offset of `_PyInterpreterFrame.owner`; [`PY_NO_FIELD`] before.
    pub frame_owner: u32,
    /// 3.12+: the `owner` of the shim frame each interpreter activation pushes at its
    /// base (`FRAME_OWNED_BY_CSTACK`): not a Python frame, it marks the frame above it
    /// as the activation's entry frame.
    pub cstack_owner: u32,
    /// Up to 3.10: offset of `PyFrameObject.f_lasti` (an int), which is then the
    /// frame's instruction instead of `prev_instr - code`; [`PY_NO_FIELD`] from 3.11 on.
    pub frame_lasti: u32,
    /// 1 up to 3.10: every frame is the entry frame of its own interpreter activation.
    pub every_frame_entry: u32,
    pub _pad: u32,
}

/// A [`PyProcess`] offset for a field the version does not have.
pub const PY_NO_FIELD: u32 = u32::MAX;

/// The tag of a code object from its [`PY_CODE_TAG_BYTES`] as 8 little-endian words
/// (FNV-1a over the words, folded to 32 bits; never 0 for readable bytes by chance
/// alone is not promised). The kernel and userspace compute it the same way.
#[inline(always)]
pub fn py_code_tag(words: &[u64; PY_CODE_TAG_BYTES / 8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < PY_CODE_TAG_BYTES / 8 {
        h = (h ^ words[i]).wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    (h ^ (h >> 32)) as u32
}
