//! Names of the meta labels this crate discovers, and of the labels the
//! default rules produce. Meta labels start with `__meta_` and are removed
//! after relabeling, so they never reach a profile unless a rule copies them.

/// Process id (tgid) as decimal.
pub const PROCESS_PID: &str = "__meta_process_pid";
/// `comm` of the process (main thread name, at most 15 bytes).
pub const PROCESS_COMM: &str = "__meta_process_comm";
/// Set only for kernel threads (`PF_KTHREAD`): the thread name normalized to its kind,
/// e.g. `kworker` for `kworker/u8:3+flush-254:0` (see [`crate::kthread::normalize`]).
pub const PROCESS_KERNEL_THREAD: &str = "__meta_process_kernel_thread";
/// Target of `/proc/<pid>/exe`.
pub const PROCESS_EXECUTABLE_PATH: &str = "__meta_process_executable_path";
/// File name of [`PROCESS_EXECUTABLE_PATH`]; absent for programs run from a memfd
/// (`/memfd:<name>`), whose names are chosen at run time.
pub const PROCESS_EXECUTABLE_NAME: &str = "__meta_process_executable_name";
/// Arguments joined by spaces; only present when `include_cmdline` is set,
/// because command lines often carry secrets.
pub const PROCESS_CMDLINE: &str = "__meta_process_cmdline";
/// The cgroup path that identifies the process (see [`crate::cgroup`]).
pub const CGROUP_PATH: &str = "__meta_cgroup_path";
/// 64-hex container id parsed from the cgroup path.
pub const CONTAINER_ID: &str = "__meta_container_id";
/// Kubernetes pod UID, with `_` normalized to `-`.
pub const KUBERNETES_POD_UID: &str = "__meta_kubernetes_pod_uid";
/// `guaranteed`, `burstable` or `besteffort`.
pub const KUBERNETES_POD_QOS_CLASS: &str = "__meta_kubernetes_pod_qos_class";
/// Prefix of allow-listed environment variables: `__meta_env_var_<NAME>`.
pub const ENV_VAR_PREFIX: &str = "__meta_env_var_";
/// Host name of the machine (or the configured override).
pub const HOST_NAME: &str = "__meta_host_name";
/// The service name this crate would pick when nothing else sets one
/// (see [`crate::defaults`]).
pub const INFERRED_SERVICE_NAME: &str = "__meta_inferred_service_name";

/// Labels a [`crate::MetaLabelProvider`] (e.g. a Kubernetes or Docker
/// watcher) is expected to supply; the inference and default rules use them
/// when present.
pub const KUBERNETES_NAMESPACE: &str = "__meta_kubernetes_namespace";
/// Pod name, from a Kubernetes watcher.
pub const KUBERNETES_POD_NAME: &str = "__meta_kubernetes_pod_name";
/// Container name inside the pod, from a Kubernetes watcher.
pub const KUBERNETES_CONTAINER_NAME: &str = "__meta_kubernetes_container_name";
/// Container name from a container runtime watcher (Docker, Podman).
pub const CONTAINER_NAME: &str = "__meta_container_name";

/// Final label for the service; always present on a kept target.
pub const SERVICE_NAME: &str = "service_name";

/// The meta label carrying environment variable `name`.
pub fn env_var(name: &str) -> String {
    format!("{ENV_VAR_PREFIX}{name}")
}
