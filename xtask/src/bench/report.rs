//! Reporting: Markdown tables, the goals' verdict, and docs/benchmarks.md.

use std::{fmt::Write as _, fs, path::Path, process::Command};

use anyhow::Context as _;

use super::{
    peers::Profiler,
    results::{Cell, PairedCell, PairedRun},
    stats::median,
    watch::uname_r,
    SamplerArgs,
};
use crate::root;

// ---------------------------------------------------------------------------------------
// Reporting

pub(super) fn pct(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:+.1}%", x * 100.0))
}

pub(super) fn table(cells: &[Cell], reps: usize) -> String {
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

/// The three goals, checked cell by cell against the peers of the same run. BPF
/// time is checked on the paired measurement where there is one (same window, so the
/// host's drift cancels), with the separate runs' medians beside it.
pub(super) fn verdict(cells: &[Cell], paired: &[PairedCell]) -> String {
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

pub(super) fn paired_table(cells: &[PairedCell]) -> String {
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

pub(super) struct Environment {
    pub(super) date: String,
    pub(super) kernel: String,
    pub(super) cpu: String,
    pub(super) ncpus: usize,
    pub(super) commit: String,
    pub(super) versions: Vec<String>,
    pub(super) load_before: String,
}

impl Environment {
    pub(super) fn capture() -> Self {
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

pub(super) const BEGIN: &str =
    "<!-- bench:sampler:begin (generated by `cargo xtask bench sampler`) -->";
pub(super) const END: &str = "<!-- bench:sampler:end -->";

pub(super) fn doc_section(
    env: &Environment,
    args: &SamplerArgs,
    duration: u64,
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
        duration,
        args.frequencies,
        elapsed.div_ceil(60),
    );
    s.push_str(table);
    s.push('\n');
    s.push_str(verdict);
    let _ = writeln!(s, "\n{END}");
    s
}

pub(super) const DOC_HEAD: &str = "# Benchmarks

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

pub(super) fn write_doc(path: &Path, section: &str) -> anyhow::Result<()> {
    write_doc_section(path, BEGIN, END, "## Sampler (kiln record)", section)
}

/// Replaces the generated block between `begin` and `end` in the doc at `path`, or, the
/// first time, inserts `section` right under the `heading` line (appending the heading
/// when there is none).
pub(super) fn write_doc_section(
    path: &Path,
    begin: &str,
    end: &str,
    heading: &str,
    section: &str,
) -> anyhow::Result<()> {
    let mut doc = fs::read_to_string(path).unwrap_or_default();
    if doc.is_empty() {
        doc = format!("{DOC_HEAD}{section}");
    } else if let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) {
        let stop = (e + end.len() + 1).min(doc.len());
        doc.replace_range(b..stop, section);
    } else if let Some(h) = doc.find(heading) {
        let after = h + doc[h..].find('\n').map_or(doc.len() - h, |n| n + 1);
        doc.insert_str(after, &format!("\n{section}"));
    } else {
        doc.push_str(&format!("\n{heading}\n\n{section}"));
    }
    fs::write(path, doc).with_context(|| format!("writing {}", path.display()))
}
