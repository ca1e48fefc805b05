//! Exporters: where the agent's profiles go.
//!
//! Every window becomes one [`Batch`] (one profile per target series), shared by all
//! exporters through an `Arc`. Each exporter owns a [`queue::BoundedQueue`] (bounded in
//! windows and bytes; the oldest window is dropped and counted when full) and a tokio task
//! that delivers one window at a time through its [`Sink`], retrying retryable failures
//! with capped exponential backoff and full jitter. A failure that can never succeed (the
//! destination refuses the data: a 4xx, an invalid profile, a series limit) is not
//! retried: the window, or only the refused profiles when the sink can tell them apart,
//! is dropped at once and counted by cause (`exporter_profiles_rejected_total{cause}`), so
//! the queue behind it keeps moving. The sampling side only ever calls
//! [`Exporter::offer`], which never blocks.
//!
//! Sinks: [`push::PushSink`] (Pyroscope Connect push), [`dir::DirSink`] (pprof files).
//! An in-process store sink (for `kiln run`) implements the same [`Sink`] trait.

pub mod dir;
pub mod push;
pub mod queue;
pub mod store;

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use kiln_labels::{BasicAuth, Secret};
use queue::BoundedQueue;

/// One window of profiles, one per series (distinct final label set).
#[derive(Debug)]
pub struct Batch {
    /// Window number since the agent started, from 0.
    pub seq: u64,
    pub start: SystemTime,
    pub duration: Duration,
    pub series: Vec<SeriesProfile>,
}

impl Batch {
    /// Bytes of the encoded profiles of one flavor (what a queue holding it pays).
    pub fn bytes(&self, flavor: Flavor) -> usize {
        self.series
            .iter()
            .map(|s| s.get(flavor).map_or(0, Vec::len) + 64)
            .sum()
    }

    pub fn start_unix_secs(&self) -> u64 {
        self.start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[derive(Debug)]
pub struct SeriesProfile {
    /// Series labels: `__name__`, `service_name`, then the target's other labels, sorted.
    pub labels: Vec<(String, String)>,
    pub series_key: u64,
    /// Samples in this profile.
    pub samples: u64,
    /// gzip'd pprof whose samples carry pid, process, thread and the series labels.
    pub detailed: Option<Vec<u8>>,
    /// gzip'd pprof with only the sample labels a push destination should index.
    pub compact: Option<Vec<u8>>,
}

impl SeriesProfile {
    pub fn get(&self, flavor: Flavor) -> Option<&Vec<u8>> {
        match flavor {
            Flavor::Detailed => self.detailed.as_ref(),
            Flavor::Compact => self.compact.as_ref(),
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which encoding of a profile a sink consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Detailed,
    Compact,
}

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug)]
pub struct ExportError {
    pub retryable: bool,
    pub message: String,
    /// Why the destination refused the data, for `exporter_profiles_rejected_total{cause}`
    /// (permanent errors only; `rejected` when the sink gives no finer cause).
    pub cause: Option<&'static str>,
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
            cause: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
            cause: None,
        }
    }

    /// The destination refused the data for `cause` (e.g. `invalid_profile`, `limit`).
    pub fn rejected(cause: &'static str, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
            cause: Some(cause),
        }
    }
}

/// Cause of a permanent error whose sink named none.
pub const REJECTED_UNSPECIFIED: &str = "rejected";

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type ExportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ExportError>> + Send + 'a>>;

/// A destination for windows of profiles.
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and the `exporter` metric label, e.g. `push`.
    fn kind(&self) -> &'static str;
    /// Where it delivers, without credentials, for the `destination` metric label.
    fn destination(&self) -> String;
    fn flavor(&self) -> Flavor;
    /// Delivers one whole window (an error means nothing of it needs to be resent by the
    /// caller beyond retrying the whole window; sinks make that idempotent enough).
    fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a>;
    /// Profiles of the last delivered window that the destination refused while it took
    /// the rest, by cause; read (and reset) after every `export`. Sinks that deliver a
    /// window all or nothing keep the default.
    fn take_rejected(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Exporter settings shared by all sinks.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub queue_windows: usize,
    pub queue_bytes: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_backoff: Duration,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<Secret>,
    pub tenant_id: Option<String>,
    pub push_sample_labels: Vec<String>,
}

/// First retry delay; doubles per consecutive failure up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// Counters of one exporter, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct ExporterStats {
    pub windows_exported: AtomicU64,
    pub profiles_exported: AtomicU64,
    pub bytes_exported: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub retries: AtomicU64,
    /// Indexed by [`DropReason`].
    pub windows_dropped: [AtomicU64; DropReason::ALL.len()],
    pub profiles_dropped: [AtomicU64; DropReason::ALL.len()],
    /// Unix seconds of the last successful delivery.
    pub last_success_unix: AtomicU64,
    /// Profiles the destination refused, by cause (also counted in `profiles_dropped`).
    pub profiles_rejected: Mutex<BTreeMap<&'static str, u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull = 0,
    PermanentError = 1,
    RetriesExhausted = 2,
    Shutdown = 3,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::PermanentError,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::PermanentError => "permanent_error",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
        }
    }
}

impl ExporterStats {
    fn dropped(&self, reason: DropReason, windows: u64, profiles: u64) {
        self.windows_dropped[reason as usize].fetch_add(windows, Relaxed);
        self.profiles_dropped[reason as usize].fetch_add(profiles, Relaxed);
    }

    fn rejected(&self, cause: &'static str, profiles: u64) {
        *self
            .profiles_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cause)
            .or_default() += profiles;
    }

    /// Profiles refused by the destination, by cause.
    pub fn rejected_by_cause(&self) -> Vec<(&'static str, u64)> {
        self.profiles_rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(c, n)| (*c, *n))
            .collect()
    }
}

/// One sink with its queue, delivery task and counters.
pub struct Exporter {
    pub sink: Arc<dyn Sink>,
    pub queue: Arc<BoundedQueue>,
    pub stats: Arc<ExporterStats>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Exporter {
    /// Starts the delivery task on `rt`.
    pub fn start(
        sink: Arc<dyn Sink>,
        settings: &ExportSettings,
        rt: &tokio::runtime::Handle,
    ) -> Self {
        let queue = Arc::new(BoundedQueue::new(
            settings.queue_windows,
            settings.queue_bytes,
            sink.flavor(),
        ));
        let stats = Arc::new(ExporterStats::default());
        let task = rt.spawn(deliver(
            sink.clone(),
            queue.clone(),
            stats.clone(),
            settings.max_attempts,
            settings.max_backoff,
        ));
        Self {
            sink,
            queue,
            stats,
            task: Some(task),
        }
    }

    /// Hands a window to the exporter without waiting; counts what the queue evicted.
    pub fn offer(&self, batch: Arc<Batch>) {
        let evicted = self.queue.push(batch);
        if evicted.windows > 0 {
            self.stats
                .dropped(DropReason::QueueFull, evicted.windows, evicted.profiles);
            log::warn!(
                "{} exporter ({}) is behind: dropped the oldest {} queued window(s)",
                self.sink.kind(),
                self.sink.destination(),
                evicted.windows
            );
        }
    }

    /// Closes the queue and waits until it is delivered or `deadline` passes; whatever is
    /// left is counted as dropped.
    pub async fn shutdown(mut self, deadline: Instant) {
        self.queue.close();
        if let Some(mut task) = self.task.take() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
                // The window that was in flight is lost too.
                self.stats.dropped(DropReason::Shutdown, 1, 0);
            }
        }
        let rest = self.queue.take_all();
        if !rest.is_empty() {
            let profiles = rest.iter().map(|b| b.series.len() as u64).sum();
            self.stats
                .dropped(DropReason::Shutdown, rest.len() as u64, profiles);
            log::warn!(
                "{} exporter ({}): {} window(s) not delivered before the shutdown timeout",
                self.sink.kind(),
                self.sink.destination(),
                rest.len()
            );
        }
    }
}

/// The delay before retry number `failures` (1-based): full jitter over
/// `min(max, base * 2^(failures-1))`, at least 50 ms.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = BASE_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(max);
    let jittered = exp.mul_f64(fastrand::f64());
    jittered.max(Duration::from_millis(50).min(exp))
}

async fn deliver(
    sink: Arc<dyn Sink>,
    queue: Arc<BoundedQueue>,
    stats: Arc<ExporterStats>,
    max_attempts: u32,
    max_backoff: Duration,
) {
    // Consecutive failures across windows: a down destination is not hammered anew for
    // every queued window.
    let mut failures: u32 = 0;
    let mut failing_since: Option<Instant> = None;
    while let Some(batch) = queue.pop().await {
        let profiles = batch.series.len() as u64;
        let mut attempts = 0;
        loop {
            if failures > 0 {
                tokio::time::sleep(backoff(failures, max_backoff)).await;
                stats.retries.fetch_add(1, Relaxed);
            }
            attempts += 1;
            let result = sink.export(&batch).await;
            let mut refused = 0;
            for (cause, n) in sink.take_rejected() {
                stats.rejected(cause, n);
                refused += n;
            }
            if refused > 0 {
                stats.profiles_dropped[DropReason::PermanentError as usize]
                    .fetch_add(refused, Relaxed);
                log::warn!(
                    "{} exporter ({}): {refused} profile(s) of window {} refused, dropped",
                    sink.kind(),
                    sink.destination(),
                    batch.seq
                );
            }
            match result {
                Ok(()) => {
                    if let Some(since) = failing_since.take() {
                        log::info!(
                            "{} exporter ({}) recovered after {:.1} s",
                            sink.kind(),
                            sink.destination(),
                            since.elapsed().as_secs_f64()
                        );
                    }
                    failures = 0;
                    if refused >= profiles && profiles > 0 {
                        // Every profile was refused: nothing of this window arrived.
                        stats.windows_dropped[DropReason::PermanentError as usize]
                            .fetch_add(1, Relaxed);
                        break;
                    }
                    stats.windows_exported.fetch_add(1, Relaxed);
                    stats
                        .profiles_exported
                        .fetch_add(profiles.saturating_sub(refused), Relaxed);
                    stats
                        .bytes_exported
                        .fetch_add(batch.bytes(sink.flavor()) as u64, Relaxed);
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    stats.last_success_unix.store(now, Relaxed);
                    break;
                }
                Err(e) if !e.retryable => {
                    // The destination will never take this window: no retry, so the
                    // windows queued behind it are not held up.
                    log::warn!(
                        "{} exporter ({}): window {} rejected, dropped: {e}",
                        sink.kind(),
                        sink.destination(),
                        batch.seq
                    );
                    let left = profiles.saturating_sub(refused);
                    stats.dropped(DropReason::PermanentError, 1, left);
                    stats.rejected(e.cause.unwrap_or(REJECTED_UNSPECIFIED), left);
                    break;
                }
                Err(e) => {
                    stats.failed_attempts.fetch_add(1, Relaxed);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        log::warn!(
                            "{} exporter ({}) failed: {e}; retrying with backoff",
                            sink.kind(),
                            sink.destination()
                        );
                    } else {
                        log::debug!("{} exporter failed again: {e}", sink.kind());
                    }
                    failures = failures.saturating_add(1);
                    if attempts >= max_attempts {
                        stats.dropped(DropReason::RetriesExhausted, 1, profiles);
                        break;
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for dyn Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.destination())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let max = Duration::from_secs(4);
        for failures in 1..30 {
            let cap = BASE_BACKOFF
                .saturating_mul(1 << (failures - 1).min(20))
                .min(max);
            for _ in 0..50 {
                let d = backoff(failures, max);
                assert!(d <= cap, "{failures}: {d:?} > {cap:?}");
                assert!(d >= Duration::from_millis(50));
            }
        }
        let spread: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(5, max).as_millis()).collect();
        assert!(spread.len() > 5, "jitter: {spread:?}");
    }

    /// A sink that fails its first `fail` calls, then records what it got.
    struct Flaky {
        fail: Mutex<u32>,
        permanent: bool,
        got: Mutex<Vec<u64>>,
    }

    impl Sink for Flaky {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn destination(&self) -> String {
            "memory".into()
        }
        fn flavor(&self) -> Flavor {
            Flavor::Detailed
        }
        fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a> {
            Box::pin(async move {
                let mut fail = self.fail.lock().unwrap();
                if *fail > 0 {
                    *fail -= 1;
                    return Err(if self.permanent {
                        ExportError::permanent("no")
                    } else {
                        ExportError::retryable("down")
                    });
                }
                self.got.lock().unwrap().push(batch.seq);
                Ok(())
            })
        }
    }

    fn batch(seq: u64) -> Arc<Batch> {
        Arc::new(Batch {
            seq,
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            series: vec![SeriesProfile {
                labels: vec![],
                series_key: 1,
                samples: 1,
                detailed: Some(vec![1, 2, 3]),
                compact: None,
            }],
        })
    }

    fn settings(attempts: u32) -> ExportSettings {
        ExportSettings {
            queue_windows: 2,
            queue_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
            max_attempts: attempts,
            max_backoff: Duration::from_millis(100),
            basic_auth: None,
            bearer_token: None,
            tenant_id: None,
            push_sample_labels: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn retries_then_delivers_everything_in_order() {
        let sink = Arc::new(Flaky {
            fail: Mutex::new(3),
            permanent: false,
            got: Mutex::new(vec![]),
        });
        let e = Exporter::start(
            sink.clone(),
            &settings(10),
            &tokio::runtime::Handle::current(),
        );
        e.offer(batch(0));
        e.offer(batch(1));
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(*sink.got.lock().unwrap(), vec![0, 1]);
        assert_eq!(stats.failed_attempts.load(Relaxed), 3);
        assert_eq!(stats.windows_exported.load(Relaxed), 2);
        assert_eq!(stats.retries.load(Relaxed), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn permanent_errors_and_exhausted_retries_are_counted_drops() {
        let sink = Arc::new(Flaky {
            fail: Mutex::new(1),
            permanent: true,
            got: Mutex::new(vec![]),
        });
        let e = Exporter::start(
            sink.clone(),
            &settings(3),
            &tokio::runtime::Handle::current(),
        );
        e.offer(batch(0));
        e.offer(batch(1));
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(*sink.got.lock().unwrap(), vec![1]);
        assert_eq!(
            stats.windows_dropped[DropReason::PermanentError as usize].load(Relaxed),
            1
        );

        let sink = Arc::new(Flaky {
            fail: Mutex::new(100),
            permanent: false,
            got: Mutex::new(vec![]),
        });
        let e = Exporter::start(
            sink.clone(),
            &settings(3),
            &tokio::runtime::Handle::current(),
        );
        e.offer(batch(0));
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(
            stats.windows_dropped[DropReason::RetriesExhausted as usize].load(Relaxed),
            1
        );
        assert_eq!(stats.failed_attempts.load(Relaxed), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn shutdown_deadline_counts_undelivered_windows() {
        let sink = Arc::new(Flaky {
            fail: Mutex::new(u32::MAX),
            permanent: false,
            got: Mutex::new(vec![]),
        });
        let mut s = settings(1000);
        s.max_backoff = Duration::from_secs(5);
        let e = Exporter::start(sink, &s, &tokio::runtime::Handle::current());
        e.offer(batch(0));
        e.offer(batch(1));
        e.offer(batch(2)); // evicts window 0 or 1, depending on what is in flight
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_millis(300))
            .await;
        let dropped: u64 = DropReason::ALL
            .iter()
            .map(|r| stats.windows_dropped[*r as usize].load(Relaxed))
            .sum();
        assert_eq!(dropped, 3, "every window is accounted for");
        assert_eq!(stats.windows_exported.load(Relaxed), 0);
    }
}
