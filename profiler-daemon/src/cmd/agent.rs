//! `kiln agent`: the command-line surface of the continuous agent. Flags are layered over
//! the optional `--config` file (flags win); everything else lives in [`crate::agent`].

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use clap::Args;
use kiln_labels::{AgentConfig, BasicAuth, Secret};

use crate::{agent::MetricsListen, cmd::record::SamplerArgs};

/// Labeling flags, shared by `kiln agent` and `kiln targets` so that `kiln targets` shows
/// exactly the labels the agent would attach.
#[derive(Debug, Args, Clone, Default)]
pub struct LabelArgs {
    /// Agent configuration file (TOML; see kiln-labels/agent.example.toml). Flags override
    /// its values; map-valued options (labels) are merged key by key.
    #[arg(long, short = 'c', value_name = "FILE", env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Static label added to every profile, e.g. `--label region=us-east-1`. Repeatable.
    #[arg(long = "label", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub labels: Vec<(String, String)>,

    /// Read environment variable NAME of each process into label LABEL, e.g.
    /// `--env-label REGION=region`. Only listed variables are ever read. Repeatable.
    #[arg(long = "env-label", value_name = "NAME=LABEL", value_parser = parse_pair)]
    pub env_labels: Vec<(String, String)>,

    /// Fixed `service_name` for every process (default: inferred from the container or
    /// executable name).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,

    /// Host name to report (default: the kernel's host name).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Discover `__meta_process_cmdline` for relabel rules. Off by default: command lines
    /// often carry secrets.
    #[arg(long)]
    pub include_cmdline: bool,

    /// Do not run the built-in relabel rules (service_name, hostname, process,
    /// container_id, pod_uid, qos_class, env labels) before the configured ones.
    #[arg(long)]
    pub no_default_relabel_rules: bool,

    /// TOML file whose `[[relabel_configs]]` replace the config file's rules.
    #[arg(long, value_name = "FILE")]
    pub relabel_config: Option<PathBuf>,

    /// Most processes whose labels are cached.
    #[arg(long, value_name = "N", hide_short_help = true)]
    pub target_cache_size: Option<usize>,
}

impl LabelArgs {
    /// The configuration file (if any) with these flags layered over it, validated.
    pub fn load(&self) -> anyhow::Result<AgentConfig> {
        let base = match &self.config {
            Some(path) => AgentConfig::from_file(path)?,
            None => AgentConfig::default(),
        };
        let mut over = AgentConfig {
            static_labels: self.labels.iter().cloned().collect(),
            env_labels: self.env_labels.iter().cloned().collect(),
            include_cmdline: self.include_cmdline.then_some(true),
            service_name: self.service_name.clone(),
            hostname: self.hostname.clone(),
            default_relabel_rules: self.no_default_relabel_rules.then_some(false),
            target_cache_size: self.target_cache_size,
            ..AgentConfig::default()
        };
        if let Some(path) = &self.relabel_config {
            let rules = AgentConfig::from_file(path)
                .with_context(|| format!("reading relabel rules from {}", path.display()))?;
            over.relabel_configs = Some(rules.relabel_configs.unwrap_or_default());
        }
        Ok(base.merge(over))
    }
}

/// Kubernetes metadata flags: pod, container and node labels from the API server.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeArgs {
    /// Label processes with their pod's metadata (namespace, pod, container, pod labels)
    /// and the node's region and zone, from the Kubernetes API server. The agent watches
    /// only the pods of its own node (--node-name) and the node; processes are matched to
    /// containers by the container id in their cgroup path. On by default when running in
    /// a pod with a service account token (KUBERNETES_SERVICE_HOST set).
    #[arg(long, env = "KILN_KUBERNETES")]
    pub kubernetes: bool,

    /// Do not talk to the Kubernetes API server, even when running in a cluster (wins
    /// over --kubernetes and KILN_KUBERNETES).
    #[arg(long)]
    pub no_kubernetes: bool,

    /// API server URL without credentials, e.g. `http://127.0.0.1:8001` for `kubectl
    /// proxy` [default: the pod's service account, else the kubeconfig]. Implies
    /// --kubernetes.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["kube_config", "no_kubernetes"]
    )]
    pub kube_api_server: Option<String>,

    /// Kubeconfig file whose current context reaches the API server [default: the pod's
    /// service account, else $KUBECONFIG or ~/.kube/config]. Implies --kubernetes.
    #[arg(long, value_name = "FILE", conflicts_with = "no_kubernetes")]
    pub kube_config: Option<PathBuf>,

    /// The Kubernetes node this agent runs on: only its pods are watched. In a DaemonSet,
    /// set NODE_NAME from the downward API (`fieldRef: spec.nodeName`).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,
}

impl KubeArgs {
    /// The metadata configuration, or `None` when Kubernetes metadata is off. Explicit
    /// flags make it `required` (a start failure is fatal); the in-cluster default is not.
    pub fn resolve(&self) -> anyhow::Result<Option<crate::agent::KubeSettings>> {
        let explicit =
            self.kubernetes || self.kube_api_server.is_some() || self.kube_config.is_some();
        if self.no_kubernetes || !(explicit || kiln_kube::in_cluster()) {
            return Ok(None);
        }
        let node_name = self.node_name.clone().unwrap_or_default();
        if node_name.trim().is_empty() {
            if explicit {
                bail!(
                    "--kubernetes needs the node name: pass --node-name or set NODE_NAME \
                     (downward API fieldRef spec.nodeName)"
                );
            }
            log::warn!(
                "running in a Kubernetes pod but NODE_NAME is not set: no pod labels \
                 (pass --node-name, or --no-kubernetes to silence this)"
            );
            return Ok(None);
        }
        let mut config = kiln_kube::KubeConfig::new(node_name.trim());
        config.api = match (&self.kube_api_server, &self.kube_config) {
            (Some(url), _) => kiln_kube::ApiSource::Url(url.clone()),
            (None, Some(path)) => kiln_kube::ApiSource::Kubeconfig(path.clone()),
            (None, None) if kiln_kube::in_cluster() => kiln_kube::ApiSource::InCluster,
            (None, None) => kiln_kube::ApiSource::Infer,
        };
        Ok(Some(crate::agent::KubeSettings {
            config,
            required: explicit,
        }))
    }
}

fn parse_metrics_listen(s: &str) -> Result<MetricsListen, String> {
    if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("none") {
        return Ok(MetricsListen::Off);
    }
    s.parse()
        .map(MetricsListen::At)
        .map_err(|e| format!("{e}: use HOST:PORT (e.g. 127.0.0.1:9464) or `off`"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(v > 0.0 && v.is_finite() && v < 1e7) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(Duration::from_secs_f64(v))
}

pub const AGENT_AFTER_HELP: &str = "\
Examples:
  # Profile the whole host, push every 15 s to a Kiln or Grafana Pyroscope server:
  sudo kiln agent --push-url http://127.0.0.1:4040

  # Write one pprof file per service and window, with extra labels:
  sudo kiln agent --output-dir /var/lib/kiln/profiles \\
      --label region=us-east-1 --env-label APP_VERSION=version

  # Several destinations at once, settings from a file (flags override it):
  sudo kiln agent --config /etc/kiln/agent.toml --push-url https://profiles.example.com \\
      --basic-auth-user kiln --tenant-id team-a

  # In a Kubernetes DaemonSet (pod, container, region and zone labels; NODE_NAME from
  # the downward API):
  kiln agent --kubernetes --node-name=$(NODE_NAME) --push-url http://pyroscope:4040

  # Outside a cluster, through `kubectl proxy`:
  sudo kiln agent --kube-api-server http://127.0.0.1:8001 --node-name node-1 \\
      --output-dir /tmp/profiles

  # Check which labels (and which relabel decisions) processes get, without sampling:
  kiln targets --config /etc/kiln/agent.toml --pid 1234

Signals: SIGINT or SIGTERM flushes the current (partial) window, lets the exporters
deliver what is queued for up to --shutdown-timeout, then exits.
Self-metrics: GET http://127.0.0.1:9464/metrics (Prometheus text), /healthz.";

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub labels: LabelArgs,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Samples per second on each CPU [default: 97, or the config file's `frequency`].
    /// 97 Hz is prime, so sampling does not alias with 100 Hz / 1 kHz timers, and it costs
    /// well under 0.5% of one CPU on an idle host (see docs/benchmarks.md, "Agent").
    #[arg(long, short = 'F', value_name = "HZ")]
    pub frequency: Option<u32>,

    /// Seconds per profile window: every window yields one profile per target
    /// [default: 15].
    #[arg(long, value_name = "SECS")]
    pub collect_interval: Option<u64>,

    /// Profile only this process; repeatable. Default: every process on the host.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Push profiles to this Pyroscope-compatible server (Kiln, Grafana Pyroscope), via
    /// `POST <URL>/push.v1.PusherService/Push`. Repeatable; replaces the config file's
    /// `exporters.push_url`.
    #[arg(long = "push-url", value_name = "URL")]
    pub push_urls: Vec<String>,

    /// User for HTTP basic authentication of pushes.
    #[arg(long, value_name = "USER", env = "KILN_BASIC_AUTH_USER")]
    pub basic_auth_user: Option<String>,

    /// Password for HTTP basic authentication (prefer the environment variable).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "KILN_BASIC_AUTH_PASSWORD",
        hide_env_values = true
    )]
    pub basic_auth_password: Option<String>,

    /// Bearer token for pushes (prefer the environment variable).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KILN_BEARER_TOKEN",
        hide_env_values = true
    )]
    pub bearer_token: Option<String>,

    /// Tenant, sent as the `X-Scope-OrgID` header.
    #[arg(long, value_name = "ID")]
    pub tenant_id: Option<String>,

    /// Also write one gzip'd pprof file per target and window into DIR.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Where to serve /metrics and /healthz, or `off` [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR|off", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<MetricsListen>,

    /// Windows each exporter may hold while its destination is slow or down; beyond
    /// that the oldest window is dropped (and counted).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub export_queue_windows: usize,

    /// Compressed profile bytes each exporter may hold, in MiB.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub export_queue_mib: usize,

    /// Time limit of one push request.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = parse_secs)]
    pub export_timeout: Duration,

    /// Attempts per window before it is given up (and counted as dropped).
    #[arg(long, default_value_t = 8, value_name = "N", hide_short_help = true)]
    pub export_max_attempts: u32,

    /// Longest wait between retries; waits grow 2x per failure from 0.5 s, with jitter.
    #[arg(long, default_value = "30", value_name = "SECS", value_parser = parse_secs, hide_short_help = true)]
    pub export_max_backoff: Duration,

    /// pprof sample labels kept in pushed profiles, comma separated, from `pid`,
    /// `process`, `thread` (each value becomes a separate series in Pyroscope, so none by
    /// default). Files in --output-dir always carry all three.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LIST",
        hide_short_help = true
    )]
    pub push_sample_labels: Vec<String>,

    /// Most series (distinct label sets) not seen in the last 10 minutes that one window
    /// may start; the samples of the rest are dropped and counted in /metrics
    /// (kiln_series_limited_total, kiln_samples_series_limited_total). Guards the
    /// destination against label values that churn.
    #[arg(
        long,
        default_value_t = crate::agent::DEFAULT_MAX_NEW_SERIES_PER_WINDOW,
        value_name = "N",
        hide_short_help = true
    )]
    pub max_new_series_per_window: usize,

    /// On SIGINT/SIGTERM, how long queued profiles may take to be delivered.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = parse_secs)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub sampler: SamplerArgs,
}

impl AgentArgs {
    /// Merges flags over the config file into the final settings.
    pub fn resolve(&self) -> anyhow::Result<crate::agent::Settings> {
        let mut config = self.labels.load()?;
        let over = AgentConfig {
            frequency: self.frequency,
            collect_interval: self.collect_interval,
            exporters: kiln_labels::ExporterConfig {
                bearer_token: self.bearer_token.clone().map(Secret::new),
                tenant_id: self.tenant_id.clone(),
                output_dir: self.output_dir.clone(),
                basic_auth: match (&self.basic_auth_user, &self.basic_auth_password) {
                    (Some(u), Some(p)) => Some(BasicAuth {
                        username: u.clone(),
                        password: Secret::new(p.clone()),
                    }),
                    (None, None) => None,
                    _ => bail!("set both --basic-auth-user and --basic-auth-password"),
                },
                push_url: None,
            },
            ..AgentConfig::default()
        };
        if over.exporters.basic_auth.is_some() {
            config.exporters.bearer_token = None;
        }
        if over.exporters.bearer_token.is_some() {
            config.exporters.basic_auth = None;
        }
        let config = config.merge(over);
        config.validate()?;

        let push_urls = if self.push_urls.is_empty() {
            config.exporters.push_url.iter().cloned().collect()
        } else {
            self.push_urls.clone()
        };
        for url in &push_urls {
            crate::export::push::check_url(url)?;
        }
        for l in &self.push_sample_labels {
            if !matches!(l.as_str(), "pid" | "process" | "thread") {
                bail!("--push-sample-labels: unknown label {l:?}; use pid, process or thread");
            }
        }
        if self.export_queue_windows == 0 || self.export_queue_mib == 0 {
            bail!("--export-queue-windows and --export-queue-mib must be at least 1");
        }
        if self.export_max_attempts == 0 {
            bail!("--export-max-attempts must be at least 1");
        }
        for pid in &self.pids {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("no process with pid {pid} is running");
            }
        }
        let kube = self.kube.resolve()?;
        let metrics_listen = match self.metrics_listen {
            Some(m) => m,
            None => MetricsListen::At(
                config
                    .metrics_listen_address
                    .unwrap_or_else(|| ([127, 0, 0, 1], 9464).into()),
            ),
        };

        Ok(crate::agent::Settings {
            frequency: config.frequency_or_default(),
            collect_interval: config.collect_interval_or_default(),
            pids: self.pids.clone(),
            push_urls,
            output_dir: config.exporters.output_dir.clone(),
            metrics_listen,
            export: crate::export::ExportSettings {
                queue_windows: self.export_queue_windows,
                queue_bytes: self.export_queue_mib.saturating_mul(1 << 20),
                timeout: self.export_timeout,
                max_attempts: self.export_max_attempts,
                max_backoff: self.export_max_backoff,
                basic_auth: config.exporters.basic_auth.clone(),
                bearer_token: config.exporters.bearer_token.clone(),
                tenant_id: config.exporters.tenant_id.clone(),
                push_sample_labels: self.push_sample_labels.clone(),
            },
            shutdown_timeout: self.shutdown_timeout,
            max_new_series_per_window: self.max_new_series_per_window,
            sampler: self.sampler.tuning(),
            config,
            extra_sinks: Vec::new(),
            kube,
        })
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let settings = args.resolve()?;
    crate::agent::run(settings)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeArgs,
    }

    fn resolve(args: &[&str]) -> anyhow::Result<Option<crate::agent::KubeSettings>> {
        let cli = Cli::try_parse_from(std::iter::once("kiln").chain(args.iter().copied()))?;
        cli.kube.resolve()
    }

    #[test]
    fn kubernetes_flags_pick_the_api_source() {
        if kiln_kube::in_cluster() {
            return; // the in-cluster default would change every answer below
        }
        let k = resolve(&["--kubernetes", "--node-name", "n1"])
            .unwrap()
            .expect("on");
        assert_eq!(k.config.node_name, "n1");
        assert_eq!(k.config.api, kiln_kube::ApiSource::Infer);
        assert!(k.required);

        let k = resolve(&[
            "--kube-api-server",
            "http://127.0.0.1:8001",
            "--node-name=n2",
        ])
        .unwrap()
        .expect("--kube-api-server implies --kubernetes");
        assert_eq!(
            k.config.api,
            kiln_kube::ApiSource::Url("http://127.0.0.1:8001".into())
        );

        let k = resolve(&["--kube-config", "/etc/kube.conf", "--node-name", "n3"])
            .unwrap()
            .expect("--kube-config implies --kubernetes");
        assert_eq!(
            k.config.api,
            kiln_kube::ApiSource::Kubeconfig("/etc/kube.conf".into())
        );

        assert!(
            resolve(&["--node-name", "n4"]).unwrap().is_none(),
            "off by default"
        );
        assert!(
            resolve(&["--kubernetes", "--no-kubernetes", "--node-name", "n5"])
                .unwrap()
                .is_none(),
            "--no-kubernetes wins"
        );
        assert!(resolve(&["--kube-api-server", "http://x", "--no-kubernetes"]).is_err());
        assert!(resolve(&["--kube-api-server", "http://x", "--kube-config", "f"]).is_err());
    }

    #[test]
    fn explicit_kubernetes_without_a_node_name_is_an_error() {
        if std::env::var_os("NODE_NAME").is_some() {
            return; // the environment names the node
        }
        let e = resolve(&["--kubernetes"]).unwrap_err().to_string();
        assert!(e.contains("--node-name"), "{e}");
    }
}
