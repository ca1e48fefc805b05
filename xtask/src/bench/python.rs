//! `bench python`: the cost of Python frames. One CPU-bound CPython process
//! (`tests/workloads/py_bench.py`, Debian's python3.11, spinning 30 Python frames deep)
//! is profiled at 100 Hz by `kiln record --pid`, by the same with `--no-python-frames`,
//! and by `py-spy record --rate 100`, each run preceded by a baseline run of the workload
//! alone, in an order rotated every repetition so that the shared machine's drift spreads
//! over all three. Per run:
//! - BPF time: `run_time_ns` and `run_cnt` of kiln's perf_event program from
//!   `/proc/<pid>/fdinfo` (`kernel.bpf_stats_enabled=1`), divided by the runs and by the
//!   samples of the process (the folded output's total); the program also runs, and
//!   returns early, for the other CPUs' samples, which costs the same with and without
//!   Python frames and cancels in the difference;
//! - the host's cost: the profiler's CPU time (rusage) plus its BPF time, which the kernel
//!   spends in the sampled task's context;
//! - the workload's throughput loss against its baseline, per wall-clock second and per
//!   second of its own CPU time (BPF time is charged to it; py-spy's pauses are not).

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::{
    report::{write_doc_section, Environment},
    sampler::{baseline, Ctx, SEC},
    stats::{median, rate},
    watch::{now_ns, run_watched, BpfStats, BPF_PROG_TYPE_PERF_EVENT},
    workload::Workload,
};
use crate::{root, step};

const PYTHON: &str = "/usr/bin/python3.11";
const HZ: u64 = 100;
const PY_SPY_VERSION: &str = "0.4.3";

#[derive(clap::Args, Clone)]
pub struct PythonArgs {
    /// Repetitions; the table shows medians and ranges.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Seconds each profiler records (and each baseline lasts).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Also write the results into docs/benchmarks.md (by default they are only printed).
    #[arg(long)]
    write_doc: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Profiler {
    Kiln,
    KilnNoPython,
    PySpy,
}

const PROFILERS: [Profiler; 3] = [Profiler::Kiln, Profiler::KilnNoPython, Profiler::PySpy];

impl Profiler {
    fn name(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln record --pid",
            Profiler::KilnNoPython => "kiln record --pid --no-python-frames",
            Profiler::PySpy => "py-spy record --rate 100",
        }
    }
    fn slug(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln",
            Profiler::KilnNoPython => "kiln-no-python",
            Profiler::PySpy => "py-spy",
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Run {
    /// BPF ns per program run, and per sample of the process.
    bpf_per_run: Option<f64>,
    bpf_per_sample: Option<f64>,
    samples: Option<u64>,
    profiler_cpu_s: f64,
    /// Profiler CPU plus BPF time, as a share of one CPU over the recording.
    host_cost: f64,
    loss_wall: f64,
    loss_cpu: f64,
}

fn py_spy() -> anyhow::Result<PathBuf> {
    let dir = root().join("target/py-spy");
    let exe = dir.join("bin/py-spy");
    if !exe.is_file() {
        step(&format!(
            "installing py-spy {PY_SPY_VERSION} into {}",
            dir.display()
        ));
        crate::run(
            Command::new("python3")
                .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
                .args(["--no-deps", "--target"])
                .arg(&dir)
                .arg(format!("py-spy=={PY_SPY_VERSION}")),
        )?;
    }
    Ok(exe)
}

/// Samples in a folded output (`stack count` lines).
fn folded_total(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.rsplit_once(' ')?.1.trim().parse::<u64>().ok())
            .sum(),
    )
}

fn profile_once(ctx: &Ctx, script: &str, py_spy: &Path, p: Profiler) -> anyhow::Result<Run> {
    let dir = ctx.out.join(p.slug());
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let file = |name: &str| fs::File::create(dir.join(name));
    let d = ctx.duration.to_string();
    let hz = HZ.to_string();

    BpfStats::ensure_on();
    let base = baseline(ctx, script)?;
    let w = Workload::start(&ctx.workload, script)?;
    thread::sleep(Duration::from_millis(500));
    let pid = w.pid.to_string();
    let folded = dir.join("out.folded");
    let mut cmd = match p {
        Profiler::Kiln | Profiler::KilnNoPython => {
            let mut c = Command::new(&ctx.kiln);
            c.args(["record", "--pid", &pid, "-F", &hz, "-d", &d, "-o"])
                .arg(&folded);
            if p == Profiler::KilnNoPython {
                c.arg("--no-python-frames");
            }
            c
        }
        Profiler::PySpy => {
            let mut c = Command::new(py_spy);
            c.args(["record", "--rate", &hz, "--duration", &d, "--pid", &pid])
                .args(["--format", "raw", "--output"])
                .arg(&folded);
            c
        }
    };
    cmd.stdout(file("stdout")?)
        .stderr(file("stderr")?)
        .stdin(Stdio::null());
    let spawned = now_ns();
    let result = run_watched(&mut cmd, ctx.ncpus, Duration::from_secs(ctx.duration + 60));
    let ended = now_ns();
    let trace = w.stop();
    let (usage, watch) = result?;
    if !usage.ok {
        bail!(
            "{} exited with an error, see {}",
            p.name(),
            dir.join("stderr").display()
        );
    }
    let from = watch.sampling_from.unwrap_or(spawned);
    let to = watch
        .sampling_to
        .unwrap_or(ended)
        .min(from + ctx.duration * SEC);
    let steady = rate(
        &trace,
        from + SEC / 2,
        to.saturating_sub(SEC / 2).max(from + SEC),
    )
    .context("no workload reports in the sampling window")?;
    let (bpf_ns, bpf_runs) = watch
        .progs
        .values()
        .filter(|s| s.prog_type == BPF_PROG_TYPE_PERF_EVENT)
        .fold((0u64, 0u64), |(t, n), s| (t + s.run_time_ns, n + s.run_cnt));
    let samples = folded_total(&folded).filter(|&n| n > 0);
    Ok(Run {
        bpf_per_run: (bpf_runs > 0).then(|| bpf_ns as f64 / bpf_runs as f64),
        bpf_per_sample: samples
            .filter(|_| bpf_runs > 0)
            .map(|s| bpf_ns as f64 / s as f64),
        samples,
        profiler_cpu_s: usage.cpu_s,
        host_cost: (usage.cpu_s + bpf_ns as f64 / 1e9) / ctx.duration as f64,
        loss_wall: 1.0 - steady.wall / base.wall,
        loss_cpu: 1.0 - steady.cpu / base.cpu,
    })
}

/// "median (min to max)" of the values `f` gives.
fn spread(values: impl Iterator<Item = Option<f64>>, fmt: impl Fn(f64) -> String) -> String {
    let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
    let (Some(m), Some(lo), Some(hi)) = (
        median(v.clone()),
        v.iter().copied().reduce(f64::min),
        v.iter().copied().reduce(f64::max),
    ) else {
        return "-".into();
    };
    if v.len() == 1 {
        return fmt(m);
    }
    format!("{} ({} to {})", fmt(m), fmt(lo), fmt(hi))
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn ns(x: f64) -> String {
    format!("{x:.0}")
}

/// Results of each repetition, by profiler (None: that run failed).
type Reps = Vec<[Option<Run>; 3]>;

fn table(reps: &Reps) -> String {
    let mut t = String::from(
        "| Profiler | Runs | BPF ns per program run | BPF ns per sample of the process | Samples of the process | Profiler CPU s | Host cost (share of one CPU) | Workload loss, wall | Workload loss, per CPU-s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, p) in PROFILERS.iter().enumerate() {
        let runs: Vec<Run> = reps.iter().filter_map(|r| r[i]).collect();
        let col = |f: &dyn Fn(&Run) -> Option<f64>, fmt: &dyn Fn(f64) -> String| {
            spread(runs.iter().map(f), fmt)
        };
        let bpf = |f: &dyn Fn(&Run) -> Option<f64>| {
            if *p == Profiler::PySpy {
                "no BPF".to_owned()
            } else {
                col(f, &ns)
            }
        };
        let _ = writeln!(
            t,
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |",
            p.name(),
            runs.len(),
            reps.len(),
            bpf(&|r| r.bpf_per_run),
            bpf(&|r| r.bpf_per_sample),
            col(&|r| r.samples.map(|s| s as f64), &|x| format!("{x:.0}")),
            col(&|r| Some(r.profiler_cpu_s), &|x| format!("{x:.2}")),
            col(&|r| Some(r.host_cost), &|x| format!("{:.2}%", x * 100.0)),
            col(&|r| Some(r.loss_wall), &pct),
            col(&|r| Some(r.loss_cpu), &pct),
        );
    }
    t
}

/// Per-repetition differences (same repetition, so the host's state is close) against
/// the goals.
fn verdict(reps: &Reps) -> String {
    let diff = |a: usize, b: usize, f: &dyn Fn(&Run) -> Option<f64>| -> Vec<Option<f64>> {
        reps.iter().map(|r| Some(f(&r[a]?)? - f(&r[b]?)?)).collect()
    };
    let added = diff(0, 1, &|r| r.bpf_per_sample);
    let host = diff(0, 2, &|r| Some(r.host_cost));
    let loss = diff(0, 2, &|r| Some(r.loss_wall));
    let med = |v: &[Option<f64>]| median(v.iter().flatten().copied().collect());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- BPF time Python frames add per sample of a 30-frame Python stack (kiln minus kiln \
         --no-python-frames, per repetition): {} ns; goal under 1,500 ns: {}.",
        spread(added.iter().copied(), ns),
        match med(&added) {
            Some(x) if x < 1500.0 => "met",
            Some(_) => "NOT met",
            None => "not measured",
        }
    );
    let host_verdict = match (med(&host), host.iter().flatten().count()) {
        (Some(x), n) if x < 0.0 && host.iter().flatten().all(|&d| d < 0.0) => {
            format!("met (kiln below py-spy in all {n} repetitions)")
        }
        (Some(x), _) if x < 0.0 => "met on the median, not in every repetition".to_owned(),
        (Some(_), _) => "NOT met".to_owned(),
        (None, _) => "not measured".to_owned(),
    };
    let _ = writeln!(
        s,
        "- Host cost, kiln minus py-spy (per repetition, in points of one CPU): {}; goal kiln \
         below py-spy: {host_verdict}.",
        spread(host.iter().copied(), |x| format!("{:+.2}", x * 100.0)),
    );
    let _ = writeln!(
        s,
        "- Workload wall-clock loss, kiln minus py-spy (per repetition, points): {}. Losses \
         whose range spans zero are below what this shared machine resolves.",
        spread(loss.iter().copied(), |x| format!("{:+.1}", x * 100.0)),
    );
    s
}

const BEGIN: &str = "<!-- bench:python:begin (generated by `cargo xtask bench python`) -->";
const END: &str = "<!-- bench:python:end -->";

pub(super) fn run(args: PythonArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the Python bench loads eBPF programs and needs root");
    }
    let kiln = root().join("target/release/kiln");
    if !kiln.is_file() {
        bail!(
            "{} is missing: `cargo build --release -p profiler-daemon`",
            kiln.display()
        );
    }
    if !Path::new(PYTHON).is_file() {
        bail!("{PYTHON} is missing: run `cargo xtask setup`");
    }
    let py_spy = py_spy()?;
    let script = root().join("tests/workloads/py_bench.py");
    let script = script.to_str().context("non-UTF-8 path")?.to_owned();
    let out = root().join("target/bench/python");
    fs::create_dir_all(&out)?;
    let ctx = Ctx {
        kiln,
        workload: PathBuf::from(PYTHON),
        out: out.clone(),
        // SAFETY: sysconf has no preconditions.
        ncpus: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        duration: args.duration.max(3),
    };
    let env = Environment::capture();
    let _stats = BpfStats::enable()?;
    step(&format!(
        "python bench: 3 profilers x {} reps, about {} min; outputs in {}",
        args.reps,
        (3 * args.reps as u64 * (2 * ctx.duration + 3)).div_ceil(60),
        out.display()
    ));
    let started = std::time::Instant::now();
    let mut reps: Reps = Vec::new();
    for rep in 0..args.reps {
        let mut row: [Option<Run>; 3] = [None; 3];
        for k in 0..3 {
            let i = (k + rep) % 3;
            let p = PROFILERS[i];
            eprint!("  rep {}/{} {:40} ", rep + 1, args.reps, p.name());
            match profile_once(&ctx, &script, &py_spy, p) {
                Ok(r) => {
                    eprintln!(
                        "bpf {}/run {}/sample  cpu {:.2}s  host {:.2}%  loss wall {:+.1}% cpu {:+.1}%",
                        r.bpf_per_run.map_or("-".into(), ns),
                        r.bpf_per_sample.map_or("-".into(), ns),
                        r.profiler_cpu_s,
                        r.host_cost * 100.0,
                        r.loss_wall * 100.0,
                        r.loss_cpu * 100.0
                    );
                    row[i] = Some(r);
                }
                Err(e) => eprintln!("failed: {e:#}"),
            }
        }
        reps.push(row);
    }
    drop(_stats);
    let load_after = fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let table = table(&reps);
    let verdict = verdict(&reps);
    println!("\n{table}\n{verdict}");
    if args.write_doc {
        let mut s = format!("{BEGIN}\n\n");
        let _ = writeln!(
            s,
            "Last run: {} on kernel {}, {} x {} (shared machine: load average {} before, {} \
             after), kiln at {}, py-spy {PY_SPY_VERSION}, {PYTHON}. {} repetitions of {} s \
             recordings at {HZ} Hz, each after a baseline run of the workload alone, in \
             rotated order; medians with (min to max); the bench took {} min. Reproduce: \
             `cargo build --release -p profiler-daemon && cargo xtask bench python --write-doc`.\n",
            env.date,
            env.kernel,
            env.ncpus,
            env.cpu,
            env.load_before,
            load_after,
            env.commit,
            args.reps,
            ctx.duration,
            started.elapsed().as_secs().div_ceil(60),
        );
        s.push_str(&table);
        s.push('\n');
        s.push_str(&verdict);
        let _ = writeln!(s, "\n{END}");
        let doc = root().join("docs/benchmarks.md");
        write_doc_section(&doc, BEGIN, END, "## Python", &s)?;
        step(&format!("results written to {}", doc.display()));
    }
    Ok(())
}
