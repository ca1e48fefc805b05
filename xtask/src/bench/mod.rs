//! `cargo xtask bench ...`: overhead measurements side by side with peers.
//!
//! Modules: [`peers`] (perf, bcc, bpftrace: install and describe), [`watch`] (a
//! profiler process's rusage, RSS and bpf program stats), [`workload`] (the programs
//! being profiled), [`stats`] (rates and medians), [`results`] (what the sampler bench
//! measured), [`report`] (tables, goals and docs/benchmarks.md), [`sampler`] (`bench
//! sampler`), [`scale`] (`bench scale`, the agent against many processes; see that
//! module) and [`python`] (`bench python`, Python frames against `--no-python-frames` and
//! py-spy; see that module).
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
//! Results are printed as Markdown tables; `--write-doc` also writes them into
//! docs/benchmarks.md.

mod peers;
mod python;
mod report;
mod results;
mod sampler;
mod scale;
mod stats;
mod watch;
mod workload;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// The sampler: kiln record vs perf record and profile-bpfcc.
    Sampler(SamplerArgs),
    /// The agent at scale: `kiln agent` CPU and RSS against 100 to 5,000 live processes
    /// and against 1,000 new processes per second.
    Scale(scale::ScaleArgs),
    /// Python frames: BPF time they add, and host cost and throughput loss against
    /// py-spy, on one CPU-bound CPython process at 100 Hz.
    Python(python::PythonArgs),
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
    /// Also write the results into docs/benchmarks.md (by default they are only
    /// printed).
    #[arg(long)]
    write_doc: bool,
}

pub fn run(which: Bench) -> anyhow::Result<()> {
    match which {
        Bench::Sampler(args) => sampler::run(args),
        Bench::Scale(args) => scale::run(args),
        Bench::Python(args) => python::run(args),
    }
}
