//! `kiln agent --push-url` into Kiln's own server (kiln-server over a kiln-store in a temp
//! directory, on 127.0.0.1:0): the pushed series are queryable by their labels and the
//! flame graph holds the workload's function.

use std::time::{Duration, Instant};

use kiln_testkit::TestServer;
use kiln_tests::{agent::*, *};

#[test]
fn agent_pushes_into_kiln_server() {
    if skip_unless_root("agent_pushes_into_kiln_server") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();

    let server = TestServer::start();
    let addr = server.addr;

    let rules = write_file(
        tmp.path(),
        "rules.toml",
        &format!(
            "[[relabel_configs]]\nsource_labels = [\"__meta_env_var_KILN_TEST\"]\nregex = \"{tok}\"\naction = \"keep\"\n"
        ),
    );
    let agent = Agent::start(
        &[
            "--env-label",
            "KILN_TEST=kiln_test",
            "--relabel-config",
            rules.to_str().unwrap(),
            "--label",
            "suite=agent-server",
            "--push-url",
            &format!("http://{addr}"),
            "--collect-interval",
            "1",
        ],
        tmp.path(),
    );
    let _burner = spawn_in_cgroups(
        &exe,
        &["60000"],
        &[("KILN_TEST", tok.as_str()), ("SECRET", SECRET_VALUE)],
        &[],
    );

    let query = urlencode(&format!(
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{{kiln_test=\"{tok}\",suite=\"agent-server\"}}"
    ));
    let path = format!("/pyroscope/render?query={query}&from=now-10m&until=now&format=json");
    let deadline = Instant::now() + Duration::from_secs(40);
    let body = loop {
        let got = get_text(addr, &path);
        if let Some((200, body)) = &got {
            if body.contains("kiln_agent_burn_long") {
                break body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "kiln-server never showed kiln_agent_burn_long for our series: {got:?}\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(!body.contains(SECRET_VALUE));
    let values =
        get_text(addr, "/pyroscope/label-values?label=service_name").expect("label values");
    assert_eq!(values.0, 200);
    assert!(values.1.contains("agent_burn"), "{}", values.1);
    let m = agent.metrics();
    assert!(
        metric(
            &m,
            "kiln_exporter_windows_exported_total",
            &[("exporter", "push")]
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &m,
            "kiln_exporter_windows_dropped_total",
            &[("exporter", "push")]
        ),
        0.0,
        "kiln-server rejected windows:\n{}",
        agent.log()
    );

    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");
    server.stop();
}
