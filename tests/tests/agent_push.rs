//! `kiln agent --push-url` end to end (root, real eBPF) against a real local HTTP receiver
//! that decodes every `PushRequest` and pprof: series labels and samples arrive as
//! expected, with tenant and auth headers; while the receiver is down the agent keeps at
//! most its bounded queue and counts what it drops; when the receiver returns on the same
//! port, the queued windows are delivered and every window is accounted for.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use kiln_tests::{agent::*, *};

const QUEUE_WINDOWS: usize = 3;

fn our_series(received: &Mutex<Vec<PushReceived>>, tok: &str) -> Vec<Exported> {
    received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.series.iter().cloned())
        .filter(|s| s.label("kiln_test") == Some(tok))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn exported_windows(m: &str) -> f64 {
    metric(
        m,
        "kiln_exporter_windows_exported_total",
        &[("exporter", "push")],
    )
}

fn dropped_windows(m: &str) -> f64 {
    metric(
        m,
        "kiln_exporter_windows_dropped_total",
        &[("exporter", "push")],
    )
}

#[test]
fn agent_push_delivers_series_and_survives_receiver_outage() {
    if skip_unless_root("agent_push_delivers_series_and_survives_receiver_outage") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let received = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(0, received.clone());
    let port = receiver.port;
    let config = write_file(
        tmp.path(),
        "agent.toml",
        &format!(
            "[env_labels]\nKILN_TEST = \"kiln_test\"\n\
             [[relabel_configs]]\nsource_labels = [\"__meta_env_var_KILN_TEST\"]\nregex = \"{tok}\"\naction = \"keep\"\n"
        ),
    );
    let token_value = format!("bearer-{tok}");
    std::env::set_var("KILN_BEARER_TOKEN", &token_value);
    let agent = Agent::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--env-label",
            "REGION=region",
            "--label",
            "suite=agent-push",
            "--push-url",
            &receiver.url(),
            "--tenant-id",
            "team-push",
            "--collect-interval",
            "1",
            "--export-queue-windows",
            &QUEUE_WINDOWS.to_string(),
            "--export-max-backoff",
            "0.5",
            "--export-max-attempts",
            "1000",
            "--export-timeout",
            "2",
        ],
        tmp.path(),
    );
    let region = format!("push-{tok}");
    let _burner = spawn_in_cgroups(
        &exe,
        &["120000"],
        &[
            ("REGION", region.as_str()),
            ("SECRET", SECRET_VALUE),
            ("KILN_TEST", tok.as_str()),
        ],
        &[],
    );

    // Phase 1: the receiver is up.
    wait_until("two pushed windows", Duration::from_secs(30), || {
        our_series(&received, &tok).len() >= 2
    });
    {
        let reqs = received.lock().unwrap();
        for r in reqs.iter() {
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/proto")
            );
            assert_eq!(
                r.headers.get("x-scope-orgid").map(String::as_str),
                Some("team-push")
            );
            assert_eq!(
                r.headers.get("authorization"),
                Some(&format!("Bearer {token_value}"))
            );
            assert_no_secret("push body", &r.body, SECRET_VALUE);
            for s in &r.series {
                assert_no_secret("raw profile", &s.raw, SECRET_VALUE);
            }
        }
    }
    for s in our_series(&received, &tok) {
        assert_eq!(s.label("__name__"), Some("process_cpu"), "{:?}", s.labels);
        assert_eq!(s.label("service_name"), Some("agent_burn"));
        assert_eq!(s.label("process"), Some("agent_burn"));
        assert_eq!(s.label("region"), Some(region.as_str()));
        assert_eq!(s.label("suite"), Some("agent-push"));
        assert!(
            s.label("pid").is_none(),
            "pid is no series label by default"
        );
        let p = &s.profile;
        assert_eq!(p.string(p.sample_type[1].r#type), "cpu");
        assert!(p.duration_nanos > 0 && p.time_nanos > 0);
        for sample in &p.sample {
            assert!(
                sample.label.is_empty(),
                "pushed samples carry no pid/thread labels"
            );
        }
    }
    let burned: i64 = our_series(&received, &tok)
        .iter()
        .map(|s| s.total_in("kiln_agent_burn_long"))
        .sum();
    assert!(
        burned > 20,
        "only {burned} samples of kiln_agent_burn_long pushed"
    );

    // Phase 2: the receiver goes away for ~3x the queue.
    receiver.stop();
    let down_at = SystemTime::now();
    let before = agent.metrics();
    let collected_at_stop = metric(&before, "kiln_windows_collected_total", &[]);
    std::thread::sleep(Duration::from_secs(3 * QUEUE_WINDOWS as u64));
    let during = agent.metrics();
    let queued = metric(
        &during,
        "kiln_exporter_queue_windows",
        &[("exporter", "push")],
    );
    assert!(
        queued <= QUEUE_WINDOWS as f64,
        "queue over its bound: {queued}"
    );
    assert!(
        metric(
            &during,
            "kiln_exporter_failed_attempts_total",
            &[("exporter", "push")]
        ) > 0.0
    );
    let outage_windows = metric(&during, "kiln_windows_collected_total", &[]) - collected_at_stop;
    let dropped = dropped_windows(&during) - dropped_windows(&before);
    assert!(
        dropped >= 1.0,
        "{outage_windows} windows during the outage must overflow a queue of {QUEUE_WINDOWS}"
    );
    assert!(
        dropped <= outage_windows - QUEUE_WINDOWS as f64 + 1.0,
        "dropped {dropped} of {outage_windows} windows with a queue of {QUEUE_WINDOWS}"
    );
    assert_eq!(
        metric(
            &during,
            "kiln_exporter_windows_dropped_total",
            &[("exporter", "push"), ("reason", "queue_full")]
        ),
        dropped_windows(&during),
        "drops while down are queue overflows"
    );
    let up_at = SystemTime::now();

    // Phase 3: back on the same port; the queued windows arrive.
    let receiver = Receiver::start(port, received.clone());
    let exported_before = exported_windows(&during);
    wait_until("the queue to drain", Duration::from_secs(30), || {
        let m = agent.metrics();
        exported_windows(&m) >= exported_before + QUEUE_WINDOWS as f64
            && metric(&m, "kiln_exporter_queue_windows", &[("exporter", "push")]) == 0.0
    });
    let from_outage = our_series(&received, &tok)
        .iter()
        .filter(|s| {
            let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(s.profile.time_nanos as u64);
            start >= down_at && start < up_at
        })
        .count();
    assert!(
        from_outage >= QUEUE_WINDOWS - 1,
        "windows queued during the outage were delivered afterwards: {from_outage}"
    );

    // Every window is delivered, dropped (counted), queued or in flight.
    let m = agent.metrics();
    let collected = metric(&m, "kiln_windows_collected_total", &[]);
    let accounted = exported_windows(&m)
        + dropped_windows(&m)
        + metric(&m, "kiln_exporter_queue_windows", &[("exporter", "push")]);
    assert!(
        collected - accounted <= 1.0 && collected >= accounted,
        "collected {collected}, accounted {accounted}:\n{m}"
    );

    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");
    assert!(
        !log.contains(SECRET_VALUE) && !log.contains(&token_value),
        "secret in log"
    );
    assert!(
        log.contains("recovered"),
        "the agent logs its recovery:\n{log}"
    );
    drop(receiver);
}
