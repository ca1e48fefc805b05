//! [`StoreOptions`]: the tunables and limits a store is opened with, which ingest checks
//! requests against.

use std::time::Duration;

/// Tunables and limits of a [`Store`](crate::Store).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Delete data older than this (None: keep forever).
    pub retention_age: Option<Duration>,
    /// Delete the oldest data while the database uses more than this many bytes.
    pub retention_bytes: Option<u64>,
    /// Refuse ingests that would create more series than this (bounds memory).
    pub max_series: usize,
    /// Keep at most this many frames of a stack (the leaf-most ones).
    pub max_stack_depth: usize,
    /// At most this many labels per series, sample labels included.
    pub max_labels: usize,
    /// Refuse profiles with more samples than this.
    pub max_samples_per_profile: usize,
    /// redb page cache size.
    pub cache_bytes: usize,
    /// Rollup buckets are built once they ended this long ago.
    pub rollup_grace: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            retention_age: None,
            retention_bytes: None,
            max_series: 200_000,
            max_stack_depth: 1000,
            max_labels: 64,
            max_samples_per_profile: 1_000_000,
            cache_bytes: 256 << 20,
            rollup_grace: Duration::from_secs(60),
        }
    }
}
