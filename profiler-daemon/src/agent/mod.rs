//! `kiln agent`: continuous profiling of the whole host (or of chosen pids).
//!
//! Data path and threads:
//!
//! ```text
//!  eBPF sampler ──(double-buffered maps, ring buffer of process events)──┐
//!                                                                       v
//!  [sampling thread]  window::WindowLoop: woken by process events, labels new
//!      processes (kiln-labels Discoverer), every drain interval (1 s) moves samples into
//!      the window's Aggregate (symbolized), every collect interval (15 s) groups the
//!      window's stacks by target series and try_sends it ──> (channel of 1)
//!  [encoder thread]  encode::encode: one pprof per series, gzip'd ──> Exporter::offer
//!  [tokio runtime]   one task per exporter (bounded queue, retry with backoff):
//!                    push (Pyroscope Connect), dir (pprof files); the metrics server;
//!                    with --kubernetes, the pod and node watches (kiln-kube), a
//!                    MetaLabelProvider of the Discoverer.
//! ```
//!
//! Nothing downstream can stall sampling: the window hand-off is a `try_send` (a window
//! is dropped and counted if the encoder is still busy with the previous one), and the
//! exporter queues evict their oldest window when full.
//!
//! Default frequency: 97 Hz (kiln-labels' `DEFAULT_FREQUENCY_HZ`): prime so it does not
//! alias with periodic work at 100 Hz / 1 kHz, and at that rate the agent stays well
//! under 0.5% of one CPU on an idle host (see docs/benchmarks.md, "Agent").

mod encode;
mod series;
mod window;

pub use series::DEFAULT_MAX_NEW_SERIES_PER_WINDOW;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use kiln_labels::{AgentConfig, Discoverer, Target};

use crate::{
    capture::{collector::Collector, sampler::SamplerTuning},
    export::{dir::DirSink, push::PushSink, ExportSettings, Exporter, Flavor, Sink},
    metrics::{self, AgentMetrics, ExporterView},
};

/// Where the agent's own metrics are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(std::net::SocketAddr),
}

/// Everything `kiln agent` runs with, after flags and the config file are merged.
#[derive(Debug)]
pub struct Settings {
    pub frequency: u32,
    pub collect_interval: Duration,
    pub pids: Vec<u32>,
    pub push_urls: Vec<String>,
    pub output_dir: Option<PathBuf>,
    pub metrics_listen: MetricsListen,
    pub export: ExportSettings,
    pub shutdown_timeout: Duration,
    /// The cap on series not seen recently that one window may start.
    pub max_new_series_per_window: usize,
    pub sampler: SamplerTuning,
    /// The merged configuration (labels, relabel rules).
    pub config: AgentConfig,
    /// Sinks set up by the caller (`kiln run` adds the embedded store).
    pub extra_sinks: Vec<Arc<dyn Sink>>,
    /// Kubernetes pod and node metadata (`--kubernetes`), if on.
    pub kube: Option<KubeSettings>,
}

/// How to get Kubernetes metadata.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    pub config: kiln_kube::KubeConfig,
    /// Asked for explicitly (flags) rather than inferred from running in a cluster: then
    /// failing to start is an error, else a warning.
    pub required: bool,
}

/// How long the agent waits for the initial pod and node lists before it starts sampling.
const KUBE_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the pod and node watches on `rt` and waits (bounded, and not past a stop
/// signal) for the initial lists, so the first processes are labeled with their pods.
fn start_kube(
    rt: &tokio::runtime::Runtime,
    kube: &KubeSettings,
    stop: &AtomicBool,
) -> anyhow::Result<Option<Arc<kiln_kube::KubeMetadata>>> {
    let node = kube.config.node_name.clone();
    let api = kube.config.api.clone();
    let started = rt.block_on(async {
        let meta = kiln_kube::start(kube.config.clone()).await?;
        let stopping = async {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let synced = tokio::select! {
            synced = meta.wait_synced(KUBE_SYNC_TIMEOUT) => synced,
            () = stopping => return Ok(meta),
        };
        if synced {
            let s = meta.stats();
            log::info!(
                "kubernetes: node {node}: {} pods, {} containers indexed",
                s.pods_indexed,
                s.containers_indexed
            );
        } else {
            log::warn!(
                "kubernetes: the pods and node of {node} were not listed within {} s ({api:?}); \
                 sampling anyway, pod labels follow once the API server answers",
                KUBE_SYNC_TIMEOUT.as_secs()
            );
        }
        Ok::<_, kiln_kube::Error>(meta)
    });
    match started {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if kube.required => {
            Err(anyhow::Error::new(e).context("starting Kubernetes metadata failed"))
        }
        Err(e) => {
            log::warn!("kubernetes metadata is off: {e}");
            Ok(None)
        }
    }
}

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let mut discoverer = Discoverer::new(settings.config.discovery_options()?)
        .context("invalid relabel configuration")?;
    let drain_every = Duration::from_millis(settings.sampler.drain_interval_ms.max(10))
        .min(settings.collect_interval);
    let metrics = Arc::new(AgentMetrics::new(settings.frequency, drain_every));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("kiln-export")
        .enable_all()
        .build()
        .context("starting the async runtime failed")?;

    // Fail fast on anything the user can fix before loading eBPF.
    let listener = match settings.metrics_listen {
        MetricsListen::At(addr) => Some(rt.block_on(metrics::bind(addr))?),
        MetricsListen::Off => None,
    };
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    for url in &settings.push_urls {
        sinks.push(Arc::new(PushSink::new(url, &settings.export)?));
    }
    if let Some(dir) = &settings.output_dir {
        sinks.push(Arc::new(DirSink::new(dir)?));
    }
    sinks.extend(settings.extra_sinks.iter().cloned());
    if sinks.is_empty() {
        log::warn!(
            "no exporter configured (--push-url, --output-dir): profiles are collected and counted but go nowhere"
        );
    }

    let kube = match &settings.kube {
        Some(k) => start_kube(&rt, k, &stop)?,
        None => None,
    };
    if let Some(meta) = &kube {
        discoverer.add_provider(meta.clone());
        metrics.set_kube(meta.clone());
    }

    let sampler_config = settings
        .sampler
        .config(u64::from(settings.frequency), settings.pids.clone());
    let collector = Collector::start(&sampler_config)?;

    let exporters: Vec<Exporter> = sinks
        .iter()
        .map(|s| Exporter::start(s.clone(), &settings.export, rt.handle()))
        .collect();
    *metrics.exporters.lock().unwrap_or_else(|e| e.into_inner()) = exporters
        .iter()
        .map(|e| ExporterView {
            kind: e.sink.kind(),
            destination: e.sink.destination(),
            stats: e.stats.clone(),
            queue: e.queue.clone(),
        })
        .collect();

    let server_stop = Arc::new(tokio::sync::Notify::new());
    let server = listener.map(|l| {
        let addr = l.local_addr().ok();
        if let Some(addr) = addr {
            log::info!("serving metrics on http://{addr}/metrics and /healthz");
        }
        let stop = server_stop.clone();
        rt.spawn(metrics::serve(l, metrics.clone(), async move {
            stop.notified().await
        }))
    });

    let opts = encode::EncodeOptions {
        detailed: sinks.iter().any(|s| s.flavor() == Flavor::Detailed),
        compact: sinks.iter().any(|s| s.flavor() == Flavor::Compact),
        compact_sample_labels: settings.export.push_sample_labels.clone(),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<encode::WindowData>(1);
    let encoder = std::thread::Builder::new()
        .name("kiln-encode".into())
        .spawn(move || {
            for w in rx {
                let batch = Arc::new(encode::encode(&w, &opts));
                drop(w);
                log::debug!(
                    "window {} ({:.3} s): {} profiles, {} samples, {} bytes",
                    batch.seq,
                    batch.duration.as_secs_f64(),
                    batch.series.len(),
                    batch.series.iter().map(|s| s.samples).sum::<u64>(),
                    batch
                        .bytes(Flavor::Detailed)
                        .max(batch.bytes(Flavor::Compact))
                );
                for e in &exporters {
                    e.offer(batch.clone());
                }
            }
            exporters
        })
        .context("starting the encoder thread failed")?;

    log::info!(
        "kiln agent: sampling {} at {} Hz, {} s windows, exporters: {}",
        if settings.pids.is_empty() {
            "the whole host".to_owned()
        } else {
            format!("pids {:?}", settings.pids)
        },
        settings.frequency,
        settings.collect_interval.as_secs_f64(),
        if sinks.is_empty() {
            "none".to_owned()
        } else {
            sinks
                .iter()
                .map(|s| format!("{} {}", s.kind(), s.destination()))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );

    let result = window::WindowLoop {
        collector,
        discoverer,
        metrics: &metrics,
        tx,
        stop: &stop,
        frequency: settings.frequency,
        interval: settings.collect_interval,
        drain_every,
        idle_target: idle_target(&settings.config),
        dropped: Default::default(),
        meta_changes: kube.as_ref().map(|m| m.subscribe()),
        series: series::SeriesLimiter::new(settings.max_new_series_per_window),
    }
    .run();

    // The loop has flushed the last window and dropped the sender: the encoder finishes
    // it and hands back the exporters.
    let exporters = encoder
        .join()
        .map_err(|_| anyhow::anyhow!("the encoder thread panicked"))?;
    let deadline = Instant::now() + settings.shutdown_timeout;
    rt.block_on(async {
        for e in exporters {
            e.shutdown(deadline).await;
        }
    });
    server_stop.notify_one();
    if let Some(server) = server {
        let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), server).await });
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    let m = &metrics;
    use std::sync::atomic::Ordering::Relaxed;
    log::info!(
        "kiln agent stopped: {} windows, {} samples exported ({} labeled after their process exited), {} unlabeled, {} dropped by relabeling",
        m.windows_collected.load(Relaxed),
        m.samples_exported.load(Relaxed),
        m.samples_labeled_after_exit.load(Relaxed),
        m.samples_unlabeled.load(Relaxed),
        m.samples_relabel_dropped.load(Relaxed)
    );
    result
}

/// Samples of idle CPUs (pid 0) have no /proc entry to label them from.
fn idle_target(config: &AgentConfig) -> Arc<Target> {
    let mut labels: BTreeMap<String, String> = config.static_labels.clone();
    labels.insert("service_name".into(), "kernel-idle".into());
    if let Some(host) = config.hostname.clone().or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
    }) {
        labels.insert("hostname".into(), host);
    }
    Arc::new(Target::new(0, 0, BTreeMap::new(), Some(labels)))
}
