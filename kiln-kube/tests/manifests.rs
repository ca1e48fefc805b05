//! The deployment artifacts under deploy/: every Kubernetes variant renders
//! (kustomize, Helm) and validates against the Kubernetes schemas; the agent
//! configuration each one ships parses as `kiln_labels::AgentConfig`; the
//! systemd units verify; the Dockerfile's builder stage rehearses.
//!
//! Tools are installed from registries on first use into
//! target/deploy-tools (see deploy/validate-manifests.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_labels::AgentConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    let out = tempfile::tempdir().expect("tempdir");
    let script = root().join("deploy/validate-manifests.sh");
    let (ok, stdout, stderr) = run(Command::new("bash").arg(&script).arg(out.path()));
    assert!(
        ok,
        "{} failed (exit 2 = a registry was unreachable):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display()
    );
    let variants = [
        "kustomize-base",
        "kustomize-privileged",
        "kustomize-with-server",
        "helm-default",
        "helm-all-knobs",
        "helm-minimal",
    ];
    for v in variants {
        let yaml = read(&out.path().join(format!("{v}.yaml")));
        let toml = read(&out.path().join(format!("{v}.agent.toml")));
        let config = AgentConfig::from_toml_str(&toml).unwrap_or_else(|e| {
            panic!("{v}: shipped agent.toml is not a valid AgentConfig: {e}\n{toml}")
        });
        config.discovery_options().expect("discovery options");
        // Every variant: host PIDs, the node name from the downward API, the
        // read-only cgroup mount, a readiness probe on /healthz.
        for needle in [
            "kind: DaemonSet",
            "hostPID: true",
            "fieldPath: spec.nodeName",
            "path: /sys/fs/cgroup",
            "path: /healthz",
            "--metrics-listen=$(POD_IP):9464",
        ] {
            assert!(yaml.contains(needle), "{v}: missing {needle:?}");
        }
        let privileged = v.contains("privileged") || v == "helm-all-knobs";
        assert_eq!(yaml.contains("privileged: true"), privileged, "{v}");
        for cap in [
            "BPF",
            "PERFMON",
            "SYS_PTRACE",
            "SYS_RESOURCE",
            "SYSLOG",
            "DAC_READ_SEARCH",
            "CHECKPOINT_RESTORE",
        ] {
            assert_eq!(yaml.contains(cap), !privileged, "{v}: capability {cap}");
        }
        assert!(
            !yaml.contains("SYS_ADMIN"),
            "{v}: SYS_ADMIN is never needed"
        );
        let with_server = v.contains("server") || v == "helm-all-knobs" || v == "helm-minimal";
        assert_eq!(
            yaml.contains("kind: Service\n"),
            with_server,
            "{v}: server Service"
        );
        // A server is never open: it needs the token, and a NetworkPolicy guards it.
        assert_eq!(
            yaml.contains("- --auth-token-file=/etc/kiln/auth/token"),
            with_server,
            "{v}: server auth"
        );
        assert_eq!(
            yaml.contains("kind: NetworkPolicy"),
            with_server,
            "{v}: server NetworkPolicy"
        );
        assert!(!yaml.contains("--insecure-no-auth"), "{v}");
        let push = config.exporters.push_url.clone().unwrap_or_default();
        assert_eq!(
            push.contains("kiln-server"),
            with_server,
            "{v}: push URL {push}"
        );
        if v != "helm-minimal" {
            assert!(
                yaml.contains("- --kubernetes"),
                "{v}: Kubernetes metadata on"
            );
            // kustomize prints block lists, Helm keeps the flow style.
            let has = |item: &str| {
                yaml.contains(&format!("- {item}\n")) || yaml.contains(&format!("\"{item}\""))
            };
            assert!(yaml.contains("kind: ClusterRole\n"), "{v}: RBAC");
            for item in ["pods", "nodes", "get", "list", "watch"] {
                assert!(has(item), "{v}: RBAC {item}");
            }
        }
    }
    let knobs = AgentConfig::from_toml_str(&read(&out.path().join("helm-all-knobs.agent.toml")))
        .expect("valid");
    assert_eq!(knobs.frequency, Some(49));
    assert_eq!(knobs.collect_interval, Some(10));
    assert_eq!(knobs.exporters.tenant_id.as_deref(), Some("team-a"));
    assert_eq!(knobs.static_labels["cluster"], "prod-eu");
    assert_eq!(knobs.env_labels["APP_VERSION"], "version");
    let all = read(&out.path().join("helm-all-knobs.yaml"));
    assert!(all.contains("kind: Secret") && all.contains("name: KILN_BASIC_AUTH_PASSWORD"));
    assert!(all.contains("kind: PersistentVolumeClaim") && all.contains("storage: 5Gi"));
    let minimal = read(&out.path().join("helm-minimal.yaml"));
    assert!(
        !minimal.contains("kind: ClusterRole"),
        "no RBAC without Kubernetes metadata"
    );
    assert!(
        minimal.contains("name: my-auth"),
        "existing auth secret is referenced"
    );
    assert!(!minimal.contains("kind: PersistentVolumeClaim"));

    // The validator is not a rubber stamp: an unknown field fails strict
    // validation.
    let broken = out.path().join("broken.yaml");
    let base = read(&out.path().join("kustomize-base.yaml"));
    std::fs::write(&broken, base.replace("hostPID: true", "hostPid: true")).unwrap();
    let tools = std::env::var_os("KILN_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/deploy-tools"));
    let (ok, stdout, stderr) = run(Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            "1.33.0",
        ])
        .arg(&broken)
        .env("PYTHONPATH", tools.join("py")));
    assert!(
        !ok,
        "a misspelled field must fail validation:\n{stdout}{stderr}"
    );
    assert!(
        format!("{stdout}{stderr}").contains("hostPid"),
        "{stdout}{stderr}"
    );
}

#[test]
fn example_agent_configs_parse() {
    for file in [
        "deploy/kubernetes/base/agent.toml",
        "deploy/kubernetes/overlays/with-server/agent.toml",
        "deploy/systemd/agent.toml",
    ] {
        let text = read(&root().join(file));
        AgentConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn systemd_units_verify() {
    let analyze = kiln_testkit::which("systemd-analyze");
    let missing = "systemd-analyze is not installed (Debian package systemd)";
    if kiln_testkit::skip_unless(analyze.is_some(), "systemd_units_verify", missing) {
        return;
    }
    let analyze = analyze.unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    for unit in ["kiln.service", "kiln-server.service"] {
        let text = read(&root().join("deploy/systemd").join(unit));
        assert!(text.contains("ExecStart=/usr/local/bin/kiln "), "{unit}");
        // verify checks that the binary exists; stand in /bin/true for it.
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/kiln", "/bin/true")).unwrap();
        let (ok, stdout, stderr) = run(Command::new(&analyze).arg("verify").arg(&path));
        assert!(ok && stderr.trim().is_empty(), "{unit}:\n{stdout}{stderr}");
    }
    let agent = read(&root().join("deploy/systemd/kiln.service"));
    for cap in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_SYS_PTRACE",
        "CAP_SYS_RESOURCE",
        "CAP_SYSLOG",
        "CAP_DAC_READ_SEARCH",
        "CAP_CHECKPOINT_RESTORE",
    ] {
        assert!(agent.contains(cap), "{cap}");
    }
    // These would silently break kernel symbols or process visibility.
    for bad in [
        "\nProtectKernelTunables=yes",
        "\nProtectKernelLogs=yes",
        "\nProtectProc=",
    ] {
        assert!(!agent.contains(bad), "kiln.service must not set {bad:?}");
    }
}

/// Executes the Dockerfile's builder stage (parsed from the Dockerfile, so
/// the two cannot drift) in a copy of the repository: a full release build
/// of `kiln`, ~2-4 minutes on 2 cores the first time, incremental after
/// (target/image-rehearsal). Chosen over a cheaper parse-only check because
/// the CI budget (90 min) has room and only a real build catches a broken
/// recipe. `KILN_SKIP_IMAGE_REHEARSAL=1` falls back to the parse-only check.
#[test]
fn image_build_rehearsal() {
    let script = root().join("deploy/rehearse-image-build.sh");
    let print_only = std::env::var_os("KILN_SKIP_IMAGE_REHEARSAL").is_some_and(|v| v == "1");
    let mut cmd = Command::new("bash");
    // The committed tree, as a clean clone (and CI) has it: in a shared
    // checkout, others' uncommitted work must not fail this test.
    cmd.arg(&script).arg("--from-git-head");
    if print_only {
        cmd.arg("--print");
    }
    let (ok, stdout, stderr) = run(&mut cmd);
    assert!(
        ok,
        "{} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display()
    );
    assert!(
        stderr.contains("RUN cargo build --release -p profiler-daemon"),
        "{stderr}"
    );
    let rehearsed: usize = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("rehearsed ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    assert!(
        rehearsed >= 4,
        "toolchain, bpf-linker, build and copy steps: {stderr}"
    );
    if !print_only {
        assert!(
            stdout.starts_with("kiln "),
            "the built binary runs: {stdout}"
        );
    }
}
