//! `cargo xtask bench ...`: overhead measurements side by side with peers.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// The sampler: kiln record vs perf record and profile-bpfcc.
    Sampler,
}

pub fn run(which: Bench) -> anyhow::Result<()> {
    match which {
        Bench::Sampler => anyhow::bail!("not written yet"),
    }
}
