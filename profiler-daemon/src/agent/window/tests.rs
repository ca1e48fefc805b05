//! The window loop driven by a scripted sample source, without eBPF or root.

use super::*;

use std::{
    collections::VecDeque,
    process::{Child, Command},
    sync::mpsc::{sync_channel, Receiver},
};

use kiln_labels::AgentConfig;
use profiler_common::SampleKey;

use crate::{
    capture::{procs::ProcessTable, sampler::RawSample},
    symbolize::Symbolizer,
};

/// A window boundary that never comes: windows end only when the loop stops.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What one drain of the scripted source delivers.
#[derive(Default)]
struct Drain {
    samples: Vec<RawSample>,
    events: Vec<ProcEvent>,
    /// The drain fails (as a kernel map read can).
    fails: bool,
    /// Runs before the drain, e.g. to end a process.
    before: Option<Box<dyn FnOnce()>>,
}

/// The sampling side as a script: each drain delivers the next [`Drain`], through the
/// real aggregate; once the script is played, it stops the loop.
struct ScriptedSource<'a> {
    drains: VecDeque<Drain>,
    events: Vec<ProcEvent>,
    procs: ProcessTable,
    symbolizer: Symbolizer,
    stop: &'a AtomicBool,
}

impl<'a> ScriptedSource<'a> {
    fn new(drains: Vec<Drain>, stop: &'a AtomicBool) -> Self {
        Self {
            drains: drains.into(),
            events: Vec::new(),
            procs: ProcessTable::default(),
            symbolizer: Symbolizer::new(100),
            stop,
        }
    }
}

impl SampleSource for ScriptedSource<'_> {
    fn wait_for_events(&self, timeout: Duration) {
        std::thread::sleep(timeout);
    }

    fn poll_events(&mut self) -> &[ProcEvent] {
        self.events.clear();
        &self.events
    }

    fn sync_unwind(&mut self) {}

    fn collect_into_where(
        &mut self,
        agg: &mut Aggregate,
        keep: impl Fn(u32) -> bool,
    ) -> anyhow::Result<u64> {
        self.events.clear();
        let Some(drain) = self.drains.pop_front() else {
            self.stop.store(true, Relaxed);
            return Ok(0);
        };
        if let Some(before) = drain.before {
            before();
        }
        self.events = drain.events;
        if drain.fails {
            anyhow::bail!("reading the sample buffer failed");
        }
        let (kept, skipped): (Vec<_>, Vec<_>) =
            drain.samples.into_iter().partition(|s| keep(s.key.tgid));
        agg.add(&kept, &mut self.procs, &mut self.symbolizer);
        Ok(skipped.iter().map(|s| s.count).sum())
    }

    fn last_events(&self) -> &[ProcEvent] {
        &self.events
    }

    fn report(&self, snap: &mut Snapshot) {
        snap.processes = self.procs.len();
    }
}

/// `count` samples of `pid` with thread name `comm` and no frames (nothing to
/// symbolize: the loop only looks at pids and counts).
fn sample(pid: u32, comm: &str, count: u64) -> RawSample {
    let mut name = [0u8; 16];
    name[..comm.len()].copy_from_slice(comm.as_bytes());
    RawSample {
        key: SampleKey {
            tgid: pid,
            tid: pid,
            user_stack: 0,
            kernel_stack_id: -1,
            flags: 0,
            comm: name,
            go_labels: 0,
            python_stack: 0,
        },
        count,
        user: Vec::new(),
        kernel: Vec::new(),
        go_labels: None,
        python: None,
    }
}

fn event(kind: u32, pid: u32) -> ProcEvent {
    ProcEvent { kind, tgid: pid }
}

/// A process to label; killed and reaped on drop.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Self(
            Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("running sleep"),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the window loop over `drains` with labels from `config`; returns the windows
/// it handed on (all, when `capacity` is large enough) and its metrics.
fn run_loop(
    drains: Vec<Drain>,
    config: &AgentConfig,
    capacity: usize,
    interval: Duration,
) -> (Vec<WindowData>, AgentMetrics) {
    run_loop_capped(drains, config, capacity, interval, 1000)
}

/// [`run_loop`] admitting at most `max_new_series` new series per window.
fn run_loop_capped(
    drains: Vec<Drain>,
    config: &AgentConfig,
    capacity: usize,
    interval: Duration,
    max_new_series: usize,
) -> (Vec<WindowData>, AgentMetrics) {
    let stop = AtomicBool::new(false);
    let metrics = AgentMetrics::new(97, Duration::from_millis(1));
    let (tx, rx) = sync_channel(capacity);
    let discoverer = Discoverer::new(config.discovery_options().unwrap()).unwrap();
    WindowLoop {
        collector: ScriptedSource::new(drains, &stop),
        discoverer,
        metrics: &metrics,
        tx,
        stop: &stop,
        frequency: 97,
        interval,
        drain_every: Duration::from_millis(1),
        idle_target: Arc::new(Target::new(0, 0, Default::default(), None)),
        dropped: HashSet::new(),
        meta_changes: None,
        series: SeriesLimiter::new(max_new_series),
    }
    .run()
    .unwrap();
    (received(rx), metrics)
}

fn received(rx: Receiver<WindowData>) -> Vec<WindowData> {
    rx.try_iter().collect()
}

/// The window's groups by their target's `process` label.
fn by_process(w: &WindowData) -> HashMap<String, &Group> {
    w.groups
        .iter()
        .map(|g| (g.target.get("process").unwrap_or("-").to_owned(), g))
        .collect()
}

#[test]
fn a_window_has_one_group_per_target_with_all_its_samples() {
    let (a, b) = (Sleeper::start(), Sleeper::start());
    let me = std::process::id();
    let drains = vec![
        Drain {
            samples: vec![sample(a.pid(), "sleep", 3), sample(me, "worker", 2)],
            events: vec![
                event(proc_event::FIRST_SAMPLE, a.pid()),
                event(proc_event::FIRST_SAMPLE, me),
            ],
            ..Default::default()
        },
        Drain {
            samples: vec![
                sample(a.pid(), "sleep", 1),
                sample(b.pid(), "sleep", 4),
                sample(me, "other-thread", 5),
            ],
            events: vec![event(proc_event::FIRST_SAMPLE, b.pid())],
            ..Default::default()
        },
    ];
    let (windows, metrics) = run_loop(drains, &AgentConfig::default(), 8, NEVER);

    assert_eq!(windows.len(), 1, "the stop flushes exactly one window");
    let w = &windows[0];
    assert_eq!(w.agg.total, 15);
    // Both sleeps have the same labels: one series, one group, both pids.
    let groups = by_process(w);
    assert_eq!(groups.len(), 2, "{:?}", groups.keys());
    let sleeps = groups["sleep"];
    assert_eq!(sleeps.samples, 8);
    assert_eq!(sleeps.pids, HashSet::from([a.pid(), b.pid()]));
    let own = groups
        .iter()
        .find(|(p, _)| p.as_str() != "sleep")
        .unwrap()
        .1;
    assert_eq!(own.samples, 7);
    assert_eq!(own.pids, HashSet::from([me]));
    let keys: HashSet<u64> = w.groups.iter().map(|g| g.target.series_key()).collect();
    assert_eq!(keys.len(), w.groups.len(), "a series split over groups");

    assert_eq!(metrics.windows_collected.load(Relaxed), 1);
    assert_eq!(metrics.windows_dropped.load(Relaxed), 0);
    assert_eq!(metrics.samples_exported.load(Relaxed), 15);
    assert_eq!(metrics.window_series.load(Relaxed), 2);
}

#[test]
fn a_window_the_encoder_has_no_room_for_is_dropped_and_counted() {
    let me = std::process::id();
    let drains = vec![Drain {
        samples: vec![sample(me, "worker", 2)],
        events: vec![event(proc_event::FIRST_SAMPLE, me)],
        ..Default::default()
    }];
    // No room in the channel at all: the encoder is busy.
    let (windows, metrics) = run_loop(drains, &AgentConfig::default(), 0, NEVER);
    assert!(windows.is_empty());
    assert_eq!(metrics.windows_collected.load(Relaxed), 1);
    assert_eq!(metrics.windows_dropped.load(Relaxed), 1);
}

#[test]
fn windows_follow_the_interval_and_every_sample_lands_in_exactly_one() {
    let me = std::process::id();
    let drains: Vec<Drain> = (0..40)
        .map(|i| Drain {
            samples: vec![sample(me, "worker", 1)],
            events: vec![event(proc_event::FIRST_SAMPLE, me)],
            before: Some(Box::new(|| std::thread::sleep(Duration::from_millis(5)))),
            fails: i == 7,
        })
        .collect();
    let (windows, metrics) = run_loop(
        drains,
        &AgentConfig::default(),
        1000,
        Duration::from_millis(50),
    );
    // 40 drains of 5+ ms in 50 ms windows.
    assert!(windows.len() >= 3, "{} windows", windows.len());
    for w in &windows {
        assert!(w.groups.len() <= 1, "one target, {} groups", w.groups.len());
    }
    assert_eq!(
        windows.iter().map(|w| w.seq).collect::<Vec<_>>(),
        (0..windows.len() as u64).collect::<Vec<_>>()
    );
    for pair in windows.windows(2) {
        assert_eq!(pair[0].start + pair[0].duration, pair[1].start, "a gap");
    }
    // The failed drain is counted and its samples are not invented.
    assert_eq!(metrics.collect_errors.load(Relaxed), 1);
    let total: u64 = windows.iter().map(|w| w.agg.total).sum();
    assert_eq!(total, 39);
    assert_eq!(metrics.samples_exported.load(Relaxed), 39);
    assert_eq!(
        metrics.windows_collected.load(Relaxed),
        windows.len() as u64
    );
}

#[test]
fn a_process_that_exits_within_the_window_keeps_the_labels_read_while_it_lived() {
    let mut short = Sleeper::start();
    let pid = short.pid();
    let vanished = Sleeper::start();
    let vanished_pid = vanished.pid();
    drop(vanished); // exits before any event names it
    let drains = vec![
        Drain {
            samples: vec![sample(pid, "sleep", 2)],
            events: vec![event(proc_event::FIRST_SAMPLE, pid)],
            ..Default::default()
        },
        Drain {
            samples: vec![sample(pid, "sleep", 1), sample(vanished_pid, "brief", 4)],
            events: vec![event(proc_event::EXIT, pid)],
            before: Some(Box::new(move || {
                let _ = short.0.kill();
                let _ = short.0.wait();
            })),
            ..Default::default()
        },
    ];
    let (windows, metrics) = run_loop(drains, &AgentConfig::default(), 8, NEVER);
    let groups = by_process(&windows[0]);
    // Labeled from /proc on its first sample: the executable is known.
    assert_eq!(groups["sleep"].samples, 3);
    assert_eq!(groups["sleep"].pids, HashSet::from([pid]));
    // Never read: labeled from what outlives it, its name, and counted.
    let brief = groups["-"];
    assert_eq!(brief.target.get("service_name"), Some("brief"));
    assert_eq!(brief.samples, 4);
    assert_eq!(metrics.samples_labeled_after_exit.load(Relaxed), 4);
    assert_eq!(metrics.samples_exported.load(Relaxed), 7);
}

#[test]
fn a_second_exec_the_kernel_did_not_announce_still_relabels_the_process() {
    // A shell that execs its workload once told to: the kernel announces the shell's exec
    // (it was sampled before) but not the workload's (the shell never was).
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.01; done; exec sleep 60",
            go.display()
        ))
        .spawn()
        .expect("running sh");
    let pid = child.id();
    let comm = move || std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let drains = vec![
        Drain {
            samples: vec![sample(pid, "sh", 2)],
            events: vec![
                event(proc_event::FIRST_SAMPLE, pid),
                event(proc_event::EXEC, pid),
            ],
            ..Default::default()
        },
        Drain {
            samples: vec![sample(pid, "sleep", 3)],
            events: vec![event(proc_event::FIRST_SAMPLE, pid)],
            before: Some(Box::new(move || {
                std::fs::write(&go, b"").unwrap();
                while comm().trim() != "sleep" {
                    std::thread::sleep(Duration::from_millis(5));
                }
            })),
            ..Default::default()
        },
    ];
    let (windows, _) = run_loop(drains, &AgentConfig::default(), 8, NEVER);
    let _ = child.kill();
    let _ = child.wait();
    let groups = by_process(&windows[0]);
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["sleep"],
        "the process kept the target read before its last exec"
    );
    assert_eq!(groups["sleep"].samples, 5);
}

#[test]
fn processes_relabeling_drops_are_skipped_and_counted() {
    let (kept, dropped) = (Sleeper::start(), Sleeper::start());
    let config = AgentConfig::from_toml_str(&format!(
        r#"
        [[relabel_configs]]
        source_labels = ["__meta_process_pid"]
        regex = "{}"
        action = "drop"
        "#,
        dropped.pid()
    ))
    .unwrap();
    let drains = vec![
        Drain {
            samples: vec![sample(kept.pid(), "sleep", 2)],
            events: vec![
                event(proc_event::FIRST_SAMPLE, kept.pid()),
                event(proc_event::FIRST_SAMPLE, dropped.pid()),
            ],
            ..Default::default()
        },
        Drain {
            samples: vec![
                sample(kept.pid(), "sleep", 1),
                sample(dropped.pid(), "sleep", 6),
            ],
            ..Default::default()
        },
    ];
    let (windows, metrics) = run_loop(drains, &config, 8, NEVER);
    let w = &windows[0];
    assert_eq!(w.groups.len(), 1);
    assert_eq!(w.groups[0].pids, HashSet::from([kept.pid()]));
    assert_eq!(
        w.agg.total, 3,
        "a dropped process's samples were aggregated"
    );
    assert_eq!(metrics.samples_relabel_dropped.load(Relaxed), 6);
    assert_eq!(metrics.samples_exported.load(Relaxed), 3);
}

#[test]
fn windows_align_to_the_interval() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_123_456);
    let end = aligned_end(t, Duration::from_secs(15));
    let secs = end.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(secs, Duration::from_secs(1_000_125));
    assert_eq!(secs.as_secs() % 15, 0);
    // Exactly on a boundary: the next one.
    assert_eq!(
        aligned_end(end, Duration::from_secs(15)),
        end + Duration::from_secs(15)
    );
}

#[test]
fn new_series_over_the_cap_are_dropped_and_counted() {
    let (a, _b) = (Sleeper::start(), Sleeper::start());
    let me = std::process::id();
    let drains = vec![Drain {
        samples: vec![sample(a.pid(), "sleep", 3), sample(me, "worker", 2)],
        events: vec![
            event(proc_event::FIRST_SAMPLE, a.pid()),
            event(proc_event::FIRST_SAMPLE, me),
        ],
        ..Default::default()
    }];
    let (windows, metrics) = run_loop_capped(drains, &AgentConfig::default(), 8, NEVER, 1);
    let w = &windows[0];
    assert_eq!(w.groups.len(), 1, "two new series, one admitted");
    let admitted = w.groups[0].samples;
    assert_eq!(metrics.series_limited.load(Relaxed), 1);
    assert_eq!(
        metrics.samples_series_limited.load(Relaxed),
        5 - admitted,
        "the refused series' samples"
    );
}
