//! `cargo xtask run`, the README's first command, end to end: it sets up, builds, starts
//! `kiln run`, which profiles this host, stores locally and serves the UI; Ctrl-C (SIGINT
//! to the whole process group, as a terminal sends it) stops it cleanly. Needs root.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use kiln_tests::*;

/// The process group of a `cargo xtask run`, killed if the test fails before stopping it.
struct ProcessGroup(libc::pid_t);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: signalling a process group we created; harmless if it is gone.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

#[test]
fn cargo_xtask_run_serves_the_ui_and_stops_on_ctrl_c() {
    if skip_unless_root("cargo_xtask_run_serves_the_ui_and_stops_on_ctrl_c") {
        return;
    }
    let exe = build_workload("shares", &[]);
    let data = tempfile::tempdir().unwrap();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Only what a user's shell would have: the variables `cargo test` sets for a test
    // would make the inner cargo rebuild crates whose build scripts watch them.
    let mut xtask = Command::new(cargo)
        .current_dir(workspace_root())
        .env_clear()
        .envs(std::env::vars_os().filter(|(k, _)| {
            [
                "PATH",
                "HOME",
                "USER",
                "TERM",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "LANG",
            ]
            .iter()
            .any(|keep| k == keep)
        }))
        .args([
            "xtask",
            "run",
            "--",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .args(["--collect-interval", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting cargo xtask run");
    let group = ProcessGroup(xtask.id() as libc::pid_t);

    // Everything it prints, line by line; the pipe is drained to the end.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stderr = xtask.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("xtask run: {line}");
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    // Setup and the release build are up to date after `cargo xtask test` built them;
    // on a developer's machine the build may still have work to do.
    let deadline = Instant::now() + Duration::from_secs(900);
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("cargo xtask run never said it was serving the UI");
        // kiln-server says this once its listener accepts connections.
        const SERVING: &str = "serving the UI and API on ";
        if let Some(at) = line.find(SERVING) {
            let rest = &line[at + SERVING.len()..];
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };

    let root = http_get(&format!("{url}/")).expect("GET / answers");
    assert_eq!(root.status, 200);
    let page = root.text();
    assert!(page.contains("<html") && page.contains("<script"), "{page}");

    // A workload with a known process name, started now that kiln profiles the host:
    // its service shows up once the first windows are stored.
    let _workload = spawn_workload(&exe, &["60", "1", "1", "1"]);
    let services_url = format!("{url}/pyroscope/label-values?label=service_name");
    let deadline = Instant::now() + Duration::from_secs(60);
    let services = loop {
        let services = get_json(&services_url);
        let names: Vec<&str> = services
            .as_array()
            .expect("label-values is a JSON array")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        if names.contains(&"shares") {
            break services;
        }
        assert!(
            Instant::now() < deadline,
            "the workload's service never appeared: {services}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("services: {services}");

    // Ctrl-C: SIGINT to the foreground process group.
    // SAFETY: signalling the process group this test created.
    assert_eq!(unsafe { libc::kill(-group.0, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = xtask.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "cargo xtask run ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "cargo xtask run exited with {status}");
    let said: Vec<String> = lines.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("kiln run stopped")),
        "no clean stop reported: {said:?}"
    );
    assert!(
        http_get(&format!("{url}/")).is_err(),
        "the server still answers after Ctrl-C"
    );
}
