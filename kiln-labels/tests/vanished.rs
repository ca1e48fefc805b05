//! Processes that exit between listing and reading: no panic, `None`,
//! counted as vanished. Runs without root.

use std::time::{Duration, Instant};

use kiln_labels::{DiscoverError, Discoverer, DiscoveryOptions};
use kiln_testkit::ChildGuard;

fn discoverer() -> Discoverer {
    Discoverer::new(DiscoveryOptions::default()).expect("discoverer")
}

#[test]
fn reaped_process_listed_earlier_yields_none() {
    let mut d = discoverer();
    let child = ChildGuard::sleep_with_secret();
    let pid = child.pid();
    let listed = d.list_pids().expect("list /proc");
    assert!(listed.contains(&pid), "child must be listed while alive");

    let pid = child.kill_and_reap();
    assert!(d.target(pid).is_none());
    assert_eq!(d.stats().vanished, 1);
    assert_eq!(d.stats().errors, 0);
    assert!(matches!(
        d.lookup(pid),
        Err(DiscoverError::Vanished { pid: p }) if p == pid
    ));
    assert_eq!(d.cached(), 0, "failures are not cached");
}

#[test]
fn zombie_process_yields_none() {
    let mut d = discoverer();
    let child = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = child.id();
    // Not waited for: it stays a zombie until reaped.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = procfs::process::Process::new(pid as i32).and_then(|p| p.stat());
        if stat.map(|s| s.state == 'Z').unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "child never became a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(d.target(pid).is_none());
    assert_eq!(d.stats().vanished, 1);
    let mut child = child;
    child.wait().expect("reap");
}

#[test]
fn cached_target_of_exited_process_is_pruned() {
    let mut d = discoverer();
    let child = ChildGuard::sleep_with_secret();
    let pid = child.pid();
    assert!(d.target(pid).is_some());
    let alive = ChildGuard::sleep_with_secret();
    assert!(d.target(alive.pid()).is_some());
    assert_eq!(d.cached(), 2);
    child.kill_and_reap();
    assert_eq!(d.prune_exited(), 1);
    assert_eq!(d.cached(), 1);
    d.forget(alive.pid());
    assert_eq!(d.cached(), 0);
}

#[test]
fn racing_short_lived_processes_never_panic() {
    let mut d = discoverer();
    let mut found = 0;
    for _ in 0..40 {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        // Whatever state the child is in, lookups must not panic.
        if d.target(child.id()).is_some() {
            found += 1;
        }
        child.wait().expect("reap");
        d.forget(child.id());
        assert!(d.target(child.id()).is_none());
    }
    let stats = d.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.vanished >= 40, "{stats:?} (found alive {found})");
}

#[test]
fn cache_is_bounded() {
    let options = DiscoveryOptions {
        cache_capacity: 8,
        ..DiscoveryOptions::default()
    };
    let mut d = Discoverer::new(options).expect("discoverer");
    let mut seen = 0;
    for pid in d.list_pids().expect("list") {
        if d.target(pid).is_some() {
            seen += 1;
        }
        assert!(d.cached() <= 8);
    }
    // Keep the assertion meaningful only when there was something to evict.
    if seen > 8 {
        assert!(d.stats().evicted > 0);
    }
    // The most recently used entry survives eviction.
    let me = std::process::id();
    assert!(d.target(me).is_some());
    let hits = d.stats().cache_hits;
    assert!(d.target(me).is_some());
    assert_eq!(d.stats().cache_hits, hits + 1);
}

#[test]
fn exited_process_gets_a_target_from_what_outlives_it() {
    let mut options = DiscoveryOptions {
        hostname: Some("node-1".into()),
        ..DiscoveryOptions::default()
    };
    options
        .static_labels
        .insert("env".to_owned(), "prod".to_owned());
    let d = Discoverer::new(options).expect("discoverer");
    let t = d.exited_target(4_000_000, "agent_burn", false);
    assert!(!t.is_dropped());
    let labels = t.labels();
    assert_eq!(
        labels.get("service_name").map(String::as_str),
        Some("agent_burn")
    );
    assert_eq!(labels.get("hostname").map(String::as_str), Some("node-1"));
    assert_eq!(labels.get("env").map(String::as_str), Some("prod"));
    // Nothing was read from /proc, so nothing else is claimed.
    assert!(labels.get("process").is_none());
    assert!(labels.get("container_id").is_none());
    assert_eq!(d.cached(), 0, "not cached: the pid may be reused");
}

#[test]
fn exited_kernel_thread_joins_the_kernel_service() {
    let d = discoverer();
    let t = d.exited_target(4_000_001, "kworker/u8:3+flush-254:0", true);
    assert_eq!(t.get("service_name"), Some("kernel"));
    assert_eq!(t.get("kernel_thread"), Some("kworker"));
}
