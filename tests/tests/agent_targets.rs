//! `kiln targets` end to end (root for the cgroups; no eBPF): shows a test process's meta
//! labels and final labels with the same flags and config as the agent, shows relabel
//! drops, and never shows a non-allow-listed environment variable.

use std::{path::Path, process::Command};

use kiln_tests::{agent::*, *};

fn targets(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(kiln_bin())
        .arg("targets")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run kiln targets");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn targets_shows_meta_and_final_labels_and_relabel_drops() {
    if skip_unless_root("targets_shows_meta_and_final_labels_and_relabel_drops") {
        return;
    }
    let why = format!("no cgroup v2 hierarchy at {UNIFIED}");
    if skip_unless(CgroupTree::available(UNIFIED), "agent_targets", &why) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = random_container_id();
    let uid = random_pod_uid();
    let mut tree = CgroupTree::new(UNIFIED);
    let cg = tree.create_procs(&format!("kubepods/besteffort/pod{uid}/{id}"));
    let region = format!("targets-{}", token());
    let child = spawn_in_cgroups(
        Path::new("/bin/sleep"),
        &["30"],
        &[("REGION", region.as_str()), ("SECRET", SECRET_VALUE)],
        &[cg.as_path()],
    );
    // Wait until the shell has exec'd sleep inside the cgroup.
    let pid = child.pid().to_string();
    for _ in 0..100 {
        if std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|p| p.to_string_lossy().ends_with("/sleep"))
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let (ok, out, err) = targets(&[
        "--pid",
        &pid,
        "--env-label",
        "REGION=region",
        "--label",
        "team=targets",
    ]);
    assert!(ok, "kiln targets failed: {err}");
    assert!(out.starts_with(&format!("pid {pid} series ")), "{out}");
    let final_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("final:"))
        .expect("final labels line");
    let meta_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("meta:"))
        .expect("meta labels line");
    for want in [
        format!("container_id=\"{id}\""),
        format!("pod_uid=\"{uid}\""),
        "qos_class=\"besteffort\"".to_owned(),
        format!("region=\"{region}\""),
        "team=\"targets\"".to_owned(),
        "service_name=\"sleep\"".to_owned(),
        "process=\"sleep\"".to_owned(),
    ] {
        assert!(
            final_line.contains(&want),
            "final labels lack {want}: {final_line}"
        );
    }
    assert!(!final_line.contains("__meta_"), "{final_line}");
    for want in [
        format!("__meta_process_pid=\"{pid}\""),
        format!("__meta_container_id=\"{id}\""),
        format!("__meta_env_var_REGION=\"{region}\""),
        "__meta_cgroup_path=".to_owned(),
    ] {
        assert!(
            meta_line.contains(&want),
            "meta labels lack {want}: {meta_line}"
        );
    }
    assert!(
        !out.contains(SECRET_VALUE) && !out.contains("SECRET"),
        "{out}"
    );

    // A drop rule from a config file: the target shows as dropped.
    let config = write_file(
        tmp.path(),
        "drop.toml",
        &format!(
            "[[relabel_configs]]\nsource_labels = [\"__meta_kubernetes_pod_uid\"]\nregex = \"{uid}\"\naction = \"drop\"\n"
        ),
    );
    let (ok, out, err) = targets(&["--pid", &pid, "--config", config.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("final: dropped by relabeling"), "{out}");
    assert!(err.contains("1 dropped by relabeling"), "{err}");

    // Without --pid: every process on the host, ours among them.
    let (ok, out, err) = targets(&["--env-label", "REGION=region"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("pid {pid} series ")),
        "our pid is listed"
    );
    assert!(out.contains(&format!("region=\"{region}\"")));
    assert!(!out.contains(SECRET_VALUE));

    // A pid that does not exist is a clear error.
    let (ok, _, err) = targets(&["--pid", "999999999"]);
    assert!(
        !ok && err.contains("no process with pid 999999999"),
        "{err}"
    );
    drop(child);
    drop(tree);
}
