//! `bench sampler`: kiln record, perf and bcc over the same workloads (see the parent
//! module's docs).

use std::{
    fmt::Write as _,
    fs,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::{
    peers::{setup_peers, Profiler},
    report::{doc_section, paired_table, table, verdict, write_doc, Environment},
    results::{Cell, PairedCell, PairedRun, Run},
    stats::{rate, Rate},
    watch::{end_child, now_ns, run_watched, wait_sampling, BpfStats, ProgStats, Usage, Watch},
    workload::{build_workload, Workload},
    SamplerArgs,
};
use crate::{root, step};

// ---------------------------------------------------------------------------------------
// One cell

pub(super) struct Ctx {
    pub(super) kiln: PathBuf,
    pub(super) workload: PathBuf,
    pub(super) out: PathBuf,
    pub(super) ncpus: usize,
    pub(super) duration: u64,
}

pub(super) const SEC: u64 = 1_000_000_000;

pub(super) fn baseline(ctx: &Ctx, mode: &str) -> anyhow::Result<Rate> {
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

pub(super) fn profile_once(ctx: &Ctx, mode: &str, hz: u64, p: Profiler) -> anyhow::Result<Run> {
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

pub(super) fn paired_once(ctx: &Ctx, mode: &str, hz: u64) -> anyhow::Result<PairedRun> {
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

pub(super) fn paired(ctx: &Ctx, args: &SamplerArgs) -> Vec<PairedCell> {
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

pub(super) fn run(args: SamplerArgs) -> anyhow::Result<()> {
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
    if args.write_doc {
        let section = doc_section(&env, &args, ctx.duration, &table, &verdict, elapsed);
        let doc = root().join("docs/benchmarks.md");
        write_doc(&doc, &section)?;
        step(&format!("results written to {}", doc.display()));
    }
    Ok(())
}
