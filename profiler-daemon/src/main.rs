//! kiln: continuous profiling for Linux.

mod agent;
mod aggregate;
mod cmd;
mod collector;
mod export;
mod golang;
mod kallsyms;
mod metrics;
mod output;
mod privileges;
mod procs;
mod runtimes;
mod sampler;
mod symbolize;
mod unwind;

use clap::{Parser, Subcommand};

/// Kiln samples the CPU stacks of every process on this host with eBPF, symbolizes and
/// labels them, and stores or forwards them as profiles.
#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Record CPU profiles for a while and write them to a file (pprof, folded or SVG).
    ///
    /// Example: `sudo kiln record --duration 10 --output host.svg`
    Record(cmd::record::RecordArgs),
    /// Profile continuously: one profile per process label set every collect interval,
    /// pushed to a server and/or written as pprof files, until SIGINT/SIGTERM.
    #[command(after_help = cmd::agent::AGENT_AFTER_HELP)]
    Agent(Box<cmd::agent::AgentArgs>),
    /// Profile this host, store locally and serve the web UI, in one process.
    #[command(after_help = cmd::run::RUN_AFTER_HELP)]
    Run(Box<cmd::run::RunArgs>),
    /// Serve the profile store: Pyroscope-compatible push and query API and the web UI.
    Server(Box<cmd::server::ServerArgs>),
    /// Show the labels the agent would attach to each process (no eBPF needed).
    #[command(after_help = cmd::targets::TARGETS_AFTER_HELP)]
    Targets(cmd::targets::TargetsArgs),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Record(args) => cmd::record::run(args),
        Command::Agent(args) => cmd::agent::run(*args),
        Command::Targets(args) => cmd::targets::run(args),
        Command::Run(args) => cmd::run::run(*args),
        Command::Server(args) => cmd::server::run(*args),
    };
    if let Err(e) = result {
        eprintln!("kiln: error: {e:#}");
        std::process::exit(1);
    }
}
