//! The agent's self-observability: `/metrics` in the Prometheus text format and
//! `/healthz`, served on a local address (127.0.0.1:9464 by default).
//!
//! Exposed (all prefixed `kiln_`):
//! - sampler: `samples_recorded_total`, `samples_lost_total{cause}` (one series per loss
//!   counter of the eBPF side), `sampler_events_total{kind}` (the non-loss counters);
//! - symbolizer: `symbolizer_lookups_total{result="hit|miss"}`, `symbolizer_cache_hit_ratio`,
//!   `symbolizer_cache_entries`, `symbolizer_cache_evicted_total`, `go_binaries_cached`,
//!   `go_binaries_evicted_total`;
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
    fmt::Write as _,
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
use profiler_common::Stat;

use crate::{
    capture::sampler::SamplerStats,
    export::{queue::BoundedQueue, DropReason, ExporterStats},
    symbolize::SymbolizerStats,
};

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
        let mut out = String::with_capacity(8192);
        let snap = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut m = Writer { out: &mut out };

        m.header("kiln_agent_info", "gauge", "Agent build and settings.");
        m.line(
            "kiln_agent_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("frequency_hz", &self.frequency.to_string()),
            ],
            1,
        );
        m.header(
            "kiln_samples_recorded_total",
            "counter",
            "Samples the eBPF sampler stored.",
        );
        m.line(
            "kiln_samples_recorded_total",
            &[],
            snap.sampler.get(Stat::Recorded),
        );
        m.header(
            "kiln_samples_lost_total",
            "counter",
            "Samples or stacks lost in the kernel, by cause.",
        );
        for s in Stat::ALL.iter().filter(|s| s.is_loss()) {
            m.line(
                "kiln_samples_lost_total",
                &[("cause", s.name())],
                snap.sampler.get(*s),
            );
        }
        m.header(
            "kiln_sampler_events_total",
            "counter",
            "Other sampler counters (not losses).",
        );
        for s in Stat::ALL
            .iter()
            .filter(|s| !s.is_loss() && **s != Stat::Recorded)
        {
            m.line(
                "kiln_sampler_events_total",
                &[("kind", s.name())],
                snap.sampler.get(*s),
            );
        }

        let sym = snap.symbolizer.unwrap_or(SymbolizerStats {
            hits: 0,
            misses: 0,
            cached: 0,
            evicted: 0,
        });
        m.header(
            "kiln_symbolizer_lookups_total",
            "counter",
            "Address lookups by cache result.",
        );
        m.line(
            "kiln_symbolizer_lookups_total",
            &[("result", "hit")],
            sym.hits,
        );
        m.line(
            "kiln_symbolizer_lookups_total",
            &[("result", "miss")],
            sym.misses,
        );
        m.header(
            "kiln_symbolizer_cache_hit_ratio",
            "gauge",
            "Share of address lookups answered by the cache.",
        );
        let lookups = sym.hits + sym.misses;
        m.float(
            "kiln_symbolizer_cache_hit_ratio",
            &[],
            if lookups == 0 {
                0.0
            } else {
                sym.hits as f64 / lookups as f64
            },
        );
        m.gauge(
            "kiln_symbolizer_cache_entries",
            "Symbolized addresses cached.",
            sym.cached as u64,
        );
        m.counter(
            "kiln_symbolizer_cache_evicted_total",
            "Symbolized addresses dropped because the cache was full.",
            sym.evicted,
        );
        m.gauge(
            "kiln_go_binaries_cached",
            "Executables whose Go runtime detection result is cached.",
            snap.go_binaries_cached as u64,
        );
        m.counter(
            "kiln_go_binaries_evicted_total",
            "Go detection results dropped because that cache was full.",
            snap.go_binaries_evicted,
        );
        m.gauge(
            "kiln_processes_tracked",
            "Processes whose mappings are held for symbolization.",
            snap.processes as u64,
        );
        m.gauge(
            "kiln_binaries_open",
            "Executables and libraries held open.",
            snap.binaries as u64,
        );
        m.gauge(
            "kiln_targets_cached",
            "Processes with cached labels.",
            snap.targets_cached as u64,
        );
        m.counter(
            "kiln_targets_discovered_total",
            "Processes whose labels were read from /proc.",
            snap.discovery.cache_misses,
        );
        m.counter(
            "kiln_targets_evicted_total",
            "Cached labels evicted because the label cache was full.",
            snap.discovery.evicted,
        );
        m.counter(
            "kiln_targets_dropped_total",
            "Processes excluded by relabel rules.",
            snap.discovery.dropped,
        );
        m.header(
            "kiln_target_lookups_failed_total",
            "counter",
            "Label lookups that failed, by reason.",
        );
        m.line(
            "kiln_target_lookups_failed_total",
            &[("reason", "vanished")],
            snap.discovery.vanished,
        );
        m.line(
            "kiln_target_lookups_failed_total",
            &[("reason", "error")],
            snap.discovery.errors,
        );

        m.counter(
            "kiln_windows_collected_total",
            "Profile windows completed.",
            self.windows_collected.load(Relaxed),
        );
        m.counter(
            "kiln_windows_dropped_total",
            "Windows dropped because encoding fell behind.",
            self.windows_dropped.load(Relaxed),
        );
        m.gauge(
            "kiln_window_series",
            "Series (profiles) in the last window.",
            self.window_series.load(Relaxed),
        );
        m.counter(
            "kiln_samples_exported_total",
            "Samples handed to the exporters.",
            self.samples_exported.load(Relaxed),
        );
        m.counter(
            "kiln_samples_labeled_after_exit_total",
            "Samples of processes that exited before /proc could be read, exported with the labels that outlive them (comm, host, static labels).",
            self.samples_labeled_after_exit.load(Relaxed),
        );
        m.counter(
            "kiln_samples_unlabeled_total",
            "Samples not exported because their process could not be read (other than by exiting).",
            self.samples_unlabeled.load(Relaxed),
        );
        m.counter(
            "kiln_samples_relabel_dropped_total",
            "Samples of processes excluded by relabel rules.",
            self.samples_relabel_dropped.load(Relaxed),
        );
        m.counter(
            "kiln_series_limited_total",
            "New series refused by --max-new-series-per-window.",
            self.series_limited.load(Relaxed),
        );
        m.counter(
            "kiln_samples_series_limited_total",
            "Samples of new series refused by --max-new-series-per-window.",
            self.samples_series_limited.load(Relaxed),
        );
        m.gauge(
            "kiln_series_known",
            "Series exported in the last 10 minutes (what the new-series cap remembers).",
            self.series_known.load(Relaxed),
        );
        m.counter(
            "kiln_collect_errors_total",
            "Failed drains of the kernel buffers.",
            self.collect_errors.load(Relaxed),
        );
        m.header(
            "kiln_last_collect_timestamp_seconds",
            "gauge",
            "Time of the last successful drain.",
        );
        m.float(
            "kiln_last_collect_timestamp_seconds",
            &[],
            self.last_collect_unix_ms.load(Relaxed) as f64 / 1000.0,
        );

        let exporters = self.exporters.lock().unwrap_or_else(|e| e.into_inner());
        let per = |m: &mut Writer,
                   name: &str,
                   help: &str,
                   kind: &str,
                   f: &dyn Fn(&ExporterView) -> u64| {
            m.header(name, kind, help);
            for e in exporters.iter() {
                m.line(
                    name,
                    &[("exporter", e.kind), ("destination", &e.destination)],
                    f(e),
                );
            }
        };
        per(
            &mut m,
            "kiln_exporter_windows_exported_total",
            "Windows delivered.",
            "counter",
            &|e| e.stats.windows_exported.load(Relaxed),
        );
        per(
            &mut m,
            "kiln_exporter_profiles_exported_total",
            "Profiles delivered.",
            "counter",
            &|e| e.stats.profiles_exported.load(Relaxed),
        );
        per(
            &mut m,
            "kiln_exporter_bytes_exported_total",
            "Compressed profile bytes delivered.",
            "counter",
            &|e| e.stats.bytes_exported.load(Relaxed),
        );
        per(
            &mut m,
            "kiln_exporter_failed_attempts_total",
            "Delivery attempts that failed.",
            "counter",
            &|e| e.stats.failed_attempts.load(Relaxed),
        );
        per(
            &mut m,
            "kiln_exporter_retries_total",
            "Delivery attempts after a backoff.",
            "counter",
            &|e| e.stats.retries.load(Relaxed),
        );
        per(
            &mut m,
            "kiln_exporter_queue_windows",
            "Windows waiting to be delivered.",
            "gauge",
            &|e| e.queue.depth().0 as u64,
        );
        per(
            &mut m,
            "kiln_exporter_queue_bytes",
            "Bytes waiting to be delivered.",
            "gauge",
            &|e| e.queue.depth().1 as u64,
        );
        per(
            &mut m,
            "kiln_exporter_queue_capacity_windows",
            "Queue bound in windows.",
            "gauge",
            &|e| e.queue.capacity().0 as u64,
        );
        per(
            &mut m,
            "kiln_exporter_queue_capacity_bytes",
            "Queue bound in bytes.",
            "gauge",
            &|e| e.queue.capacity().1 as u64,
        );
        for (name, help, windows) in [
            (
                "kiln_exporter_windows_dropped_total",
                "Windows given up, by reason.",
                true,
            ),
            (
                "kiln_exporter_profiles_dropped_total",
                "Profiles given up, by reason.",
                false,
            ),
        ] {
            m.header(name, "counter", help);
            for e in exporters.iter() {
                for r in DropReason::ALL {
                    let v = if windows {
                        &e.stats.windows_dropped[r as usize]
                    } else {
                        &e.stats.profiles_dropped[r as usize]
                    };
                    m.line(
                        name,
                        &[
                            ("exporter", e.kind),
                            ("destination", &e.destination),
                            ("reason", r.name()),
                        ],
                        v.load(Relaxed),
                    );
                }
            }
        }
        m.header(
            "kiln_exporter_profiles_rejected_total",
            "counter",
            "Profiles the destination refused for good (dropped at once, not retried), by cause.",
        );
        for e in exporters.iter() {
            for (cause, n) in e.stats.rejected_by_cause() {
                m.line(
                    "kiln_exporter_profiles_rejected_total",
                    &[
                        ("exporter", e.kind),
                        ("destination", &e.destination),
                        ("cause", cause),
                    ],
                    n,
                );
            }
        }
        drop(exporters);

        if let Some(kube) = self.kube.get() {
            render_kube(&mut m, &kube.stats(), kube.is_synced());
        }

        if let Some((cpu, rss)) = self_usage() {
            m.header(
                "kiln_process_cpu_seconds_total",
                "counter",
                "CPU time of the agent process (user + system).",
            );
            m.float("kiln_process_cpu_seconds_total", &[], cpu);
            m.gauge(
                "kiln_process_resident_memory_bytes",
                "Resident memory of the agent process.",
                rss,
            );
        }
        out
    }
}

fn render_kube(m: &mut Writer, s: &KubeStats, synced: bool) {
    m.gauge(
        "kiln_kube_synced",
        "1 once the initial lists of this node's pods and of the node completed.",
        u64::from(synced),
    );
    m.gauge(
        "kiln_kube_pods_indexed",
        "Pods of this node in the metadata index.",
        s.pods_indexed,
    );
    m.gauge(
        "kiln_kube_containers_indexed",
        "Container ids in the metadata index.",
        s.containers_indexed,
    );
    m.counter(
        "kiln_kube_pod_events_total",
        "Pod watch events applied (listed, added, modified, deleted).",
        s.pod_events,
    );
    m.counter(
        "kiln_kube_node_events_total",
        "Node watch events applied.",
        s.node_events,
    );
    m.counter(
        "kiln_kube_relists_total",
        "Completed (re)lists of the pods and the node.",
        s.relists,
    );
    m.counter(
        "kiln_kube_stale_pods_removed_total",
        "Pods removed by a relist because they were no longer listed.",
        s.stale_pods_removed,
    );
    m.counter(
        "kiln_kube_list_requests_total",
        "List requests sent to the API server.",
        s.list_requests,
    );
    m.counter(
        "kiln_kube_watch_requests_total",
        "Watch requests sent to the API server.",
        s.watch_requests,
    );
    m.counter(
        "kiln_kube_watch_restarts_total",
        "Watches resumed or restarted after the first one per resource.",
        s.watch_restarts,
    );
    m.counter(
        "kiln_kube_watch_errors_total",
        "Errors of the watch streams (each retried with backoff).",
        s.watch_errors,
    );
    m.header(
        "kiln_kube_lookups_total",
        "counter",
        "Label lookups of containerized processes, by whether their pod was indexed.",
    );
    m.line(
        "kiln_kube_lookups_total",
        &[("result", "hit")],
        s.lookups_hit,
    );
    m.line(
        "kiln_kube_lookups_total",
        &[("result", "miss")],
        s.lookups_miss,
    );
}

struct Writer<'a> {
    out: &'a mut String,
}

impl Writer<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        self.out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn line(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        self.labels(labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "gauge", help);
        self.line(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, "counter", help);
        self.line(name, &[], value);
    }
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
            "text/plain; version=0.0.4; charset=utf-8",
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
    fn renders_kube_stats() {
        let mut out = String::new();
        let stats = KubeStats {
            pods_indexed: 3,
            containers_indexed: 5,
            pod_events: 7,
            watch_restarts: 2,
            lookups_hit: 11,
            lookups_miss: 1,
            ..KubeStats::default()
        };
        render_kube(&mut Writer { out: &mut out }, &stats, true);
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
    fn self_usage_reads_own_stat() {
        let (cpu, rss) = self_usage().expect("own stat");
        assert!(cpu >= 0.0);
        assert!(rss > 1 << 20);
    }
}
