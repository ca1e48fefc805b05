//! Per-process labels for Kiln profiles.
//!
//! The pipeline follows Prometheus service discovery:
//!
//! 1. **Meta labels.** [`Discoverer`] reads `/proc/<pid>` (via `procfs`)
//!    and produces `__meta_*` labels: `__meta_process_pid`, `_comm`,
//!    `_executable_path`, `_executable_name`, `_cmdline` (only with
//!    `include_cmdline`), `__meta_cgroup_path`, `__meta_container_id`,
//!    `__meta_kubernetes_pod_uid`, `__meta_kubernetes_pod_qos_class`
//!    (see [`cgroup`] for the recognized layouts), `__meta_env_var_<NAME>`
//!    for allow-listed environment variables only (see [`environ`]), and
//!    `__meta_host_name`, and for kernel threads
//!    `__meta_process_kernel_thread` (see [`kthread`]). A [`MetaLabelProvider`] can add more (e.g.
//!    Kubernetes pod and container names) keyed by container id or pod
//!    UID. `__meta_inferred_service_name` carries the fallback service name.
//!    Static labels and the configured `service_name` join the set as
//!    ordinary labels.
//! 2. **Relabeling.** The default rules ([`defaults`]) and then the user's
//!    `relabel_configs` run with Prometheus semantics ([`relabel`]); `keep`
//!    and `drop` can exclude a process from profiling.
//! 3. **Final labels.** Names starting with `__` (except `__name__`) and
//!    empty values are removed. The result, sorted, plus a stable
//!    [`Target::series_key`], is the [`Target`] the agent attaches to
//!    samples.
//!
//! With no configuration, a target carries `service_name` (inferred:
//! container/pod name from a provider, else the executable name),
//! `hostname`, `process` (executable name), for kernel threads
//! `service_name="kernel"` and `kernel_thread` (e.g. `kworker`), and `container_id`, `pod_uid`,
//! `qos_class` when the process runs in a container or pod; each
//! `env_labels` entry `REGION = "region"` adds `region` from the process's
//! `REGION` variable, and static labels are added as given. `pid` is not a
//! default label because it would make every process its own series.
//!
//! ```no_run
//! use kiln_labels::{AgentConfig, Discoverer};
//!
//! let config = AgentConfig::from_toml_str(r#"
//!     [static_labels]
//!     region = "us-east-1"
//!     [env_labels]
//!     APP_VERSION = "version"
//! "#)?;
//! let mut discoverer = Discoverer::new(config.discovery_options()?)?;
//! if let Some(target) = discoverer.target(std::process::id()) {
//!     println!("{}", kiln_labels::targets::format_target(&target));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cgroup;
pub mod config;
pub mod defaults;
pub mod discover;
pub mod environ;
pub mod kthread;
pub mod labels;
pub mod meta;
pub mod python;
pub mod relabel;
pub mod target;
pub mod targets;

pub use config::{AgentConfig, BasicAuth, ConfigError, ExporterConfig, Secret};
pub use discover::{
    DiscoverError, Discoverer, DiscovererError, DiscoveryOptions, DiscoveryStats,
    MetaLabelProvider, Workload, DEFAULT_CACHE_CAPACITY,
};
pub use environ::{EnvAllowList, EnvAllowListError};
pub use labels::Labels;
pub use relabel::{Action, RelabelConfig, RelabelConfigError, RelabelRegex};
pub use target::Target;
