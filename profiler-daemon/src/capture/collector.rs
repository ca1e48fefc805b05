//! The userspace half of sampling: reacts to process events as they arrive (so a process
//! is captured while it lives), drains the kernel's buffers, and symbolizes into an
//! [`Aggregate`].

use profiler_common::{proc_event, ProcEvent};

use crate::{
    aggregate::Aggregate,
    bounded::ClearingCache,
    capture::procs::ProcessTable,
    capture::sampler::{Sampler, SamplerConfig, SamplerStats},
    symbolize::{Symbolizer, SymbolizerStats},
    unwind::{loader::BinaryRef, BpfUnwindMaps, LoaderStats, UnwindLoader},
};

/// Cap of the symbolization caches (entries); ~100 bytes each.
const SYMBOL_CACHE_ENTRIES: usize = 200_000;
/// Time per call that building unwind tables may take on the sampling thread.
const UNWIND_BUDGET: std::time::Duration = std::time::Duration::from_millis(50);
const MAX_UNWIND_PENDING: usize = 4096;
/// Binaries kept parsed by blazesym between drains (their DWARF can be tens of MB each).
const PARSED_BINARIES: usize = 16;
/// How often the frames of new Python stacks are named between drains.
const PYTHON_NAMING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// When a newly captured process's mappings are read again (see `poll_events`).
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Most executables whose Go detection result is kept (a detection reads a few pages).
const GO_BINARIES_CACHED: usize = 4096;

pub struct Collector {
    sampler: Sampler,
    pub procs: ProcessTable,
    symbolizer: Symbolizer,
    events: Vec<ProcEvent>,
    /// Processes that exited since the last drain; forgotten after it.
    exited: Vec<u32>,
    /// Go runtime offsets per executable (dev, inode); None = not Go or unsupported.
    /// Capped: a host that keeps building new binaries would grow it forever.
    go_binaries: ClearingCache<(u64, u64), Option<profiler_common::GoOffsets>>,
    /// Unwind tables of the processes sampled (None when DWARF unwinding is off).
    unwind: Option<UnwindLoader<BpfUnwindMaps>>,
    /// Processes waiting for their unwind tables, oldest first.
    unwind_pending: std::collections::VecDeque<u32>,
    unwind_queued: std::collections::HashSet<u32>,
    /// Newly captured processes and when to read their mappings again, oldest first.
    recheck: std::collections::VecDeque<(std::time::Instant, u32)>,
    /// When the frames of new Python stacks were last named (see `name_python_frames`).
    python_named_at: std::time::Instant,
}

impl Collector {
    pub fn start(config: &SamplerConfig) -> anyhow::Result<Self> {
        let mut procs = ProcessTable::default();
        let mut unwind = None;
        let sampler = Sampler::start(config, |maps| {
            let Some(maps) = maps else { return };
            let mut loader = UnwindLoader::new(maps);
            // Processes named up front get their unwind tables before their first sample.
            for &pid in &config.pids {
                if procs.capture(pid) {
                    register(&mut loader, &procs, pid);
                }
            }
            procs.take_captured();
            unwind = Some(loader);
        })?;
        release_free_heap();
        let mut collector = Self {
            sampler,
            procs,
            symbolizer: Symbolizer::new(SYMBOL_CACHE_ENTRIES),
            events: Vec::new(),
            exited: Vec::new(),
            go_binaries: ClearingCache::new(GO_BINARIES_CACHED),
            unwind,
            unwind_pending: Default::default(),
            unwind_queued: Default::default(),
            recheck: Default::default(),
            python_named_at: std::time::Instant::now(),
        };
        // Processes named up front: their Python frames from the first sample on.
        for &pid in &config.pids {
            collector.watch_python(pid);
        }
        Ok(collector)
    }

    /// Gives the unwind loader the mappings of every process (re)captured since the
    /// last call. Callers that label processes do that first: a short-lived process may
    /// be gone by the time its tables are built.
    ///
    /// Compiling a large binary's tables takes a while, so each call spends at most
    /// [`UNWIND_BUDGET`] and leaves the rest for the next: the sampling loop stays
    /// responsive (events, drains, signals) while a busy host's tables are built.
    pub fn sync_unwind(&mut self) {
        let captured = self.procs.take_captured();
        let Some(unwind) = &mut self.unwind else {
            return;
        };
        for pid in captured {
            if self.unwind_queued.insert(pid) {
                self.unwind_pending.push_back(pid);
            }
        }
        // Bounded: under heavy process churn the oldest wait longest and are most likely
        // gone; they keep frame pointers.
        while self.unwind_pending.len() > MAX_UNWIND_PENDING {
            if let Some(pid) = self.unwind_pending.pop_front() {
                self.unwind_queued.remove(&pid);
            }
        }
        let started = std::time::Instant::now();
        while started.elapsed() < UNWIND_BUDGET {
            let Some(pid) = self.unwind_pending.pop_front() else {
                break;
            };
            self.unwind_queued.remove(&pid);
            // Gone meanwhile: nothing to unwind.
            if self.procs.get(pid).is_some_and(|p| !p.exited) {
                register(unwind, &self.procs, pid);
            }
        }
    }

    /// Counters of the unwind loader (None when DWARF unwinding is off).
    pub fn unwind_stats(&self) -> Option<LoaderStats> {
        self.unwind.as_ref().map(UnwindLoader::stats)
    }

    /// Sleeps until a process event is queued or `timeout` passes.
    pub fn wait_for_events(&self, timeout: std::time::Duration) {
        self.sampler.wait_for_events(timeout);
    }

    /// Handles queued process events (captures new processes' mappings) and returns them,
    /// for callers that label processes; then call [`Collector::sync_unwind`].
    pub fn poll_events(&mut self) -> &[ProcEvent] {
        self.events.clear();
        self.sampler.poll_events(&mut self.events);
        for i in 0..self.events.len() {
            let e = self.events[i];
            log::debug!("pid {}: process event {}", e.tgid, e.kind);
            match e.kind {
                proc_event::FIRST_SAMPLE if self.procs.capture(e.tgid) => {
                    self.watch_go_labels(e.tgid);
                    self.watch_python(e.tgid);
                    self.recheck
                        .push_back((std::time::Instant::now() + RECHECK_AFTER, e.tgid));
                }
                proc_event::EXEC => {
                    self.procs.exec(e.tgid);
                    self.sampler.process_ended(e.tgid);
                    if let Some(unwind) = &mut self.unwind {
                        unwind.remove_process(e.tgid);
                    }
                    self.sampler.remove_go_process(e.tgid);
                    self.sampler.remove_py_process(e.tgid);
                    self.symbolizer.python.forget(e.tgid);
                }
                proc_event::EXIT => {
                    self.procs.mark_exited(e.tgid);
                    self.sampler.process_ended(e.tgid);
                    self.sampler.remove_go_process(e.tgid);
                    self.sampler.remove_py_process(e.tgid);
                    self.exited.push(e.tgid);
                }
                _ => {}
            }
        }
        self.name_python_frames();
        // A first sample can land while the dynamic loader is still mapping libraries
        // (right after exec): look again once it is done, or the process's libraries
        // would stay unknown to the unwinder and, should it exit, to the symbolizer.
        let now = std::time::Instant::now();
        while let Some(&(due, pid)) = self.recheck.front() {
            if due > now {
                break;
            }
            self.recheck.pop_front();
            if self.procs.get(pid).is_some_and(|p| !p.exited) && self.procs.mappings_changed(pid) {
                self.procs.capture(pid);
                // An interpreter that links libpython maps it after the first sample.
                self.watch_python(pid);
            }
        }
        &self.events
    }

    /// The events handled by the last [`Collector::poll_events`] or
    /// [`Collector::collect_into`] call (which polls too), so a caller that labels
    /// processes sees every event.
    pub fn last_events(&self) -> &[ProcEvent] {
        &self.events
    }

    /// If `pid` runs a Go program of a known version, tells the kernel side to read its
    /// goroutine labels. Each executable is inspected once.
    fn watch_go_labels(&mut self, pid: u32) {
        if !self.sampler.go_labels_supported {
            return;
        }
        let exe = format!("/proc/{pid}/exe");
        let Ok(meta) = std::fs::metadata(&exe) else {
            return;
        };
        let id = (
            std::os::unix::fs::MetadataExt::dev(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta),
        );
        let offsets = *self.go_binaries.get_or_insert_with(id, || {
            match crate::runtimes::golang::detect(std::path::Path::new(&exe)) {
                Ok(Some((version, offsets))) => {
                    log::debug!("pid {pid}: {version}, reading goroutine labels");
                    Some(offsets)
                }
                Ok(None) => None,
                Err(e) => {
                    log::info!("pid {pid}: {e}");
                    None
                }
            }
        });
        if let Some(offsets) = offsets {
            if let Err(e) = self.sampler.set_go_process(pid, offsets) {
                log::warn!("pid {pid}: {e:#}");
            }
        }
    }

    /// Names the frames of the Python stacks sampled since the last call, at most every
    /// [`PYTHON_NAMING_INTERVAL`]: code objects are read from a process's memory, which is
    /// gone once it exits, possibly before the next drain.
    fn name_python_frames(&mut self) {
        if !self.symbolizer.python.any_registered()
            || self.python_named_at.elapsed() < PYTHON_NAMING_INTERVAL
        {
            return;
        }
        self.python_named_at = std::time::Instant::now();
        for (pid, frames) in self.sampler.new_python_stacks() {
            for f in frames.iter() {
                let _ = self.symbolizer.python.name(pid, f);
            }
        }
    }

    /// If `pid` runs CPython, tells the kernel side to read its threads' Python frames (or,
    /// for a version Kiln has no layout for, to count its samples as unsupported).
    fn watch_python(&mut self, pid: u32) {
        if !self.sampler.python_frames || self.symbolizer.python.is_registered(pid) {
            return;
        }
        // The captured code mappings name the interpreter: other processes cost nothing
        // more (a host may start thousands per second).
        let maps_python = self.procs.get(pid).is_some_and(|p| {
            p.mappings
                .iter()
                .any(|m| crate::runtimes::python::is_interpreter_file(&m.label))
        });
        if !maps_python {
            return;
        }
        match crate::runtimes::python::detect(pid) {
            Ok(Some(detected)) => {
                let (major, minor) = detected.version;
                match detected.layout {
                    Some(layout) => {
                        log::debug!("pid {pid}: Python {major}.{minor}, reading its frames");
                        self.symbolizer.python.register(pid, layout);
                    }
                    None => log::info!(
                        "pid {pid}: Python {major}.{minor} has no known layout; its Python frames are not read"
                    ),
                }
                if let Err(e) = self.sampler.set_py_process(pid, detected.process) {
                    log::warn!("pid {pid}: {e:#}");
                }
            }
            Ok(None) => {}
            Err(e) => log::info!("pid {pid}: {e}"),
        }
    }

    /// Moves everything sampled so far into `agg`.
    pub fn collect_into(&mut self, agg: &mut Aggregate) -> anyhow::Result<()> {
        self.collect_into_where(agg, |_| true).map(|_| ())
    }

    /// Like [`Collector::collect_into`], but samples of processes `keep` rejects are
    /// neither symbolized nor added (the agent skips processes its relabel rules drop).
    /// Returns how many samples were skipped.
    pub fn collect_into_where(
        &mut self,
        agg: &mut Aggregate,
        keep: impl Fn(u32) -> bool,
    ) -> anyhow::Result<u64> {
        self.poll_events();
        // Exits seen before the flip: all their samples are in the buffer drained now.
        let exited = std::mem::take(&mut self.exited);
        let mut samples = self.sampler.drain()?;
        let mut skipped = 0;
        samples.retain(|s| {
            let k = keep(s.key.tgid);
            if !k {
                skipped += s.count;
            }
            k
        });
        self.procs.next_drain();
        agg.add(&samples, &mut self.procs, &mut self.symbolizer);
        self.symbolizer.end_drain(PARSED_BINARIES);
        if let Some(unwind) = &mut self.unwind {
            for &pid in &exited {
                unwind.remove_process(pid);
            }
        }
        for &pid in &exited {
            self.symbolizer.python.forget(pid);
        }
        // Processes the full table forgot: those that are gone (their exit event was lost)
        // are cleaned up as on exit; live ones are captured again on their next sample.
        for pid in self.procs.take_evicted() {
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            self.sampler.process_ended(pid);
            self.sampler.remove_go_process(pid);
            self.sampler.remove_py_process(pid);
            self.symbolizer.python.forget(pid);
            if let Some(unwind) = &mut self.unwind {
                unwind.remove_process(pid);
            }
        }
        for (id, _) in self.procs.evict_exited(&exited) {
            self.symbolizer.forget(id);
            if let Some(unwind) = &mut self.unwind {
                unwind.forget_binary(id);
            }
        }
        // Processes the aggregate re-read (code mapped since: dlopen).
        self.sync_unwind();
        release_free_heap();
        Ok(skipped)
    }

    /// Names the kernel frames `agg` deferred ([`Aggregate::deferring_kernel`]), after
    /// releasing the parsed user binaries, so the two never occupy memory together.
    pub fn resolve_kernel_frames(&mut self, agg: &mut Aggregate) {
        self.symbolizer.end_drain(0);
        release_free_heap();
        agg.resolve_kernel(&mut self.symbolizer);
    }

    /// Stops sampling; the samples taken so far are still collected by the next
    /// [`Collector::collect_into`].
    pub fn stop_sampling(&mut self) -> anyhow::Result<()> {
        self.sampler.stop()
    }

    /// The kernel's counters plus the losses counted while symbolizing (Python frames
    /// that could not be named or placed).
    pub fn sampler_stats(&self) -> anyhow::Result<SamplerStats> {
        let mut stats = self.sampler.stats()?;
        stats.0[profiler_common::Stat::PythonCodeUnreadable as usize] +=
            self.symbolizer.python.unreadable;
        stats.0[profiler_common::Stat::PythonMergeMismatch as usize] +=
            self.symbolizer.python.mismatched;
        Ok(stats)
    }

    /// Go detection results cached, and dropped because the cache was full.
    pub fn go_cache_stats(&self) -> (usize, u64) {
        (self.go_binaries.len(), self.go_binaries.evicted())
    }

    /// Python code names cached, and dropped because that cache was full.
    pub fn python_cache_stats(&self) -> (usize, u64) {
        (
            self.symbolizer.python.cached(),
            self.symbolizer.python.evicted,
        )
    }

    pub fn symbolizer_stats(&self) -> SymbolizerStats {
        self.symbolizer.stats()
    }
}

/// Returns freed heap pages to the kernel. Loading (BTF, the eBPF object), compiling
/// unwind tables and parsing debug info are bursts of short-lived allocations; glibc keeps
/// the freed memory mapped, which would hold RSS at the burst's peak for the whole run.
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Describes a captured, live process to the unwind loader.
fn register(unwind: &mut UnwindLoader<BpfUnwindMaps>, procs: &ProcessTable, pid: u32) {
    let Some(p) = procs.get(pid).filter(|p| !p.exited) else {
        return;
    };
    unwind.update_process(pid, &p.mappings, |id| {
        procs.binaries.get(id).map(|b| BinaryRef {
            path: b.open_path(),
            build_id: b.build_id.clone(),
        })
    });
}
