//! The agent's self-observability: `/metrics` in the Prometheus text format and
//! `/healthz`, served on a local address (127.0.0.1:9464 by default).
//!
//! Exposed (all prefixed `kiln_`):
//! - sampler: `samples_recorded_total`, `samples_lost_total{cause}` (one series per loss
//!   counter of the eBPF side), `sampler_events_total{kind}` (the non-loss counters);
//! - symbolizer: `symbolizer_lookups_total{result="hit|miss"}`, `symbolizer_cache_hit_ratio`,
//!   `symbolizer_cache_entries`, `symbolizer_cache_evicted_total`, `go_binaries_cached`,
//!   `go_binaries_evicted_total`;
//! - caches that grow with the host, each capped: `processes_evicted_total`,
//!   `unwind_tables`, `unwind_table_bytes`, `unwind_table_capacity_bytes`,
//!   `unwind_processes`, `unwind_tables_compiled_total`, `unwind_tables_evicted_total`,
//!   `unwind_tables_refused_total{cause}`, `python_code_names_cached`,
//!   `python_code_names_evicted_total`;
//! - processes and targets: `processes_tracked`, `binaries_open`, `targets_cached`,
//!   `targets_discovered_total`, `targets_evicted_total`, `targets_dropped_total`,
//!   `target_lookups_failed_total{reason}`;
//! - windows: `windows_collected_total`, `windows_dropped_total`, `window_series`,
//!   `samples_exported_total`, `samples_labeled_after_exit_total`, `samples_unlabeled_total`,
//!   `samples_relabel_dropped_total`, `series_limited_total`,
//!   `samples_series_limited_total`, `series_known`,
//!   `collect_errors_total`, `last_collect_timestamp_seconds`;
//! - per exporter (`exporter`, `destination` labels): `exporter_windows_exported_total`,
//!   `exporter_profiles_exported_total`, `exporter_bytes_exported_total`,
//!   `exporter_failed_attempts_total`, `exporter_retries_total`,
//!   `exporter_windows_dropped_total{reason}`, `exporter_profiles_dropped_total{reason}`,
//!   `exporter_profiles_rejected_total{cause}` (refused for good, never retried),
//!   `exporter_queue_windows`, `exporter_queue_bytes`, `exporter_queue_capacity_windows`,
//!   `exporter_queue_capacity_bytes`;
//! - the agent process: `process_cpu_seconds_total`, `process_resident_memory_bytes`;
//! - with `--kubernetes` (kiln-kube's `KubeStats`): `kube_synced`, `kube_pods_indexed`,
//!   `kube_containers_indexed`, `kube_pod_events_total`, `kube_node_events_total`,
//!   `kube_relists_total`, `kube_stale_pods_removed_total`, `kube_list_requests_total`,
//!   `kube_watch_requests_total`, `kube_watch_restarts_total`, `kube_watch_errors_total`,
//!   `kube_lookups_total{result="hit|miss"}`.
//!
//! `/healthz` answers 200 while the sampler runs and its last collection succeeded within
//! a few drain intervals, 503 with the reason otherwise.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, SystemTime},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use kiln_kube::{KubeMetadata, KubeStats};
use kiln_labels::DiscoveryStats;
use kiln_proto::exposition::{Exposition, Family, Kind};
use profiler_common::Stat;

use crate::{
    capture::sampler::SamplerStats,
    export::{queue::BoundedQueue, DropReason, ExporterStats},
    symbolize::SymbolizerStats,
    unwind::LoaderStats,
};

// Every metric the agent exposes, declared once: name, type, help, label names.
const AGENT_INFO: Family = Family::new(
    "kiln_agent_info",
    Kind::Gauge,
    "Agent build and settings.",
    &["version", "frequency_hz"],
);
const SAMPLES_RECORDED_TOTAL: Family = Family::new(
    "kiln_samples_recorded_total",
    Kind::Counter,
    "Samples the eBPF sampler stored.",
    &[],
);
const SAMPLES_LOST_TOTAL: Family = Family::new(
    "kiln_samples_lost_total",
    Kind::Counter,
    "Samples or stacks lost in the kernel, by cause.",
    &["cause"],
);
const SAMPLER_EVENTS_TOTAL: Family = Family::new(
    "kiln_sampler_events_total",
    Kind::Counter,
    "Other sampler counters (not losses).",
    &["kind"],
);
const SYMBOLIZER_LOOKUPS_TOTAL: Family = Family::new(
    "kiln_symbolizer_lookups_total",
    Kind::Counter,
    "Address lookups by cache result.",
    &["result"],
);
const SYMBOLIZER_CACHE_HIT_RATIO: Family = Family::new(
    "kiln_symbolizer_cache_hit_ratio",
    Kind::Gauge,
    "Share of address lookups answered by the cache.",
    &[],
);
const SYMBOLIZER_CACHE_ENTRIES: Family = Family::new(
    "kiln_symbolizer_cache_entries",
    Kind::Gauge,
    "Symbolized addresses cached.",
    &[],
);
const SYMBOLIZER_CACHE_EVICTED_TOTAL: Family = Family::new(
    "kiln_symbolizer_cache_evicted_total",
    Kind::Counter,
    "Symbolized addresses dropped because the cache was full.",
    &[],
);
const GO_BINARIES_CACHED: Family = Family::new(
    "kiln_go_binaries_cached",
    Kind::Gauge,
    "Executables whose Go runtime detection result is cached.",
    &[],
);
const GO_BINARIES_EVICTED_TOTAL: Family = Family::new(
    "kiln_go_binaries_evicted_total",
    Kind::Counter,
    "Go detection results dropped because that cache was full.",
    &[],
);
const PROCESSES_TRACKED: Family = Family::new(
    "kiln_processes_tracked",
    Kind::Gauge,
    "Processes whose mappings are held for symbolization.",
    &[],
);
const PROCESSES_EVICTED_TOTAL: Family = Family::new(
    "kiln_processes_evicted_total",
    Kind::Counter,
    "Processes forgotten because the process table was full (gone without an exit event, or the longest tracked; a live one is captured again at its next sample).",
    &[],
);
const UNWIND_TABLES: Family = Family::new(
    "kiln_unwind_tables",
    Kind::Gauge,
    "DWARF unwind tables in kernel memory (one per binary).",
    &[],
);
const UNWIND_TABLE_BYTES: Family = Family::new(
    "kiln_unwind_table_bytes",
    Kind::Gauge,
    "Bytes of kernel memory the unwind tables use.",
    &[],
);
const UNWIND_TABLE_CAPACITY_BYTES: Family = Family::new(
    "kiln_unwind_table_capacity_bytes",
    Kind::Gauge,
    "Bytes of kernel memory reserved for unwind tables (--unwind-table-mib).",
    &[],
);
const UNWIND_PROCESSES: Family = Family::new(
    "kiln_unwind_processes",
    Kind::Gauge,
    "Processes unwound with DWARF tables.",
    &[],
);
const UNWIND_TABLES_COMPILED_TOTAL: Family = Family::new(
    "kiln_unwind_tables_compiled_total",
    Kind::Counter,
    "Unwind tables compiled from a binary's CFI.",
    &[],
);
const UNWIND_TABLES_EVICTED_TOTAL: Family = Family::new(
    "kiln_unwind_tables_evicted_total",
    Kind::Counter,
    "Unwind tables of binaries no live process maps, evicted (least recently used) to make room.",
    &[],
);
const UNWIND_TABLES_REFUSED_TOTAL: Family = Family::new(
    "kiln_unwind_tables_refused_total",
    Kind::Counter,
    "Unwind tables or processes left to frame pointers, by cause.",
    &["cause"],
);
const PYTHON_CODE_NAMES_CACHED: Family = Family::new(
    "kiln_python_code_names_cached",
    Kind::Gauge,
    "Python code objects whose names are cached.",
    &[],
);
const PYTHON_CODE_NAMES_EVICTED_TOTAL: Family = Family::new(
    "kiln_python_code_names_evicted_total",
    Kind::Counter,
    "Cached Python code names dropped because that cache was full.",
    &[],
);
const BINARIES_OPEN: Family = Family::new(
    "kiln_binaries_open",
    Kind::Gauge,
    "Executables and libraries held open.",
    &[],
);
const TARGETS_CACHED: Family = Family::new(
    "kiln_targets_cached",
    Kind::Gauge,
    "Processes with cached labels.",
    &[],
);
const TARGETS_DISCOVERED_TOTAL: Family = Family::new(
    "kiln_targets_discovered_total",
    Kind::Counter,
    "Processes whose labels were read from /proc.",
    &[],
);
const TARGETS_EVICTED_TOTAL: Family = Family::new(
    "kiln_targets_evicted_total",
    Kind::Counter,
    "Cached labels evicted because the label cache was full.",
    &[],
);
const TARGETS_DROPPED_TOTAL: Family = Family::new(
    "kiln_targets_dropped_total",
    Kind::Counter,
    "Processes excluded by relabel rules.",
    &[],
);
const TARGET_LOOKUPS_FAILED_TOTAL: Family = Family::new(
    "kiln_target_lookups_failed_total",
    Kind::Counter,
    "Label lookups that failed, by reason.",
    &["reason"],
);
const WINDOWS_COLLECTED_TOTAL: Family = Family::new(
    "kiln_windows_collected_total",
    Kind::Counter,
    "Profile windows completed.",
    &[],
);
const WINDOWS_DROPPED_TOTAL: Family = Family::new(
    "kiln_windows_dropped_total",
    Kind::Counter,
    "Windows dropped because encoding fell behind.",
    &[],
);
const WINDOW_SERIES: Family = Family::new(
    "kiln_window_series",
    Kind::Gauge,
    "Series (profiles) in the last window.",
    &[],
);
const SAMPLES_EXPORTED_TOTAL: Family = Family::new(
    "kiln_samples_exported_total",
    Kind::Counter,
    "Samples handed to the exporters.",
    &[],
);
const SAMPLES_LABELED_AFTER_EXIT_TOTAL: Family = Family::new(
    "kiln_samples_labeled_after_exit_total",
    Kind::Counter,
    "Samples of processes that exited before /proc could be read, exported with the labels that outlive them (comm, host, static labels).",
    &[],
);
const SAMPLES_UNLABELED_TOTAL: Family = Family::new(
    "kiln_samples_unlabeled_total",
    Kind::Counter,
    "Samples not exported because their process could not be read (other than by exiting).",
    &[],
);
const SAMPLES_RELABEL_DROPPED_TOTAL: Family = Family::new(
    "kiln_samples_relabel_dropped_total",
    Kind::Counter,
    "Samples of processes excluded by relabel rules.",
    &[],
);
const SERIES_LIMITED_TOTAL: Family = Family::new(
    "kiln_series_limited_total",
    Kind::Counter,
    "New series refused by --max-new-series-per-window.",
    &[],
);
const SAMPLES_SERIES_LIMITED_TOTAL: Family = Family::new(
    "kiln_samples_series_limited_total",
    Kind::Counter,
    "Samples of new series refused by --max-new-series-per-window.",
    &[],
);
const SERIES_KNOWN: Family = Family::new(
    "kiln_series_known",
    Kind::Gauge,
    "Series exported in the last 10 minutes (what the new-series cap remembers).",
    &[],
);
const COLLECT_ERRORS_TOTAL: Family = Family::new(
    "kiln_collect_errors_total",
    Kind::Counter,
    "Failed drains of the kernel buffers.",
    &[],
);
const LAST_COLLECT_TIMESTAMP_SECONDS: Family = Family::new(
    "kiln_last_collect_timestamp_seconds",
    Kind::Gauge,
    "Time of the last successful drain.",
    &[],
);
const EXPORTER_WINDOWS_EXPORTED_TOTAL: Family = Family::new(
    "kiln_exporter_windows_exported_total",
    Kind::Counter,
    "Windows delivered.",
    &["exporter", "destination"],
);
const EXPORTER_PROFILES_EXPORTED_TOTAL: Family = Family::new(
    "kiln_exporter_profiles_exported_total",
    Kind::Counter,
    "Profiles delivered.",
    &["exporter", "destination"],
);
const EXPORTER_BYTES_EXPORTED_TOTAL: Family = Family::new(
    "kiln_exporter_bytes_exported_total",
    Kind::Counter,
    "Compressed profile bytes delivered.",
    &["exporter", "destination"],
);
const EXPORTER_FAILED_ATTEMPTS_TOTAL: Family = Family::new(
    "kiln_exporter_failed_attempts_total",
    Kind::Counter,
    "Delivery attempts that failed.",
    &["exporter", "destination"],
);
const EXPORTER_RETRIES_TOTAL: Family = Family::new(
    "kiln_exporter_retries_total",
    Kind::Counter,
    "Delivery attempts after a backoff.",
    &["exporter", "destination"],
);
const EXPORTER_QUEUE_WINDOWS: Family = Family::new(
    "kiln_exporter_queue_windows",
    Kind::Gauge,
    "Windows waiting to be delivered.",
    &["exporter", "destination"],
);
const EXPORTER_QUEUE_BYTES: Family = Family::new(
    "kiln_exporter_queue_bytes",
    Kind::Gauge,
    "Bytes waiting to be delivered.",
    &["exporter", "destination"],
);
const EXPORTER_QUEUE_CAPACITY_WINDOWS: Family = Family::new(
    "kiln_exporter_queue_capacity_windows",
    Kind::Gauge,
    "Queue bound in windows.",
    &["exporter", "destination"],
);
const EXPORTER_QUEUE_CAPACITY_BYTES: Family = Family::new(
    "kiln_exporter_queue_capacity_bytes",
    Kind::Gauge,
    "Queue bound in bytes.",
    &["exporter", "destination"],
);
const EXPORTER_PROFILES_REJECTED_TOTAL: Family = Family::new(
    "kiln_exporter_profiles_rejected_total",
    Kind::Counter,
    "Profiles the destination refused for good (dropped at once, not retried), by cause.",
    &["exporter", "destination", "cause"],
);
const PROCESS_CPU_SECONDS_TOTAL: Family = Family::new(
    "kiln_process_cpu_seconds_total",
    Kind::Counter,
    "CPU time of the agent process (user + system).",
    &[],
);
const PROCESS_RESIDENT_MEMORY_BYTES: Family = Family::new(
    "kiln_process_resident_memory_bytes",
    Kind::Gauge,
    "Resident memory of the agent process.",
    &[],
);
const KUBE_SYNCED: Family = Family::new(
    "kiln_kube_synced",
    Kind::Gauge,
    "1 once the initial lists of this node's pods and of the node completed.",
    &[],
);
const KUBE_PODS_INDEXED: Family = Family::new(
    "kiln_kube_pods_indexed",
    Kind::Gauge,
    "Pods of this node in the metadata index.",
    &[],
);
const KUBE_CONTAINERS_INDEXED: Family = Family::new(
    "kiln_kube_containers_indexed",
    Kind::Gauge,
    "Container ids in the metadata index.",
    &[],
);
const KUBE_POD_EVENTS_TOTAL: Family = Family::new(
    "kiln_kube_pod_events_total",
    Kind::Counter,
    "Pod watch events applied (listed, added, modified, deleted).",
    &[],
);
const KUBE_NODE_EVENTS_TOTAL: Family = Family::new(
    "kiln_kube_node_events_total",
    Kind::Counter,
    "Node watch events applied.",
    &[],
);
const KUBE_RELISTS_TOTAL: Family = Family::new(
    "kiln_kube_relists_total",
    Kind::Counter,
    "Completed (re)lists of the pods and the node.",
    &[],
);
const KUBE_STALE_PODS_REMOVED_TOTAL: Family = Family::new(
    "kiln_kube_stale_pods_removed_total",
    Kind::Counter,
    "Pods removed by a relist because they were no longer listed.",
    &[],
);
const KUBE_LIST_REQUESTS_TOTAL: Family = Family::new(
    "kiln_kube_list_requests_total",
    Kind::Counter,
    "List requests sent to the API server.",
    &[],
);
const KUBE_WATCH_REQUESTS_TOTAL: Family = Family::new(
    "kiln_kube_watch_requests_total",
    Kind::Counter,
    "Watch requests sent to the API server.",
    &[],
);
const KUBE_WATCH_RESTARTS_TOTAL: Family = Family::new(
    "kiln_kube_watch_restarts_total",
    Kind::Counter,
    "Watches resumed or restarted after the first one per resource.",
    &[],
);
const KUBE_WATCH_ERRORS_TOTAL: Family = Family::new(
    "kiln_kube_watch_errors_total",
    Kind::Counter,
    "Errors of the watch streams (each retried with backoff).",
    &[],
);
const KUBE_LOOKUPS_TOTAL: Family = Family::new(
    "kiln_kube_lookups_total",
    Kind::Counter,
    "Label lookups of containerized processes, by whether their pod was indexed.",
    &["result"],
);
const EXPORTER_WINDOWS_DROPPED_TOTAL: Family = Family::new(
    "kiln_exporter_windows_dropped_total",
    Kind::Counter,
    "Windows given up, by reason.",
    &["exporter", "destination", "reason"],
);
const EXPORTER_PROFILES_DROPPED_TOTAL: Family = Family::new(
    "kiln_exporter_profiles_dropped_total",
    Kind::Counter,
    "Profiles given up, by reason.",
    &["exporter", "destination", "reason"],
);

/// What the sampling thread last saw; refreshed after every drain.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub sampler: SamplerStats,
    pub symbolizer: Option<SymbolizerStats>,
    pub processes: usize,
    pub binaries: usize,
    pub targets_cached: usize,
    pub discovery: DiscoveryStats,
    /// Go detection results cached, and dropped because that cache was full.
    pub go_binaries_cached: usize,
    pub go_binaries_evicted: u64,
    /// Processes dropped because the process table was full.
    pub processes_evicted: u64,
    /// The unwind loader's counters (None when DWARF unwinding is off).
    pub unwind: Option<LoaderStats>,
    /// Python code names cached, and dropped because that cache was full.
    pub python_names_cached: usize,
    pub python_names_evicted: u64,
}

pub struct ExporterView {
    pub kind: &'static str,
    pub destination: String,
    pub stats: Arc<ExporterStats>,
    pub queue: Arc<BoundedQueue>,
}

pub struct AgentMetrics {
    pub frequency: u32,
    pub max_collect_age: Duration,
    pub snapshot: Mutex<Snapshot>,
    pub sampler_running: AtomicBool,
    pub last_collect_ok: AtomicBool,
    /// Unix milliseconds of the last successful drain.
    pub last_collect_unix_ms: AtomicU64,
    pub collect_errors: AtomicU64,
    pub windows_collected: AtomicU64,
    /// Windows the encoder could not take (it was still busy with older ones).
    pub windows_dropped: AtomicU64,
    pub window_series: AtomicU64,
    pub samples_exported: AtomicU64,
    pub samples_labeled_after_exit: AtomicU64,
    pub samples_unlabeled: AtomicU64,
    pub samples_relabel_dropped: AtomicU64,
    /// New series refused by the per-window cap, and their samples.
    pub series_limited: AtomicU64,
    pub samples_series_limited: AtomicU64,
    /// Series the cap remembers as recently seen.
    pub series_known: AtomicU64,
    pub exporters: Mutex<Vec<ExporterView>>,
    /// The Kubernetes metadata watcher, with `--kubernetes`.
    kube: OnceLock<Arc<KubeMetadata>>,
}

impl AgentMetrics {
    pub fn new(frequency: u32, drain_interval: Duration) -> Self {
        Self {
            frequency,
            max_collect_age: (drain_interval * 5).max(Duration::from_secs(10)),
            snapshot: Mutex::default(),
            sampler_running: AtomicBool::new(false),
            last_collect_ok: AtomicBool::new(false),
            last_collect_unix_ms: AtomicU64::new(0),
            collect_errors: AtomicU64::new(0),
            windows_collected: AtomicU64::new(0),
            windows_dropped: AtomicU64::new(0),
            window_series: AtomicU64::new(0),
            samples_exported: AtomicU64::new(0),
            samples_labeled_after_exit: AtomicU64::new(0),
            samples_unlabeled: AtomicU64::new(0),
            samples_relabel_dropped: AtomicU64::new(0),
            series_limited: AtomicU64::new(0),
            samples_series_limited: AtomicU64::new(0),
            series_known: AtomicU64::new(0),
            exporters: Mutex::default(),
            kube: OnceLock::new(),
        }
    }

    /// Exports the watcher's counters as `kiln_kube_*` (set once).
    pub fn set_kube(&self, meta: Arc<KubeMetadata>) {
        let _ = self.kube.set(meta);
    }

    pub fn collect_succeeded(&self) {
        self.last_collect_ok.store(true, Relaxed);
        self.last_collect_unix_ms.store(unix_ms(), Relaxed);
    }

    /// `Ok` when healthy, else why not.
    pub fn health(&self) -> Result<(), String> {
        if !self.sampler_running.load(Relaxed) {
            return Err("sampler is not running".into());
        }
        if !self.last_collect_ok.load(Relaxed) {
            return Err("the last collection failed".into());
        }
        let age = unix_ms().saturating_sub(self.last_collect_unix_ms.load(Relaxed));
        if age > self.max_collect_age.as_millis() as u64 {
            return Err(format!("no collection for {:.1} s", age as f64 / 1000.0));
        }
        Ok(())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let snap = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut m = Exposition::new();

        m.family(&AGENT_INFO);
        m.sample(
            &AGENT_INFO,
            &[env!("CARGO_PKG_VERSION"), &self.frequency.to_string()],
            1,
        );
        m.family(&SAMPLES_RECORDED_TOTAL);
        m.sample(
            &SAMPLES_RECORDED_TOTAL,
            &[],
            snap.sampler.get(Stat::Recorded),
        );
        m.family(&SAMPLES_LOST_TOTAL);
        for s in Stat::ALL.iter().filter(|s| s.is_loss()) {
            m.sample(&SAMPLES_LOST_TOTAL, &[s.name()], snap.sampler.get(*s));
        }
        m.family(&SAMPLER_EVENTS_TOTAL);
        for s in Stat::ALL
            .iter()
            .filter(|s| !s.is_loss() && **s != Stat::Recorded)
        {
            m.sample(&SAMPLER_EVENTS_TOTAL, &[s.name()], snap.sampler.get(*s));
        }

        let sym = snap.symbolizer.unwrap_or(SymbolizerStats {
            hits: 0,
            misses: 0,
            cached: 0,
            evicted: 0,
        });
        m.family(&SYMBOLIZER_LOOKUPS_TOTAL);
        m.sample(&SYMBOLIZER_LOOKUPS_TOTAL, &["hit"], sym.hits);
        m.sample(&SYMBOLIZER_LOOKUPS_TOTAL, &["miss"], sym.misses);
        m.family(&SYMBOLIZER_CACHE_HIT_RATIO);
        let lookups = sym.hits + sym.misses;
        m.sample(
            &SYMBOLIZER_CACHE_HIT_RATIO,
            &[],
            if lookups == 0 {
                0.0
            } else {
                sym.hits as f64 / lookups as f64
            },
        );
        m.single(&SYMBOLIZER_CACHE_ENTRIES, sym.cached as u64);
        m.single(&SYMBOLIZER_CACHE_EVICTED_TOTAL, sym.evicted);
        m.single(&GO_BINARIES_CACHED, snap.go_binaries_cached as u64);
        m.single(&GO_BINARIES_EVICTED_TOTAL, snap.go_binaries_evicted);
        m.single(&PROCESSES_TRACKED, snap.processes as u64);
        m.single(&PROCESSES_EVICTED_TOTAL, snap.processes_evicted);
        m.single(&BINARIES_OPEN, snap.binaries as u64);
        let unwind = snap.unwind.unwrap_or_default();
        m.single(&UNWIND_TABLES, unwind.tables);
        m.single(&UNWIND_TABLE_BYTES, unwind.rows_used * 8);
        m.single(&UNWIND_TABLE_CAPACITY_BYTES, unwind.row_capacity * 8);
        m.single(&UNWIND_PROCESSES, unwind.processes);
        m.single(&UNWIND_TABLES_COMPILED_TOTAL, unwind.compiled);
        m.single(&UNWIND_TABLES_EVICTED_TOTAL, unwind.evicted);
        m.family(&UNWIND_TABLES_REFUSED_TOTAL);
        m.sample(&UNWIND_TABLES_REFUSED_TOTAL, &["over_cap"], unwind.over_cap);
        m.sample(
            &UNWIND_TABLES_REFUSED_TOTAL,
            &["no_process_slot"],
            unwind.slots_full,
        );
        m.sample(
            &UNWIND_TABLES_REFUSED_TOTAL,
            &["compile_error"],
            unwind.compile_errors,
        );
        m.single(&PYTHON_CODE_NAMES_CACHED, snap.python_names_cached as u64);
        m.single(&PYTHON_CODE_NAMES_EVICTED_TOTAL, snap.python_names_evicted);
        m.single(&TARGETS_CACHED, snap.targets_cached as u64);
        m.single(&TARGETS_DISCOVERED_TOTAL, snap.discovery.cache_misses);
        m.single(&TARGETS_EVICTED_TOTAL, snap.discovery.evicted);
        m.single(&TARGETS_DROPPED_TOTAL, snap.discovery.dropped);
        m.family(&TARGET_LOOKUPS_FAILED_TOTAL);
        m.sample(
            &TARGET_LOOKUPS_FAILED_TOTAL,
            &["vanished"],
            snap.discovery.vanished,
        );
        m.sample(
            &TARGET_LOOKUPS_FAILED_TOTAL,
            &["error"],
            snap.discovery.errors,
        );

        m.single(
            &WINDOWS_COLLECTED_TOTAL,
            self.windows_collected.load(Relaxed),
        );
        m.single(&WINDOWS_DROPPED_TOTAL, self.windows_dropped.load(Relaxed));
        m.single(&WINDOW_SERIES, self.window_series.load(Relaxed));
        m.single(&SAMPLES_EXPORTED_TOTAL, self.samples_exported.load(Relaxed));
        m.single(
            &SAMPLES_LABELED_AFTER_EXIT_TOTAL,
            self.samples_labeled_after_exit.load(Relaxed),
        );
        m.single(
            &SAMPLES_UNLABELED_TOTAL,
            self.samples_unlabeled.load(Relaxed),
        );
        m.single(
            &SAMPLES_RELABEL_DROPPED_TOTAL,
            self.samples_relabel_dropped.load(Relaxed),
        );
        m.single(&SERIES_LIMITED_TOTAL, self.series_limited.load(Relaxed));
        m.single(
            &SAMPLES_SERIES_LIMITED_TOTAL,
            self.samples_series_limited.load(Relaxed),
        );
        m.single(&SERIES_KNOWN, self.series_known.load(Relaxed));
        m.single(&COLLECT_ERRORS_TOTAL, self.collect_errors.load(Relaxed));
        m.family(&LAST_COLLECT_TIMESTAMP_SECONDS);
        m.sample(
            &LAST_COLLECT_TIMESTAMP_SECONDS,
            &[],
            self.last_collect_unix_ms.load(Relaxed) as f64 / 1000.0,
        );

        let exporters = self.exporters.lock().unwrap_or_else(|e| e.into_inner());
        let per = |m: &mut Exposition, family: &Family, f: &dyn Fn(&ExporterView) -> u64| {
            m.family(family);
            for e in exporters.iter() {
                m.sample(family, &[e.kind, &e.destination], f(e));
            }
        };
        per(&mut m, &EXPORTER_WINDOWS_EXPORTED_TOTAL, &|e| {
            e.stats.windows_exported.load(Relaxed)
        });
        per(&mut m, &EXPORTER_PROFILES_EXPORTED_TOTAL, &|e| {
            e.stats.profiles_exported.load(Relaxed)
        });
        per(&mut m, &EXPORTER_BYTES_EXPORTED_TOTAL, &|e| {
            e.stats.bytes_exported.load(Relaxed)
        });
        per(&mut m, &EXPORTER_FAILED_ATTEMPTS_TOTAL, &|e| {
            e.stats.failed_attempts.load(Relaxed)
        });
        per(&mut m, &EXPORTER_RETRIES_TOTAL, &|e| {
            e.stats.retries.load(Relaxed)
        });
        per(&mut m, &EXPORTER_QUEUE_WINDOWS, &|e| {
            e.queue.depth().0 as u64
        });
        per(&mut m, &EXPORTER_QUEUE_BYTES, &|e| e.queue.depth().1 as u64);
        per(&mut m, &EXPORTER_QUEUE_CAPACITY_WINDOWS, &|e| {
            e.queue.capacity().0 as u64
        });
        per(&mut m, &EXPORTER_QUEUE_CAPACITY_BYTES, &|e| {
            e.queue.capacity().1 as u64
        });
        for (family, windows) in [
            (&EXPORTER_WINDOWS_DROPPED_TOTAL, true),
            (&EXPORTER_PROFILES_DROPPED_TOTAL, false),
        ] {
            m.family(family);
            for e in exporters.iter() {
                for r in DropReason::ALL {
                    let v = if windows {
                        &e.stats.windows_dropped[r as usize]
                    } else {
                        &e.stats.profiles_dropped[r as usize]
                    };
                    m.sample(family, &[e.kind, &e.destination, r.name()], v.load(Relaxed));
                }
            }
        }
        m.family(&EXPORTER_PROFILES_REJECTED_TOTAL);
        for e in exporters.iter() {
            for (cause, n) in e.stats.rejected_by_cause() {
                m.sample(
                    &EXPORTER_PROFILES_REJECTED_TOTAL,
                    &[e.kind, &e.destination, cause],
                    n,
                );
            }
        }
        drop(exporters);

        if let Some(kube) = self.kube.get() {
            render_kube(&mut m, &kube.stats(), kube.is_synced());
        }

        if let Some((cpu, rss)) = self_usage() {
            m.family(&PROCESS_CPU_SECONDS_TOTAL);
            m.sample(&PROCESS_CPU_SECONDS_TOTAL, &[], cpu);
            m.single(&PROCESS_RESIDENT_MEMORY_BYTES, rss);
        }
        m.finish()
    }
}

fn render_kube(m: &mut Exposition, s: &KubeStats, synced: bool) {
    m.single(&KUBE_SYNCED, u64::from(synced));
    m.single(&KUBE_PODS_INDEXED, s.pods_indexed);
    m.single(&KUBE_CONTAINERS_INDEXED, s.containers_indexed);
    m.single(&KUBE_POD_EVENTS_TOTAL, s.pod_events);
    m.single(&KUBE_NODE_EVENTS_TOTAL, s.node_events);
    m.single(&KUBE_RELISTS_TOTAL, s.relists);
    m.single(&KUBE_STALE_PODS_REMOVED_TOTAL, s.stale_pods_removed);
    m.single(&KUBE_LIST_REQUESTS_TOTAL, s.list_requests);
    m.single(&KUBE_WATCH_REQUESTS_TOTAL, s.watch_requests);
    m.single(&KUBE_WATCH_RESTARTS_TOTAL, s.watch_restarts);
    m.single(&KUBE_WATCH_ERRORS_TOTAL, s.watch_errors);
    m.family(&KUBE_LOOKUPS_TOTAL);
    m.sample(&KUBE_LOOKUPS_TOTAL, &["hit"], s.lookups_hit);
    m.sample(&KUBE_LOOKUPS_TOTAL, &["miss"], s.lookups_miss);
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// (CPU seconds, RSS bytes) of this process, from /proc/self/stat.
pub fn self_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    // Fields after the comm start at field 3 (state) = index 0.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(((utime + stime) as f64 / ticks, rss_pages * page))
}

/// Binds `addr` now (so a busy port fails the start with a clear error) and serves.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot serve metrics on {addr}: {e} (pick another --metrics-listen address, or `off`)"
        )
    })
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<AgentMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        log::error!("metrics server failed: {e}");
    }
}

async fn metrics_handler(State(m): State<Arc<AgentMetrics>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            kiln_proto::exposition::CONTENT_TYPE,
        )],
        m.render(),
    )
}

async fn health_handler(State(m): State<Arc<AgentMetrics>>) -> impl IntoResponse {
    match m.health() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_exposition_and_health() {
        let m = AgentMetrics::new(97, Duration::from_secs(1));
        assert!(m.health().is_err());
        m.sampler_running.store(true, Relaxed);
        m.collect_succeeded();
        assert!(m.health().is_ok());
        let text = m.render();
        assert!(text.contains("kiln_samples_lost_total{cause=\"counts_map_full\"} 0"));
        assert!(text.contains("kiln_agent_info{version="));
        assert!(text.contains("kiln_process_resident_memory_bytes "));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("kiln_"), "{line}");
        }
    }

    #[test]
    fn every_capped_cache_exposes_its_size_and_evictions() {
        let m = AgentMetrics::new(97, Duration::from_secs(1));
        *m.snapshot.lock().unwrap() = Snapshot {
            processes: 7,
            processes_evicted: 3,
            unwind: Some(LoaderStats {
                tables: 4,
                rows_used: 100,
                row_capacity: 1000,
                evicted: 2,
                over_cap: 1,
                ..Default::default()
            }),
            python_names_cached: 9,
            python_names_evicted: 5,
            targets_cached: 6,
            go_binaries_evicted: 8,
            ..Default::default()
        };
        let text = m.render();
        for line in [
            "kiln_processes_tracked 7",
            "kiln_processes_evicted_total 3",
            "kiln_unwind_tables 4",
            "kiln_unwind_table_bytes 800",
            "kiln_unwind_table_capacity_bytes 8000",
            "kiln_unwind_tables_evicted_total 2",
            "kiln_unwind_tables_refused_total{cause=\"over_cap\"} 1",
            "kiln_python_code_names_cached 9",
            "kiln_python_code_names_evicted_total 5",
            "kiln_targets_cached 6",
            "kiln_targets_evicted_total 0",
            "kiln_go_binaries_evicted_total 8",
            "kiln_symbolizer_cache_evicted_total 0",
            "kiln_series_known 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn renders_kube_stats() {
        let stats = KubeStats {
            pods_indexed: 3,
            containers_indexed: 5,
            pod_events: 7,
            watch_restarts: 2,
            lookups_hit: 11,
            lookups_miss: 1,
            ..KubeStats::default()
        };
        let mut m = Exposition::new();
        render_kube(&mut m, &stats, true);
        let out = m.finish();
        for want in [
            "kiln_kube_synced 1\n",
            "kiln_kube_pods_indexed 3\n",
            "kiln_kube_containers_indexed 5\n",
            "kiln_kube_pod_events_total 7\n",
            "kiln_kube_watch_restarts_total 2\n",
            "kiln_kube_lookups_total{result=\"hit\"} 11\n",
            "kiln_kube_lookups_total{result=\"miss\"} 1\n",
            "# TYPE kiln_kube_watch_errors_total counter\n",
        ] {
            assert!(out.contains(want), "{want:?} missing from:\n{out}");
        }
        // Without --kubernetes nothing kube-related is exported.
        let m = AgentMetrics::new(97, Duration::from_secs(1));
        assert!(!m.render().contains("kiln_kube_"));
    }

    #[test]
    fn every_sampler_counter_appears_exactly_once() {
        // Stat::ALL lists each counter once, in index order, and STAT_COUNT counts them.
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{} out of place in Stat::ALL", s.name());
        }
        let m = AgentMetrics::new(97, Duration::from_secs(1));
        let value = |i: usize| 1_000_000 + i as u64;
        {
            let mut snap = m.snapshot.lock().unwrap();
            for (i, s) in Stat::ALL.iter().enumerate() {
                snap.sampler.0[*s as usize] = value(i);
            }
        }
        let text = m.render();
        for (i, s) in Stat::ALL.iter().enumerate() {
            let suffix = format!(" {}", value(i));
            let lines: Vec<&str> = text.lines().filter(|l| l.ends_with(&suffix)).collect();
            let want = if *s == Stat::Recorded {
                "kiln_samples_recorded_total".to_owned()
            } else if s.is_loss() {
                format!("kiln_samples_lost_total{{cause=\"{}\"}}", s.name())
            } else {
                format!("kiln_sampler_events_total{{kind=\"{}\"}}", s.name())
            };
            assert_eq!(lines, [format!("{want}{suffix}")], "{}", s.name());
        }
    }

    #[test]
    fn each_family_is_declared_once_with_its_samples_after_it() {
        let m = AgentMetrics::new(97, Duration::from_secs(1));
        let text = m.render();
        let mut declared = std::collections::HashSet::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(declared.insert(current), "{current} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line} outside its family");
            }
        }
    }

    #[test]
    fn self_usage_reads_own_stat() {
        let (cpu, rss) = self_usage().expect("own stat");
        assert!(cpu >= 0.0);
        assert!(rss > 1 << 20);
    }
}
