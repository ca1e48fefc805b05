//! Types that both the eBPF sampler and the userspace daemon see.
//!
//! Every map key, map value, stats counter and event is defined once here, `#[repr(C)]`,
//! so the two sides cannot drift apart.
#![no_std]

pub mod unwind;

/// Length of `task_struct.comm`, NUL included.
pub const TASK_COMM_LEN: usize = 16;

/// Deepest stack `bpf_get_stackid` records (the kernel's `sysctl_perf_event_max_stack`
/// default is 127).
pub const MAX_STACK_DEPTH: usize = 127;

/// Names of the maps and programs in the eBPF object, so userspace looks them up by the
/// same string the kernel side declares.
pub mod names {
    pub const PROG_SAMPLE: &str = "kiln_sample";
    pub const PROG_EXEC: &str = "kiln_sched_exec";
    pub const PROG_EXIT: &str = "kiln_sched_exit";
    pub const COUNTS: [&str; 2] = ["COUNTS_0", "COUNTS_1"];
    pub const STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
    pub const ACTIVE_BUFFER: &str = "ACTIVE_BUFFER";
    pub const PID_FILTER: &str = "PID_FILTER";
    pub const KNOWN_PIDS: &str = "KNOWN_PIDS";
    pub const PROC_EVENTS: &str = "PROC_EVENTS";
    pub const STATS: &str = "STATS";
    /// Read-only globals set by the loader.
    pub const GLOBAL_FILTER_PIDS: &str = "FILTER_PIDS";
    pub const GLOBAL_INCLUDE_IDLE: &str = "INCLUDE_IDLE";
}

/// Default sizes of the maps. Each is overridable from the command line; these are what
/// a 15 s window of a busy 2-64 CPU host at <= 100 Hz needs with headroom.
pub mod defaults {
    /// Distinct (thread, user stack, kernel stack) keys per buffer.
    pub const COUNTS_ENTRIES: u32 = 16_384;
    /// Distinct stacks per buffer. Each entry costs `MAX_STACK_DEPTH * 8` bytes of
    /// locked kernel memory (~1 KiB), so 8192 entries ~ 8 MiB per buffer.
    pub const STACK_ENTRIES: u32 = 8_192;
    pub const PID_FILTER_ENTRIES: u32 = 1_024;
    pub const KNOWN_PIDS_ENTRIES: u32 = 32_768;
    pub const PROC_EVENTS_BYTES: u32 = 256 * 1024;
}

/// Key of the sample count maps: one thread, one pair of stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    pub tgid: u32,
    pub tid: u32,
    /// Id in the active stack map, or a negative errno when the stack is missing.
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub comm: [u8; TASK_COMM_LEN],
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

/// Indices of the per-CPU `STATS` array: every sample is counted once in `SAMPLES` and
/// every loss in exactly one loss counter, so nothing is dropped silently.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// perf events that reached the program.
    Samples = 0,
    /// Samples of the idle task (pid 0), skipped unless asked for.
    IdleSkipped = 1,
    /// Samples of pids outside the filter.
    FilteredOut = 2,
    /// Samples added to a count map.
    Recorded = 3,
    /// Loss: the count map was full.
    CountsMapFull = 4,
    /// Loss of the user stack: stack-map bucket held another stack (-EEXIST).
    UserStackCollision = 5,
    /// Loss of the kernel stack: same, for the kernel stack.
    KernelStackCollision = 6,
    /// The user stack could not be read although the sample was taken in user mode.
    UserStackMissing = 7,
    /// The kernel stack could not be read while the sample was taken in kernel mode.
    KernelStackMissing = 8,
    /// Neither stack could be read: the sample is dropped.
    NoStack = 9,
    /// The process-event ring buffer was full.
    EventsLost = 10,
    /// Kernel-mode sample without a user stack (kernel threads): expected, not a loss.
    NoUserStack = 11,
}

pub const STAT_COUNT: u32 = 12;

impl Stat {
    pub const ALL: [Stat; STAT_COUNT as usize] = [
        Stat::Samples,
        Stat::IdleSkipped,
        Stat::FilteredOut,
        Stat::Recorded,
        Stat::CountsMapFull,
        Stat::UserStackCollision,
        Stat::KernelStackCollision,
        Stat::UserStackMissing,
        Stat::KernelStackMissing,
        Stat::NoStack,
        Stat::EventsLost,
        Stat::NoUserStack,
    ];

    /// Stable snake_case name, used in reports and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::Samples => "samples",
            Stat::IdleSkipped => "idle_skipped",
            Stat::FilteredOut => "filtered_out",
            Stat::Recorded => "recorded",
            Stat::CountsMapFull => "counts_map_full",
            Stat::UserStackCollision => "user_stack_collision",
            Stat::KernelStackCollision => "kernel_stack_collision",
            Stat::UserStackMissing => "user_stack_missing",
            Stat::KernelStackMissing => "kernel_stack_missing",
            Stat::NoStack => "no_stack",
            Stat::EventsLost => "events_lost",
            Stat::NoUserStack => "no_user_stack",
        }
    }

    /// True for counters that mean data was lost (as opposed to skipped on purpose).
    pub const fn is_loss(self) -> bool {
        matches!(
            self,
            Stat::CountsMapFull
                | Stat::UserStackCollision
                | Stat::KernelStackCollision
                | Stat::UserStackMissing
                | Stat::KernelStackMissing
                | Stat::NoStack
                | Stat::EventsLost
        )
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, #[repr(C)], no padding-dependent invariants.
    unsafe impl aya::Pod for super::SampleKey {}
    unsafe impl aya::Pod for super::ProcEvent {}
}
