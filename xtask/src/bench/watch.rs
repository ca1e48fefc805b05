//! Watching a profiler process: its rusage when reaped, its peak anonymous RSS, and the
//! run time of its bpf programs from `/proc/<pid>/fdinfo`.

use std::{collections::HashMap, fs, process::Command, thread, time::Duration};

use anyhow::{bail, Context as _};

// ---------------------------------------------------------------------------------------
// Processes, rusage, fdinfo

pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn uname_r() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Usage {
    pub(super) cpu_s: f64,
    pub(super) maxrss_kb: u64,
    pub(super) ok: bool,
}

pub(super) fn usage_of(status: i32, ru: &libc::rusage) -> Usage {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss as u64,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

/// A bpf program held by the profiler, as `/proc/<pid>/fdinfo` shows it.
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct ProgStats {
    pub(super) prog_type: u32,
    pub(super) run_time_ns: u64,
    pub(super) run_cnt: u64,
}

#[derive(Default, Debug)]
pub(super) struct Watch {
    /// When the profiler first held one perf event per CPU, or its program first ran
    /// (sampling started).
    pub(super) sampling_from: Option<u64>,
    /// The last poll at which it still held them, or its program had run since the one
    /// before.
    pub(super) sampling_to: Option<u64>,
    /// Last seen stats per prog id.
    pub(super) progs: HashMap<u32, ProgStats>,
    /// Peak anonymous RSS seen (`RssAnon`), kB: ru_maxrss also counts mapped files.
    pub(super) max_anon_kb: u64,
    /// Times `kernel.bpf_stats_enabled` was found switched off (by another process: it is
    /// one host-wide switch) and switched back on during this run.
    pub(super) stats_reenabled: u32,
}

pub(super) const BPF_PROG_TYPE_PERF_EVENT: u32 = 7;

impl Watch {
    pub(super) fn poll(&mut self, pid: i32, ncpus: usize) {
        let runs_before = self.sampler().map_or(0, |p| p.run_cnt);
        if BpfStats::ensure_on() {
            self.stats_reenabled += 1;
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            let anon = status
                .lines()
                .find_map(|l| l.strip_prefix("RssAnon:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            self.max_anon_kb = self.max_anon_kb.max(anon.unwrap_or(0));
        }
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        let mut perf_events = 0;
        for entry in dir.filter_map(Result::ok) {
            let Ok(target) = fs::read_link(entry.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if target == "anon_inode:[perf_event]" {
                perf_events += 1;
            } else if target == "anon_inode:bpf-prog" {
                let fdinfo = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
                let Ok(text) = fs::read_to_string(fdinfo) else {
                    continue;
                };
                let mut st = ProgStats::default();
                let mut id = None;
                for line in text.lines() {
                    let Some((k, v)) = line.split_once(':') else {
                        continue;
                    };
                    let v = v.trim();
                    match k {
                        "prog_type" => st.prog_type = v.parse().unwrap_or(0),
                        "prog_id" => id = v.parse().ok(),
                        "run_time_ns" => st.run_time_ns = v.parse().unwrap_or(0),
                        "run_cnt" => st.run_cnt = v.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                if let Some(id) = id {
                    self.progs.insert(id, st);
                }
            }
        }
        // perf holds its perf events; kiln holds bpf links instead (the kernel keeps the
        // events), so for BPF samplers the sign of sampling is their program running.
        let ran = self.sampler().map_or(0, |p| p.run_cnt) > runs_before;
        if perf_events >= ncpus || ran {
            let t = now_ns();
            self.sampling_from.get_or_insert(t);
            self.sampling_to = Some(t);
        }
    }

    /// The busiest perf_event program: the sampler (bpftrace also has an `interval` one).
    pub(super) fn sampler(&self) -> Option<ProgStats> {
        self.progs
            .values()
            .filter(|p| p.prog_type == BPF_PROG_TYPE_PERF_EVENT)
            .max_by_key(|p| p.run_cnt)
            .copied()
    }
}

/// Spawns `cmd`, polls its fds every 200 ms, and reaps it with `wait4` for its rusage.
pub(super) fn run_watched(
    cmd: &mut Command,
    ncpus: usize,
    timeout: Duration,
) -> anyhow::Result<(Usage, Watch)> {
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as i32;
    let deadline = now_ns() + timeout.as_nanos() as u64;
    let mut watch = Watch::default();
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our child; pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            return Ok((usage_of(status, &ru), watch));
        }
        if r < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if now_ns() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        watch.poll(pid, ncpus);
        thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `signal` to a child and reaps it.
pub(super) fn end_child(child: &mut std::process::Child, signal: i32) {
    // SAFETY: our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
}

/// Polls `pid` until its sampler program runs.
pub(super) fn wait_sampling(
    watch: &mut Watch,
    pid: i32,
    ncpus: usize,
    what: &str,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        watch.poll(pid, ncpus);
        if watch.sampler().is_some_and(|p| p.run_cnt > 0) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not start sampling within a minute")
}

/// Restores `kernel.bpf_stats_enabled` when dropped.
pub(super) struct BpfStats(String);

impl BpfStats {
    pub(super) const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    /// Switches the stats back on if someone switched them off; true if it had to. Both
    /// run_time_ns and run_cnt only grow while on, so their ratio stays a fair per-sample
    /// time over the part of the run that was counted.
    pub(super) fn ensure_on() -> bool {
        let off = fs::read_to_string(Self::PATH).is_ok_and(|v| v.trim() == "0");
        if off {
            let _ = fs::write(Self::PATH, "1");
        }
        off
    }

    pub(super) fn enable() -> anyhow::Result<Self> {
        let old = fs::read_to_string(Self::PATH).context("reading kernel.bpf_stats_enabled")?;
        fs::write(Self::PATH, "1").context("enabling kernel.bpf_stats_enabled (root needed)")?;
        Ok(BpfStats(old.trim().to_owned()))
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(Self::PATH, &self.0);
    }
}
