//! The userspace half of sampling: reacts to process events as they arrive (so a process
//! is captured while it lives), drains the kernel's buffers, and symbolizes into an
//! [`Aggregate`].

use profiler_common::{proc_event, ProcEvent};

use crate::{
    aggregate::Aggregate,
    procs::ProcessTable,
    sampler::{Sampler, SamplerConfig, SamplerStats},
    symbolize::{Symbolizer, SymbolizerStats},
};

/// Cap of the symbolization caches (entries); ~100 bytes each.
const SYMBOL_CACHE_ENTRIES: usize = 200_000;

pub struct Collector {
    sampler: Sampler,
    pub procs: ProcessTable,
    symbolizer: Symbolizer,
    events: Vec<ProcEvent>,
    /// Processes that exited since the last drain; forgotten after it.
    exited: Vec<u32>,
}

impl Collector {
    pub fn start(config: &SamplerConfig) -> anyhow::Result<Self> {
        Ok(Self {
            sampler: Sampler::start(config)?,
            procs: ProcessTable::default(),
            symbolizer: Symbolizer::new(SYMBOL_CACHE_ENTRIES),
            events: Vec::new(),
            exited: Vec::new(),
        })
    }

    /// Handles queued process events and returns them, for callers that label processes.
    pub fn poll_events(&mut self) -> &[ProcEvent] {
        self.events.clear();
        self.sampler.poll_events(&mut self.events);
        for e in &self.events {
            match e.kind {
                proc_event::FIRST_SAMPLE => {
                    self.procs.capture(e.tgid);
                }
                proc_event::EXEC => self.procs.exec(e.tgid),
                proc_event::EXIT => {
                    self.procs.mark_exited(e.tgid);
                    self.exited.push(e.tgid);
                }
                _ => {}
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
        agg.add(&samples, &mut self.procs, &mut self.symbolizer);
        for (id, binary) in self.procs.evict_exited(&exited) {
            self.symbolizer.forget(id, &binary);
        }
        Ok(skipped)
    }

    pub fn sampler_stats(&self) -> anyhow::Result<SamplerStats> {
        self.sampler.stats()
    }

    pub fn symbolizer_stats(&self) -> SymbolizerStats {
        self.symbolizer.stats()
    }

    pub fn add_pid(&mut self, pid: u32) -> anyhow::Result<()> {
        self.sampler.add_pid(pid)
    }

    pub fn online_cpus(&self) -> usize {
        self.sampler.online_cpus()
    }
}
