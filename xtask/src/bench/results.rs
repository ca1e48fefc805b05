//! What `bench sampler` measured, shared by the measuring ([`super::sampler`]) and the
//! reporting ([`super::report`]): one profiled run, a cell of repetitions, and the paired
//! kiln-and-bcc runs.

use super::peers::Profiler;
use super::stats::median;

#[derive(Default, Clone, Debug)]
pub(super) struct Run {
    pub(super) baseline_ops: f64,
    /// Loss of ops per workload CPU-second in the sampling window: the in-line cost.
    pub(super) inline_loss: f64,
    /// Loss of ops per wall-clock second in the sampling window.
    pub(super) steady_loss: f64,
    pub(super) whole_loss: f64,
    pub(super) bpf_ns: Option<f64>,
    pub(super) samples: Option<u64>,
    pub(super) cpu_s: f64,
    pub(super) post_cpu_s: f64,
    pub(super) maxrss_kb: u64,
    pub(super) max_anon_kb: u64,
    pub(super) stats_reenabled: u32,
    pub(super) ok: bool,
}

/// BPF time per sample of kiln and bcc over the same window (one repetition).
#[derive(Clone, Copy, Debug)]
pub(super) struct PairedRun {
    pub(super) kiln_ns: f64,
    pub(super) bcc_ns: f64,
    pub(super) kiln_samples: u64,
    pub(super) bcc_samples: u64,
}

pub(super) struct PairedCell {
    pub(super) mode: String,
    pub(super) hz: u64,
    pub(super) runs: Vec<PairedRun>,
    pub(super) errors: Vec<String>,
}

impl PairedCell {
    /// Median of the per-repetition kiln/bcc ratios.
    pub(super) fn ratio(&self) -> Option<f64> {
        median(self.runs.iter().map(|r| r.kiln_ns / r.bcc_ns).collect())
    }
}

pub(super) struct Cell {
    pub(super) mode: String,
    pub(super) hz: u64,
    pub(super) profiler: Profiler,
    pub(super) runs: Vec<Run>,
    pub(super) errors: Vec<String>,
    pub(super) skipped: Option<String>,
}

impl Cell {
    pub(super) fn med(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        median(self.runs.iter().filter_map(&f).collect())
    }
}
