//! `kiln record`: profile for a while, write one file.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use clap::Args;

use crate::{
    aggregate::Aggregate,
    capture::collector::Collector,
    capture::sampler::SamplerTuning,
    output::{self, Format, WriteInfo},
};

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Profile only this process (and its threads); repeat for several. Default: the whole host.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// How long to record, in seconds. Ctrl-C ends earlier and still writes the file.
    #[arg(long, short = 'd', default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,

    /// Samples per second on each CPU.
    #[arg(long, short = 'F', default_value_t = 99, value_name = "HZ")]
    pub frequency: u64,

    /// Output file; its extension picks the format: .pb.gz or .pprof (gzip'd pprof),
    /// .folded or .txt (one line per stack), .svg (flame graph). Repeat to write several
    /// formats of the same recording.
    #[arg(long, short = 'o', value_name = "FILE", required = true)]
    pub output: Vec<PathBuf>,

    #[command(flatten)]
    pub sampler: SamplerArgs,
}

/// Knobs of the kernel side, shared by every command that samples.
#[derive(Debug, Args, Clone)]
pub struct SamplerArgs {
    /// Also record idle CPUs (the swapper task, pid 0).
    #[arg(long)]
    pub include_idle: bool,

    /// Distinct (thread, stack) keys each of the two sample buffers holds.
    #[arg(long, default_value_t = profiler_common::defaults::COUNTS_ENTRIES, value_name = "N", hide_short_help = true)]
    pub counts_map_entries: u32,

    /// Distinct stacks each of the two stack maps holds (~1 KiB of kernel memory each).
    #[arg(long, default_value_t = profiler_common::defaults::STACK_ENTRIES, value_name = "N", hide_short_help = true)]
    pub stack_map_entries: u32,

    /// Do not read goroutine pprof labels (pprof.Do) of Go programs.
    #[arg(long)]
    pub no_go_labels: bool,

    /// Do not read the Python frames of CPython processes (their samples then show the
    /// interpreter's native frames, `_PyEval_EvalFrameDefault`).
    #[arg(long)]
    pub no_python_frames: bool,

    /// Walk user stacks with frame pointers only (bpf_get_stack), never with the
    /// binaries' DWARF unwind tables (.eh_frame). Cheaper; stacks through code built
    /// without frame pointers (most distribution libraries, -O2 C, Rust release) break.
    #[arg(long)]
    pub no_dwarf_unwind: bool,

    /// Kernel memory for DWARF unwind tables, in MiB (preallocated; 8 bytes per row,
    /// libc needs ~0.4 MiB). Least recently used tables of exited processes are evicted
    /// first; binaries that still do not fit are unwound with frame pointers.
    #[arg(long, default_value_t = profiler_common::unwind::defaults::TABLE_BYTES >> 20, value_name = "MIB")]
    pub unwind_table_mib: u64,

    /// Processes unwound with DWARF tables at once (~4 KiB of kernel memory each).
    #[arg(long, default_value_t = profiler_common::unwind::defaults::PROCESSES, value_name = "N", hide_short_help = true)]
    pub unwind_processes: u32,

    /// How often samples are moved out of the kernel, in milliseconds.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "MS",
        hide_short_help = true
    )]
    pub drain_interval_ms: u64,
}

impl SamplerArgs {
    pub fn tuning(&self) -> SamplerTuning {
        SamplerTuning {
            include_idle: self.include_idle,
            counts_entries: self.counts_map_entries,
            stack_entries: self.stack_map_entries,
            go_labels: !self.no_go_labels,
            python_frames: !self.no_python_frames,
            unwind: crate::unwind::UnwindConfig {
                enabled: !self.no_dwarf_unwind,
                table_bytes: self.unwind_table_mib.max(1) << 20,
                max_processes: self.unwind_processes,
            },
            drain_interval_ms: self.drain_interval_ms,
        }
    }
}

pub fn run(args: RecordArgs) -> anyhow::Result<()> {
    let formats = args
        .output
        .iter()
        .map(|p| Format::from_path(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if !(args.duration > 0.0 && args.duration.is_finite()) {
        bail!("--duration must be a positive number of seconds");
    }
    for pid in &args.pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            bail!("no process with pid {pid} is running");
        }
    }
    for path in &args.output {
        output::check_writable(path)?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;

    let config = args
        .sampler
        .tuning()
        .config(args.frequency, args.pids.clone());
    let mut collector = Collector::start(&config)?;
    log::debug!("sampling started");
    let started_at = SystemTime::now();
    let start = Instant::now();
    let duration = Duration::from_secs_f64(args.duration);
    let drain_every = Duration::from_millis(args.sampler.drain_interval_ms.max(10));
    let progress = std::io::stderr().is_terminal();
    let mut agg = Aggregate::deferring_kernel();
    let mut last_drain = Instant::now();
    let mut last_progress = Instant::now();

    while start.elapsed() < duration && !stop.load(Ordering::Relaxed) {
        collector.wait_for_events(
            Duration::from_millis(20).min(duration.saturating_sub(start.elapsed())),
        );
        collector.poll_events();
        collector.sync_unwind();
        if last_drain.elapsed() >= drain_every {
            collector.collect_into(&mut agg)?;
            last_drain = Instant::now();
        }
        if progress && last_progress.elapsed() >= Duration::from_millis(250) {
            let stats = collector.sampler_stats()?;
            eprint!(
                "\r\x1b[2Krecording {:.1}s / {:.0}s  samples {}  losses {}",
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                stats.get(profiler_common::Stat::Recorded),
                stats.losses()
            );
            let _ = std::io::stderr().flush();
            last_progress = Instant::now();
        }
    }
    // Sampling ends with the recording: symbolizing and writing are not what the user
    // asked to profile. Failing to stop only costs that; the samples are kept.
    if let Err(e) = collector.stop_sampling() {
        log::warn!("{e:#}");
    }
    let elapsed = start.elapsed();
    collector.collect_into(&mut agg)?;
    collector.resolve_kernel_frames(&mut agg);
    if progress {
        eprint!("\r\x1b[2K");
    }
    let stats = collector.sampler_stats()?;
    for stat in profiler_common::Stat::ALL {
        log::debug!("{} = {}", stat.name(), stats.get(stat));
    }

    let scope = if args.pids.is_empty() {
        "whole host".to_owned()
    } else {
        format!(
            "pid {}",
            args.pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let title = format!(
        "kiln record: {scope}, {:.1} s at {} Hz, {} samples",
        elapsed.as_secs_f64(),
        args.frequency,
        agg.total
    );
    let info = WriteInfo {
        window: (started_at, elapsed),
        frequency: args.frequency,
        title: &title,
    };
    for (path, format) in args.output.iter().zip(formats) {
        output::write(path, format, &agg, &info)
            .with_context(|| format!("writing {} failed", path.display()))?;
    }

    eprintln!(
        "kiln: recorded {} samples ({} unique stacks, {} processes, {} addresses symbolized) in {:.1} s; losses: {}",
        agg.total,
        agg.stacks.len(),
        agg.stacks.keys().map(|k| k.pid).collect::<std::collections::HashSet<_>>().len(),
        agg.locations.len(),
        elapsed.as_secs_f64(),
        stats.loss_summary(),
    );
    if let Some(unwind) = collector.unwind_stats() {
        eprintln!(
            "kiln: DWARF unwinding: {} stacks; {}",
            stats.get(profiler_common::Stat::DwarfStacks),
            unwind.summary()
        );
    }
    for path in &args.output {
        eprintln!("kiln: wrote {}", path.display());
    }
    Ok(())
}
