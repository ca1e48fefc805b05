//! The built-in relabel rules and `service_name` inference.
//!
//! Default final labels (each only when its source is present and
//! non-empty):
//!
//! | final label    | source                                         |
//! |----------------|------------------------------------------------|
//! | `service_name` | configured `service_name`, else inferred (below) |
//! | `hostname`     | `__meta_host_name`                             |
//! | `process`      | `__meta_process_executable_name`               |
//! | `kernel_thread`| `__meta_process_kernel_thread` (kernel threads: the thread's kind, e.g. `kworker`) |
//! | `container_id` | `__meta_container_id`                          |
//! | `pod_uid`      | `__meta_kubernetes_pod_uid`                    |
//! | `qos_class`    | `__meta_kubernetes_pod_qos_class`              |
//! | `namespace`, `pod`, `container` | `__meta_kubernetes_namespace`, `_pod_name`, `_container_name` (from a provider) |
//! | `region`, `zone` | node labels `topology.kubernetes.io/region`, `/zone` (legacy `failure-domain.beta.kubernetes.io/*` as fallback), as `__meta_kubernetes_node_label_*` from a provider |
//! | `<label>`      | `__meta_env_var_<NAME>` for each `NAME = "label"` in `env_labels` |
//!
//! plus the static labels, which are part of the label set before
//! relabeling. `pid`, `comm`, the cgroup path and the command line are
//! deliberately not final labels by default: each process would become its
//! own series (pid) or values get long and unbounded (cmdline). A user rule
//! such as `source_labels = ["__meta_process_pid"], target_label = "pid"`
//! adds them.
//!
//! Inference order for `service_name`: a pod annotation
//! `pyroscope.io/service_name` (or `-name`; as
//! `__meta_kubernetes_pod_annotation_pyroscope_io_service_name`) or
//! `kiln.dev/service-name`, else the Kubernetes container name, else pod
//! name (both as `<namespace>/<name>` when the namespace is known), else a
//! runtime container name (`__meta_container_name`), else `kernel` for a
//! kernel thread (its kind is the `kernel_thread` label; see
//! [`crate::kthread`]), else the script or module a Python interpreter runs
//! (`python3 app.py` → `app`, `python -m pkg.worker` → `pkg.worker`;
//! [`crate::python`]), else the executable name (absent for programs run
//! from a memfd), else `comm`, else `unknown`.
//! The inferred value is published as `__meta_inferred_service_name` and a
//! default rule copies it only when `service_name` is still empty, so a
//! configured or static `service_name` wins and user rules can override both.

use crate::environ::EnvAllowList;
use crate::kthread::{KERNEL_SERVICE_NAME, KERNEL_THREAD_LABEL};
use crate::labels::Labels;
use crate::meta;
use crate::relabel::RelabelConfig;

/// Node label `topology.kubernetes.io/region`, as a provider exposes it.
pub const NODE_REGION: &str = "__meta_kubernetes_node_label_topology_kubernetes_io_region";
/// Node label `topology.kubernetes.io/zone`.
pub const NODE_ZONE: &str = "__meta_kubernetes_node_label_topology_kubernetes_io_zone";
/// Deprecated node label `failure-domain.beta.kubernetes.io/region`.
pub const LEGACY_NODE_REGION: &str =
    "__meta_kubernetes_node_label_failure_domain_beta_kubernetes_io_region";
/// Deprecated node label `failure-domain.beta.kubernetes.io/zone`.
pub const LEGACY_NODE_ZONE: &str =
    "__meta_kubernetes_node_label_failure_domain_beta_kubernetes_io_zone";
/// Pod annotations naming the service, in order of preference
/// (`pyroscope.io/service_name` as Grafana's agent reads it, then Kiln's own).
pub const SERVICE_NAME_ANNOTATIONS: &[&str] = &[
    "__meta_kubernetes_pod_annotation_pyroscope_io_service_name",
    "__meta_kubernetes_pod_annotation_kiln_dev_service_name",
];

/// The default rules for an env allow-list, in the order they run (before
/// user rules).
pub fn default_rules(env: &EnvAllowList) -> Vec<RelabelConfig> {
    let copy = |source: &str, target: &str| RelabelConfig::replace(&[source], "(.+)", target, "$1");
    let mut rules = vec![
        // Only when service_name is empty: the joined value starts with ';'.
        RelabelConfig::replace(
            &[meta::SERVICE_NAME, meta::INFERRED_SERVICE_NAME],
            ";(.+)",
            meta::SERVICE_NAME,
            "$1",
        ),
        copy(meta::HOST_NAME, "hostname"),
        copy(meta::PROCESS_EXECUTABLE_NAME, "process"),
        copy(meta::PROCESS_KERNEL_THREAD, KERNEL_THREAD_LABEL),
        copy(meta::CONTAINER_ID, "container_id"),
        copy(meta::KUBERNETES_POD_UID, "pod_uid"),
        copy(meta::KUBERNETES_POD_QOS_CLASS, "qos_class"),
        copy(meta::KUBERNETES_NAMESPACE, "namespace"),
        copy(meta::KUBERNETES_POD_NAME, "pod"),
        copy(meta::KUBERNETES_CONTAINER_NAME, "container"),
        // The legacy topology labels first, so the current ones win.
        copy(LEGACY_NODE_REGION, "region"),
        copy(LEGACY_NODE_ZONE, "zone"),
        copy(NODE_REGION, "region"),
        copy(NODE_ZONE, "zone"),
    ];
    // `(.+)`: an empty variable leaves a static label of the same name alone.
    rules.extend(
        env.iter()
            .map(|(variable, label)| copy(&meta::env_var(variable), label)),
    );
    rules
}

/// The service name to use when nothing else sets one (see module docs).
pub fn infer_service_name(meta_labels: &Labels) -> String {
    let get = |name: &str| meta_labels.get(name).filter(|v| !v.is_empty());
    let namespaced = |name: &String| match get(meta::KUBERNETES_NAMESPACE) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.clone(),
    };
    if let Some(name) = SERVICE_NAME_ANNOTATIONS.iter().find_map(|a| get(a)) {
        return name.clone();
    }
    if let Some(c) = get(meta::KUBERNETES_CONTAINER_NAME) {
        return namespaced(c);
    }
    if let Some(p) = get(meta::KUBERNETES_POD_NAME) {
        return namespaced(p);
    }
    if let Some(c) = get(meta::CONTAINER_NAME) {
        return c.clone();
    }
    if get(meta::PROCESS_KERNEL_THREAD).is_some() {
        return KERNEL_SERVICE_NAME.to_owned();
    }
    [
        crate::python::PYTHON_SERVICE_NAME,
        meta::PROCESS_EXECUTABLE_NAME,
        meta::PROCESS_COMM,
    ]
    .iter()
    .find_map(|name| get(name).cloned())
    .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::finalize;
    use crate::relabel::process;

    use crate::labels::labels_from as set;

    #[test]
    fn inference_order() {
        let full = [
            (meta::KUBERNETES_NAMESPACE, "shop"),
            (meta::KUBERNETES_CONTAINER_NAME, "api"),
            (meta::KUBERNETES_POD_NAME, "api-7d9f"),
            (meta::CONTAINER_NAME, "k8s_api_x"),
            (meta::PROCESS_EXECUTABLE_NAME, "java"),
            (meta::PROCESS_COMM, "C2 Compiler"),
        ];
        assert_eq!(infer_service_name(&set(&full)), "shop/api");
        assert_eq!(infer_service_name(&set(&full[1..])), "api");
        assert_eq!(infer_service_name(&set(&full[2..])), "api-7d9f");
        assert_eq!(infer_service_name(&set(&full[3..])), "k8s_api_x");
        assert_eq!(infer_service_name(&set(&full[4..])), "java");
        assert_eq!(infer_service_name(&set(&full[5..])), "C2 Compiler");
        assert_eq!(infer_service_name(&set(&[])), "unknown");
        assert_eq!(
            infer_service_name(&set(&[
                (meta::PROCESS_KERNEL_THREAD, "kworker"),
                (meta::PROCESS_COMM, "kworker/u8:3+flush-254:0"),
            ])),
            "kernel"
        );
        // Empty values do not count as known.
        assert_eq!(
            infer_service_name(&set(&[
                (meta::KUBERNETES_CONTAINER_NAME, ""),
                (meta::PROCESS_EXECUTABLE_NAME, "x")
            ])),
            "x"
        );
    }

    fn final_labels(input: &[(&str, &str)], env: &EnvAllowList) -> Labels {
        let mut out = process(set(input), &default_rules(env)).expect("defaults never drop");
        finalize(&mut out);
        out
    }

    #[test]
    fn default_final_label_set() {
        let env = EnvAllowList::new([("REGION", "region")]).expect("valid");
        let out = final_labels(
            &[
                (meta::PROCESS_PID, "42"),
                (meta::PROCESS_COMM, "sleep"),
                (meta::PROCESS_EXECUTABLE_NAME, "sleep"),
                (meta::PROCESS_EXECUTABLE_PATH, "/usr/bin/sleep"),
                (meta::CGROUP_PATH, "/docker/abc"),
                (meta::CONTAINER_ID, "abc"),
                (meta::KUBERNETES_POD_UID, "uid"),
                (meta::KUBERNETES_POD_QOS_CLASS, "burstable"),
                (meta::HOST_NAME, "node-1"),
                ("__meta_env_var_REGION", "us-west-1"),
                (meta::INFERRED_SERVICE_NAME, "sleep"),
                ("team", "core"),
            ],
            &env,
        );
        assert_eq!(
            out,
            set(&[
                ("service_name", "sleep"),
                ("hostname", "node-1"),
                ("process", "sleep"),
                ("container_id", "abc"),
                ("pod_uid", "uid"),
                ("qos_class", "burstable"),
                ("region", "us-west-1"),
                ("team", "core"),
            ])
        );
    }

    #[test]
    fn kernel_threads_are_one_service_labeled_by_kind() {
        let out = final_labels(
            &[
                (meta::PROCESS_PID, "77"),
                (meta::PROCESS_COMM, "kworker/u8:3+flush-254:0"),
                (meta::PROCESS_KERNEL_THREAD, "kworker"),
                (meta::HOST_NAME, "node-1"),
                (meta::INFERRED_SERVICE_NAME, "kernel"),
            ],
            &EnvAllowList::default(),
        );
        assert_eq!(
            out,
            set(&[
                ("service_name", "kernel"),
                ("kernel_thread", "kworker"),
                ("hostname", "node-1"),
            ])
        );
    }

    #[test]
    fn service_name_annotation_beats_container_name() {
        let base = [
            (meta::KUBERNETES_NAMESPACE, "shop"),
            (meta::KUBERNETES_CONTAINER_NAME, "api"),
        ];
        let mut with = base.to_vec();
        with.push((SERVICE_NAME_ANNOTATIONS[1], "kiln-named"));
        assert_eq!(infer_service_name(&set(&with)), "kiln-named");
        with.push((SERVICE_NAME_ANNOTATIONS[0], "pyro-named"));
        assert_eq!(infer_service_name(&set(&with)), "pyro-named");
        let mut empty = base.to_vec();
        empty.push((SERVICE_NAME_ANNOTATIONS[0], ""));
        assert_eq!(infer_service_name(&set(&empty)), "shop/api");
    }

    #[test]
    fn node_topology_labels_become_region_and_zone() {
        let env = EnvAllowList::default();
        let out = final_labels(
            &[
                (LEGACY_NODE_REGION, "old-region"),
                (LEGACY_NODE_ZONE, "old-zone"),
                (NODE_REGION, "eu-west-1"),
            ],
            &env,
        );
        assert_eq!(out["region"], "eu-west-1", "current label beats legacy");
        assert_eq!(out["zone"], "old-zone", "legacy label is the fallback");
        let out = final_labels(&[("region", "static")], &env);
        assert_eq!(
            out["region"], "static",
            "absent node label leaves static alone"
        );
    }

    #[test]
    fn configured_service_name_beats_inference() {
        let out = final_labels(
            &[
                ("service_name", "checkout"),
                (meta::INFERRED_SERVICE_NAME, "java"),
            ],
            &EnvAllowList::default(),
        );
        assert_eq!(out["service_name"], "checkout");
    }

    #[test]
    fn absent_sources_do_not_clobber_static_labels() {
        let env = EnvAllowList::new([("REGION", "region")]).expect("valid");
        let out = final_labels(&[("region", "static"), ("namespace", "static-ns")], &env);
        assert_eq!(out["region"], "static");
        assert_eq!(out["namespace"], "static-ns");
        let out = final_labels(&[("region", "static"), ("__meta_env_var_REGION", "")], &env);
        assert_eq!(out["region"], "static");
        let out = final_labels(
            &[("region", "static"), ("__meta_env_var_REGION", "env")],
            &env,
        );
        assert_eq!(out["region"], "env", "per-process env is more specific");
    }
}
