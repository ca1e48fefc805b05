//! The web UI end to end: our server (in-process, free port, temp data dir seeded with
//! known profiles) + the UI engineer's `ui/e2e/run.mjs` driving headless Chromium.
//! Needs `ui/dist` and `ui/node_modules` (run `cargo xtask setup`); screenshots go to
//! `<repo>/test-artifacts/ui`.

use std::process::{Command, Stdio};
use std::sync::Arc;

use kiln_testkit::{pprof::*, *};

/// Two regions; `hot_function` has the most self time; `only_in_us_west` exists only in
/// us-west-1; `grows` is 6x heavier in the second half of the hour than in the first.
fn seed(store: &kiln_store::Store, from: i64, until: i64) {
    let mid = (from + until) / 2;
    let mut reqs = Vec::new();
    let mut t = from;
    while t < until {
        let grows = if t < mid { 1 } else { 6 };
        for region in ["us-west-1", "eu-north-1"] {
            let mut stacks: Vec<StackSpec<'_>> = vec![
                (&["main", "serve", "hot_function"], 20, &[]),
                (&["main", "serve", "parse"], 4, &[]),
                (&["main", "grows"], grows, &[]),
            ];
            if region == "us-west-1" {
                stacks.push((&["main", "serve", "only_in_us_west"], 3, &[]));
            }
            reqs.push(kiln_store::IngestRequest {
                labels: vec![
                    ("__name__".into(), "process_cpu".into()),
                    ("service_name".into(), "e2e-app".into()),
                    ("region".into(), region.into()),
                ],
                profile: cpu_profile(&stacks, t * S),
                from_nanos: t * S,
                until_nanos: (t + 10) * S,
            });
        }
        t += 10;
    }
    store.ingest_many(reqs).expect("seed");
}

#[test]
fn ui_end_to_end() {
    let root = workspace_root();
    let ui = root.join("ui");
    for (what, path) in [
        ("the built UI (ui/dist)", ui.join("dist/index.html")),
        (
            "the UI's node modules (ui/node_modules)",
            ui.join("node_modules"),
        ),
        ("the UI e2e script (ui/e2e/run.mjs)", ui.join("e2e/run.mjs")),
    ] {
        assert!(
            path.exists(),
            "{what} is missing at {}: run `cargo xtask setup` first (this test does not build the UI)",
            path.display()
        );
    }
    assert!(
        kiln_server::ui_assets::ui_built(),
        "kiln-server was compiled before ui/dist existed: rebuild it (cargo xtask setup builds the UI first)"
    );
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(node_ok, "node is required (cargo xtask setup installs it)");

    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(kiln_store::Store::open(dir.path(), kiln_store::StoreOptions::default()).unwrap());
    let now = kiln_store::now_nanos() / S;
    let (from, until) = (now - 3600, now - 60);
    seed(&store, from, until);
    let srv = TestServer::serve(store.clone(), kiln_server::Limits::default());

    let artifacts = root.join("test-artifacts/ui");
    std::fs::create_dir_all(&artifacts).unwrap();
    let expect = serde_json::json!({
        "service": "e2e-app",
        "topFunction": "hot_function",
        "tag": {"name": "region", "value": "us-west-1", "expectFunction": "only_in_us_west"},
        "diff": {"grownFunction": "grows"},
        "from": from,
        "until": until,
        "profileType": CPU,
    });
    let out = Command::new("node")
        .arg(ui.join("e2e/run.mjs"))
        .current_dir(&ui)
        .env("KILN_URL", format!("http://{}", srv.addr))
        .env("ARTIFACTS_DIR", &artifacts)
        .env("KILN_E2E_EXPECT", expect.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run node ui/e2e/run.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    drop(srv);
    store.close().unwrap();
    assert!(
        out.status.success(),
        "ui/e2e/run.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.contains("passed"))
        .unwrap_or("");
    assert!(last.contains(" 0 failed"), "{last}");
}
