//! Turning a pid into a [`Target`]: reading `/proc`, asking providers,
//! relabeling, and caching the result.
//!
//! Cache policy: entries are keyed by pid and trusted until the agent calls
//! [`Discoverer::forget`] (process exit), [`Discoverer::refresh_on_exec`]
//! (exec changes exe, comm and possibly cgroup) or
//! [`Discoverer::invalidate_all`] (e.g. a provider learned new pods). A hit
//! costs no syscalls. [`Discoverer::prune_exited`] catches missed exit
//! events and pid reuse by comparing start times. At most
//! `cache_capacity` targets are kept (default [`DEFAULT_CACHE_CAPACITY`],
//! about a few MiB at typical label sizes); when full, the least recently
//! used eighth is evicted at once so eviction stays amortized O(1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use procfs::process::Process;
use procfs::ProcError;

use crate::cgroup;
use crate::defaults::{default_rules, infer_service_name};
use crate::environ::{self, EnvAllowList};
use crate::kthread;
use crate::labels::{finalize, Labels};
use crate::meta;
use crate::relabel::{self, RelabelConfig, RelabelConfigError};
use crate::target::Target;

/// Default maximum number of cached targets.
pub const DEFAULT_CACHE_CAPACITY: usize = 16_384;

/// What the discoverer needs to know; see [`crate::AgentConfig::discovery_options`].
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Where procfs is mounted; `/proc` by default.
    pub proc_root: PathBuf,
    /// Environment variables to read, and their final label names.
    pub env_labels: EnvAllowList,
    /// Labels added to every target before relabeling.
    pub static_labels: Labels,
    /// Whether to read `__meta_process_cmdline`.
    pub include_cmdline: bool,
    /// Fixed `service_name`, set before relabeling.
    pub service_name: Option<String>,
    /// Host name override; otherwise `<proc_root>/sys/kernel/hostname`.
    pub hostname: Option<String>,
    /// Run [`crate::defaults::default_rules`] before `relabel_configs`.
    pub default_relabel_rules: bool,
    /// User rules.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Maximum number of cached targets (at least 1).
    pub cache_capacity: usize,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            proc_root: PathBuf::from("/proc"),
            env_labels: EnvAllowList::default(),
            static_labels: Labels::new(),
            include_cmdline: false,
            service_name: None,
            hostname: None,
            default_relabel_rules: true,
            relabel_configs: Vec::new(),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// The identity a [`MetaLabelProvider`] is asked about.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    /// Process id.
    pub pid: u32,
    /// Container id from the cgroup path, if any.
    pub container_id: Option<&'a str>,
    /// Kubernetes pod UID from the cgroup path, if any.
    pub pod_uid: Option<&'a str>,
}

/// Extension point for metadata this crate cannot see in `/proc`, such as
/// a Kubernetes watcher mapping pod UIDs to `__meta_kubernetes_pod_name`,
/// `__meta_kubernetes_namespace` and container ids to
/// `__meta_kubernetes_container_name`, or a Docker watcher supplying
/// `__meta_container_name`.
///
/// Only names starting with `__meta_` are accepted, and they never replace
/// labels discovered from `/proc`. Results are cached with the target: call
/// [`Discoverer::invalidate_all`] when the provider's knowledge changes.
pub trait MetaLabelProvider: Send + Sync {
    /// Extra meta labels for a workload; empty when unknown.
    fn meta_labels(&self, workload: &Workload<'_>) -> Labels;
}

/// Why a pid has no target.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The process exited (or is a zombie) before it could be read.
    #[error("process {pid} has exited")]
    Vanished {
        /// The pid.
        pid: u32,
    },
    /// Reading `/proc/<pid>` failed for another reason (e.g. permissions).
    /// The error names the file, never its contents.
    #[error("cannot read process {pid}: {source}")]
    Proc {
        /// The pid.
        pid: u32,
        /// The procfs error.
        #[source]
        source: ProcError,
    },
}

/// Why a [`Discoverer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiscovererError {
    /// A relabel rule is invalid.
    #[error("relabel_configs[{index}]: {source}")]
    Relabel {
        /// Position among the user rules.
        index: usize,
        /// What is wrong.
        #[source]
        source: RelabelConfigError,
    },
    /// `cache_capacity` is zero.
    #[error("cache capacity must be at least 1")]
    ZeroCapacity,
}

/// Counters, for the agent's own metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Lookups that read `/proc`.
    pub cache_misses: u64,
    /// Lookups for processes that had exited.
    pub vanished: u64,
    /// Lookups that failed for other reasons.
    pub errors: u64,
    /// Discovered targets that a rule dropped.
    pub dropped: u64,
    /// Optional fields (exe, cmdline, cgroup, environ) that could not be
    /// read for a live process, e.g. for lack of permission.
    pub partial_reads: u64,
    /// Entries evicted because the cache was full.
    pub evicted: u64,
}

struct CacheEntry {
    target: Arc<Target>,
    last_used: u64,
}

/// Finds and caches targets. Not thread-safe by itself; the agent owns it
/// from one task (wrap it in a `Mutex` to share).
pub struct Discoverer {
    options: DiscoveryOptions,
    rules: Vec<RelabelConfig>,
    host_name: Option<String>,
    providers: Vec<Arc<dyn MetaLabelProvider>>,
    cache: HashMap<u32, CacheEntry>,
    clock: u64,
    stats: DiscoveryStats,
}

impl std::fmt::Debug for Discoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discoverer")
            .field("options", &self.options)
            .field("providers", &self.providers.len())
            .field("cached", &self.cache.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Discoverer {
    /// Validates the rules and reads the host name.
    pub fn new(options: DiscoveryOptions) -> Result<Self, DiscovererError> {
        if options.cache_capacity == 0 {
            return Err(DiscovererError::ZeroCapacity);
        }
        for (index, rule) in options.relabel_configs.iter().enumerate() {
            rule.validate()
                .map_err(|source| DiscovererError::Relabel { index, source })?;
        }
        let mut rules = if options.default_relabel_rules {
            default_rules(&options.env_labels)
        } else {
            Vec::new()
        };
        rules.extend(options.relabel_configs.iter().cloned());
        let host_name = options
            .hostname
            .clone()
            .or_else(|| read_host_name(&options.proc_root));
        Ok(Self {
            options,
            rules,
            host_name,
            providers: Vec::new(),
            cache: HashMap::new(),
            clock: 0,
            stats: DiscoveryStats::default(),
        })
    }

    /// Registers a provider; later providers cannot override earlier ones.
    /// Clears the cache so existing targets pick up its labels.
    pub fn add_provider(&mut self, provider: Arc<dyn MetaLabelProvider>) {
        self.providers.push(provider);
        self.invalidate_all();
    }

    /// The rules in effect: default rules (if enabled) then user rules.
    pub fn rules(&self) -> &[RelabelConfig] {
        &self.rules
    }

    /// The target for `pid`, or `None` if the process is gone, unreadable,
    /// or dropped by relabeling (see [`DiscoveryStats`] for which).
    pub fn target(&mut self, pid: u32) -> Option<Arc<Target>> {
        self.lookup(pid).ok().filter(|t| !t.is_dropped())
    }

    /// Like [`Discoverer::target`] but also returns dropped targets and the
    /// reason for a failure; for the `targets` command.
    pub fn lookup(&mut self, pid: u32) -> Result<Arc<Target>, DiscoverError> {
        self.clock += 1;
        if let Some(entry) = self.cache.get_mut(&pid) {
            entry.last_used = self.clock;
            self.stats.cache_hits += 1;
            return Ok(Arc::clone(&entry.target));
        }
        self.stats.cache_misses += 1;
        let target = match self.read_target(pid) {
            Ok((t, partial_reads)) => {
                self.stats.partial_reads += partial_reads;
                Arc::new(t)
            }
            Err(e) => {
                match e {
                    DiscoverError::Vanished { .. } => self.stats.vanished += 1,
                    DiscoverError::Proc { .. } => self.stats.errors += 1,
                }
                return Err(e);
            }
        };
        if target.is_dropped() {
            self.stats.dropped += 1;
        }
        if self.cache.len() >= self.options.cache_capacity {
            self.evict_least_recently_used();
        }
        self.cache.insert(
            pid,
            CacheEntry {
                target: Arc::clone(&target),
                last_used: self.clock,
            },
        );
        Ok(target)
    }

    /// Forgets a pid (call on process exit).
    pub fn forget(&mut self, pid: u32) {
        self.cache.remove(&pid);
    }

    /// Re-reads a process after `exec`, which changes its executable and
    /// often its labels.
    pub fn refresh_on_exec(&mut self, pid: u32) -> Option<Arc<Target>> {
        self.forget(pid);
        self.target(pid)
    }

    /// Empties the cache.
    pub fn invalidate_all(&mut self) {
        self.cache.clear();
    }

    /// Removes cached targets whose process has exited or whose pid now
    /// belongs to another process. Returns how many were removed.
    pub fn prune_exited(&mut self) -> usize {
        let root = self.options.proc_root.clone();
        let before = self.cache.len();
        self.cache.retain(|&pid, entry| {
            Process::new_with_root(root.join(pid.to_string()))
                .and_then(|p| p.stat())
                .is_ok_and(|s| s.state != 'Z' && s.starttime == entry.target.start_time())
        });
        before - self.cache.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// Number of cached targets.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The configured cache bound.
    pub fn cache_capacity(&self) -> usize {
        self.options.cache_capacity
    }

    /// Pids currently listed under the proc root, ascending. A pid listed
    /// here may be gone by the time it is looked up.
    pub fn list_pids(&self) -> std::io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.options.proc_root)?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    fn evict_least_recently_used(&mut self) {
        let count = (self.options.cache_capacity / 8)
            .max(1)
            .min(self.cache.len());
        let mut ages: Vec<(u64, u32)> = self
            .cache
            .iter()
            .map(|(&pid, e)| (e.last_used, pid))
            .collect();
        if count < ages.len() {
            ages.select_nth_unstable(count);
        }
        for &(_, pid) in &ages[..count] {
            self.cache.remove(&pid);
        }
        self.stats.evicted += count as u64;
    }

    /// Reads and relabels one process without touching the cache or counters.
    pub fn discover(&self, pid: u32) -> Result<Target, DiscoverError> {
        self.read_target(pid).map(|(target, _)| target)
    }

    /// Returns the target and the number of optional fields that failed.
    fn read_target(&self, pid: u32) -> Result<(Target, u64), DiscoverError> {
        let mut partial = 0u64;
        let fail = |source: ProcError| classify(pid, source);
        let process =
            Process::new_with_root(self.options.proc_root.join(pid.to_string())).map_err(fail)?;
        let stat = process.stat().map_err(fail)?;
        if stat.state == 'Z' {
            return Err(DiscoverError::Vanished { pid });
        }

        let mut labels = Labels::new();
        let mut put = |name: &str, value: String| {
            labels.insert(name.to_owned(), value);
        };
        put(meta::PROCESS_PID, pid.to_string());
        put(meta::PROCESS_COMM, stat.comm.clone());
        if kthread::is_kernel_thread(stat.flags) {
            put(meta::PROCESS_KERNEL_THREAD, kthread::normalize(&stat.comm));
        }

        // Optional fields: a kernel thread has no exe, and a non-root agent
        // may not read another user's; the liveness check below tells an
        // exit apart from those.
        let mut optional = |r: Result<(), ProcError>| {
            if r.is_err() {
                partial += 1;
            }
        };
        let mut exe = None;
        optional(process.exe().map(|p| exe = Some(p)).or_else(absent_ok));
        let mut python = false;
        if let Some(path) = exe {
            let path = path.to_string_lossy();
            let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_owned();
            // A program run from a memfd (`/memfd:<name>`) has a name chosen at run time,
            // often random: no executable name, so the service falls back to comm.
            let memfd = path.starts_with(MEMFD_PREFIX);
            if let Some(name) = Path::new(&path).file_name().filter(|_| !memfd) {
                let name = name.to_string_lossy().into_owned();
                python = crate::python::is_python(&name);
                put(meta::PROCESS_EXECUTABLE_NAME, name);
            }
            put(meta::PROCESS_EXECUTABLE_PATH, path);
        }
        if python {
            // The script or module names a Python service (argv only).
            let mut args = Vec::new();
            optional(process.cmdline().map(|a| args = a).or_else(absent_ok));
            if let Some(name) = crate::python::service_name(&args) {
                put(crate::python::PYTHON_SERVICE_NAME, name);
            }
        }
        if self.options.include_cmdline {
            let mut args = Vec::new();
            optional(process.cmdline().map(|a| args = a).or_else(absent_ok));
            if !args.is_empty() {
                put(meta::PROCESS_CMDLINE, args.join(" "));
            }
        }
        let mut cgroups = Vec::new();
        optional(
            process
                .cgroups()
                .map(|g| cgroups = cgroup::from_procfs(g))
                .or_else(absent_ok),
        );
        let info = cgroup::analyze(&cgroups);
        if let Some(path) = info.path {
            put(meta::CGROUP_PATH, path);
        }
        if let Some(id) = &info.container_id {
            put(meta::CONTAINER_ID, id.clone());
        }
        if let Some(uid) = &info.pod_uid {
            put(meta::KUBERNETES_POD_UID, uid.clone());
        }
        if let Some(qos) = info.qos_class {
            put(meta::KUBERNETES_POD_QOS_CLASS, qos.as_str().to_owned());
        }
        let mut env = Default::default();
        optional(
            environ::read_allowed(&process, &self.options.env_labels)
                .map(|e| env = e)
                .or_else(absent_ok),
        );
        for (name, value) in env {
            put(&meta::env_var(&name), value);
        }
        if let Some(host) = &self.host_name {
            put(meta::HOST_NAME, host.clone());
        }

        // The process may have exited while we read it; then the data above
        // may be incomplete, so report it as vanished.
        if !process.is_alive() {
            return Err(DiscoverError::Vanished { pid });
        }

        let workload = Workload {
            pid,
            container_id: info.container_id.as_deref(),
            pod_uid: info.pod_uid.as_deref(),
        };
        Ok((
            self.finish_target(pid, stat.starttime, labels, &workload),
            partial,
        ))
    }

    /// The target of a process that exited before it could be read, from what outlives
    /// it: its pid and `comm` (which the sampler recorded), the host name, providers'
    /// labels for a bare pid, static labels, and relabeling. Its samples can then still
    /// be exported under the service its name suggests, rather than be lost. Not cached:
    /// the pid may be reused.
    ///
    /// `kernel_thread` is the caller's evidence that the process was a kernel thread
    /// (e.g. none of its stacks had a user frame); it then joins the `kernel` service
    /// like a live kernel thread does.
    pub fn exited_target(&self, pid: u32, comm: &str, kernel_thread: bool) -> Target {
        let mut labels = Labels::new();
        labels.insert(meta::PROCESS_PID.to_owned(), pid.to_string());
        labels.insert(meta::PROCESS_COMM.to_owned(), comm.to_owned());
        if kernel_thread {
            labels.insert(
                meta::PROCESS_KERNEL_THREAD.to_owned(),
                kthread::normalize(comm),
            );
        }
        if let Some(host) = &self.host_name {
            labels.insert(meta::HOST_NAME.to_owned(), host.clone());
        }
        let workload = Workload {
            pid,
            container_id: None,
            pod_uid: None,
        };
        self.finish_target(pid, 0, labels, &workload)
    }

    /// Adds providers' labels, the inferred service name and static labels to a
    /// process's meta labels, then relabels.
    fn finish_target(
        &self,
        pid: u32,
        start_time: u64,
        mut labels: Labels,
        workload: &Workload<'_>,
    ) -> Target {
        for provider in &self.providers {
            for (name, value) in provider.meta_labels(workload) {
                if name.starts_with("__meta_") {
                    labels.entry(name).or_insert(value);
                }
            }
        }
        labels.insert(
            meta::INFERRED_SERVICE_NAME.to_owned(),
            infer_service_name(&labels),
        );
        for (name, value) in &self.options.static_labels {
            labels.insert(name.clone(), value.clone());
        }
        if let Some(service) = &self.options.service_name {
            labels.insert(meta::SERVICE_NAME.to_owned(), service.clone());
        }

        let relabeled = relabel::process(labels.clone(), &self.rules).map(|mut l| {
            finalize(&mut l);
            l
        });
        Target::new(pid, start_time, labels, relabeled)
    }
}

/// Treats "not found" on an optional file as absent rather than an error.
fn absent_ok(e: ProcError) -> Result<(), ProcError> {
    match e {
        ProcError::NotFound(_) => Ok(()),
        other => Err(other),
    }
}

fn classify(pid: u32, source: ProcError) -> DiscoverError {
    let gone = match &source {
        ProcError::NotFound(_) | ProcError::Incomplete(_) => true,
        ProcError::Io(e, _) => e.raw_os_error() == Some(ESRCH),
        _ => false,
    };
    if gone {
        DiscoverError::Vanished { pid }
    } else {
        DiscoverError::Proc { pid, source }
    }
}

/// What `/proc/<pid>/exe` starts with for a program executed from a memfd.
const MEMFD_PREFIX: &str = "/memfd:";

/// Linux `ESRCH` ("no such process"), returned by reads of an exited
/// process's files.
const ESRCH: i32 = 3;

fn read_host_name(proc_root: &Path) -> Option<String> {
    let name = std::fs::read_to_string(proc_root.join("sys/kernel/hostname")).ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}
