//! The sampling loop: sleeps until the kernel announces a process event and reacts to it
//! (labels a process on its first sample, while it lives; forgets its labels on exec; keeps an
//! exited process's target until its window is out), drains the kernel every drain
//! interval into the window's [`Aggregate`], and at each window boundary hands the window
//! to the encoder with `try_send`.
//!
//! Windows are aligned to multiples of the collect interval on the wall clock (like
//! Pyroscope's 10 s alignment) except the first, which starts when the agent starts.
//! Each window's end is the instant of its last drain and is the next window's start, so
//! windows are contiguous and every sample lands in exactly one.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        mpsc::{SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use kiln_labels::{Discoverer, Target};
use profiler_common::{proc_event, ProcEvent};

use super::{
    encode::{Group, WindowData},
    series::SeriesLimiter,
};
use crate::{
    aggregate::{Aggregate, Module},
    capture::collector::Collector,
    metrics::{AgentMetrics, Snapshot},
};

/// Longest wait for process events; the wait ends as soon as one is queued, or a signal
/// arrives. Bounds how late a stop signal that lands between two waits is seen.
const MAX_WAIT: Duration = Duration::from_millis(250);
/// How often cached targets of processes that exited unnoticed are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// What the window loop needs from the sampling side: the [`Collector`] in the agent; a
/// scripted source in tests, since sampling itself needs root.
pub trait SampleSource {
    /// Sleeps until a process event is queued or `timeout` passes.
    fn wait_for_events(&self, timeout: Duration);
    /// Handles the queued process events and returns them.
    fn poll_events(&mut self) -> &[ProcEvent];
    /// Keeps DWARF unwinding in step with the processes seen.
    fn sync_unwind(&mut self);
    /// Drains the samples taken so far into `agg`, except those of processes `keep`
    /// rejects; returns how many samples were skipped.
    fn collect_into_where(
        &mut self,
        agg: &mut Aggregate,
        keep: impl Fn(u32) -> bool,
    ) -> anyhow::Result<u64>;
    /// The process events the last drain handled.
    fn last_events(&self) -> &[ProcEvent];
    /// Writes the sampling side's figures (sampler, symbolizer, processes) into `snap`.
    fn report(&self, snap: &mut Snapshot);
}

impl SampleSource for Collector {
    fn wait_for_events(&self, timeout: Duration) {
        Collector::wait_for_events(self, timeout);
    }

    fn poll_events(&mut self) -> &[ProcEvent] {
        Collector::poll_events(self)
    }

    fn sync_unwind(&mut self) {
        Collector::sync_unwind(self);
    }

    fn collect_into_where(
        &mut self,
        agg: &mut Aggregate,
        keep: impl Fn(u32) -> bool,
    ) -> anyhow::Result<u64> {
        Collector::collect_into_where(self, agg, keep)
    }

    fn last_events(&self) -> &[ProcEvent] {
        Collector::last_events(self)
    }

    fn report(&self, snap: &mut Snapshot) {
        if let Ok(s) = self.sampler_stats() {
            snap.sampler = s;
        }
        snap.symbolizer = Some(self.symbolizer_stats());
        (snap.go_binaries_cached, snap.go_binaries_evicted) = self.go_cache_stats();
        snap.processes = self.procs.len();
        snap.processes_evicted = self.procs.evicted;
        snap.binaries = self.procs.binaries.len();
        snap.unwind = self.unwind_stats();
        (snap.python_names_cached, snap.python_names_evicted) = self.python_cache_stats();
    }
}

pub struct WindowLoop<'a, S: SampleSource = Collector> {
    pub collector: S,
    pub discoverer: Discoverer,
    pub metrics: &'a AgentMetrics,
    pub tx: SyncSender<WindowData>,
    pub stop: &'a AtomicBool,
    pub frequency: u32,
    pub interval: Duration,
    pub drain_every: Duration,
    /// Labels of idle samples (pid 0, only with --include-idle), which have no /proc.
    pub idle_target: Arc<Target>,
    /// Processes relabeling dropped: their samples are skipped before symbolization.
    pub dropped: HashSet<u32>,
    /// Changes of metadata providers' knowledge (the Kubernetes pod and node index): cached
    /// targets are relabeled at the next window boundary, so a process labeled before its
    /// pod was indexed gets the pod's labels.
    pub meta_changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The cap on new series per window.
    pub series: SeriesLimiter,
}

/// First window end after `now`, aligned to multiples of `interval` since the epoch.
fn aligned_end(now: SystemTime, interval: Duration) -> SystemTime {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let end = (since / step + 1) * step;
    SystemTime::UNIX_EPOCH + Duration::from_nanos(end as u64)
}

impl<S: SampleSource> WindowLoop<'_, S> {
    pub fn run(mut self) -> anyhow::Result<()> {
        // One clock for window bounds: wall time at start plus monotonic time since.
        let base_inst = Instant::now();
        let base_sys = SystemTime::now();
        let wall = |i: Instant| base_sys + i.duration_since(base_inst);
        let mut window_start = base_sys;
        let mut next_end = base_inst
            + aligned_end(base_sys, self.interval)
                .duration_since(base_sys)
                .unwrap_or_default();
        let mut agg = Aggregate::default();
        let mut exited: HashSet<u32> = HashSet::new();
        let mut seq = 0u64;
        let mut last_drain = Instant::now();
        let mut last_prune = Instant::now();
        let mut events: Vec<ProcEvent> = Vec::new();
        self.metrics.sampler_running.store(true, Relaxed);
        self.collect(&mut agg, &mut exited, &mut events);

        loop {
            let stopping = self.stop.load(Relaxed);
            let now = Instant::now();
            if stopping || now >= next_end {
                let end = Instant::now();
                self.collect(&mut agg, &mut exited, &mut events);
                let end_sys = wall(end);
                let duration = end_sys.duration_since(window_start).unwrap_or_default();
                let finished = std::mem::take(&mut agg);
                self.finish_window(seq, window_start, duration, finished, &mut exited);
                seq += 1;
                window_start = end_sys;
                let now_sys = wall(Instant::now());
                next_end = end
                    + aligned_end(now_sys, self.interval)
                        .duration_since(end_sys)
                        .unwrap_or(self.interval);
                if last_prune.elapsed() >= PRUNE_EVERY {
                    self.discoverer.prune_exited();
                    self.dropped
                        .retain(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
                    last_prune = Instant::now();
                }
                last_drain = end;
                if stopping {
                    break;
                }
                continue;
            }
            let next_drain = last_drain + self.drain_every;
            self.collector.wait_for_events(
                MAX_WAIT
                    .min(next_end.saturating_duration_since(now))
                    .min(next_drain.saturating_duration_since(now)),
            );
            events.clear();
            events.extend_from_slice(self.collector.poll_events());
            self.handle_events(&events, &mut exited);
            self.collector.sync_unwind();
            if last_drain.elapsed() >= self.drain_every {
                self.collect(&mut agg, &mut exited, &mut events);
                last_drain = Instant::now();
            }
        }
        self.metrics.sampler_running.store(false, Relaxed);
        Ok(())
    }

    /// Drains the kernel into `agg`, handles the events the drain consumed, and refreshes
    /// the metrics snapshot. A failed drain is counted and reported by /healthz; the loop
    /// goes on (the next drain may succeed).
    fn collect(
        &mut self,
        agg: &mut Aggregate,
        exited: &mut HashSet<u32>,
        events: &mut Vec<ProcEvent>,
    ) {
        let t0 = Instant::now();
        let dropped = &self.dropped;
        let r = self
            .collector
            .collect_into_where(agg, |pid| !dropped.contains(&pid));
        log::trace!("drain took {:?}", t0.elapsed());
        match r {
            Ok(skipped) => {
                self.metrics.collect_succeeded();
                self.metrics
                    .samples_relabel_dropped
                    .fetch_add(skipped, Relaxed);
            }
            Err(e) => {
                self.metrics.collect_errors.fetch_add(1, Relaxed);
                self.metrics.last_collect_ok.store(false, Relaxed);
                log::error!("draining samples failed: {e:#}");
            }
        }
        events.clear();
        events.extend_from_slice(self.collector.last_events());
        self.handle_events(events, exited);
        let mut snap = self
            .metrics
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.collector.report(&mut snap);
        snap.targets_cached = self.discoverer.cached();
        snap.discovery = self.discoverer.stats();
    }

    fn handle_events(&mut self, events: &[ProcEvent], exited: &mut HashSet<u32>) {
        for e in events {
            match e.kind {
                proc_event::FIRST_SAMPLE => {
                    log::trace!("pid {}: first sample", e.tgid);
                    if exited.remove(&e.tgid) {
                        // The pid was reused within the window: the cached target is the
                        // old process's. Label the new one.
                        self.discoverer.forget(e.tgid);
                    }
                    self.label(e.tgid);
                }
                proc_event::EXEC => {
                    log::trace!("pid {}: exec", e.tgid);
                    // Forget, do not re-read now: the kernel side announces an exec only
                    // for a process it has sampled, so a second exec that follows before
                    // any sample (a shell joining cgroups, then exec'ing the workload)
                    // goes unannounced and a target read now would stick. The new
                    // program's first sample labels it, or the window's end does.
                    exited.remove(&e.tgid);
                    self.discoverer.forget(e.tgid);
                    self.dropped.remove(&e.tgid);
                }
                proc_event::EXIT => {
                    exited.insert(e.tgid);
                }
                _ => {}
            }
        }
    }

    /// Labels a live process now (it may exit before the window ends) and remembers
    /// whether relabeling dropped it.
    fn label(&mut self, pid: u32) {
        let found = self.discoverer.lookup(pid);
        if let Ok(t) = &found {
            log::trace!(
                "pid {pid} labeled: process {:?}, container {:?}",
                t.get("process"),
                t.get("container_id")
            );
        }
        match found {
            Ok(t) if t.is_dropped() => {
                self.dropped.insert(pid);
            }
            Ok(_) => {
                self.dropped.remove(&pid);
            }
            Err(e) => log::trace!("labeling pid {pid} failed: {e}"),
        }
    }

    /// When the metadata providers' knowledge changed, drops every cached target so live
    /// processes are labeled afresh (now, for the window being finished). Processes that
    /// exited in this window cannot be read again: their targets are returned to be used
    /// as they are. Processes relabeling dropped are re-checked, since new metadata can
    /// change a keep/drop decision.
    fn refresh_if_meta_changed(&mut self, exited: &HashSet<u32>) -> HashMap<u32, Arc<Target>> {
        let changed = self.meta_changes.as_mut().is_some_and(|rx| {
            // An error means the provider is gone: nothing will change any more.
            let changed = rx.has_changed().unwrap_or(false);
            if changed {
                rx.borrow_and_update();
            }
            changed
        });
        if !changed {
            return HashMap::new();
        }
        let kept: HashMap<u32, Arc<Target>> = exited
            .iter()
            .filter_map(|&pid| Some((pid, self.discoverer.lookup(pid).ok()?)))
            .collect();
        self.discoverer.invalidate_all();
        let dropped: Vec<u32> = self
            .dropped
            .iter()
            .copied()
            .filter(|pid| !exited.contains(pid))
            .collect();
        for pid in dropped {
            self.label(pid);
        }
        log::debug!(
            "metadata changed: labels of live processes refreshed, {} dropped by relabeling",
            self.dropped.len()
        );
        kept
    }

    fn finish_window(
        &mut self,
        seq: u64,
        start: SystemTime,
        duration: Duration,
        agg: Aggregate,
        exited: &mut HashSet<u32>,
    ) {
        // Samples, process name (it outlives the process) and whether any stack had a
        // user frame (none: a kernel thread), per pid.
        let mut per_pid: HashMap<u32, (u64, &str, bool)> = HashMap::new();
        for (key, count) in &agg.stacks {
            let entry = per_pid.entry(key.pid).or_insert((0, &key.process, false));
            entry.0 += count;
            entry.2 |= key
                .locations
                .iter()
                .any(|&l| agg.locations[l as usize].module != Module::Kernel);
        }
        let kept = self.refresh_if_meta_changed(exited);
        let mut groups: HashMap<u64, Group> = HashMap::new();
        let (mut exported, mut unlabeled, mut dropped) = (0u64, 0u64, 0u64);
        let mut after_exit = 0u64;
        for (pid, (samples, process, has_user_frames)) in per_pid {
            let target = if pid == 0 {
                Ok(self.idle_target.clone())
            } else if let Some(t) = kept.get(&pid) {
                Ok(t.clone())
            } else {
                match self.discoverer.lookup(pid) {
                    // Gone before we could read it (a process living a few ms): label it
                    // with what outlives it rather than lose its samples.
                    Err(kiln_labels::DiscoverError::Vanished { .. }) => {
                        after_exit += samples;
                        // Only a kernel thread has no user frame at all (and a name like
                        // `kworker/1:2`; a user process whose unwind failed has neither).
                        let kernel_thread = !has_user_frames && process.contains('/');
                        Ok(Arc::new(self.discoverer.exited_target(
                            pid,
                            process,
                            kernel_thread,
                        )))
                    }
                    other => other,
                }
            };
            match target {
                Ok(t) if t.is_dropped() => dropped += samples,
                Ok(t) => {
                    exported += samples;
                    let g = groups.entry(t.series_key()).or_insert_with(|| Group {
                        target: t,
                        pids: HashSet::new(),
                        samples: 0,
                    });
                    g.pids.insert(pid);
                    g.samples += samples;
                }
                Err(e) => {
                    log::debug!("{samples} samples of pid {pid} unlabeled: {e}");
                    unlabeled += samples
                }
            }
        }
        let (groups, limited_series, limited_samples) = self.limit_series(seq, groups);
        exported -= limited_samples;
        // Everything those processes ever sampled is in this window now.
        for pid in exited.drain() {
            self.discoverer.forget(pid);
            self.dropped.remove(&pid);
        }
        let m = self.metrics;
        m.windows_collected.fetch_add(1, Relaxed);
        m.samples_exported.fetch_add(exported, Relaxed);
        m.samples_labeled_after_exit.fetch_add(after_exit, Relaxed);
        m.samples_unlabeled.fetch_add(unlabeled, Relaxed);
        m.samples_relabel_dropped.fetch_add(dropped, Relaxed);
        m.window_series.store(groups.len() as u64, Relaxed);
        m.series_limited.fetch_add(limited_series, Relaxed);
        m.samples_series_limited.fetch_add(limited_samples, Relaxed);
        m.series_known.store(self.series.known() as u64, Relaxed);
        log::debug!(
            "window {seq}: {:.3} s, {} series, {exported} samples ({after_exit} labeled after their process exited, {unlabeled} unlabeled, {dropped} dropped by relabeling, {limited_samples} of {limited_series} new series over the cap)",
            duration.as_secs_f64(),
            groups.len()
        );
        if limited_series > 0 {
            log::warn!(
                "window {seq}: {limited_series} new series over --max-new-series-per-window, their {limited_samples} samples dropped"
            );
        }
        let data = WindowData {
            seq,
            start,
            duration,
            frequency: u64::from(self.frequency),
            agg,
            groups,
        };
        match self.tx.try_send(data) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                m.windows_dropped.fetch_add(1, Relaxed);
                log::warn!("window {seq} dropped: encoding is behind");
            }
            Err(TrySendError::Disconnected(_)) => {
                m.windows_dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

impl<S: SampleSource> WindowLoop<'_, S> {
    /// Applies the new-series cap to a window's groups: the admitted groups, and the
    /// series and samples refused.
    fn limit_series(&mut self, seq: u64, groups: HashMap<u64, Group>) -> (Vec<Group>, u64, u64) {
        let groups: Vec<Group> = groups.into_values().collect();
        let keys: Vec<(u64, u64)> = groups
            .iter()
            .map(|g| (g.target.series_key(), g.samples))
            .collect();
        let admission = self.series.admit(seq, &keys);
        let mut keep = vec![false; groups.len()];
        for i in admission.admitted {
            keep[i] = true;
        }
        let groups = groups
            .into_iter()
            .zip(keep)
            .filter_map(|(g, k)| k.then_some(g))
            .collect();
        (groups, admission.limited_series, admission.limited_samples)
    }
}

#[cfg(test)]
mod tests;
