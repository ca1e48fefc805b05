//! A discovered target: one process, its meta labels and final labels.

use crate::labels::{series_key, Labels};

/// Labels for one process. Immutable; shared as `Arc<Target>` by the cache.
///
/// `Debug` shows exactly the labels: allow-listed environment values are
/// the only environment data it can contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pid: u32,
    start_time: u64,
    meta_labels: Labels,
    labels: Labels,
    dropped: bool,
    series_key: u64,
}

impl Target {
    /// Builds a target from relabeling output; `labels` is `None` when a
    /// rule dropped it.
    pub fn new(pid: u32, start_time: u64, meta_labels: Labels, labels: Option<Labels>) -> Self {
        let dropped = labels.is_none();
        let labels = labels.unwrap_or_default();
        let series_key = series_key(&labels);
        Self {
            pid,
            start_time,
            meta_labels,
            labels,
            dropped,
            series_key,
        }
    }

    /// Process id (tgid).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22);
    /// with the pid it identifies the process across pid reuse.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Labels before relabeling: discovered meta labels, static labels and
    /// provider labels.
    pub fn meta_labels(&self) -> &Labels {
        &self.meta_labels
    }

    /// Final labels after relabeling, without `__`-prefixed names.
    /// Empty when the target was dropped.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Whether a `keep`/`drop` rule removed this target; such processes
    /// should not be profiled.
    pub fn is_dropped(&self) -> bool {
        self.dropped
    }

    /// Stable hash of [`Target::labels`]; equal label sets share a series.
    pub fn series_key(&self) -> u64 {
        self.series_key
    }

    /// One label value, final labels first, then meta labels.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .get(name)
            .or_else(|| self.meta_labels.get(name))
            .map(String::as_str)
    }
}
