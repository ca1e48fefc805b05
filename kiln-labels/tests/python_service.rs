//! Python services are named after their script or module, read from real interpreter
//! processes' argv.

use std::process::{Command, Stdio};

use kiln_labels::{AgentConfig, Discoverer};
use kiln_testkit::ChildGuard;

fn service_name_of(args: &[&str], dir: &std::path::Path) -> String {
    let python = "/usr/bin/python3.11";
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: run `cargo xtask setup`"
    );
    let child = ChildGuard::spawn(
        Command::new(python)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped()),
    );
    // Wait until the interpreter runs the program (it prints when started).
    let mut child = child;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.0.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "started");
    let config = AgentConfig::from_toml_str("").unwrap();
    let d = Discoverer::new(config.discovery_options().unwrap()).unwrap();
    let target = d.discover(child.pid()).expect("discovered");
    target.labels()["service_name"].clone()
}

#[test]
fn scripts_and_modules_name_python_services() {
    let dir = tempfile::tempdir().unwrap();
    let program = "import sys, time\nprint('started', flush=True)\ntime.sleep(60)\n";
    std::fs::write(dir.path().join("app.py"), program).unwrap();
    std::fs::create_dir(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/__init__.py"), "").unwrap();
    std::fs::write(dir.path().join("pkg/worker.py"), program).unwrap();

    assert_eq!(service_name_of(&["app.py"], dir.path()), "app");
    assert_eq!(
        service_name_of(&["-u", "-m", "pkg.worker"], dir.path()),
        "pkg.worker"
    );
    // No script: the interpreter's name, as before.
    assert_eq!(
        service_name_of(
            &[
                "-c",
                "import time; print('started', flush=True); time.sleep(60)"
            ],
            dir.path()
        ),
        "python3.11"
    );
}
