//! The proc root is configurable: a hand-built tree stands in for /proc so
//! the full pipeline (cmdline, hostname, env, cgroup, relabeling) can be
//! checked on exact inputs. Real processes are covered by the other tests.

use std::path::Path;

use kiln_labels::targets::format_target;
use kiln_labels::{AgentConfig, Discoverer};
use kiln_testkit::SECRET_VALUE;
use kiln_testkit::{random_container_id, random_pod_uid};

/// Builds `<root>/<pid>/{stat,cgroup,environ,cmdline,exe}` and
/// `<root>/sys/kernel/hostname`.
fn fake_process(root: &Path, pid: u32, cgroup: &str, environ: &[u8]) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).expect("pid dir");
    // Reuse a real stat line's fields after the comm so the format is exact.
    let real = std::fs::read_to_string("/proc/self/stat").expect("own stat");
    let after_comm = &real[real.rfind(')').expect("comm end") + 1..];
    let after_state = after_comm.trim_start().split_once(' ').expect("state").1;
    std::fs::write(dir.join("stat"), format!("{pid} (server) S {after_state}")).expect("stat");
    std::fs::write(dir.join("cgroup"), cgroup).expect("cgroup");
    std::fs::write(dir.join("environ"), environ).expect("environ");
    std::fs::write(
        dir.join("cmdline"),
        b"/opt/app/bin/server\0--port\x008080\0",
    )
    .expect("cmdline");
    std::os::unix::fs::symlink("/opt/app/bin/server (deleted)", dir.join("exe")).expect("exe");
    std::fs::create_dir_all(root.join("sys/kernel")).expect("sys");
    std::fs::write(root.join("sys/kernel/hostname"), "fake-node\n").expect("hostname");
}

#[test]
fn full_pipeline_on_fake_proc_tree() {
    let root = std::env::temp_dir().join(format!(
        "kiln-fake-proc-{}-{}",
        std::process::id(),
        &random_container_id()[..8]
    ));
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0);
        }
    }
    let _cleanup = Cleanup(&root);

    let (id, uid) = (random_container_id(), random_pod_uid());
    let cgroup = format!(
        "12:pids:/kubepods/burstable/pod{uid}/{id}\n4:cpu,cpuacct:/kubepods/burstable/pod{uid}/{id}\n\
         1:name=systemd:/kubepods/burstable/pod{uid}/{id}\n0::/\n"
    );
    let environ = format!("SECRET={SECRET_VALUE}\0APP_VERSION=1.4.2\0REGION=eu-central-1\0");
    fake_process(&root, 4242, &cgroup, environ.as_bytes());

    let config = AgentConfig::from_toml_str(
        r#"
        include_cmdline = true
        [static_labels]
        env = "prod"
        [env_labels]
        APP_VERSION = "version"
        REGION = "region"
        [[relabel_configs]]
        source_labels = ["__meta_process_cmdline"]
        regex = ".*--port (\\d+).*"
        target_label = "port"
        "#,
    )
    .expect("config");
    let mut options = config.discovery_options().expect("options");
    options.proc_root = root.clone();
    let mut d = Discoverer::new(options).expect("discoverer");
    assert_eq!(d.list_pids().expect("list"), vec![4242]);

    let t = d.target(4242).expect("fake process is alive");
    let meta = t.meta_labels();
    assert_eq!(meta["__meta_process_comm"], "server");
    assert_eq!(
        meta["__meta_process_executable_path"],
        "/opt/app/bin/server"
    );
    assert_eq!(meta["__meta_process_executable_name"], "server");
    assert_eq!(
        meta["__meta_process_cmdline"],
        "/opt/app/bin/server --port 8080"
    );
    assert_eq!(meta["__meta_host_name"], "fake-node");
    assert_eq!(
        meta["__meta_cgroup_path"],
        format!("/kubepods/burstable/pod{uid}/{id}")
    );

    let expected: Vec<(&str, String)> = vec![
        ("container_id", id.clone()),
        ("env", "prod".into()),
        ("hostname", "fake-node".into()),
        ("pod_uid", uid.clone()),
        ("port", "8080".into()),
        ("process", "server".into()),
        ("qos_class", "burstable".into()),
        ("region", "eu-central-1".into()),
        ("service_name", "server".into()),
        ("version", "1.4.2".into()),
    ];
    let got: Vec<(&str, String)> = t
        .labels()
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(got, expected);

    let shown = format!("{t:?}\n{}", format_target(&t));
    assert!(
        !shown.contains(SECRET_VALUE) && !shown.contains("SECRET"),
        "{shown}"
    );
}

#[test]
fn missing_pid_in_fake_tree_is_vanished_not_error() {
    let root = std::env::temp_dir().join(format!("kiln-fake-proc-empty-{}", std::process::id()));
    std::fs::create_dir_all(&root).expect("root");
    let options = kiln_labels::DiscoveryOptions {
        proc_root: root.clone(),
        hostname: Some("override".into()),
        ..Default::default()
    };
    let mut d = Discoverer::new(options).expect("discoverer");
    assert!(d.target(1).is_none());
    assert_eq!(d.stats().vanished, 1);
    std::fs::remove_dir_all(&root).expect("cleanup");
}
