//! Parsing `/proc/<pid>/cgroup` into a cgroup path, container id and
//! Kubernetes pod identity.
//!
//! Path selection: a process has one path per hierarchy (`0::` for the v2
//! unified hierarchy, `<id>:<controllers>:` for each v1 hierarchy). The
//! candidates are tried in the order v2, v1 `name=systemd`, v1 `cpu`
//! (alone or co-mounted, e.g. `cpu,cpuacct`), then the remaining v1
//! hierarchies in file order. The first candidate whose path names a
//! container or pod is reported; if none does, the first one that is not
//! `/`; otherwise `/`. This prefers the unified path on v2 and hybrid hosts
//! but still finds containers that a v1-only runtime placed in, say, the
//! `pids` hierarchy while the unified path stays at the root.
//!
//! Recognized forms (the last matching path component wins, so a scope
//! nested inside a container scope, e.g. `.../docker-<id>.scope/init.scope`,
//! still yields the container):
//! - cgroupfs driver: `/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`,
//!   `/kubepods/pod<uid>/<id>` (guaranteed), `.../crio-<id>`;
//! - systemd driver: `docker-<id>.scope`, `cri-containerd-<id>.scope`,
//!   `crio-<id>.scope`, `libpod-<id>.scope` (e.g. under `/machine.slice/`),
//!   `kubepods-<qos>-pod<uid_with_underscores>.slice`,
//!   `kubepods-pod<uid>.slice` (guaranteed).
//!
//! `conmon` scopes (`crio-conmon-<id>.scope`, `libpod-conmon-<id>.scope`)
//! belong to the runtime monitor, not the container, and are ignored.

use std::fmt;

use procfs::FromBufRead;
use procfs::ProcessCGroups;

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// 0 for the v2 unified hierarchy.
    pub hierarchy_id: u32,
    /// v1 controllers (`cpu`, `name=systemd`, ...); empty for v2.
    pub controllers: Vec<String>,
    /// Path relative to the hierarchy's mount point.
    pub path: String,
}

impl CgroupEntry {
    fn is_unified(&self) -> bool {
        self.hierarchy_id == 0 && self.controllers.is_empty()
    }

    fn has_controller(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == name)
    }
}

/// Kubernetes pod quality-of-service class, as encoded in kubepods paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Pods placed directly under `kubepods`.
    Guaranteed,
    /// Pods under `kubepods/burstable` or `kubepods-burstable.slice`.
    Burstable,
    /// Pods under `kubepods/besteffort` or `kubepods-besteffort.slice`.
    BestEffort,
}

impl QosClass {
    /// The lowercase name used as label value.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cgroup membership of a process says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Selected path (see the module docs); `None` if the file was empty.
    pub path: Option<String>,
    /// 64 lowercase hex characters.
    pub container_id: Option<String>,
    /// Pod UID with `-` separators.
    pub pod_uid: Option<String>,
    /// Present exactly when `pod_uid` is.
    pub qos_class: Option<QosClass>,
}

/// Parses the text of `/proc/<pid>/cgroup` (`hierarchy-id:controllers:path`
/// lines). Malformed lines make the whole parse fail, as they would in procfs.
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<CgroupEntry>, procfs::ProcError> {
    Ok(from_procfs(ProcessCGroups::from_buf_read(text.as_bytes())?))
}

/// Converts procfs' representation.
pub fn from_procfs(groups: ProcessCGroups) -> Vec<CgroupEntry> {
    groups
        .0
        .into_iter()
        .map(|g| CgroupEntry {
            hierarchy_id: g.hierarchy,
            controllers: g.controllers,
            path: g.pathname,
        })
        .collect()
}

/// Selects the path and extracts container and pod identity.
pub fn analyze(entries: &[CgroupEntry]) -> CgroupInfo {
    let candidates = candidate_order(entries);
    let mut info = CgroupInfo::default();
    for entry in &candidates {
        let container_id = container_id_from_path(&entry.path);
        let pod = pod_from_path(&entry.path);
        if container_id.is_some() || pod.is_some() {
            info.path = Some(entry.path.clone());
            info.container_id = container_id;
            if let Some((uid, qos)) = pod {
                info.pod_uid = Some(uid);
                info.qos_class = Some(qos);
            }
            return info;
        }
    }
    info.path = candidates
        .iter()
        .find(|e| e.path != "/")
        .or(candidates.first())
        .map(|e| e.path.clone());
    info
}

fn candidate_order(entries: &[CgroupEntry]) -> Vec<&CgroupEntry> {
    let rank = |e: &CgroupEntry| {
        if e.is_unified() {
            0
        } else if e.has_controller("name=systemd") {
            1
        } else if e.has_controller("cpu") {
            2
        } else {
            3
        }
    };
    let mut ordered: Vec<&CgroupEntry> = entries.iter().collect();
    // Stable sort keeps file order within the last rank.
    ordered.sort_by_key(|e| rank(e));
    ordered
}

/// Extracts a container id from one cgroup path.
pub fn container_id_from_path(path: &str) -> Option<String> {
    path.rsplit('/').find_map(container_id_from_component)
}

fn container_id_from_component(component: &str) -> Option<String> {
    if is_hex64(component) {
        return Some(component.to_ascii_lowercase());
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    const RUNTIME_PREFIXES: [&str; 5] =
        ["docker-", "cri-containerd-", "crio-", "libpod-", "cri-o-"];
    RUNTIME_PREFIXES.iter().find_map(|prefix| {
        let id = name.strip_prefix(prefix)?;
        is_hex64(id).then(|| id.to_ascii_lowercase())
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Extracts the pod UID and QoS class from a kubepods path.
pub fn pod_from_path(path: &str) -> Option<(String, QosClass)> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // Only paths below a kubepods cgroup carry pods; this avoids reading
    // `pod...` directories elsewhere (e.g. podman's) as Kubernetes pods.
    let kubepods_at = components
        .iter()
        .position(|c| *c == "kubepods" || c.ends_with("kubepods.slice"))?;
    for (i, component) in components.iter().enumerate().skip(kubepods_at + 1) {
        if let Some(uid) = component.strip_prefix("pod") {
            // cgroupfs form: parent is `burstable`/`besteffort`, or kubepods itself.
            if let Some(uid) = normalize_pod_uid(uid) {
                let qos = match components[i - 1] {
                    "burstable" => QosClass::Burstable,
                    "besteffort" => QosClass::BestEffort,
                    _ => QosClass::Guaranteed,
                };
                return Some((uid, qos));
            }
        }
        if let Some(slice) = component.strip_suffix(".slice") {
            // systemd form: `kubepods[-<qos>]-pod<uid>.slice`.
            if let Some((prefix, uid)) = slice.rsplit_once("-pod") {
                if let Some(uid) = normalize_pod_uid(uid) {
                    let qos = if prefix.ends_with("-burstable") {
                        QosClass::Burstable
                    } else if prefix.ends_with("-besteffort") {
                        QosClass::BestEffort
                    } else {
                        QosClass::Guaranteed
                    };
                    return Some((uid, qos));
                }
            }
        }
    }
    None
}

/// Accepts an RFC 4122-shaped UID (with `-` or systemd's `_`), or the 32-hex
/// config hash that static pods use as UID.
fn normalize_pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-").to_ascii_lowercase();
    let is_uuid = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    let is_static_hash = uid.len() == 32 && uid.bytes().all(|b| b.is_ascii_hexdigit());
    (is_uuid || is_static_hash).then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
    const UID: &str = "0f5f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";

    fn uid_underscored() -> String {
        UID.replace('-', "_")
    }

    /// A v2-only file: one `0::` line.
    fn v2(path: &str) -> CgroupInfo {
        analyze(&parse_proc_cgroup(&format!("0::{path}\n")).expect("valid cgroup file"))
    }

    /// A v1 file shaped like a real host's, with the given cpu/systemd path.
    fn v1(path: &str) -> CgroupInfo {
        let text = format!(
            "12:pids:{path}\n11:memory:{path}\n4:cpu,cpuacct:{path}\n\
             1:name=systemd:{path}\n0::/\n"
        );
        analyze(&parse_proc_cgroup(&text).expect("valid cgroup file"))
    }

    fn assert_container(info: &CgroupInfo, path: &str) {
        assert_eq!(info.container_id.as_deref(), Some(ID), "{info:?}");
        assert_eq!(info.path.as_deref(), Some(path));
    }

    #[test]
    fn docker_cgroupfs_v1_and_v2() {
        let path = format!("/docker/{ID}");
        assert_container(&v1(&path), &path);
        assert_container(&v2(&path), &path);
        assert_eq!(v2(&path).pod_uid, None);
    }

    #[test]
    fn docker_systemd_scope() {
        let path = format!("/system.slice/docker-{ID}.scope");
        assert_container(&v2(&path), &path);
        assert_container(&v1(&path), &path);
    }

    #[test]
    fn nested_init_scope_still_yields_container() {
        let path = format!("/system.slice/docker-{ID}.scope/init.scope");
        assert_container(&v2(&path), &path);
    }

    #[test]
    fn kubepods_cgroupfs_qos_classes() {
        for (qos_dir, qos) in [
            ("burstable/", QosClass::Burstable),
            ("besteffort/", QosClass::BestEffort),
            ("", QosClass::Guaranteed),
        ] {
            let path = format!("/kubepods/{qos_dir}pod{UID}/{ID}");
            for info in [v1(&path), v2(&path)] {
                assert_container(&info, &path);
                assert_eq!(info.pod_uid.as_deref(), Some(UID), "{path}");
                assert_eq!(info.qos_class, Some(qos), "{path}");
            }
        }
    }

    #[test]
    fn kubepods_systemd_cri_containerd() {
        let u = uid_underscored();
        for (qos_slice, qos) in [
            (
                "kubepods-burstable.slice/kubepods-burstable-",
                QosClass::Burstable,
            ),
            (
                "kubepods-besteffort.slice/kubepods-besteffort-",
                QosClass::BestEffort,
            ),
            ("kubepods-", QosClass::Guaranteed),
        ] {
            let path = format!("/kubepods.slice/{qos_slice}pod{u}.slice/cri-containerd-{ID}.scope");
            let info = v2(&path);
            assert_container(&info, &path);
            assert_eq!(info.pod_uid.as_deref(), Some(UID), "{path}");
            assert_eq!(info.qos_class, Some(qos), "{path}");
        }
    }

    #[test]
    fn kubepods_systemd_crio() {
        let path = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/crio-{ID}.scope",
            uid_underscored()
        );
        let info = v1(&path);
        assert_container(&info, &path);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.qos_class, Some(QosClass::BestEffort));
    }

    #[test]
    fn kubepods_cgroupfs_crio() {
        let path = format!("/kubepods/burstable/pod{UID}/crio-{ID}");
        assert_container(&v2(&path), &path);
    }

    #[test]
    fn kubelet_nested_kubepods_slice() {
        // kind / kubelet-in-a-slice layouts prefix the slices.
        let path = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/\
             kubelet-kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope",
            uid_underscored()
        );
        let info = v2(&path);
        assert_container(&info, &path);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.qos_class, Some(QosClass::Burstable));
    }

    #[test]
    fn pod_without_container_id_is_still_a_pod() {
        // Pause/sandbox-level cgroup or a runtime we do not recognize.
        let info = v2(&format!("/kubepods/besteffort/pod{UID}"));
        assert_eq!(info.container_id, None);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.qos_class, Some(QosClass::BestEffort));
    }

    #[test]
    fn static_pod_hash_uid() {
        let hash = "6f1c0e1e2b7d4a59a0c3d2e1f0a9b8c7";
        let info = v2(&format!("/kubepods/pod{hash}/{ID}"));
        assert_eq!(info.pod_uid.as_deref(), Some(hash));
        assert_eq!(info.qos_class, Some(QosClass::Guaranteed));
    }

    #[test]
    fn podman_libpod_scopes() {
        for path in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
            format!("/libpod_parent/libpod-{ID}"),
        ] {
            assert_container(&v2(&path), &path);
        }
    }

    #[test]
    fn conmon_scopes_are_not_containers() {
        for path in [
            format!("/machine.slice/libpod-conmon-{ID}.scope"),
            format!("/system.slice/crio-conmon-{ID}.scope"),
        ] {
            assert_eq!(v2(&path).container_id, None, "{path}");
        }
    }

    #[test]
    fn plain_host_processes_have_no_container() {
        for path in [
            "/",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/sshd.service",
            "/docker",
            "/kubepods/burstable",
        ] {
            let info = v2(path);
            assert_eq!(info.container_id, None, "{path}");
            assert_eq!(info.pod_uid, None, "{path}");
            assert_eq!(info.qos_class, None, "{path}");
            assert_eq!(info.path.as_deref(), Some(path));
        }
        // Too short / not hex: not an id.
        assert_eq!(v2(&format!("/docker/{}", &ID[..63])).container_id, None);
        assert_eq!(v2(&format!("/docker/{}g", &ID[..63])).container_id, None);
        // `pod<uid>` outside kubepods is not a Kubernetes pod.
        assert_eq!(v2(&format!("/machine.slice/pod{UID}")).pod_uid, None);
    }

    #[test]
    fn v2_path_preferred_over_v1() {
        let text = format!("4:cpu,cpuacct:/docker/{ID}\n0::/system.slice/docker-{ID}.scope\n");
        let info = analyze(&parse_proc_cgroup(&text).expect("valid"));
        assert_eq!(
            info.path.as_deref(),
            Some(&*format!("/system.slice/docker-{ID}.scope"))
        );
        assert_eq!(info.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn v1_container_found_when_unified_path_is_root() {
        // Hybrid host, v1-only runtime: only the pids hierarchy names the
        // container; the memory path is a non-container path seen first.
        let text = format!(
            "9:name=systemd:/\n8:pids:/kiln/docker/{ID}\n4:memory:/other/job\n1:cpu:/\n0::/\n"
        );
        let info = analyze(&parse_proc_cgroup(&text).expect("valid"));
        assert_eq!(info.container_id.as_deref(), Some(ID));
        assert_eq!(info.path.as_deref(), Some(&*format!("/kiln/docker/{ID}")));
    }

    #[test]
    fn path_without_container_prefers_v2_then_systemd_then_cpu() {
        let sel = |text: &str| analyze(&parse_proc_cgroup(text).expect("valid")).path;
        assert_eq!(
            sel("1:name=systemd:/a\n2:cpu:/b\n0::/c\n").as_deref(),
            Some("/c")
        );
        assert_eq!(
            sel("2:cpu:/b\n1:name=systemd:/a\n0::/\n").as_deref(),
            Some("/a")
        );
        assert_eq!(sel("3:memory:/m\n2:cpu:/b\n0::/\n").as_deref(), Some("/b"));
        assert_eq!(sel("3:memory:/\n0::/\n").as_deref(), Some("/"));
        assert_eq!(sel("").as_deref(), None);
    }

    #[test]
    fn malformed_file_is_an_error() {
        assert!(parse_proc_cgroup("not a cgroup line\n").is_err());
        assert!(parse_proc_cgroup("x:cpu:/a\n").is_err());
    }
}
