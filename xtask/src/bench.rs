//! `cargo xtask bench ...`: overhead measurements side by side with peers.
//!
//! `bench sampler` runs a 2-thread workload (CPU-bound or syscall-heavy) and, for each
//! sampling frequency, records the whole host with kiln, `perf record -g` and bcc's
//! `profile` (optionally bpftrace), each run preceded by a baseline run without a profiler
//! so that drift on this shared machine cancels. Per run it measures:
//! - BPF run time per sample: `kernel.bpf_stats_enabled=1`, then the profiler's own bpf
//!   program fds are read from `/proc/<pid>/fdinfo` every 200 ms (`run_time_ns / run_cnt`
//!   of its busiest perf_event program);
//! - the profiler's whole-run CPU time and peak RSS, from `wait4`'s rusage of the process
//!   we spawned (for perf: `perf record` plus the `perf script` that turns perf.data into
//!   stacks, i.e. the same output);
//! - the workload's throughput loss against the baseline run just before it, both in the
//!   steady sampling window and over the profiler's whole life (start-up and post-processing
//!   included).
//!
//! Then, for each workload and frequency, kiln and bcc sample the workload at the same
//! time (`--paired-reps` times): both programs' BPF time per sample over one shared
//! window. Between separate runs, per-sample time at 19 Hz swings 2-3x with the host's
//! state; within one window both profilers see the same host, so their ratio is the
//! comparison the goal is checked on.
//!
//! Results are printed as Markdown tables and written into docs/benchmarks.md.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::Subcommand;

use crate::{root, step};

#[derive(Subcommand)]
pub enum Bench {
    /// The sampler: kiln record vs perf record and profile-bpfcc.
    Sampler(SamplerArgs),
}

#[derive(clap::Args, Clone)]
pub struct SamplerArgs {
    /// Repetitions of the whole matrix; the table shows the median.
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Seconds each profiler records (and each baseline lasts).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Sampling frequencies (Hz).
    #[arg(long, value_delimiter = ',', default_values_t = [19u64, 99, 999])]
    frequencies: Vec<u64>,
    /// Workloads: cpu, syscall.
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("cpu"), String::from("syscall")])]
    workloads: Vec<String>,
    /// Also measure bpftrace (adds about a quarter to the run time).
    #[arg(long)]
    bpftrace: bool,
    /// Repetitions of the paired measurement (kiln and bcc at once) per workload and
    /// frequency; 0 skips it.
    #[arg(long, default_value_t = 5)]
    paired_reps: usize,
    /// Print the table only; leave docs/benchmarks.md alone.
    #[arg(long)]
    no_doc: bool,
}

pub fn run(which: Bench) -> anyhow::Result<()> {
    match which {
        Bench::Sampler(args) => sampler(args),
    }
}

// ---------------------------------------------------------------------------------------
// Profilers

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Profiler {
    Kiln,
    Perf,
    Bcc,
    Bpftrace,
}

impl Profiler {
    fn name(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln record",
            Profiler::Perf => "perf record -g + perf script",
            Profiler::Bcc => "bcc profile-bpfcc -f",
            Profiler::Bpftrace => "bpftrace profile:hz",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln",
            Profiler::Perf => "perf",
            Profiler::Bcc => "bcc",
            Profiler::Bpftrace => "bpftrace",
        }
    }
}

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn apt_install(packages: &[&str]) -> bool {
    step(&format!("installing {} for the peers", packages.join(" ")));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(packages);
    apt(&install) || (apt(&["update"]) && apt(&install))
}

/// bcc compiles its program at run time and needs kernel headers. There are none for this
/// kernel; Debian 12's 6.1 headers work: `build` -> the arch part, `source` -> the common
/// part. Returns a reason when bcc cannot be made to work.
fn kernel_headers() -> Result<(), String> {
    let modules = PathBuf::from(format!("/lib/modules/{}", uname_r()));
    let build = modules.join("build");
    if build.join("include/generated").is_dir() {
        return Ok(());
    }
    let find = || -> Option<(PathBuf, PathBuf)> {
        let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/src")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let abi = n
                    .strip_prefix("linux-headers-6.1.0-")?
                    .strip_suffix("-amd64")?;
                Some((abi.parse().ok()?, e.path()))
            })
            .collect();
        dirs.sort();
        let (_, arch) = dirs.pop()?;
        let common = PathBuf::from(arch.to_string_lossy().replace("-amd64", "-common"));
        common.is_dir().then_some((arch, common))
    };
    if find().is_none() {
        let out = Command::new("apt-cache")
            .args([
                "search",
                "--names-only",
                r"^linux-headers-6\.1\.0-[0-9]+-amd64$",
            ])
            .output()
            .map_err(|e| format!("apt-cache: {e}"))?;
        let newest = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| {
                let abi = p
                    .strip_prefix("linux-headers-6.1.0-")?
                    .strip_suffix("-amd64")?;
                Some((abi.parse::<u32>().ok()?, p.to_owned()))
            })
            .max();
        let Some((_, pkg)) = newest else {
            return Err("no linux-headers-6.1.0-*-amd64 package in apt".into());
        };
        if !apt_install(&[&pkg]) {
            return Err(format!("apt-get install {pkg} failed"));
        }
    }
    let (arch, common) = find().ok_or("kernel headers not found in /usr/src")?;
    fs::create_dir_all(&modules).map_err(|e| e.to_string())?;
    for (link, to) in [(&build, &arch), (&modules.join("source"), &common)] {
        let _ = fs::remove_file(link);
        std::os::unix::fs::symlink(to, link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(())
}

/// Installs what each peer needs; a peer that cannot be set up is skipped with a reason.
fn setup_peers(profilers: &[Profiler]) -> HashMap<Profiler, String> {
    let mut skipped = HashMap::new();
    for &p in profilers {
        let (cmd, pkg) = match p {
            Profiler::Kiln => continue,
            Profiler::Perf => ("perf", "linux-perf"),
            Profiler::Bcc => ("profile-bpfcc", "bpfcc-tools"),
            Profiler::Bpftrace => ("bpftrace", "bpftrace"),
        };
        if !has_command(cmd) && !apt_install(&[pkg]) {
            skipped.insert(p, format!("not installed: apt-get install {pkg} failed"));
            continue;
        }
        if p == Profiler::Bcc {
            if let Err(why) = kernel_headers() {
                skipped.insert(p, format!("no kernel headers for bcc: {why}"));
            }
        }
    }
    skipped
}

// ---------------------------------------------------------------------------------------
// Processes, rusage, fdinfo

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn uname_r() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[derive(Default, Clone, Copy, Debug)]
struct Usage {
    cpu_s: f64,
    maxrss_kb: u64,
    ok: bool,
}

fn usage_of(status: i32, ru: &libc::rusage) -> Usage {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss as u64,
        ok: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    }
}

/// A bpf program held by the profiler, as `/proc/<pid>/fdinfo` shows it.
#[derive(Default, Clone, Copy, Debug)]
struct ProgStats {
    prog_type: u32,
    run_time_ns: u64,
    run_cnt: u64,
}

#[derive(Default, Debug)]
struct Watch {
    /// When the profiler first held one perf event per CPU, or its program first ran
    /// (sampling started).
    sampling_from: Option<u64>,
    /// The last poll at which it still held them, or its program had run since the one
    /// before.
    sampling_to: Option<u64>,
    /// Last seen stats per prog id.
    progs: HashMap<u32, ProgStats>,
    /// Peak anonymous RSS seen (`RssAnon`), kB: ru_maxrss also counts mapped files.
    max_anon_kb: u64,
    /// Times `kernel.bpf_stats_enabled` was found switched off (by another process: it is
    /// one host-wide switch) and switched back on during this run.
    stats_reenabled: u32,
}

const BPF_PROG_TYPE_PERF_EVENT: u32 = 7;

impl Watch {
    fn poll(&mut self, pid: i32, ncpus: usize) {
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
    fn sampler(&self) -> Option<ProgStats> {
        self.progs
            .values()
            .filter(|p| p.prog_type == BPF_PROG_TYPE_PERF_EVENT)
            .max_by_key(|p| p.run_cnt)
            .copied()
    }
}

/// Spawns `cmd`, polls its fds every 200 ms, and reaps it with `wait4` for its rusage.
fn run_watched(
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

/// One report of the workload: (monotonic ns, total ops, process CPU ns).
type Sample = (u64, u64, u64);

/// The workload, with its running total of operations read from its stdout.
struct Workload {
    pid: i32,
    trace: Arc<Mutex<Vec<Sample>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Workload {
    fn start(exe: &Path, mode: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg(mode)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().unwrap();
        let trace = Arc::new(Mutex::new(Vec::new()));
        let t = trace.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if let [ns, ops, cpu] = v[..] {
                    t.lock().unwrap().push((ns, ops, cpu));
                }
            }
        });
        let w = Workload {
            pid: child.id() as i32,
            trace,
            reader: Some(reader),
        };
        // Wait for its first report so that it is really running.
        for _ in 0..50 {
            if !w.trace.lock().unwrap().is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(w)
    }

    /// Stops the workload and returns its reports.
    fn stop(mut self) -> Vec<Sample> {
        // SAFETY: our own child.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.trace.lock().unwrap())
    }
}

/// Throughput in [from, to], interpolating the 100 ms reports.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    /// Operations per wall-clock second.
    wall: f64,
    /// Operations per second of the workload's own CPU time.
    cpu: f64,
}

fn rate(trace: &[Sample], from: u64, to: u64) -> Option<Rate> {
    let at = |t: u64| -> Option<(f64, f64)> {
        let i = trace.iter().position(|&(ns, _, _)| ns >= t)?;
        if i == 0 {
            return (trace[0].0 == t).then_some((trace[0].1 as f64, trace[0].2 as f64));
        }
        let ((t0, o0, c0), (t1, o1, c1)) = (trace[i - 1], trace[i]);
        let f = (t - t0) as f64 / (t1 - t0) as f64;
        Some((
            o0 as f64 + (o1 - o0) as f64 * f,
            c0 as f64 + (c1 - c0) as f64 * f,
        ))
    };
    let ((o0, c0), (o1, c1)) = (at(from)?, at(to)?);
    (to > from && c1 > c0).then(|| Rate {
        wall: (o1 - o0) / ((to - from) as f64 / 1e9),
        cpu: (o1 - o0) / ((c1 - c0) / 1e9),
    })
}

// ---------------------------------------------------------------------------------------
// One cell

#[derive(Default, Clone, Debug)]
struct Run {
    baseline_ops: f64,
    /// Loss of ops per workload CPU-second in the sampling window: the in-line cost.
    inline_loss: f64,
    /// Loss of ops per wall-clock second in the sampling window.
    steady_loss: f64,
    whole_loss: f64,
    bpf_ns: Option<f64>,
    samples: Option<u64>,
    cpu_s: f64,
    post_cpu_s: f64,
    maxrss_kb: u64,
    max_anon_kb: u64,
    stats_reenabled: u32,
    ok: bool,
}

struct Ctx {
    kiln: PathBuf,
    workload: PathBuf,
    out: PathBuf,
    ncpus: usize,
    duration: u64,
}

const SEC: u64 = 1_000_000_000;

fn baseline(ctx: &Ctx, mode: &str) -> anyhow::Result<Rate> {
    let w = Workload::start(&ctx.workload, mode)?;
    thread::sleep(Duration::from_secs(ctx.duration));
    let trace = w.stop();
    let t0 = trace.first().context("the workload reported nothing")?.0;
    rate(
        &trace,
        t0 + SEC / 2,
        t0 + (ctx.duration * SEC).saturating_sub(SEC / 2),
    )
    .context("baseline run too short")
}

fn profile_once(ctx: &Ctx, mode: &str, hz: u64, p: Profiler) -> anyhow::Result<Run> {
    let dir = ctx.out.join(format!("{mode}-{hz}-{}", p.slug()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let file = |name: &str| fs::File::create(dir.join(name));
    let d = ctx.duration;
    let mut cmd = match p {
        Profiler::Kiln => {
            let mut c = Command::new(&ctx.kiln);
            c.args([
                "record",
                "--duration",
                &d.to_string(),
                "--frequency",
                &hz.to_string(),
            ])
            .arg("--output")
            .arg(dir.join("out.folded"))
            .stdout(file("stdout")?);
            c
        }
        Profiler::Perf => {
            let mut c = Command::new("perf");
            c.args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                &hz.to_string(),
                "-a",
                "-g",
                "-q",
                "-o",
            ])
            .arg(dir.join("perf.data"))
            .args(["--", "sleep", &d.to_string()])
            .stdout(file("stdout")?);
            c
        }
        Profiler::Bcc => {
            let mut c = Command::new("profile-bpfcc");
            c.args(["-F", &hz.to_string(), "-f", &d.to_string()])
                .stdout(file("out.folded")?);
            c
        }
        Profiler::Bpftrace => {
            let mut c = Command::new("bpftrace");
            c.arg("-e")
                .arg(format!(
                    "profile:hz:{hz} /pid != 0/ {{ @[kstack, ustack, comm] = count(); }} \
                     interval:s:{d} {{ exit(); }}"
                ))
                .stdout(file("out.txt")?);
            c
        }
    };
    cmd.stderr(file("stderr")?).stdin(Stdio::null());

    BpfStats::ensure_on();
    let base = baseline(ctx, mode)?;
    let w = Workload::start(&ctx.workload, mode)?;
    thread::sleep(Duration::from_millis(500));
    let spawned = now_ns();
    let timeout = Duration::from_secs(d + 120);
    let result = run_watched(&mut cmd, ctx.ncpus, timeout);
    let mut post = Usage {
        ok: true,
        ..Usage::default()
    };
    let mut post_watch = Watch::default();
    if p == Profiler::Perf && result.as_ref().is_ok_and(|(u, _)| u.ok) {
        // perf.data -> stacks: the post-processing that produces the same output.
        let mut script = Command::new("perf");
        script
            .args(["script", "-i"])
            .arg(dir.join("perf.data"))
            .stdout(file("out.perf-script")?)
            .stderr(file("stderr-script")?);
        (post, post_watch) = run_watched(&mut script, usize::MAX, timeout)?;
    }
    let ended = now_ns();
    let trace = w.stop();
    let (usage, watch) = result?;
    let _ = fs::remove_file(dir.join("perf.data"));

    let from = watch.sampling_from.unwrap_or(spawned);
    let to = watch.sampling_to.unwrap_or(ended).min(from + d * SEC);
    let steady = rate(
        &trace,
        from + SEC / 2,
        to.saturating_sub(SEC / 2).max(from + SEC),
    )
    .context("no workload reports in the sampling window")?;
    let whole = rate(&trace, spawned, ended).context("no workload reports over the run")?;
    let sampler = watch.sampler();
    Ok(Run {
        baseline_ops: base.wall,
        inline_loss: 1.0 - steady.cpu / base.cpu,
        steady_loss: 1.0 - steady.wall / base.wall,
        whole_loss: 1.0 - whole.wall / base.wall,
        bpf_ns: sampler
            .filter(|s| s.run_cnt > 0)
            .map(|s| s.run_time_ns as f64 / s.run_cnt as f64),
        samples: sampler.map(|s| s.run_cnt),
        cpu_s: usage.cpu_s + post.cpu_s,
        post_cpu_s: post.cpu_s,
        maxrss_kb: usage.maxrss_kb.max(post.maxrss_kb),
        max_anon_kb: watch.max_anon_kb.max(post_watch.max_anon_kb),
        stats_reenabled: watch.stats_reenabled,
        ok: usage.ok && post.ok,
    })
}

// ---------------------------------------------------------------------------------------
// Paired: kiln and bcc at once

/// BPF time per sample of kiln and bcc over the same window (one repetition).
#[derive(Clone, Copy, Debug)]
struct PairedRun {
    kiln_ns: f64,
    bcc_ns: f64,
    kiln_samples: u64,
    bcc_samples: u64,
}

/// Sends `signal` to a child and reaps it.
fn end_child(child: &mut std::process::Child, signal: i32) {
    // SAFETY: our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
}

/// Polls `pid` until its sampler program runs.
fn wait_sampling(watch: &mut Watch, pid: i32, ncpus: usize, what: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        watch.poll(pid, ncpus);
        if watch.sampler().is_some_and(|p| p.run_cnt > 0) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!("{what} did not start sampling within a minute")
}

fn paired_once(ctx: &Ctx, mode: &str, hz: u64) -> anyhow::Result<PairedRun> {
    let dir = ctx.out.join(format!("{mode}-{hz}-paired"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let file = |name: &str| fs::File::create(dir.join(name));
    let d = ctx.duration;
    let w = Workload::start(&ctx.workload, mode)?;
    // bcc first: it compiles its program for seconds. Both run well past the window and
    // are ended by signal once it is measured.
    let mut bcc = Command::new("profile-bpfcc")
        .args(["-F", &hz.to_string(), "-f", &(d + 120).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file("bcc.stderr")?)
        .spawn()
        .context("cannot start profile-bpfcc")?;
    let mut bcc_watch = Watch::default();
    let mut kiln = None;
    let result = (|| {
        wait_sampling(&mut bcc_watch, bcc.id() as i32, ctx.ncpus, "profile-bpfcc")?;
        let child = kiln.insert(
            Command::new(&ctx.kiln)
                .args(["record", "--duration", &(d + 120).to_string()])
                .args(["--frequency", &hz.to_string(), "--output"])
                .arg(dir.join("out.folded"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file("kiln.stderr")?)
                .spawn()
                .context("cannot start kiln record")?,
        );
        let mut kiln_watch = Watch::default();
        let kiln_pid = child.id() as i32;
        wait_sampling(&mut kiln_watch, kiln_pid, ctx.ncpus, "kiln record")?;
        thread::sleep(Duration::from_secs(1));
        let snapshot = |watch: &mut Watch, pid: i32| {
            watch.poll(pid, ctx.ncpus);
            watch.sampler().context("lost the sampler program")
        };
        let (k0, b0) = (
            snapshot(&mut kiln_watch, kiln_pid)?,
            snapshot(&mut bcc_watch, bcc.id() as i32)?,
        );
        thread::sleep(Duration::from_secs(d));
        let (k1, b1) = (
            snapshot(&mut kiln_watch, kiln_pid)?,
            snapshot(&mut bcc_watch, bcc.id() as i32)?,
        );
        if kiln_watch.stats_reenabled + bcc_watch.stats_reenabled > 0 {
            bail!("kernel.bpf_stats_enabled was switched off during the window");
        }
        let per_sample = |a: ProgStats, b: ProgStats| {
            let n = b.run_cnt.saturating_sub(a.run_cnt);
            (n > 0).then(|| {
                (
                    b.run_time_ns.saturating_sub(a.run_time_ns) as f64 / n as f64,
                    n,
                )
            })
        };
        let ((kiln_ns, kiln_samples), (bcc_ns, bcc_samples)) =
            match (per_sample(k0, k1), per_sample(b0, b1)) {
                (Some(k), Some(b)) => (k, b),
                _ => bail!("no samples in the window"),
            };
        Ok(PairedRun {
            kiln_ns,
            bcc_ns,
            kiln_samples,
            bcc_samples,
        })
    })();
    if let Some(child) = kiln.as_mut() {
        end_child(child, libc::SIGINT);
    }
    end_child(&mut bcc, libc::SIGKILL);
    w.stop();
    result
}

struct PairedCell {
    mode: String,
    hz: u64,
    runs: Vec<PairedRun>,
    errors: Vec<String>,
}

impl PairedCell {
    /// Median of the per-repetition kiln/bcc ratios.
    fn ratio(&self) -> Option<f64> {
        median(self.runs.iter().map(|r| r.kiln_ns / r.bcc_ns).collect())
    }
}

fn paired(ctx: &Ctx, args: &SamplerArgs) -> Vec<PairedCell> {
    let mut cells: Vec<PairedCell> = args
        .workloads
        .iter()
        .flat_map(|m| {
            args.frequencies.iter().map(|&hz| PairedCell {
                mode: m.clone(),
                hz,
                runs: vec![],
                errors: vec![],
            })
        })
        .collect();
    step(&format!(
        "paired: kiln and bcc at once, {} cells x {} reps, about {} min",
        cells.len(),
        args.paired_reps,
        ((cells.len() * args.paired_reps) as u64 * (ctx.duration + 8)).div_ceil(60)
    ));
    for rep in 0..args.paired_reps {
        for cell in &mut cells {
            eprint!(
                "  rep {}/{} {:7} {:4} Hz kiln + bcc ",
                rep + 1,
                args.paired_reps,
                cell.mode,
                cell.hz
            );
            match paired_once(ctx, &cell.mode, cell.hz) {
                Ok(r) => {
                    eprintln!(
                        "kiln {:.0} ns ({} samples), bcc {:.0} ns ({}): {:.2}x",
                        r.kiln_ns,
                        r.kiln_samples,
                        r.bcc_ns,
                        r.bcc_samples,
                        r.kiln_ns / r.bcc_ns
                    );
                    cell.runs.push(r);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    cell.errors.push(format!("rep {}: {e:#}", rep + 1));
                }
            }
        }
    }
    cells
}

fn paired_table(cells: &[PairedCell]) -> String {
    let mut t = String::from(
        "| Workload | Hz | kiln BPF ns/sample | bcc BPF ns/sample | kiln/bcc (median) | kiln/bcc per repetition | Notes |\n\
         |---|---:|---:|---:|---:|---|---|\n",
    );
    for c in cells {
        let med = |f: fn(&PairedRun) -> f64| {
            median(c.runs.iter().map(f).collect()).map_or("-".into(), |n| format!("{n:.0}"))
        };
        let ratios: Vec<String> = c
            .runs
            .iter()
            .map(|r| format!("{:.2}", r.kiln_ns / r.bcc_ns))
            .collect();
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.mode,
            c.hz,
            med(|r| r.kiln_ns),
            med(|r| r.bcc_ns),
            c.ratio().map_or("-".into(), |x| format!("{x:.2}x")),
            ratios.join(", "),
            c.errors.join("; ")
        );
    }
    t
}

// ---------------------------------------------------------------------------------------
// The matrix

/// Restores `kernel.bpf_stats_enabled` when dropped.
struct BpfStats(String);

impl BpfStats {
    const PATH: &'static str = "/proc/sys/kernel/bpf_stats_enabled";

    /// Switches the stats back on if someone switched them off; true if it had to. Both
    /// run_time_ns and run_cnt only grow while on, so their ratio stays a fair per-sample
    /// time over the part of the run that was counted.
    fn ensure_on() -> bool {
        let off = fs::read_to_string(Self::PATH).is_ok_and(|v| v.trim() == "0");
        if off {
            let _ = fs::write(Self::PATH, "1");
        }
        off
    }

    fn enable() -> anyhow::Result<Self> {
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

fn build_workload(out: &Path) -> anyhow::Result<PathBuf> {
    let src = root().join("tests/workloads/bench_load.c");
    let exe = out.join("bench_load");
    crate::run(
        Command::new("gcc")
            .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src),
    )?;
    Ok(exe)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

struct Cell {
    mode: String,
    hz: u64,
    profiler: Profiler,
    runs: Vec<Run>,
    errors: Vec<String>,
    skipped: Option<String>,
}

impl Cell {
    fn med(&self, f: impl Fn(&Run) -> Option<f64>) -> Option<f64> {
        median(self.runs.iter().filter_map(&f).collect())
    }
}

fn sampler(args: SamplerArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the sampler bench loads eBPF programs and needs root");
    }
    let kiln = root().join("target/release/kiln");
    if !kiln.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p profiler-daemon`",
            kiln.display()
        );
    }
    for m in &args.workloads {
        if m != "cpu" && m != "syscall" {
            bail!("unknown workload {m:?} (cpu, syscall)");
        }
    }
    let mut profilers = vec![Profiler::Kiln, Profiler::Perf, Profiler::Bcc];
    if args.bpftrace {
        profilers.push(Profiler::Bpftrace);
    }
    let skipped = setup_peers(&profilers);
    let out = root().join("target/bench/sampler");
    fs::create_dir_all(&out)?;
    let ctx = Ctx {
        kiln,
        workload: build_workload(&out)?,
        out: out.clone(),
        // SAFETY: sysconf has no preconditions.
        ncpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        duration: args.duration.max(3),
    };
    let env = Environment::capture();
    let _stats = BpfStats::enable()?;

    let mut cells: Vec<Cell> = Vec::new();
    for mode in &args.workloads {
        for &hz in &args.frequencies {
            for &p in &profilers {
                cells.push(Cell {
                    mode: mode.clone(),
                    hz,
                    profiler: p,
                    runs: vec![],
                    errors: vec![],
                    skipped: skipped.get(&p).cloned(),
                });
            }
        }
    }
    let active = cells.iter().filter(|c| c.skipped.is_none()).count();
    // Baseline + profiler: duration each, plus start-up (bcc compiles for seconds).
    let est = (active * args.reps) as u64 * (2 * ctx.duration + 6);
    step(&format!(
        "sampler bench: {active} cells x {} reps, about {} min; outputs in {}",
        args.reps,
        est.div_ceil(60),
        out.display()
    ));
    let started = std::time::Instant::now();
    for rep in 0..args.reps {
        for cell in cells.iter_mut().filter(|c| c.skipped.is_none()) {
            eprint!(
                "  rep {}/{} {:7} {:4} Hz {:30} ",
                rep + 1,
                args.reps,
                cell.mode,
                cell.hz,
                cell.profiler.name()
            );
            match profile_once(&ctx, &cell.mode, cell.hz, cell.profiler) {
                Ok(r) => {
                    eprintln!(
                        "loss in-line {:+5.1}% wall {:+5.1}% (whole {:+5.1}%)  bpf {}  cpu {:.2}s  rss {:.1} MB (anon {:.1}){}",
                        r.inline_loss * 100.0,
                        r.steady_loss * 100.0,
                        r.whole_loss * 100.0,
                        r.bpf_ns.map_or("-".into(), |n| format!("{n:.0} ns")),
                        r.cpu_s,
                        r.maxrss_kb as f64 / 1024.0,
                        r.max_anon_kb as f64 / 1024.0,
                        if r.ok { "" } else { "  (exited with an error)" }
                    );
                    if !r.ok {
                        cell.errors.push(format!(
                            "rep {}: exited with an error, see {}",
                            rep + 1,
                            out.join(format!(
                                "{}-{}-{}/stderr",
                                cell.mode,
                                cell.hz,
                                cell.profiler.slug()
                            ))
                            .display()
                        ));
                    }
                    cell.runs.push(r);
                }
                Err(e) => {
                    eprintln!("failed: {e:#}");
                    cell.errors.push(format!("rep {}: {e:#}", rep + 1));
                }
            }
        }
    }
    let paired = if args.paired_reps == 0 {
        Vec::new()
    } else if let Some(why) = skipped.get(&Profiler::Bcc) {
        step(&format!("paired measurement skipped: {why}"));
        Vec::new()
    } else {
        paired(&ctx, &args)
    };
    let elapsed = started.elapsed().as_secs();
    drop(_stats);

    let mut table = table(&cells, args.reps);
    if !paired.is_empty() {
        let _ = write!(
            table,
            "\nBPF time per sample with kiln and bcc sampling the workload at the same time \
             ({} s windows, {} repetition(s)):\n\n{}",
            ctx.duration,
            args.paired_reps,
            paired_table(&paired)
        );
    }
    let verdict = verdict(&cells, &paired);
    println!("\n{table}\n{verdict}");
    if !args.no_doc {
        let section = doc_section(&env, &args, &ctx, &table, &verdict, elapsed);
        let doc = root().join("docs/benchmarks.md");
        write_doc(&doc, &section)?;
        step(&format!("results written to {}", doc.display()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reporting

fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:+.1}%", x * 100.0))
}

fn table(cells: &[Cell], reps: usize) -> String {
    let mut t = String::new();
    t.push_str(
        "| Workload | Hz | Profiler | BPF ns/sample | Samples | CPU s (whole run) | Peak RSS MB (anon) | Loss in-line (ops/CPU-s) | Loss wall, sampling | Loss wall, whole run | Baseline ops/s | Notes |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for c in cells {
        let name = c.profiler.name();
        if let Some(why) = &c.skipped {
            let _ = writeln!(
                t,
                "| {} | {} | {name} | | | | | | | | | skipped: {why} |",
                c.mode, c.hz
            );
            continue;
        }
        let mut notes = Vec::new();
        if c.runs.len() < reps {
            notes.push(format!("{}/{reps} runs", c.runs.len()));
        }
        if c.profiler == Profiler::Perf {
            notes.push(format!(
                "perf script {:.2} s of it; no BPF (kernel perf code)",
                c.med(|r| Some(r.post_cpu_s)).unwrap_or(f64::NAN)
            ));
        }
        let reenabled: u32 = c.runs.iter().map(|r| r.stats_reenabled).sum();
        if reenabled > 0 && c.profiler != Profiler::Perf {
            notes.push(format!(
                "bpf_stats switched off by another process {reenabled}x and back on: BPF ns/sample over the counted part"
            ));
        }
        if c.runs.iter().any(|r| !r.ok) || !c.errors.is_empty() {
            notes.push(c.errors.join("; "));
        }
        let _ = writeln!(
            t,
            "| {} | {} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.mode,
            c.hz,
            c.med(|r| r.bpf_ns)
                .map_or("-".into(), |n| format!("{n:.0}")),
            c.med(|r| r.samples.map(|s| s as f64))
                .map_or("-".into(), |n| format!("{n:.0}")),
            c.med(|r| Some(r.cpu_s))
                .map_or("-".into(), |n| format!("{n:.2}")),
            c.med(|r| Some(r.maxrss_kb as f64 / 1024.0))
                .map_or("-".into(), |n| format!(
                    "{n:.1} ({:.1})",
                    c.med(|r| Some(r.max_anon_kb as f64 / 1024.0))
                        .unwrap_or(f64::NAN)
                )),
            pct(c.med(|r| Some(r.inline_loss))),
            pct(c.med(|r| Some(r.steady_loss))),
            pct(c.med(|r| Some(r.whole_loss))),
            c.med(|r| Some(r.baseline_ops))
                .map_or("-".into(), |n| format!("{:.2}M", n / 1e6)),
            notes.join("; ")
        );
    }
    t
}

/// The issue's three goals, checked cell by cell against the peers of the same run. BPF
/// time is checked on the paired measurement where there is one (same window, so the
/// host's drift cancels), with the separate runs' medians beside it.
fn verdict(cells: &[Cell], paired: &[PairedCell]) -> String {
    let find = |mode: &str, hz: u64, p: Profiler| {
        cells
            .iter()
            .find(|c| c.mode == mode && c.hz == hz && c.profiler == p && !c.runs.is_empty())
    };
    let mut bpf = Vec::new();
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for k in cells
        .iter()
        .filter(|c| c.profiler == Profiler::Kiln && !c.runs.is_empty())
    {
        let (mode, hz) = (k.mode.as_str(), k.hz);
        if let Some(kb) = k.med(|r| r.bpf_ns) {
            let peers: Vec<(&str, f64)> = [Profiler::Bcc, Profiler::Bpftrace]
                .into_iter()
                .filter_map(|p| Some((p.slug(), find(mode, hz, p)?.med(|r| r.bpf_ns)?)))
                .collect();
            let best = peers.iter().min_by(|a, b| a.1.total_cmp(&b.1));
            let at_once = paired
                .iter()
                .find(|c| c.mode == mode && c.hz == hz)
                .and_then(PairedCell::ratio);
            match (at_once, best) {
                (Some(ratio), best) => bpf.push((
                    ratio < 1.0,
                    format!(
                        "{mode} {hz} Hz: kiln/bcc {ratio:.2}x at once{}",
                        best.map_or(String::new(), |(b, pb)| format!(
                            " (separate runs: kiln {kb:.0} ns vs {b} {pb:.0} ns)"
                        ))
                    ),
                )),
                (None, Some(&(best, pb))) => bpf.push((
                    kb < pb,
                    format!("{mode} {hz} Hz: kiln {kb:.0} ns vs {best} {pb:.0} ns"),
                )),
                (None, None) => {}
            }
        }
        if let (Some(kc), Some(pc)) = (
            k.med(|r| Some(r.cpu_s)),
            find(mode, hz, Profiler::Perf).and_then(|c| c.med(|r| Some(r.cpu_s))),
        ) {
            cpu.push((
                kc < pc,
                format!("{mode} {hz} Hz: kiln {kc:.2} s vs perf {pc:.2} s"),
            ));
        }
        if let Some(m) = k.med(|r| Some(r.maxrss_kb as f64 / 1024.0)) {
            rss.push((m < 30.0, format!("{mode} {hz} Hz: {m:.1} MB")));
        }
    }
    let mut v = String::from("Goals, checked in this run:\n\n");
    for (goal, items) in [
        ("Less BPF time per sample than the eBPF peers", bpf),
        ("Whole-run CPU below perf record + perf script", cpu),
        ("Peak RSS under 30 MB (10 s whole-host recording)", rss),
    ] {
        let met = items.iter().filter(|(ok, _)| *ok).count();
        let status = if items.is_empty() {
            "not measured".to_owned()
        } else if met == items.len() {
            "**met**".to_owned()
        } else {
            format!(
                "**missed** in {} of {} cells",
                items.len() - met,
                items.len()
            )
        };
        let detail: Vec<String> = items
            .iter()
            .map(|(ok, s)| format!("{s}{}", if *ok { "" } else { " (miss)" }))
            .collect();
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" {}.", detail.join("; "))
        };
        let _ = writeln!(v, "- {goal}: {status}.{detail}");
    }
    v
}

struct Environment {
    date: String,
    kernel: String,
    cpu: String,
    ncpus: usize,
    commit: String,
    versions: Vec<String>,
    load_before: String,
}

impl Environment {
    fn capture() -> Self {
        let sh = |c: &str| {
            Command::new("sh")
                .args(["-c", c])
                .current_dir(root())
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        let versions = [
            sh("perf --version"),
            sh("dpkg-query -W -f 'bcc ${Version}' bpfcc-tools 2>/dev/null"),
            sh("bpftrace --version 2>/dev/null"),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
        Environment {
            date: sh("date -u '+%Y-%m-%d %H:%M UTC'"),
            kernel: uname_r(),
            cpu,
            // SAFETY: sysconf has no preconditions.
            ncpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as usize,
            commit: sh("git rev-parse --short HEAD"),
            versions,
            load_before: sh("cut -d' ' -f1-3 /proc/loadavg"),
        }
    }
}

const BEGIN: &str = "<!-- bench:sampler:begin (generated by `cargo xtask bench sampler`) -->";
const END: &str = "<!-- bench:sampler:end -->";

fn doc_section(
    env: &Environment,
    args: &SamplerArgs,
    ctx: &Ctx,
    table: &str,
    verdict: &str,
    elapsed: u64,
) -> String {
    let load_after = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}\n");
    let _ = writeln!(
        s,
        "Last run: {} on kernel {}, {} x {} (shared machine: load average {} before, {} after), \
         kiln at {}; {}. {} repetition(s), medians shown; {} s recordings; \
         frequencies {:?} Hz; the bench took {} min.\n",
        env.date,
        env.kernel,
        env.ncpus,
        env.cpu,
        env.load_before,
        load_after,
        env.commit,
        env.versions.join(", "),
        args.reps,
        ctx.duration,
        args.frequencies,
        elapsed.div_ceil(60),
    );
    s.push_str(table);
    s.push('\n');
    s.push_str(verdict);
    let _ = writeln!(s, "\n{END}");
    s
}

const DOC_HEAD: &str = "# Benchmarks

Kiln's overhead, measured on the machines we develop on, side by side with the tools it
replaces. Each component has its own section; each section says how to reproduce it and
reads its numbers against the goals, including where Kiln misses them.

## Methodology

- **Side by side, in the same run.** Development machines are small and shared (2 cores,
  other people compiling), so absolute numbers drift by several percent from one minute
  to the next. Every number is measured next to a peer in the same run, and every
  profiled run is preceded by a baseline run of the same workload without a profiler, so
  throughput losses compare neighbours in time.
- **Repetitions and medians.** Each cell is repeated and the median reported; losses
  below ~2% are within the noise of a shared 2-core machine.
- **Whole cost, not just the hot path.** Profiler CPU time is the whole process's
  (start-up, draining, symbolizing and writing included), from `wait4`'s rusage of the
  process the bench spawned; peak RSS is its `ru_maxrss`.
- **Generated results.** The blocks between `bench:*:begin` and `bench:*:end` markers are
  rewritten by `cargo xtask bench <which>`; the prose around them is written by hand
  after a run and may lag the newest numbers.

## Sampler (kiln record)

";

fn write_doc(path: &Path, section: &str) -> anyhow::Result<()> {
    let mut doc = fs::read_to_string(path).unwrap_or_default();
    if doc.is_empty() {
        doc = format!("{DOC_HEAD}{section}");
    } else if let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) {
        let end = (e + END.len() + 1).min(doc.len());
        doc.replace_range(b..end, section);
    } else if let Some(h) = doc.find("## Sampler (kiln record)") {
        let after = h + doc[h..].find('\n').map_or(doc.len() - h, |n| n + 1);
        doc.insert_str(after, &format!("\n{section}"));
    } else {
        doc.push_str(&format!("\n## Sampler (kiln record)\n\n{section}"));
    }
    fs::write(path, doc).with_context(|| format!("writing {}", path.display()))
}
