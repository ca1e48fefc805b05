//! Developer tasks: `cargo xtask setup | test | run | bench`.
//!
//! `setup` installs everything a fresh machine of this kind lacks (the eBPF toolchain,
//! Debian packages, the UI's npm packages) and is quick when there is nothing to do.

mod bench;
mod cycles;
mod demo;
mod run;
mod setup;

use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Kiln's build, setup and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain and packages Kiln needs (idempotent).
    Setup {
        /// Skip the web UI (npm install and build).
        #[arg(long)]
        no_ui: bool,
    },
    /// Set up, build, and run every test: lint, unit, end-to-end (needs root), UI.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Measure overhead side by side with peers; results go to docs/benchmarks.md.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
    /// The rideshare story: three Go services in three regions, load, and `kiln run`.
    Demo {
        /// Seconds between us-west-1's low and high mutexLock phases.
        #[arg(long, default_value_t = 60)]
        phase_seconds: u32,
        /// Extra arguments for `kiln run`.
        #[arg(last = true)]
        kiln_args: Vec<String>,
    },
    /// Set up, build, and run Kiln on this host until Ctrl-C: `kiln run` profiles every
    /// process, stores the profiles locally and serves the UI on http://127.0.0.1:4040.
    /// Arguments after `--` go to `kiln run` (see `kiln run --help`), e.g.
    /// `cargo xtask run -- --listen 127.0.0.1:4041 --env-label REGION=region`.
    Run {
        #[arg(last = true)]
        kiln_args: Vec<String>,
    },
}

pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

fn build_release() -> anyhow::Result<()> {
    step("building kiln (release)");
    run(cargo().args(["build", "--release", "-p", "profiler-daemon"]))
}

pub fn step(what: &str) {
    eprintln!("\x1b[1mxtask:\x1b[0m {what}");
}

/// Puts cargo's bin directory (where setup installs bpf-linker) on PATH for every tool
/// xtask runs, so `cargo xtask ...` works the same whether or not the shell has it.
fn with_cargo_bin_on_path() {
    let bin = setup::cargo_bin_dir();
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|p| p == bin) {
        let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)))
            .expect("PATH entries contain no separator");
        // SAFETY: called first thing in main, before any thread starts.
        unsafe { std::env::set_var("PATH", joined) };
    }
}

fn main() -> anyhow::Result<()> {
    with_cargo_bin_on_path();
    match Cli::parse().task {
        Task::Setup { no_ui } => setup::all(!no_ui),
        Task::Test {
            no_lint,
            cargo_args,
        } => {
            setup::all(true)?;
            if !no_lint {
                step("checking formatting, import cycles and lints");
                run(cargo().args(["fmt", "--all", "--check"]))?;
                cycles::check(&root())?;
                run(cargo().args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ]))?;
            }
            build_release()?;
            step("running the Rust tests (unit and end-to-end)");
            let kiln = root().join("target/release/kiln");
            run(cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .args(&cargo_args)
                .env("KILN_BIN", &kiln)
                // A test that lacks root, a tool or a host file fails instead of skipping.
                .env("KILN_REQUIRE_ROOT", "1"))?;
            if root().join("ui/package.json").is_file() {
                step("running the UI unit tests");
                run(Command::new("npm")
                    .args(["test"])
                    .current_dir(root().join("ui")))?;
            }
            Ok(())
        }
        Task::Bench { which } => {
            setup::all(false)?;
            build_release()?;
            bench::run(which)
        }
        Task::Demo {
            phase_seconds,
            kiln_args,
        } => {
            setup::all(true)?;
            build_release()?;
            demo::demo(
                &root().join("target/release/kiln"),
                phase_seconds,
                &kiln_args,
            )
        }
        Task::Run { kiln_args } => {
            setup::all(true)?;
            build_release()?;
            run::kiln_run(&root().join("target/release/kiln"), &kiln_args)
        }
    }
}
