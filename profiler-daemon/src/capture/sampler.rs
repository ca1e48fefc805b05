//! Loads the embedded eBPF object, attaches the sampler to every online CPU and the
//! process probes to their tracepoints, and drains samples without losing any.

use std::{collections::HashSet, os::fd::AsFd as _, thread, time::Duration};

use anyhow::{bail, Context as _};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf, StackTraceMap},
    programs::{
        perf_event::{
            PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
        },
        PerfEvent, RawTracePoint,
    },
    util::online_cpus,
    Ebpf, EbpfLoader,
};
use profiler_common::{
    control_flags, control_index, defaults, names,
    python::{PyFrame, PyProcess, PyStack},
    GoLabelSetKey, GoLabels, GoOffsets, ProcEvent, SampleKey, Stat, UserStack, STAT_COUNT,
};

use super::retention::{KeyFate, KeyRetention};

/// How long a flip of the active buffer waits for programs that already read the old
/// value. A sample program runs for a few microseconds; this is three orders of margin.
const FLIP_GRACE: Duration = Duration::from_millis(5);

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler-ebpf"));

#[derive(Clone, Debug)]
pub struct SamplerConfig {
    /// Samples per second per CPU.
    pub frequency: u64,
    /// Record only these processes (thread-group ids); empty = the whole host.
    pub pids: Vec<u32>,
    pub include_idle: bool,
    pub counts_entries: u32,
    pub stack_entries: u32,
    /// Read goroutine pprof labels of Go programs.
    pub go_labels: bool,
    /// Read the Python frames of CPython processes.
    pub python_frames: bool,
    /// DWARF unwinding of processes whose binaries have CFI.
    pub unwind: crate::unwind::UnwindConfig,
}

/// The sampler's knobs shared by every command that samples (what to profile and how
/// often come from the command): kernel map sizes, switches, and the drain interval.
#[derive(Clone, Debug)]
pub struct SamplerTuning {
    /// Also record idle CPUs (the swapper task, pid 0).
    pub include_idle: bool,
    /// Distinct (thread, stack) keys each of the two sample buffers holds.
    pub counts_entries: u32,
    /// Distinct stacks each of the two stack maps holds.
    pub stack_entries: u32,
    /// Read goroutine pprof labels of Go programs.
    pub go_labels: bool,
    /// Read the Python frames of CPython processes.
    pub python_frames: bool,
    pub unwind: crate::unwind::UnwindConfig,
    /// How often samples are moved out of the kernel, in milliseconds.
    pub drain_interval_ms: u64,
}

impl SamplerTuning {
    pub fn config(&self, frequency: u64, pids: Vec<u32>) -> SamplerConfig {
        SamplerConfig {
            frequency,
            pids,
            include_idle: self.include_idle,
            counts_entries: self.counts_entries,
            stack_entries: self.stack_entries,
            go_labels: self.go_labels,
            python_frames: self.python_frames,
            unwind: self.unwind.clone(),
        }
    }
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            frequency: 99,
            pids: Vec::new(),
            include_idle: false,
            counts_entries: defaults::COUNTS_ENTRIES,
            stack_entries: defaults::STACK_ENTRIES,
            go_labels: true,
            python_frames: true,
            unwind: Default::default(),
        }
    }
}

/// Goroutine pprof labels of a sample, sorted by key.
pub type GoLabelSet = std::sync::Arc<[(std::sync::Arc<str>, std::sync::Arc<str>)]>;

/// One drained count-map entry with its stacks resolved to instruction pointers.
#[derive(Clone, Debug)]
pub struct RawSample {
    pub key: SampleKey,
    pub count: u64,
    /// Leaf first.
    pub user: Vec<u64>,
    /// Leaf first.
    pub kernel: Vec<u64>,
    /// Goroutine labels (Go programs inside `pprof.Do`).
    pub go_labels: Option<GoLabelSet>,
    /// Python frames of the thread, innermost first (CPython processes).
    pub python: Option<PythonFrames>,
}

/// The Python frames of a sample as the kernel read them, innermost first.
pub type PythonFrames = std::sync::Arc<[PyFrame]>;

/// Totals of the kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerStats(pub [u64; STAT_COUNT as usize]);

impl SamplerStats {
    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize]
    }

    pub fn losses(&self) -> u64 {
        Stat::ALL
            .iter()
            .filter(|s| s.is_loss())
            .map(|s| self.get(*s))
            .sum()
    }

    /// "name=value" for every non-zero loss counter.
    pub fn loss_summary(&self) -> String {
        let parts: Vec<String> = Stat::ALL
            .iter()
            .filter(|s| s.is_loss() && self.get(**s) > 0)
            .map(|s| format!("{}={}", s.name(), self.get(*s)))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

pub struct Sampler {
    // Keeps programs and links alive; dropping it detaches everything.
    _ebpf: Ebpf,
    counts: [HashMap<MapData, SampleKey, u64>; 2],
    stacks: [StackTraceMap<MapData>; 2],
    active_buffer: Array<MapData, u32>,
    /// The control flags (`control_flags` bits) last written to
    /// `ACTIVE_BUFFER[control_index::FLAGS]`.
    active: u32,
    // The program holds the filter map; kept so its contents can be inspected/extended.
    _pid_filter: HashMap<MapData, u32, u8>,
    events: RingBuf<MapData>,
    stats: PerCpuArray<MapData, [u64; STAT_COUNT as usize]>,
    go_procs: HashMap<MapData, u32, GoOffsets>,
    go_label_sets: [HashMap<MapData, GoLabelSetKey, GoLabels>; 2],
    /// Whether goroutine labels can be read on this kernel (BTF gave fsbase's offset).
    pub go_labels_supported: bool,
    /// Whether Python frames are read: asked for, and threads' thread pointers can be
    /// read (BTF gave fsbase's offset), which finding Python thread states needs.
    pub python_frames: bool,
    user_stacks: HashMap<MapData, u64, UserStack>,
    py_procs: HashMap<MapData, u32, PyProcess>,
    py_stacks: HashMap<MapData, u64, PyStack>,
    /// Like `stack_cache`, for the Python stacks of kept keys.
    py_stack_cache: std::collections::HashMap<u64, PythonFrames>,
    /// Drained samples whose Python stack the LRU map had evicted (counted as
    /// `Stat::PythonStacksFull`).
    py_stacks_evicted: u64,
    /// Python stacks already handed out by [`Sampler::new_python_stacks`].
    py_stacks_seen: HashSet<u64>,
    /// `Stat::PythonStacksStored` when [`Sampler::new_python_stacks`] last looked.
    py_stacks_stored: u64,
    /// Drained samples whose user stack the LRU map had evicted (`Stat::UserStackEvicted`).
    user_stacks_evicted: u64,
    /// The user stacks of the keys the buffers keep, by hash. The kernel stores a stack
    /// only with a new key, and its LRU map may evict it while the key lives on, zeroed,
    /// for its next samples.
    stack_cache: std::collections::HashMap<u64, Box<[u64]>>,
    /// Which keys each drain keeps, zeroes or deletes.
    retention: KeyRetention,
    /// One perf event per CPU; emptied by [`Sampler::stop`].
    perf_links: Vec<PerfEventLinkId>,
}

impl Sampler {
    /// Loads and attaches everything. `before_attach` receives the DWARF unwinder's maps
    /// (None when it is off) before the perf events start, so processes named up front
    /// get their unwind tables before their first sample.
    pub fn start(
        config: &SamplerConfig,
        before_attach: impl FnOnce(Option<crate::unwind::BpfUnwindMaps>),
    ) -> anyhow::Result<Self> {
        crate::capture::privileges::check()?;
        check_frequency(config.frequency)?;
        raise_memlock_limit();

        let filter_pids: u8 = u8::from(!config.pids.is_empty());
        let include_idle: u8 = u8::from(config.include_idle);
        // Go labels and Python thread states are both found through the thread pointer.
        let fsbase_offset: u64 = crate::runtimes::golang::fsbase_offset().unwrap_or_else(|| {
            log::warn!(
                "no BTF for task_struct.thread.fsbase: Go labels and Python frames will not be read"
            );
            0
        });
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::GLOBAL_FILTER_PIDS, &filter_pids, true)
            .override_global(names::GLOBAL_INCLUDE_IDLE, &include_idle, true)
            .override_global(names::GLOBAL_FSBASE_OFFSET, &fsbase_offset, true);
        for name in names::COUNTS {
            loader.map_max_entries(name, config.counts_entries);
        }
        for name in names::STACKS {
            loader.map_max_entries(name, config.stack_entries);
        }
        loader.map_max_entries(names::USER_STACKS, config.stack_entries.saturating_mul(2));
        config.unwind.configure(&mut loader);
        let mut ebpf = loader
            .load(EBPF_OBJECT)
            .context("loading the eBPF sampler into the kernel failed")?;

        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        let counts = [
            HashMap::try_from(take(&mut ebpf, names::COUNTS[0])?)?,
            HashMap::try_from(take(&mut ebpf, names::COUNTS[1])?)?,
        ];
        let stacks = [
            StackTraceMap::try_from(take(&mut ebpf, names::STACKS[0])?)?,
            StackTraceMap::try_from(take(&mut ebpf, names::STACKS[1])?)?,
        ];
        let active_buffer = take(&mut ebpf, names::ACTIVE_BUFFER)?;
        let control_for_unwinder = match &active_buffer {
            aya::maps::Map::Array(map) => MapData::from_fd(map.fd().as_fd().try_clone_to_owned()?)?,
            _ => anyhow::bail!("{} is not an array map", names::ACTIVE_BUFFER),
        };
        let active_buffer = Array::try_from(active_buffer)?;
        let mut pid_filter: HashMap<MapData, u32, u8> =
            HashMap::try_from(take(&mut ebpf, names::PID_FILTER)?)?;
        for pid in &config.pids {
            pid_filter.insert(pid, 1, 0).with_context(|| {
                format!("adding pid {pid} to the filter failed (too many pids?)")
            })?;
        }
        let events = RingBuf::try_from(take(&mut ebpf, names::PROC_EVENTS)?)?;
        let stats = PerCpuArray::try_from(take(&mut ebpf, names::STATS)?)?;
        let user_stacks = HashMap::try_from(take(&mut ebpf, names::USER_STACKS)?)?;
        let unwind_maps = if config.unwind.enabled {
            Some(crate::unwind::BpfUnwindMaps::take(
                &mut ebpf,
                config.unwind.rows(),
                control_for_unwinder,
            )?)
        } else {
            None
        };
        let go_procs = HashMap::try_from(take(&mut ebpf, names::GO_PROCS)?)?;
        let py_procs = HashMap::try_from(take(&mut ebpf, names::PY_PROCS)?)?;
        let py_stacks = HashMap::try_from(take(&mut ebpf, names::PY_STACKS)?)?;
        let go_label_sets = [
            HashMap::try_from(take(&mut ebpf, names::GO_LABEL_SETS[0])?)?,
            HashMap::try_from(take(&mut ebpf, names::GO_LABEL_SETS[1])?)?,
        ];

        for (prog, name) in [
            (names::PROG_EXEC, "sched_process_exec"),
            (names::PROG_EXIT, "sched_process_exit"),
        ] {
            let tp: &mut RawTracePoint = ebpf
                .program_mut(prog)
                .with_context(|| format!("the eBPF object has no program {prog}"))?
                .try_into()?;
            tp.load()
                .with_context(|| format!("loading {prog} failed"))?;
            tp.attach(name)
                .with_context(|| format!("attaching to raw tracepoint {name} failed"))?;
        }

        let cpus = online_cpus().map_err(|(path, e)| anyhow::anyhow!("reading {path}: {e}"))?;
        let program: &mut PerfEvent = ebpf
            .program_mut(names::PROG_SAMPLE)
            .context("the eBPF object has no sampler program")?
            .try_into()?;
        program
            .load()
            .context("loading the sampler program failed")?;
        before_attach(unwind_maps);
        let mut perf_links = Vec::with_capacity(cpus.len());
        for &cpu in &cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(config.frequency),
                    false,
                )
                .with_context(|| format!("opening the cpu-clock perf event on CPU {cpu} failed"))?;
            perf_links.push(link);
        }

        Ok(Self {
            _ebpf: ebpf,
            counts,
            stacks,
            active_buffer,
            active: 0,
            _pid_filter: pid_filter,
            events,
            stats,
            go_procs,
            go_label_sets,
            go_labels_supported: config.go_labels && fsbase_offset != 0,
            python_frames: config.python_frames && fsbase_offset != 0,
            user_stacks,
            py_procs,
            py_stacks,
            py_stack_cache: Default::default(),
            py_stacks_evicted: 0,
            py_stacks_seen: HashSet::new(),
            py_stacks_stored: 0,
            user_stacks_evicted: 0,
            stack_cache: Default::default(),
            retention: KeyRetention::new(config.counts_entries, config.stack_entries),
            perf_links,
        })
    }

    /// Stops sampling: closes the perf events. Samples taken so far stay in the maps for
    /// the next [`Sampler::drain`]; what the caller does afterwards (symbolizing, writing)
    /// is no longer sampled.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let program: &mut PerfEvent = self
            ._ebpf
            .program_mut(names::PROG_SAMPLE)
            .context("the eBPF object has no sampler program")?
            .try_into()?;
        for link in self.perf_links.drain(..) {
            program
                .detach(link)
                .context("closing a cpu-clock perf event failed")?;
        }
        Ok(())
    }

    /// Starts reading goroutine labels in process `tgid`.
    pub fn set_go_process(&mut self, tgid: u32, offsets: GoOffsets) -> anyhow::Result<()> {
        self.go_procs
            .insert(tgid, offsets, 0)
            .context("the Go process map is full")?;
        if self.active & control_flags::GO_PROCESSES == 0 {
            self.active |= control_flags::GO_PROCESSES;
            self.active_buffer
                .set(control_index::FLAGS, self.active, 0)
                .context("enabling Go label reading failed")?;
        }
        Ok(())
    }

    pub fn remove_go_process(&mut self, tgid: u32) {
        let _ = self.go_procs.remove(&tgid);
    }

    /// Starts reading the Python frames of process `tgid` (or counting its samples as
    /// unsupported, when `process.supported` is 0).
    pub fn set_py_process(&mut self, tgid: u32, process: PyProcess) -> anyhow::Result<()> {
        self.py_procs
            .insert(tgid, process, 0)
            .context("the Python process map is full")?;
        if self.active & control_flags::PY_PROCESSES == 0 {
            self.active |= control_flags::PY_PROCESSES;
            self.active_buffer
                .set(control_index::FLAGS, self.active, 0)
                .context("enabling Python frame reading failed")?;
        }
        Ok(())
    }

    /// Python stacks the kernel stored since the last call, with their process: naming
    /// their frames while the process lives keeps them nameable after it exits.
    pub fn new_python_stacks(&mut self) -> Vec<(u32, PythonFrames)> {
        // The map is walked only after the kernel stored a stack: one read of the
        // counters otherwise.
        let stored = self
            .stats()
            .map(|s| s.get(Stat::PythonStacksStored))
            .unwrap_or(u64::MAX);
        if stored == self.py_stacks_stored {
            return Vec::new();
        }
        self.py_stacks_stored = stored;
        if self.py_stacks_seen.len() > 2 * defaults::PY_STACKS_ENTRIES as usize {
            self.py_stacks_seen.clear();
        }
        let keys: Vec<u64> = self.py_stacks.keys().filter_map(Result::ok).collect();
        let mut out = Vec::new();
        for key in keys {
            if self.py_stack_cache.contains_key(&key) || !self.py_stacks_seen.insert(key) {
                continue;
            }
            if let Ok(st) = self.py_stacks.get(&key, 0) {
                let len = (st.len as usize).min(st.frames.len());
                out.push((st.tgid, st.frames[..len].into()));
            }
        }
        out
    }

    pub fn remove_py_process(&mut self, tgid: u32) {
        let _ = self.py_procs.remove(&tgid);
    }

    /// Tells the next drain of each buffer that `tgid` exited or exec'd: its keys are then
    /// deleted rather than kept for its next samples.
    pub fn process_ended(&mut self, tgid: u32) {
        self.retention.process_ended(tgid);
    }

    /// Swaps buffers and returns everything recorded in the one that was active.
    ///
    /// Which keys stay (zeroed) and which are deleted is [`KeyRetention`]'s decision. A
    /// kept key's user stack is kept here (`stack_cache`), since the kernel's LRU map may
    /// evict it; a key whose stack was evicted before its first drain is deleted. Kernel
    /// stacks stay until the retention policy clears them, with the keys that name them.
    pub fn drain(&mut self) -> anyhow::Result<Vec<RawSample>> {
        let old = (self.active & control_flags::BUFFER) as usize;
        self.active ^= control_flags::BUFFER;
        self.active_buffer
            .set(control_index::FLAGS, self.active, 0)
            .context("switching the active sample buffer failed")?;
        thread::sleep(FLIP_GRACE);

        let label_sets = drain_go_label_sets(&mut self.go_label_sets[old]);
        let counts = &mut self.counts[old];
        let stacks = &mut self.stacks[old];
        let stack_ids: Vec<u32> = stacks.stack_ids().filter_map(Result::ok).collect();
        let user_stacks = &self.user_stacks;
        let stack_cache = &mut self.stack_cache;
        let py_stacks = &self.py_stacks;
        let py_stack_cache = &mut self.py_stack_cache;
        let mut evicted = 0;
        let mut py_evicted = 0;
        let keys: Vec<SampleKey> = counts.keys().filter_map(Result::ok).collect();
        log::trace!("draining {} keys from buffer {old}", keys.len());
        let mut retention = self.retention.drain(old, keys.len(), stack_ids.len());
        let clear_kernel_stacks = retention.clears_kernel_stacks();
        let mut samples = Vec::with_capacity(keys.len());
        for key in keys {
            let Ok(count) = counts.get(&key, 0) else {
                continue;
            };
            let mut stack_lost = false;
            let mut user = if key.user_stack == 0 || count == 0 {
                Vec::new()
            } else if let Some(cached) = stack_cache.get(&key.user_stack) {
                cached.to_vec()
            } else {
                match user_stacks.get(&key.user_stack, 0) {
                    Ok(st) => {
                        let ips = st.ips[..(st.len as usize).min(st.ips.len())].to_vec();
                        stack_cache.insert(key.user_stack, ips.as_slice().into());
                        ips
                    }
                    Err(_) => {
                        evicted += count;
                        // Deleted below: its next sample makes a new key, which stores
                        // the stack again.
                        stack_lost = true;
                        Vec::new()
                    }
                }
            };
            let python = if key.python_stack == 0 || count == 0 {
                None
            } else if let Some(cached) = py_stack_cache.get(&key.python_stack) {
                Some(cached.clone())
            } else {
                match py_stacks.get(&key.python_stack, 0) {
                    Ok(st) => {
                        let frames: PythonFrames =
                            st.frames[..(st.len as usize).min(st.frames.len())].into();
                        py_stack_cache.insert(key.python_stack, frames.clone());
                        Some(frames)
                    }
                    Err(_) => {
                        py_evicted += count;
                        stack_lost = true;
                        None
                    }
                }
            };
            match retention.fate(&key, count, stack_lost) {
                KeyFate::Delete => {
                    let _ = counts.remove(&key);
                }
                KeyFate::Zero => {
                    let _ = counts.insert(key, 0, 0);
                }
                KeyFate::Keep => {}
            }
            if count == 0 {
                continue;
            }
            // A stack the DWARF unwinder could not finish gets a `[truncated]` root.
            crate::unwind::mark_truncated(key.flags, &mut user);
            let kernel = if key.kernel_stack_id < 0 {
                Vec::new()
            } else {
                stacks
                    .get(&(key.kernel_stack_id as u32), 0)
                    .map(|st| st.frames().iter().map(|f| f.ip).collect())
                    .unwrap_or_default()
            };
            let go_labels = (key.go_labels != 0)
                .then(|| {
                    label_sets.get(&GoLabelSetKey {
                        tgid: key.tgid,
                        _pad: 0,
                        labels_hash: key.go_labels,
                    })
                })
                .flatten()
                .cloned();
            samples.push(RawSample {
                key,
                count,
                user,
                kernel,
                go_labels,
                python,
            });
        }
        if clear_kernel_stacks {
            for id in stack_ids {
                let _ = stacks.remove(&id);
            }
        }
        // The LRU map evicts stacks by itself; the cache drops those no kept key names.
        let named: HashSet<u64> = self.retention.kept_keys().map(|k| k.user_stack).collect();
        self.stack_cache.retain(|hash, _| named.contains(hash));
        let named: HashSet<u64> = self.retention.kept_keys().map(|k| k.python_stack).collect();
        self.py_stack_cache.retain(|hash, _| named.contains(hash));
        self.user_stacks_evicted += evicted;
        self.py_stacks_evicted += py_evicted;
        log::trace!("drained {} samples", samples.len());
        Ok(samples)
    }

    /// Sleeps until the kernel queues a process event or `timeout` passes. Waking on the
    /// event, rather than polling on a timer, lets a process that lives a few milliseconds
    /// be read from /proc (maps, labels) while it still runs.
    pub fn wait_for_events(&self, timeout: std::time::Duration) {
        use std::os::fd::AsRawFd as _;
        let mut fd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd; an error (EINTR) just ends the wait early.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }

    /// Process events the kernel queued since the last call.
    pub fn poll_events(&mut self, out: &mut Vec<ProcEvent>) {
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<ProcEvent>() {
                // SAFETY: length checked; ProcEvent is plain #[repr(C)] data.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ProcEvent>()) });
            }
        }
    }

    pub fn stats(&self) -> anyhow::Result<SamplerStats> {
        let mut totals = SamplerStats::default();
        let per_cpu = self
            .stats
            .get(&0, 0)
            .context("reading the sampler's counters failed")?;
        for cpu in per_cpu.iter() {
            for (total, n) in totals.0.iter_mut().zip(cpu) {
                *total += n;
            }
        }
        totals.0[Stat::UserStackEvicted as usize] += self.user_stacks_evicted;
        totals.0[Stat::PythonStacksFull as usize] += self.py_stacks_evicted;
        Ok(totals)
    }
}

/// Empties a label-set map, decoding each set (keys and values are NUL-terminated).
fn drain_go_label_sets(
    map: &mut HashMap<MapData, GoLabelSetKey, GoLabels>,
) -> std::collections::HashMap<GoLabelSetKey, GoLabelSet> {
    let keys: Vec<GoLabelSetKey> = map.keys().filter_map(Result::ok).collect();
    let mut sets = std::collections::HashMap::with_capacity(keys.len());
    for key in keys {
        if let Ok(labels) = map.get(&key, 0) {
            sets.insert(key, decode_go_labels(&labels));
        }
        let _ = map.remove(&key);
    }
    sets
}

fn decode_go_labels(labels: &GoLabels) -> GoLabelSet {
    let text = |b: &[u8]| -> std::sync::Arc<str> {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).as_ref().into()
    };
    let n = (labels.count as usize).min(labels.keys.len());
    let mut pairs: Vec<_> = (0..n)
        .map(|i| (text(&labels.keys[i]), text(&labels.values[i])))
        .filter(|(k, _)| !k.is_empty())
        .collect();
    pairs.sort();
    pairs.into()
}

fn check_frequency(hz: u64) -> anyhow::Result<()> {
    let max = std::fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100_000);
    if hz == 0 || hz > max {
        bail!("frequency {hz} Hz is out of range: use 1 to {max} Hz (kernel.perf_event_max_sample_rate)");
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones use memcg. Raising it
/// needs CAP_SYS_RESOURCE, which containers often lack, so failure is only logged.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::retention::KEY_IDLE_DRAINS;

    /// Runs `step` over and over for `ms`.
    fn repeat_for(ms: u64, mut step: impl FnMut()) {
        let end = std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < end {
            step();
        }
    }

    /// Keeps this thread on the CPU, in user mode, for `ms`.
    fn spin(ms: u64) {
        repeat_for(ms, std::hint::spin_loop);
    }

    /// Real eBPF (tests run as root), recording only this process.
    fn own_process_config() -> SamplerConfig {
        SamplerConfig {
            frequency: 999,
            pids: vec![std::process::id()],
            ..Default::default()
        }
    }

    /// Samples counted by one drain.
    fn drained_total(sampler: &mut Sampler) -> u64 {
        sampler.drain().unwrap().iter().map(|s| s.count).sum()
    }

    #[test]
    fn every_write_of_the_unwind_maps_changes_the_epoch() {
        use crate::unwind::loader::UnwindMaps as _;
        let mut maps = None;
        let _sampler =
            Sampler::start(&own_process_config(), |m| maps = m).expect("loading the sampler");
        let mut maps = maps.expect("DWARF unwinding is on by default");
        let pid = std::process::id();
        let before = maps.epoch();
        let info = profiler_common::unwind::ProcUnwindInfo::default();
        maps.set_process(pid, 0, &info).unwrap();
        let set = maps.epoch();
        assert_ne!(set, before, "a process was written, the epoch stayed");
        maps.remove_process(pid, 0);
        assert_ne!(maps.epoch(), set, "a process was removed, the epoch stayed");
    }

    #[test]
    fn stop_closes_the_perf_events_and_keeps_the_samples() {
        let config = own_process_config();
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        spin(300);
        let taken = sampler.stats().unwrap().get(Stat::Samples);
        assert!(taken > 0, "no sample while spinning");

        sampler.stop().unwrap();
        let at_stop = sampler.stats().unwrap().get(Stat::Samples);
        spin(300);
        assert_eq!(
            sampler.stats().unwrap().get(Stat::Samples),
            at_stop,
            "sampled after stop"
        );
        assert!(
            drained_total(&mut sampler) > 0,
            "the samples taken before stop were lost"
        );
    }

    /// Spins through six distinct leaf functions, so samples carry several distinct stacks.
    fn spin_distinct(ms: u64) {
        #[inline(never)]
        fn leaf<const N: usize>(until: std::time::Instant) {
            while std::time::Instant::now() < until {
                std::hint::black_box(N);
            }
        }
        let end = std::time::Instant::now() + Duration::from_millis(ms);
        let step = |ms| std::time::Instant::now() + Duration::from_millis(ms);
        while std::time::Instant::now() < end {
            leaf::<0>(step(2));
            leaf::<1>(step(2));
            leaf::<2>(step(2));
            leaf::<3>(step(2));
            leaf::<4>(step(2));
            leaf::<5>(step(2));
        }
    }

    #[test]
    fn user_stacks_survive_drains_and_evictions_are_counted() {
        let drain_user_stacks = |sampler: &mut Sampler| {
            let samples = sampler.drain().unwrap();
            let with_hash: u64 = samples
                .iter()
                .filter(|s| s.key.user_stack != 0)
                .map(|s| s.count)
                .sum();
            let resolved: u64 = samples
                .iter()
                .filter(|s| s.key.user_stack != 0 && !s.user.is_empty())
                .map(|s| s.count)
                .sum();
            (with_hash, resolved)
        };
        let mut config = own_process_config();

        // Roomy map: stacks stored before a drain resolve in it and in the ones after.
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        for _ in 0..3 {
            spin_distinct(150);
            let (with_hash, resolved) = drain_user_stacks(&mut sampler);
            assert!(with_hash > 0, "no user stacks sampled");
            assert_eq!(resolved, with_hash, "a user stack went missing");
        }
        assert_eq!(sampler.stats().unwrap().get(Stat::UserStackEvicted), 0);

        // The kernel stores a stack only with a new key: a key kept across drains finds
        // its stack in the sampler's cache after the LRU map dropped it. (Keys new since
        // the last drain lose theirs: evicted, and counted.)
        let kept: HashSet<u64> = sampler.stack_cache.keys().copied().collect();
        let stored: Vec<u64> = sampler.user_stacks.keys().filter_map(Result::ok).collect();
        for hash in &stored {
            sampler.user_stacks.remove(hash).unwrap();
        }
        spin_distinct(150);
        let samples = sampler.drain().unwrap();
        let of_kept: Vec<_> = samples
            .iter()
            .filter(|s| kept.contains(&s.key.user_stack) && stored.contains(&s.key.user_stack))
            .collect();
        assert!(!of_kept.is_empty(), "no sample recurred on a kept key");
        assert!(
            of_kept.iter().all(|s| !s.user.is_empty()),
            "a kept key lost its user stack"
        );
        let unresolved: u64 = samples
            .iter()
            .filter(|s| s.key.user_stack != 0 && s.user.is_empty())
            .map(|s| s.count)
            .sum();
        assert_eq!(
            sampler.stats().unwrap().get(Stat::UserStackEvicted),
            unresolved
        );
        drop(sampler);

        // A map of 8 stacks: most are evicted before their drain, and each is counted.
        // Their keys are deleted, so that a next sample stores the stack again.
        config.stack_entries = 4;
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        spin_distinct(300);
        let (with_hash, resolved) = drain_user_stacks(&mut sampler);
        let evicted = sampler.stats().unwrap().get(Stat::UserStackEvicted);
        assert!(evicted > 0, "nothing evicted from a map of 8 stacks");
        assert_eq!(evicted, with_hash - resolved);
        let drained = ((sampler.active & control_flags::BUFFER) ^ 1) as usize;
        assert!(
            buffer_keys(&sampler, drained)
                .iter()
                .all(|(k, _)| k.user_stack == 0 || sampler.stack_cache.contains_key(&k.user_stack)),
            "a key was kept without its user stack"
        );
    }

    /// Keys of a buffer with their counts, read straight from the kernel map.
    fn buffer_keys(sampler: &Sampler, buffer: usize) -> Vec<(SampleKey, u64)> {
        let counts = &sampler.counts[buffer];
        counts
            .keys()
            .filter_map(Result::ok)
            .filter_map(|k| counts.get(&k, 0).ok().map(|c| (k, c)))
            .collect()
    }

    /// Spins in `read(2)` of /dev/zero, so that samples land in the kernel.
    fn spin_in_syscalls(ms: u64) {
        use std::io::Read as _;
        let mut zero = std::fs::File::open("/dev/zero").unwrap();
        let mut buf = [0u8; 4096];
        repeat_for(ms, || zero.read_exact(&mut buf).unwrap());
    }

    #[test]
    fn drained_keys_stay_zeroed_until_idle_and_nothing_is_counted_twice() {
        let config = own_process_config();
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        let mut drained = 0;
        for _ in 0..4 {
            spin_distinct(100);
            let buffer = (sampler.active & control_flags::BUFFER) as usize;
            let samples = sampler.drain().unwrap();
            assert!(
                samples.iter().all(|s| s.count > 0),
                "a zeroed key was reported"
            );
            drained += samples.iter().map(|s| s.count).sum::<u64>();
            // The drained buffer keeps its keys, zeroed, for their next samples.
            let kept = buffer_keys(&sampler, buffer);
            assert!(!kept.is_empty(), "the drain deleted the keys it read");
            assert!(
                kept.iter().all(|&(_, c)| c == 0),
                "a drained key kept its count"
            );
        }
        sampler.stop().unwrap();
        drained += drained_total(&mut sampler) + drained_total(&mut sampler);
        assert_eq!(drained, sampler.stats().unwrap().get(Stat::Recorded));

        // Keys that count nothing are deleted after KEY_IDLE_DRAINS drains of their buffer.
        for _ in 0..2 * KEY_IDLE_DRAINS {
            assert!(sampler.drain().unwrap().is_empty());
        }
        assert!(buffer_keys(&sampler, 0).is_empty() && buffer_keys(&sampler, 1).is_empty());
    }

    #[test]
    fn keys_of_ended_processes_and_stale_kernel_stacks_are_deleted() {
        let mut config = own_process_config();
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        spin_distinct(100);
        sampler.drain().unwrap();
        spin_distinct(100);
        sampler.drain().unwrap();
        sampler.stop().unwrap();
        assert!(!buffer_keys(&sampler, 0).is_empty() && !buffer_keys(&sampler, 1).is_empty());
        // An exec or exit: the next drain of each buffer deletes the process's keys.
        sampler.process_ended(std::process::id());
        sampler.drain().unwrap();
        sampler.drain().unwrap();
        assert!(buffer_keys(&sampler, 0).is_empty() && buffer_keys(&sampler, 1).is_empty());
        // And so are the user stacks kept for them.
        assert!(
            sampler.stack_cache.is_empty(),
            "stacks of deleted keys kept"
        );
        drop(sampler);

        // Room for 32 kernel stacks per buffer: more than 2 are cleared at the drain, with
        // the keys that name them; keys of user-mode samples stay.
        config.stack_entries = 32;
        let mut sampler = Sampler::start(&config, |_| {}).expect("loading the sampler");
        spin_in_syscalls(300);
        spin_distinct(100);
        sampler.stop().unwrap();
        let buffer = (sampler.active & control_flags::BUFFER) as usize;
        let samples = sampler.drain().unwrap();
        let kernel_stacks = samples
            .iter()
            .filter(|s| s.key.kernel_stack_id >= 0)
            .count();
        assert!(
            kernel_stacks > 2,
            "only {kernel_stacks} kernel stacks sampled"
        );
        assert!(
            samples
                .iter()
                .any(|s| s.key.kernel_stack_id >= 0 && !s.kernel.is_empty()),
            "kernel stacks were cleared before they were read"
        );
        let kept = buffer_keys(&sampler, buffer);
        assert!(
            kept.iter().all(|(k, _)| k.kernel_stack_id < 0),
            "a key names a cleared stack"
        );
        assert!(!kept.is_empty(), "user-mode keys were deleted too");
        assert_eq!(sampler.stacks[buffer].stack_ids().count(), 0);
    }
}
