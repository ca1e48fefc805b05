//! The motivating story end to end, on unmodified Go binaries: three rideshare instances
//! in three regions under load, `kiln run` profiling the host with `region` taken from
//! each process's REGION variable, then the HTTP API must tell the story. Needs root.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use kiln_tests::*;

/// us-west-1 flips between its low and high mutexLock phases this often.
const PHASE: u64 = 25;
const QUERY: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn go_build(pkg: &str, out: &str) -> PathBuf {
    let dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(out);
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(pkg)
        .current_dir(workspace_root().join("examples/rideshare"))
        .status()
        .expect("go not installed: run `cargo xtask setup`");
    assert!(status.success(), "go build {pkg} failed");
    exe
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Api(String);

impl Api {
    fn render(&self, selector: &str, from: u64, until: u64) -> serde_json::Value {
        get_json(&format!(
            "{}/pyroscope/render?query={}&from={from}&until={until}&format=json&maxNodes=8192",
            self.0,
            urlencode(&format!("{QUERY}{{{selector}}}"))
        ))
    }

    fn share(&self, selector: &str, function: &str, from: u64, until: u64) -> (f64, u64) {
        let (totals, ticks) = flamebearer_totals(&self.render(selector, from, until));
        let f = totals.get(function).copied().unwrap_or(0);
        (f as f64 / ticks.max(1) as f64, ticks)
    }
}

#[test]
fn rideshare_story() {
    if skip_unless_root("rideshare_story") {
        return;
    }
    let service = go_build(".", "rideshare");
    let loadgen = go_build("./loadgen", "rideshare-loadgen");

    let regions = ["us-east-1", "us-west-1", "eu-west-1"];
    let data = tempfile::tempdir().unwrap();
    // Each instance binds port 0 and logs the address it got.
    let (_instances, targets): (Vec<ChildGuard>, Vec<String>) = regions
        .iter()
        .map(|region| {
            let (child, addr) = spawn_announced(
                Command::new(&service)
                    .env("REGION", region)
                    .env("LISTEN", "127.0.0.1:0")
                    .env("MUTEX_PHASE_SECONDS", PHASE.to_string()),
                &data.path().join(format!("rideshare-{region}.log")),
                "listening on ",
            );
            (child, format!("http://{addr}"))
        })
        .unzip();

    let (mut kiln, api) = start_kiln_run(
        &data.path().join("store"),
        &[
            "--collect-interval",
            "5",
            "--frequency",
            "99",
            "--env-label",
            "REGION=region",
        ],
    );
    let api = Api(api);
    let _load = ChildGuard::spawn(
        Command::new(&loadgen)
            .arg("-targets")
            .arg(targets.join(","))
            .stderr(Stdio::null()),
    );

    // When did us-west-1's phases start? Its /phase endpoint tells its uptime.
    let phase = get_json(&format!("{}/phase", targets[1]));
    let start = now() as f64 - phase["uptime"].as_f64().unwrap();
    let phase_start = |k: u64| (start + (k * PHASE) as f64).ceil() as u64;
    // Two low (0, 2) and two high (1, 3) phases, plus one collect interval to flush.
    let end = phase_start(4) + 7;
    while now() < end {
        assert!(kiln.0.try_wait().unwrap().is_none(), "kiln run died");
        std::thread::sleep(Duration::from_secs(1));
    }
    let (from, until) = (phase_start(0), phase_start(4));

    // Labels came from the environment, with no change to the program.
    let values = |label: &str| -> Vec<String> {
        get_json(&format!(
            "{}/pyroscope/label-values?label={label}&from={from}&until={until}",
            api.0
        ))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
    };
    assert!(
        values("service_name").contains(&"rideshare".to_owned()),
        "{:?}",
        values("service_name")
    );
    let region_values = values("region");
    for r in regions {
        assert!(
            region_values.contains(&r.to_owned()),
            "region {r} missing: {region_values:?}"
        );
    }

    // OrderCar is the biggest node below the runtime and HTTP frames.
    let (totals, ticks) =
        flamebearer_totals(&api.render("service_name=\"rideshare\"", from, until));
    assert!(ticks > 500, "too few samples: {ticks}");
    let mut top_self: Vec<(String, u64)> =
        flamebearer_self(&api.render("service_name=\"rideshare\"", from, until))
            .into_iter()
            .collect();
    top_self.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    eprintln!(
        "top self of {ticks}: {:?}",
        &top_self[..top_self.len().min(6)]
    );
    // Per request every instance searches (W) and only us-west-1 adds mutexLock (W/2 low,
    // 2.45 W high): the search outweighs the lock about 2:1 over the whole story.
    assert_eq!(
        top_self.first().map(|(n, _)| n.as_str()),
        Some("main.FindNearestVehicle.func1"),
        "{top_self:?}"
    );
    let order = |f: &str| totals.get(f).copied().unwrap_or(0);
    let (car, bike, scooter) = (
        order("main.OrderCar"),
        order("main.OrderBike"),
        order("main.OrderScooter"),
    );
    assert!(
        car > bike && car > scooter,
        "OrderCar {car}, OrderBike {bike}, OrderScooter {scooter}"
    );
    let biggest_app_node = totals
        .iter()
        .filter(|(n, _)| n.starts_with("main.Order"))
        .max_by_key(|(_, v)| **v)
        .map(|(n, _)| n.clone());
    assert_eq!(biggest_app_node.as_deref(), Some("main.OrderCar"));

    // us-west-1's mutexLock share alternates between the phases (~33% low, ~71% high).
    let west = "service_name=\"rideshare\",region=\"us-west-1\"";
    let margin = 6;
    let mut shares = Vec::new();
    for k in 0..4 {
        let (share, n) = api.share(
            west,
            "main.mutexLock",
            phase_start(k) + margin,
            phase_start(k + 1) - margin,
        );
        assert!(n > 50, "phase {k}: only {n} samples");
        shares.push(share);
    }
    eprintln!("us-west-1 mutexLock share per phase: {shares:.2?}");
    for k in [0, 2] {
        assert!(
            (0.20..0.48).contains(&shares[k]),
            "low phase {k}: {:.2}",
            shares[k]
        );
    }
    for k in [1, 3] {
        assert!(
            (0.58..0.85).contains(&shares[k]),
            "high phase {k}: {:.2}",
            shares[k]
        );
    }
    // Other regions have no mutexLock at all.
    let (east, _) = api.share(
        "service_name=\"rideshare\",region=\"us-east-1\"",
        "main.mutexLock",
        from,
        until,
    );
    assert_eq!(east, 0.0);

    // The diff of a low phase against a high phase shows mutexLock grown.
    let q = urlencode(&format!("{QUERY}{{{west}}}"));
    let diff = get_json(&format!(
        "{}/pyroscope/render-diff?leftQuery={q}&leftFrom={}&leftUntil={}&rightQuery={q}&rightFrom={}&rightUntil={}&format=json&maxNodes=8192",
        api.0,
        phase_start(2) + margin,
        phase_start(3) - margin,
        phase_start(3) + margin,
        phase_start(4) - margin,
    ));
    let fb = &diff["flamebearer"];
    let names: Vec<&str> = fb["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let (mut left, mut right) = (0i64, 0i64);
    for level in fb["levels"].as_array().unwrap() {
        let v: Vec<i64> = level
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        for node in v.chunks(7) {
            if names[node[6] as usize] == "main.mutexLock" {
                left += node[1];
                right += node[4];
            }
        }
    }
    let (lt, rt) = (
        diff["leftTicks"].as_i64().unwrap(),
        diff["rightTicks"].as_i64().unwrap(),
    );
    let (ls, rs) = (left as f64 / lt as f64, right as f64 / rt as f64);
    assert!(rs > ls + 0.2, "mutexLock did not grow: {ls:.2} -> {rs:.2}");

    // Screenshots of the UI in that state, through the UI's own end-to-end harness.
    let artifacts = workspace_root().join("test-artifacts/story");
    std::fs::create_dir_all(&artifacts).unwrap();
    let expect = serde_json::json!({
        "service": "rideshare",
        "topFunction": "FindNearestVehicle.func1",
        "tag": {"name": "region", "value": "us-west-1", "expectFunction": "mutexLock"},
        "diff": {
            "grownFunction": "mutexLock",
            "leftFrom": phase_start(2) + margin, "leftUntil": phase_start(3) - margin,
            "rightFrom": phase_start(3) + margin, "rightUntil": phase_start(4) - margin,
        },
        "from": from, "until": until,
    });
    let ui = Command::new("node")
        .arg(workspace_root().join("ui/e2e/run.mjs"))
        .env("KILN_URL", &api.0)
        .env("ARTIFACTS_DIR", &artifacts)
        .env("KILN_E2E_EXPECT", expect.to_string())
        .output()
        .expect("node: run `cargo xtask setup`");
    assert!(
        ui.status.success(),
        "UI end-to-end failed:\n{}\n{}",
        String::from_utf8_lossy(&ui.stdout),
        String::from_utf8_lossy(&ui.stderr)
    );

    // Ctrl-C: a clean shutdown.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(kiln.pid() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = kiln.0.try_wait().unwrap() {
            assert!(
                status.success(),
                "kiln run exited with {status} after SIGINT"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kiln run did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
