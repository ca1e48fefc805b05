//! Types that both the eBPF sampler and the userspace daemon see.
//!
//! Every map key, map value, stats counter and event is defined once here, `#[repr(C)]`,
//! so the two sides cannot drift apart.
#![no_std]

pub mod python;
pub mod unwind;

/// Length of `task_struct.comm`, NUL included.
pub const TASK_COMM_LEN: usize = 16;

/// Deepest stack `bpf_get_stackid` records (the kernel's `sysctl_perf_event_max_stack`
/// default is 127).
pub const MAX_STACK_DEPTH: usize = 127;

/// Indices into the `ACTIVE_BUFFER` array, which userspace writes and the sampler reads on
/// every sample.
pub mod control_index {
    /// The control flags ([`control_flags`](super::control_flags)).
    pub const FLAGS: u32 = 0;
    /// The unwind epoch: userspace changes it after every write of
    /// `UNWIND_PROCS`/`UNWIND_MAPPINGS`, so that while it holds, the unwinder may trust its
    /// per-CPU copy of the last process's slot and generation without reading them. In
    /// the flags' map, so that it shares the cache line the sampler reads anyway.
    pub const UNWIND_EPOCH: u32 = 1;
}

/// Bits of the control flags, `ACTIVE_BUFFER[control_index::FLAGS]`.
pub mod control_flags {
    /// The buffer pair samples go to (0 or 1); flipped before each drain.
    pub const BUFFER: u32 = 1;
    /// Set once userspace has registered a Go process: until then the sampler skips the
    /// `GO_PROCS` lookup.
    pub const GO_PROCESSES: u32 = 2;
    /// Set once userspace has registered a Python process: until then the sampler skips
    /// the `PY_PROCS` lookup.
    pub const PY_PROCESSES: u32 = 4;
}

/// Names of the maps and programs in the eBPF object, so userspace looks them up by the
/// same string the kernel side declares.
pub mod names {
    pub const PROG_SAMPLE: &str = "kiln_sample";
    pub const PROG_EXEC: &str = "kiln_sched_exec";
    pub const PROG_EXIT: &str = "kiln_sched_exit";
    pub const COUNTS: [&str; 2] = ["COUNTS_0", "COUNTS_1"];
    /// Kernel stacks (`bpf_get_stackid`).
    pub const STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
    /// User stacks, keyed by a hash of their frames: one LRU map for both buffers, so a
    /// stack seen before costs a lookup, not a 1 KiB copy, after every drain.
    pub const USER_STACKS: &str = "USER_STACKS";
    pub const ACTIVE_BUFFER: &str = "ACTIVE_BUFFER";
    pub const PID_FILTER: &str = "PID_FILTER";
    pub const KNOWN_PIDS: &str = "KNOWN_PIDS";
    pub const PROC_EVENTS: &str = "PROC_EVENTS";
    pub const STATS: &str = "STATS";
    pub const GO_PROCS: &str = "GO_PROCS";
    pub const GO_LABEL_SETS: [&str; 2] = ["GO_LABEL_SETS_0", "GO_LABEL_SETS_1"];
    pub const PY_PROCS: &str = "PY_PROCS";
    /// Python stacks, keyed by a hash of their frames, LRU like `USER_STACKS`.
    pub const PY_STACKS: &str = "PY_STACKS";
    /// Offset of `task_struct.thread.fsbase`, from the kernel's BTF.
    pub const GLOBAL_FSBASE_OFFSET: &str = "FSBASE_OFFSET";
    /// Read-only globals set by the loader.
    pub const GLOBAL_FILTER_PIDS: &str = "FILTER_PIDS";
    pub const GLOBAL_INCLUDE_IDLE: &str = "INCLUDE_IDLE";
}

/// Default sizes of the maps. Each is overridable from the command line; these are what
/// a 15 s window of a busy 2-64 CPU host at <= 100 Hz needs with headroom.
pub mod defaults {
    /// Distinct (thread, user stack, kernel stack) keys per buffer.
    pub const COUNTS_ENTRIES: u32 = 16_384;
    /// Distinct kernel stacks per buffer; the user stack map (one for both buffers) holds
    /// twice as many. Each entry costs `MAX_STACK_DEPTH * 8` bytes of kernel memory
    /// (~1 KiB), so 8192 entries ~ 8 MiB per map and buffer.
    pub const STACK_ENTRIES: u32 = 8_192;
    pub const PID_FILTER_ENTRIES: u32 = 1_024;
    pub const KNOWN_PIDS_ENTRIES: u32 = 32_768;
    pub const PROC_EVENTS_BYTES: u32 = 256 * 1024;
    pub const GO_PROCS_ENTRIES: u32 = 4_096;
    /// Distinct goroutine label sets per buffer (~650 bytes each).
    pub const GO_LABEL_SETS_ENTRIES: u32 = 4_096;
    pub const PY_PROCS_ENTRIES: u32 = 4_096;
    /// Distinct Python stacks (~3 KiB each) in the LRU map shared by both buffers.
    pub const PY_STACKS_ENTRIES: u32 = 4_096;
}

/// Goroutine labels read per sample: at most this many pairs...
pub const GO_MAX_LABELS: usize = 10;
/// ...keys of at most 15 bytes and values of at most 47 (longer ones are truncated).
pub const GO_KEY_LEN: usize = 16;
pub const GO_VALUE_LEN: usize = 48;

/// Where a Go runtime keeps what the sampler needs, per process (Go version dependent).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoOffsets {
    /// Offset of the current g from the thread pointer (fsbase); negative.
    pub tls_offset: i64,
    pub g_m: u32,
    pub m_curg: u32,
    pub g_labels: u32,
    /// 0: labels are a `map[string]string` (Go <= 1.23); 1: a sorted slice (>= 1.24).
    pub labels_format: u32,
}

pub const GO_LABELS_MAP: u32 = 0;
pub const GO_LABELS_SLICE: u32 = 1;

/// Key of a label set: the process and a hash of the set's contents (`GoLabels` as read;
/// never 0). Not its address: Go reuses the memory of a freed set for a later one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoLabelSetKey {
    pub tgid: u32,
    pub _pad: u32,
    pub labels_hash: u64,
}

/// One goroutine label set as read by the kernel side: NUL-padded keys and values.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GoLabels {
    pub count: u32,
    pub _pad: u32,
    pub keys: [[u8; GO_KEY_LEN]; GO_MAX_LABELS],
    pub values: [[u8; GO_VALUE_LEN]; GO_MAX_LABELS],
}

/// Key of the sample count maps: one thread, one pair of stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    pub tgid: u32,
    pub tid: u32,
    /// Key of the user stack in `USER_STACKS` (a hash of its frames), 0 = none.
    pub user_stack: u64,
    /// Id in the active kernel stack map, or a negative errno when there is none.
    pub kernel_stack_id: i32,
    /// `unwind::stack_flags` of the user stack (e.g. truncated).
    pub flags: u32,
    pub comm: [u8; TASK_COMM_LEN],
    /// Hash of the goroutine's pprof labels (0 = none); with `tgid` the key of
    /// `GO_LABEL_SETS_{buffer}`.
    pub go_labels: u64,
    /// Key of the Python frames in `PY_STACKS` (a hash of them), 0 = none.
    pub python_stack: u64,
}

/// A user stack as stored in `USER_STACKS`: `len` instruction pointers, leaf
/// first, from frame pointers (`bpf_get_stack`) or the DWARF unwinder. Stored under a
/// 64-bit hash of its frames, which, unlike `bpf_get_stackid`'s bucket index, does not
/// collide in practice.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UserStack {
    pub len: u64,
    pub ips: [u64; MAX_STACK_DEPTH],
}

/// What the kernel tells userspace about processes, through the `PROC_EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcEvent {
    pub kind: u32,
    pub tgid: u32,
}

/// Values of [`ProcEvent::kind`].
pub mod proc_event {
    /// First sample of a process not seen before (or not since its last exec).
    pub const FIRST_SAMPLE: u32 = 1;
    /// The process called execve: its mappings changed.
    pub const EXEC: u32 = 2;
    /// The thread-group leader exited.
    pub const EXIT: u32 = 3;
}

/// Declares the kernel-side counters once: variant (with its index in `STATS`), stable
/// snake_case name for reports and metrics, and whether it counts a loss. The enum,
/// [`Stat::ALL`], [`Stat::name`], [`Stat::is_loss`] and [`STAT_COUNT`] all come from it.
macro_rules! stats {
    ($($(#[doc = $doc:literal])* $variant:ident = $index:literal, $name:literal, $class:ident;)*) => {
        /// Indices of the per-CPU `STATS` array: every sample is counted once in `SAMPLES`
        /// and every loss in exactly one loss counter, so nothing is dropped silently.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Stat {
            $($(#[doc = $doc])* $variant = $index,)*
        }

        pub const STAT_COUNT: u32 = [$($index),*].len() as u32;

        impl Stat {
            pub const ALL: [Stat; STAT_COUNT as usize] = [$(Stat::$variant),*];

            /// Stable snake_case name, used in reports and metrics.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Stat::$variant => $name,)*
                }
            }

            /// True for counters that mean data was lost (as opposed to skipped on purpose).
            pub const fn is_loss(self) -> bool {
                match self {
                    $(Stat::$variant => stats!(@loss $class),)*
                }
            }
        }
    };
    (@loss loss) => {
        true
    };
    (@loss event) => {
        false
    };
}

stats! {
    /// perf events that reached the program.
    Samples = 0, "samples", event;
    /// Samples of the idle task (pid 0), skipped unless asked for.
    IdleSkipped = 1, "idle_skipped", event;
    /// Samples of pids outside the filter.
    FilteredOut = 2, "filtered_out", event;
    /// Samples added to a count map.
    Recorded = 3, "recorded", event;
    /// Loss: the count map was full.
    CountsMapFull = 4, "counts_map_full", loss;
    /// Loss of the user stack: the user stack map was full.
    UserStacksFull = 5, "user_stacks_full", loss;
    /// Loss of the kernel stack: same, for the kernel stack.
    KernelStackCollision = 6, "kernel_stack_collision", loss;
    /// The user stack could not be read although the sample was taken in user mode.
    UserStackMissing = 7, "user_stack_missing", loss;
    /// The kernel stack could not be read while the sample was taken in kernel mode.
    KernelStackMissing = 8, "kernel_stack_missing", loss;
    /// Neither stack could be read: the sample is dropped.
    NoStack = 9, "no_stack", loss;
    /// The process-event ring buffer was full.
    EventsLost = 10, "events_lost", loss;
    /// Kernel-mode sample without a user stack (kernel threads): expected, not a loss.
    NoUserStack = 11, "no_user_stack", event;
    /// A Go process's labels could not be read (unmapped page, bad pointer): the sample
    /// is kept without labels.
    GoLabelsUnreadable = 12, "go_labels_unreadable", loss;
    /// The Go label-set map was full: the sample is kept without labels.
    GoLabelSetsFull = 13, "go_label_sets_full", loss;
    /// User stacks walked by the DWARF unwinder (the rest: frame pointers, `bpf_get_stack`).
    DwarfStacks = 14, "dwarf_stacks", event;
    /// DWARF stack truncated: deeper than MAX_UNWIND_FRAMES.
    UnwindTruncated = 15, "unwind_truncated", loss;
    /// DWARF stack truncated: the pc lies in a binary's code no FDE describes.
    UnwindTableMiss = 16, "unwind_table_miss", loss;
    /// DWARF stack truncated: the pc lies outside every known executable mapping.
    UnwindMappingMiss = 17, "unwind_mapping_miss", loss;
    /// DWARF stack truncated: a CFI rule the kernel does not evaluate.
    UnwindUnsupportedRule = 18, "unwind_unsupported_rule", loss;
    /// DWARF stack truncated: the user stack could not be read.
    UnwindReadFailure = 19, "unwind_read_failure", loss;
    /// DWARF stack truncated: a frame did not move up the stack.
    UnwindBadFrame = 20, "unwind_bad_frame", loss;
    /// The DWARF stack map was full: the user stack is lost.
    DwarfStacksFull = 21, "dwarf_stacks_full", loss;
    /// Counted by userspace: a drained sample's user stack had been evicted from the LRU
    /// stack map (more new stacks than it holds within one drain interval).
    UserStackEvicted = 22, "user_stack_evicted", loss;
    /// Samples of Python threads whose Python frames were read.
    PythonStacks = 23, "python_stacks", event;
    /// Samples of a registered Python process whose thread has no Python thread state
    /// (a thread Python does not run, or one not yet initialized): not a loss.
    PythonNoThread = 24, "python_no_thread", event;
    /// Python frames lost: the thread state or a frame could not be read (the native
    /// stack is kept).
    PythonReadFailure = 25, "python_read_failure", loss;
    /// Python stack deeper than `MAX_PY_FRAMES`: the outer frames are missing.
    PythonTruncated = 26, "python_truncated", loss;
    /// Python frames lost: the Python stack map was full.
    PythonStacksFull = 27, "python_stacks_full", loss;
    /// Samples of a Python whose version Kiln has no layout for (native stack only).
    PythonUnsupported = 28, "python_unsupported", loss;
    /// Counted by userspace: a Python frame's code object could not be read, or no longer
    /// matched the one sampled (freed and reused): the sample keeps its native stack.
    PythonCodeUnreadable = 29, "python_code_unreadable", loss;
    /// Counted by userspace: the Python frames did not fit the interpreter activations of
    /// the native stack: the sample keeps its native stack.
    PythonMergeMismatch = 30, "python_merge_mismatch", loss;
    /// Python stacks stored in `PY_STACKS` (new distinct stacks): userspace names the
    /// frames of new ones while their process lives.
    PythonStacksStored = 31, "python_stacks_stored", event;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, #[repr(C)], no padding-dependent invariants.
    unsafe impl aya::Pod for super::SampleKey {}
    unsafe impl aya::Pod for super::ProcEvent {}
    unsafe impl aya::Pod for super::UserStack {}
    unsafe impl aya::Pod for super::GoOffsets {}
    unsafe impl aya::Pod for super::GoLabelSetKey {}
    unsafe impl aya::Pod for super::GoLabels {}
    unsafe impl aya::Pod for super::python::PyProcess {}
    unsafe impl aya::Pod for super::python::PyStack {}
}
