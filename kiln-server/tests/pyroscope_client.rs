//! Real clients: PyPI `pyroscope-io` (Pyroscope's own Python SDK) profiles a busy Python
//! program with a static tag and a dynamic `tag_wrapper` tag and pushes to our server —
//! 1.4.x over Connect (`/push.v1.PusherService/Push`), 0.8.x over legacy `/ingest`.
//! Each version lives in its own venv under `target/pyenv/`, created on first run with
//! `python3 -m venv` + `pip install` (PyPI must be reachable then; the test fails with a
//! clear message otherwise).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_testkit::{flamebearer::*, pprof::*, *};

const PROGRAM: &str = r#"
import sys, time
import pyroscope

addr, seconds = sys.argv[1], float(sys.argv[2])
pyroscope.configure(
    application_name="kiln-pytest",
    server_address=addr,
    tags={"env": "kilntest"},
    enable_logging=True,
)

def kiln_static_work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s

def kiln_tagged_work(n):
    s = 0
    for i in range(n):
        s += i ^ 7
    return s

end = time.time() + seconds
while time.time() < end:
    kiln_static_work(100000)
    with pyroscope.tag_wrapper({"phase": "tagged"}):
        kiln_tagged_work(100000)
pyroscope.shutdown()
print("DONE", flush=True)
"#;

fn venv(version: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/pyenv")
        .join(format!("pyroscope-io-{version}"));
    let python = dir.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pyroscope"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&python) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .status()
        .expect("python3 is required for this test (apt-get install python3 python3-venv)");
    assert!(st.success(), "python3 -m venv {} failed", dir.display());
    let out = Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", &format!("pyroscope-io=={version}")])
        .output()
        .expect("run pip");
    assert!(
        out.status.success(),
        "pip install pyroscope-io=={version} failed — is PyPI reachable? This test needs the real \
         Pyroscope Python SDK and does not pass without it.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ok(&python),
        "pyroscope-io=={version} installed but does not import"
    );
    python
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Kill by pid (SIGKILL) if still running, then reap.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_client(version: &str, expected_endpoint_metric: &str) {
    let python = venv(version);
    let srv = TestServer::start();
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("busy.py");
    std::fs::write(&script, PROGRAM).unwrap();
    let started = kiln_store::now_nanos() / S;
    let child = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", srv.addr))
        .arg("12")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read;
        if status.is_some() {
            let _ = e.read_to_string(&mut stderr);
        }
    }
    assert!(
        status.is_some(),
        "pyroscope-io {version} client did not finish in time"
    );
    drop(child);

    let types = srv.get_json("/api/v1/profile-types");
    let types: Vec<String> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    let cpu = types
        .iter()
        .find(|t| t.starts_with("process_cpu:cpu:"))
        .or_else(|| types.iter().find(|t| t.starts_with("process_cpu:")))
        .unwrap_or_else(|| {
            panic!(
                "no cpu profile type from pyroscope-io {version}: {types:?}\nclient log:\n{stderr}"
            )
        })
        .clone();
    let range = format!(
        "&from={}&until={}",
        started - 30,
        kiln_store::now_nanos() / S + 30
    );
    let render = |sel: &str| {
        srv.get_json(&format!(
            "/pyroscope/render?query={}{range}&maxNodes=100000",
            urlencode(&format!("{cpu}{sel}"))
        ))
    };
    let has =
        |r: &serde_json::Value, f: &str| names(&r["flamebearer"]).iter().any(|n| n.contains(f));

    let all = render("{service_name=\"kiln-pytest\"}");
    assert!(
        has(&all, "kiln_static_work") && has(&all, "kiln_tagged_work"),
        "pyroscope-io {version}: functions missing: {:?}\nclient log:\n{stderr}",
        names(&all["flamebearer"])
    );
    // Static tag (series label).
    let env = render("{service_name=\"kiln-pytest\",env=\"kilntest\"}");
    assert_eq!(
        env["flamebearer"]["numTicks"],
        all["flamebearer"]["numTicks"]
    );
    let other = render("{env=\"other\"}");
    assert_eq!(other["flamebearer"]["numTicks"], 0);
    // Dynamic tag (pprof sample label / tagged sub-series).
    let tagged = render("{service_name=\"kiln-pytest\",phase=\"tagged\"}");
    assert!(
        has(&tagged, "kiln_tagged_work"),
        "{:?}",
        names(&tagged["flamebearer"])
    );
    let static_in_tagged = function_total(&tagged["flamebearer"], "kiln_static_work");
    let static_all = function_total(&all["flamebearer"], "kiln_static_work");
    assert!(
        static_in_tagged * 10 <= static_all,
        "tagged has {static_in_tagged} of kiln_static_work out of {static_all}"
    );
    let untagged = render("{service_name=\"kiln-pytest\",phase!=\"tagged\"}");
    assert!(
        has(&untagged, "kiln_static_work"),
        "{:?}",
        names(&untagged["flamebearer"])
    );
    // The SDK reads the thread's tags and its stack at slightly different moments, so a
    // sample taken right at the tag boundary can land on the other side; allow a few.
    let in_tagged = function_total(&tagged["flamebearer"], "kiln_tagged_work");
    let leaked = function_total(&untagged["flamebearer"], "kiln_tagged_work");
    assert!(
        leaked * 10 <= in_tagged,
        "untagged has {leaked} of kiln_tagged_work vs {in_tagged} tagged"
    );
    let values = srv.get_json("/pyroscope/label-values?label=phase");
    assert_eq!(values, serde_json::json!(["tagged"]));

    let m = srv.get("/metrics").text();
    let prefix = format!("kiln_push_requests_total{{endpoint=\"{expected_endpoint_metric}\"}} ");
    let used: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        used > 0,
        "pyroscope-io {version} did not use {expected_endpoint_metric}:\n{m}"
    );
}

#[test]
fn pyroscope_io_1_4_pushes_with_connect() {
    run_client("1.4.0", "push");
}

#[test]
fn pyroscope_io_0_8_pushes_with_legacy_ingest() {
    run_client("0.8.16", "ingest");
}
