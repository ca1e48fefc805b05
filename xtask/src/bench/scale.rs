//! `bench scale`: `kiln agent` against many processes.
//!
//! Each cell starts P live processes from B distinct binaries (tiny C programs, one build
//! per binary so each has its own build id, code and symbols), then `kiln agent` at its
//! defaults (97 Hz, 15 s windows, an `--output-dir` exporter), and samples the agent's
//! CPU time (`/proc/<pid>/stat`), RSS (`VmRSS`) and the run time of its eBPF programs
//! (`/proc/<pid>/fdinfo`, with `kernel.bpf_stats_enabled`) every 2 s for `--duration`.
//! The churn cell runs `agent_burn churn` (tests/workloads/agent_burn.c) instead: N new
//! short-lived processes per second.
//!
//! The processes together use a fixed share of one CPU (`--workload-cpu`, 50% by
//! default): each burns 1 ms of CPU in its own function every `P x 1 ms / share`, at a
//! random phase. So every cell offers the sampler the same number of samples per second;
//! what grows is how many distinct processes and binaries they come from. At 97 Hz a
//! process is first sampled after about `P / (97 x share)` seconds, so in short runs of
//! the big cells not every process has been seen: the table reports how many the agent
//! tracked at the end.
//!
//! Reported per cell: agent CPU (user+sys, % of one CPU) and eBPF CPU after a warm-up
//! (a quarter of the duration, at most 60 s); RSS steady (median after warm-up), peak
//! (`VmHWM`, whole run) and its drift (median of the last third minus the first third
//! after warm-up); what the agent held at the end (from its /metrics).

use std::{
    fmt::Write as _,
    fs,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{
    report::write_doc_section,
    stats::median,
    watch::{uname_r, BpfStats, Watch},
};
use crate::{root, step};

#[derive(clap::Args, Clone)]
pub struct ScaleArgs {
    /// Seconds each cell runs (the issue's measurement: 600).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Cells as PROCESSES x BINARIES, comma separated; `0x0` is the idle host.
    #[arg(long, value_delimiter = ',', default_values_t = [
        String::from("0x0"), String::from("100x10"), String::from("1000x100"),
        String::from("5000x500"),
    ])]
    cells: Vec<String>,
    /// New processes per second in the churn cell; 0 skips it.
    #[arg(long, default_value_t = 1000)]
    churn_per_sec: u32,
    /// CPU each churn process burns before it exits, in ms.
    #[arg(long, default_value_t = 0.5)]
    churn_burn_ms: f64,
    /// Share of one CPU all live processes of a cell use together, in percent.
    #[arg(long, default_value_t = 50.0)]
    workload_cpu: f64,
    /// Also write the results into docs/benchmarks.md (by default they are only
    /// printed).
    #[arg(long)]
    write_doc: bool,
    /// Give the agent a relabel rule that keeps only the cell's processes, so that it
    /// symbolizes and exports only them (it still captures every process of the host):
    /// on a shared host, the cost of the neighbours' big binaries then stays out.
    #[arg(long)]
    only_workload: bool,
}

/// One process of a cell: burns `burn_us` of CPU in its own function every `period_us`.
const PROGRAM: &str = r#"
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define STR2(x) #x
#define STR(x) STR2(x)
static const char kiln_scale_id[] = "kiln-scale-binary-" STR(KILN_ID);
volatile unsigned long sink;
static double cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}
__attribute__((noinline)) void CAT(kiln_scale_work_, KILN_ID)(double us) {
    double until = cpu_us() + us;
    while (cpu_us() < until)
        for (int i = 0; i < 1000; i++) sink += i * (KILN_ID + 1);
}
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    double burn_us = atof(argv[1]);
    long period_us = atol(argv[2]);
    sink = kiln_scale_id[0];
    srand(getpid());
    usleep(rand() % (period_us > 0 ? period_us : 1));
    for (;;) {
        CAT(kiln_scale_work_, KILN_ID)(burn_us);
        usleep(period_us);
    }
}
"#;

enum Kind {
    Live { processes: usize, binaries: usize },
    Churn { per_sec: u32 },
}

struct Cell {
    kind: Kind,
    result: Option<Measured>,
    error: Option<String>,
}

impl Cell {
    fn label(&self) -> String {
        match self.kind {
            Kind::Live {
                processes: 0,
                binaries: _,
            } => "idle host".into(),
            Kind::Live {
                processes,
                binaries,
            } => format!("{processes} live processes, {binaries} binaries"),
            Kind::Churn { per_sec } => format!("{per_sec} new processes/s"),
        }
    }
}

#[derive(Default, Clone, Debug)]
struct Measured {
    cpu_pct: f64,
    bpf_pct: f64,
    rss_steady_mb: f64,
    rss_peak_mb: f64,
    /// Highest anonymous RSS (heap, stacks) polled: the peak without the file pages of
    /// the binaries mapped to symbolize them, which the kernel can reclaim.
    anon_peak_mb: f64,
    rss_drift_mb: f64,
    /// RSS (MB) at each minute, for the flatness read-out.
    rss_per_minute: Vec<f64>,
    /// From the agent's /metrics at the end.
    processes_tracked: f64,
    binaries_open: f64,
    targets_cached: f64,
    symbolizer_entries: f64,
    window_series: f64,
    series_limited: f64,
    samples_exported: f64,
    /// Live processes of the cell that were running at the end.
    alive: usize,
}

pub(super) fn run(args: ScaleArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the scale bench runs kiln agent (eBPF) and needs root");
    }
    let kiln = root().join("target/release/kiln");
    if !kiln.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p profiler-daemon`",
            kiln.display()
        );
    }
    let mut cells = Vec::new();
    for c in &args.cells {
        let (p, b) = c
            .split_once(['x', 'X'])
            .with_context(|| format!("cell {c:?}: use PROCESSES x BINARIES, e.g. 1000x100"))?;
        let processes: usize = p.trim().parse().with_context(|| format!("cell {c:?}"))?;
        let binaries: usize = b.trim().parse().with_context(|| format!("cell {c:?}"))?;
        if processes > 0 && binaries == 0 {
            bail!("cell {c:?}: processes need at least one binary");
        }
        cells.push(Cell {
            kind: Kind::Live {
                processes,
                binaries,
            },
            result: None,
            error: None,
        });
    }
    if args.churn_per_sec > 0 {
        cells.push(Cell {
            kind: Kind::Churn {
                per_sec: args.churn_per_sec,
            },
            result: None,
            error: None,
        });
    }
    let duration = Duration::from_secs(args.duration.max(20));
    let out = root().join("target/bench/scale");
    fs::create_dir_all(&out)?;
    let max_binaries = cells
        .iter()
        .map(|c| match c.kind {
            Kind::Live { binaries, .. } => binaries,
            Kind::Churn { .. } => 0,
        })
        .max()
        .unwrap_or(0);
    let binaries = build_binaries(&out.join("bin"), max_binaries)?;
    let churn = build_churn(&out)?;
    let load_before = loadavg();
    let started = Instant::now();
    step(&format!(
        "scale bench: {} cells of {} s each, about {} min; outputs in {}",
        cells.len(),
        duration.as_secs(),
        (cells.len() as u64 * (duration.as_secs() + 20)).div_ceil(60),
        out.display()
    ));
    let _stats = BpfStats::enable()?;
    for cell in &mut cells {
        eprint!("  {:40} ", cell.label());
        match measure(&kiln, &binaries, &churn, &cell.kind, &args, duration, &out) {
            Ok(m) => {
                eprintln!(
                    "agent CPU {:.3}% + eBPF {:.3}%, RSS {:.1} MB steady, {:.1} MB peak ({:.1} MB anonymous), drift {:+.1} MB; {} processes tracked ({} alive); RSS per minute {:.1?}",
                    m.cpu_pct,
                    m.bpf_pct,
                    m.rss_steady_mb,
                    m.rss_peak_mb,
                    m.anon_peak_mb,
                    m.rss_drift_mb,
                    m.processes_tracked,
                    m.alive,
                    m.rss_per_minute
                );
                cell.result = Some(m);
            }
            Err(e) => {
                eprintln!("failed: {e:#}");
                cell.error = Some(format!("{e:#}"));
            }
        }
    }
    drop(_stats);
    let table = table(&cells);
    let verdict = verdict(&cells);
    println!("\n{table}\n{verdict}");
    if args.write_doc {
        let section = doc_section(&args, duration, &table, &verdict, &load_before, started);
        let doc = root().join("docs/benchmarks.md");
        write_doc_section(&doc, BEGIN, END, "## Agent at scale", &section)?;
        step(&format!("results written to {}", doc.display()));
    }
    Ok(())
}

/// Compiles `count` distinct programs into `dir` (kept between runs: a binary is rebuilt
/// only when the program text changed).
fn build_binaries(dir: &Path, count: usize) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let src = dir.join("scale_proc.c");
    let fresh = fs::read_to_string(&src).is_ok_and(|s| s == PROGRAM);
    if !fresh {
        fs::write(&src, PROGRAM)?;
    }
    let paths: Vec<PathBuf> = (0..count)
        .map(|i| dir.join(format!("kiln_scale_{i:04}")))
        .collect();
    let todo: Vec<(usize, &PathBuf)> = paths
        .iter()
        .enumerate()
        .filter(|(_, p)| !fresh || !p.is_file())
        .collect();
    if !todo.is_empty() {
        step(&format!("compiling {} distinct test binaries", todo.len()));
    }
    // Two compilers at a time: the machine has two cores.
    for chunk in todo.chunks(2) {
        let children: Vec<(Child, &PathBuf)> = chunk
            .iter()
            .map(|(i, p)| {
                Command::new("gcc")
                    .args(["-O1", "-g", "-fno-omit-frame-pointer"])
                    .arg(format!("-DKILN_ID={i}"))
                    .arg("-o")
                    .arg(p)
                    .arg(&src)
                    .spawn()
                    .map(|c| (c, *p))
                    .context("gcc not found (cargo xtask setup installs it)")
            })
            .collect::<anyhow::Result<_>>()?;
        for (mut c, p) in children {
            if !c.wait()?.success() {
                bail!("compiling {} failed", p.display());
            }
        }
    }
    Ok(paths)
}

fn build_churn(out: &Path) -> anyhow::Result<PathBuf> {
    let exe = out.join("agent_burn");
    crate::run(
        Command::new("gcc")
            .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
            .arg(&exe)
            .arg(root().join("tests/workloads/agent_burn.c")),
    )?;
    Ok(exe)
}

/// The processes of one cell; killed by pid and reaped on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

impl Processes {
    fn alive(&mut self) -> usize {
        let mut alive = 0;
        for c in &mut self.0 {
            if matches!(c.try_wait(), Ok(None)) {
                alive += 1;
            }
        }
        alive
    }
}

fn start_cell(
    kind: &Kind,
    binaries: &[PathBuf],
    churn: &Path,
    args: &ScaleArgs,
    duration: Duration,
) -> anyhow::Result<Processes> {
    let mut procs = Processes(Vec::new());
    match *kind {
        Kind::Live {
            processes,
            binaries: count,
        } => {
            let burn_us = 1000u64;
            let share = (args.workload_cpu / 100.0).clamp(0.001, 1.0);
            let period_us = ((processes as f64 * burn_us as f64) / share) as u64;
            for i in 0..processes {
                let child = Command::new(&binaries[i % count])
                    .arg(burn_us.to_string())
                    .arg(period_us.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .context("starting a test process failed (ulimit -u?)")?;
                procs.0.push(child);
            }
        }
        Kind::Churn { per_sec } => {
            procs.0.push(
                Command::new(churn)
                    .arg("churn")
                    .arg(per_sec.to_string())
                    .arg((duration.as_secs() + 30).to_string())
                    .arg(args.churn_burn_ms.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .context("starting agent_burn churn failed")?,
            );
        }
    }
    Ok(procs)
}

/// Field 14 + 15 of /proc/<pid>/stat (utime + stime), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `RssAnon` of a process, in kB.
fn anon_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `VmRSS` and `VmHWM` of a process, in kB.
fn rss_kb(pid: u32) -> Option<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn bpf_run_ns(watch: &Watch) -> u64 {
    watch.progs.values().map(|p| p.run_time_ns).sum()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, body) = body.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// The sum of every series of `name` in a Prometheus exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn measure(
    kiln: &Path,
    binaries: &[PathBuf],
    churn: &Path,
    kind: &Kind,
    args: &ScaleArgs,
    duration: Duration,
    out: &Path,
) -> anyhow::Result<Measured> {
    let mut procs = start_cell(kind, binaries, churn, args, duration)?;
    let profiles = out.join("profiles");
    let _ = fs::remove_dir_all(&profiles);
    fs::create_dir_all(&profiles)?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let log = fs::File::create(out.join("agent.log"))?;
    let mut agent = Command::new(kiln);
    agent.arg("agent");
    if args.only_workload {
        let rules = out.join("only-workload.toml");
        fs::write(
            &rules,
            "[[relabel_configs]]\nsource_labels = [\"__meta_process_executable_name\"]\nregex = \"kiln_scale_[0-9]+|agent_burn\"\naction = \"keep\"\n",
        )?;
        agent.arg("--relabel-config").arg(&rules);
    }
    let mut agent = agent
        .arg("--output-dir")
        .arg(&profiles)
        .arg("--metrics-listen")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting kiln agent failed")?;
    let pid = agent.id();
    let result = (|| -> anyhow::Result<Measured> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(addr, "/healthz").is_none() {
            if Instant::now() > deadline {
                bail!("kiln agent not healthy after 60 s (see target/bench/scale/agent.log)");
            }
            if let Ok(Some(status)) = agent.try_wait() {
                bail!("kiln agent exited at start: {status} (see target/bench/scale/agent.log)");
            }
            thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let ncpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        let start = Instant::now();
        let warmup = (duration / 4).min(Duration::from_secs(60));
        let mut watch = Watch::default();
        let mut rss: Vec<(f64, f64)> = Vec::new(); // (seconds since start, MB)
        let mut warm: Option<(Instant, u64, u64)> = None;
        let mut anon_peak_kb = 0;
        let mut last_poll = Instant::now();
        while start.elapsed() < duration {
            // Anonymous RSS every 250 ms (its peaks are short); the rest every 2 s.
            thread::sleep(Duration::from_millis(250));
            anon_peak_kb = anon_peak_kb.max(anon_kb(pid).unwrap_or(0));
            if last_poll.elapsed() < Duration::from_secs(2) {
                continue;
            }
            last_poll = Instant::now();
            if let Ok(Some(status)) = agent.try_wait() {
                bail!("kiln agent exited: {status} (see target/bench/scale/agent.log)");
            }
            watch.poll(pid as i32, ncpus);
            if let Some((now, _)) = rss_kb(pid) {
                rss.push((start.elapsed().as_secs_f64(), now as f64 / 1024.0));
            }
            if warm.is_none() && start.elapsed() >= warmup {
                warm = Some((
                    Instant::now(),
                    cpu_ticks(pid).unwrap_or(0),
                    bpf_run_ns(&watch),
                ));
            }
        }
        watch.poll(pid as i32, ncpus);
        let (t0, ticks0, bpf0) = warm.context("the run ended before its warm-up")?;
        let secs = t0.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid).unwrap_or(0).saturating_sub(ticks0);
        let bpf = bpf_run_ns(&watch).saturating_sub(bpf0);
        let (_, hwm) = rss_kb(pid).context("agent status")?;
        let metrics = http_get(addr, "/metrics").unwrap_or_default();
        let after: Vec<f64> = rss
            .iter()
            .filter(|(t, _)| *t >= warmup.as_secs_f64())
            .map(|&(_, mb)| mb)
            .collect();
        let third = (after.len() / 3).max(1);
        let first = median(after.iter().take(third).copied().collect()).unwrap_or(0.0);
        let last = median(after.iter().rev().take(third).copied().collect()).unwrap_or(0.0);
        let rss_per_minute = (1..=duration.as_secs() / 60)
            .filter_map(|minute| {
                rss.iter()
                    .find(|(t, _)| *t >= (minute * 60) as f64)
                    .map(|&(_, mb)| mb)
            })
            .collect();
        Ok(Measured {
            cpu_pct: ticks as f64 / tick / secs * 100.0,
            bpf_pct: bpf as f64 / 1e9 / secs * 100.0,
            rss_steady_mb: median(after).unwrap_or(0.0),
            rss_peak_mb: hwm as f64 / 1024.0,
            anon_peak_mb: anon_peak_kb as f64 / 1024.0,
            rss_drift_mb: last - first,
            rss_per_minute,
            processes_tracked: metric(&metrics, "kiln_processes_tracked"),
            binaries_open: metric(&metrics, "kiln_binaries_open"),
            targets_cached: metric(&metrics, "kiln_targets_cached"),
            symbolizer_entries: metric(&metrics, "kiln_symbolizer_cache_entries"),
            window_series: metric(&metrics, "kiln_window_series"),
            series_limited: metric(&metrics, "kiln_series_limited_total"),
            samples_exported: metric(&metrics, "kiln_samples_exported_total"),
            alive: procs.alive(),
        })
    })();
    // SAFETY: our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(agent.try_wait(), Ok(None)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    drop(procs);
    let _ = fs::remove_dir_all(&profiles);
    result
}

fn table(cells: &[Cell]) -> String {
    let mut t = String::from(
        "| Cell | Agent CPU (% of one CPU) | eBPF CPU | RSS steady MB | RSS peak MB | of it anonymous, peak MB | RSS drift MB | Processes tracked | Binaries open | Labels cached | Symbol cache entries | Series (last window) | Samples exported |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in cells {
        match (&c.result, &c.error) {
            (Some(m), _) => {
                let _ = writeln!(
                    t,
                    "| {} | {:.3}% | {:.3}% | {:.1} | {:.1} | {:.1} | {:+.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}{} | {:.0} |",
                    c.label(),
                    m.cpu_pct,
                    m.bpf_pct,
                    m.rss_steady_mb,
                    m.rss_peak_mb,
                    m.anon_peak_mb,
                    m.rss_drift_mb,
                    m.processes_tracked,
                    m.binaries_open,
                    m.targets_cached,
                    m.symbolizer_entries,
                    m.window_series,
                    if m.series_limited > 0.0 {
                        format!(" ({:.0} over the new-series cap)", m.series_limited)
                    } else {
                        String::new()
                    },
                    m.samples_exported
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(t, "| {} | failed: {e} ||||||||||||", c.label());
            }
            (None, None) => {}
        }
    }
    t
}

fn verdict(cells: &[Cell]) -> String {
    let find = |p: usize| {
        cells.iter().find_map(|c| match (&c.kind, &c.result) {
            (Kind::Live { processes, .. }, Some(m)) if *processes == p => Some(m),
            _ => None,
        })
    };
    let mut v = String::from("Goals:\n");
    let mut goal =
        |what: &str, m: Option<&Measured>, check: &dyn Fn(&Measured) -> (bool, String)| {
            let line = match m {
                Some(m) => {
                    let (ok, detail) = check(m);
                    format!("{}: {detail}", if ok { "met" } else { "**missed**" })
                }
                None => "not measured".to_owned(),
            };
            let _ = writeln!(v, "- {what}: {line}");
        };
    goal(
        "peak RSS under 50 MB at 1,000 processes",
        find(1000),
        &|m| (m.rss_peak_mb < 50.0, format!("{:.1} MB", m.rss_peak_mb)),
    );
    goal(
        "peak RSS under 100 MB at 5,000 processes",
        find(5000),
        &|m| (m.rss_peak_mb < 100.0, format!("{:.1} MB", m.rss_peak_mb)),
    );
    goal(
        "under 0.5% of one CPU at 1,000 processes",
        find(1000),
        &|m| {
            let total = m.cpu_pct + m.bpf_pct;
            (
                total < 0.5,
                format!(
                    "{total:.3}% (agent {:.3}% + eBPF {:.3}%)",
                    m.cpu_pct, m.bpf_pct
                ),
            )
        },
    );
    let drifts: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{} {:+.1} MB",
                c.label(),
                c.result.as_ref()?.rss_drift_mb
            ))
        })
        .collect();
    let flat = cells
        .iter()
        .filter_map(|c| c.result.as_ref())
        .all(|m| m.rss_drift_mb.abs() <= (0.1 * m.rss_steady_mb).max(2.0));
    let _ = writeln!(
        v,
        "- RSS flat over time (drift within 10% or 2 MB): {}: {}",
        if flat { "met" } else { "**missed**" },
        drifts.join(", ")
    );
    if let (Some(small), Some(big)) = (find(100), find(5000)) {
        let grow = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::NAN };
        let cpu = grow(small.cpu_pct + small.bpf_pct, big.cpu_pct + big.bpf_pct);
        let rss = grow(small.rss_steady_mb, big.rss_steady_mb);
        let _ = writeln!(
            v,
            "- cost sub-linear in the process count (50x more processes): {}: CPU x{cpu:.1}, RSS x{rss:.1}",
            if cpu < 50.0 && rss < 50.0 { "met" } else { "**missed**" }
        );
    }
    v
}

const BEGIN: &str =
    "<!-- bench:scale:begin (generated by `cargo xtask bench scale --write-doc`) -->";
const END: &str = "<!-- bench:scale:end -->";

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn doc_section(
    args: &ScaleArgs,
    duration: Duration,
    table: &str,
    verdict: &str,
    load_before: &str,
    started: Instant,
) -> String {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .current_dir(root())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut s = format!("{BEGIN}\n\n");
    let _ = writeln!(
        s,
        "Last run: {} on kernel {}, kiln at {}; `cargo xtask bench scale --duration {}{}` \
         (cells {}, churn {}/s burning {} ms each, live processes using {}% of one CPU \
         together); load average {} before, {} after; {} min in all.\n",
        sh("date -u '+%Y-%m-%d %H:%M UTC'"),
        uname_r(),
        sh("git rev-parse --short HEAD"),
        duration.as_secs(),
        if args.only_workload {
            " --only-workload"
        } else {
            ""
        },
        args.cells.join(", "),
        args.churn_per_sec,
        args.churn_burn_ms,
        args.workload_cpu,
        load_before,
        loadavg(),
        started.elapsed().as_secs().div_ceil(60),
    );
    s.push_str(table);
    s.push('\n');
    s.push_str(verdict);
    let _ = writeln!(s, "\n{END}");
    s
}
