//! `kiln targets`: shows the labels the agent would attach to each process (meta labels
//! before relabeling, final labels after), with the same configuration and flags as
//! `kiln agent`, to debug relabel rules. It reads /proc only; no eBPF is loaded.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use kiln_labels::{targets::format_target, DiscoverError, Discoverer};

use crate::cmd::agent::{KubeArgs, LabelArgs};

pub const TARGETS_AFTER_HELP: &str = "\
Examples:
  # Every process on the host (run as root to see other users' processes):
  sudo kiln targets --env-label REGION=region --label team=core

  # One process, with the agent's configuration file:
  sudo kiln targets --config /etc/kiln/agent.toml --pid 1234

Each target prints as
  pid 1234 series 9f3c2a1b0d4e5f60
    final: {hostname=\"node-1\", process=\"sleep\", service_name=\"sleep\"}
    meta:  {__meta_process_comm=\"sleep\", __meta_process_pid=\"1234\", ...}
and `final: dropped by relabeling` when a keep/drop rule excludes the process.
Only allow-listed environment variables (--env-label) are ever read.";

#[derive(Debug, Args)]
pub struct TargetsArgs {
    #[command(flatten)]
    pub labels: LabelArgs,

    #[command(flatten)]
    pub kube: KubeArgs,

    /// Show only this process; repeatable. Default: every process on the host.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Leave out processes that relabeling drops.
    #[arg(long)]
    pub hide_dropped: bool,
}

pub fn run(args: TargetsArgs) -> anyhow::Result<()> {
    let config = args.labels.load()?;
    let mut discoverer =
        Discoverer::new(config.discovery_options()?).context("invalid relabel configuration")?;
    // Pod and node metadata as the agent gets it: one list, then the watches stop.
    let kube_rt;
    let _kube = match args.kube.resolve()? {
        Some(k) => {
            kube_rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime failed")?;
            match kube_rt.block_on(kiln_kube::start(k.config.clone())) {
                Ok(meta) => {
                    if !kube_rt.block_on(meta.wait_synced(std::time::Duration::from_secs(10))) {
                        log::warn!("kubernetes: no complete pod and node list within 10 s");
                    }
                    discoverer.add_provider(meta.clone());
                    Some(meta)
                }
                Err(e) if k.required => {
                    return Err(e).context("starting Kubernetes metadata failed")
                }
                Err(e) => {
                    log::warn!("kubernetes metadata is off: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let explicit = !args.pids.is_empty();
    let pids = if explicit {
        args.pids.clone()
    } else {
        discoverer.list_pids().context("listing /proc failed")?
    };
    let mut shown = Vec::new();
    let (mut vanished, mut unreadable, mut dropped) = (0usize, 0usize, 0usize);
    for pid in pids {
        match discoverer.lookup(pid) {
            Ok(t) => {
                if t.is_dropped() {
                    dropped += 1;
                    if args.hide_dropped {
                        continue;
                    }
                }
                shown.push(t);
            }
            Err(DiscoverError::Vanished { .. }) if explicit => {
                anyhow::bail!("no process with pid {pid} is running")
            }
            Err(DiscoverError::Vanished { .. }) => vanished += 1,
            Err(e) => {
                if explicit {
                    return Err(e).context("reading the process failed (run as root?)");
                }
                unreadable += 1;
            }
        }
    }
    let text = kiln_labels::targets::format_targets(shown.iter().map(|t| t.as_ref()));
    let mut out = std::io::stdout().lock();
    if shown.len() == 1 {
        write!(out, "{}", format_target(&shown[0]))?;
    } else {
        write!(out, "{text}")?;
    }
    out.flush()?;
    eprintln!(
        "kiln: {} targets ({} dropped by relabeling{}{})",
        shown.len() + usize::from(args.hide_dropped) * dropped,
        dropped,
        if vanished > 0 {
            format!(", {vanished} exited while listing")
        } else {
            String::new()
        },
        if unreadable > 0 {
            format!(", {unreadable} unreadable")
        } else {
            String::new()
        },
    );
    Ok(())
}
