//! `kiln run`: profile this host, store locally, serve the UI, in one process.

use std::{sync::Arc, thread};

use anyhow::Context as _;
use clap::Args;

use crate::{
    agent::MetricsListen,
    cmd::{agent::AgentArgs, server::ServerArgs},
    export::store::StoreSink,
};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub server: ServerArgs,

    #[command(flatten)]
    pub agent: AgentArgs,
}

pub const RUN_AFTER_HELP: &str = "\
Examples:
  sudo kiln run                                    # UI on http://127.0.0.1:4040
  sudo kiln run --env-label REGION=region --label env=dev
  sudo kiln run --listen 0.0.0.0:4040 --auth-token-file /etc/kiln/token --retention-age 7d

Profiles are written to the embedded store every collect interval (default 15 s) and
are durable once written. Ctrl-C stores the last partial window, then exits. Every
`kiln agent` flag works here too (e.g. --push-url to also forward to Grafana Pyroscope);
the agent's own metrics are off unless --metrics-listen is given, since the server
already serves /metrics and /healthz.";

pub fn run(mut args: RunArgs) -> anyhow::Result<()> {
    if args.agent.metrics_listen.is_none() {
        args.agent.metrics_listen = Some(MetricsListen::Off);
    }
    // Refuse an unauthenticated non-loopback address before profiling anything.
    let access = args.server.access()?;
    let mut settings = args.agent.resolve()?;
    let store = super::server::open(&args.server)?;
    settings.extra_sinks.push(Arc::new(StoreSink::new(
        store.clone(),
        args.server.data_dir().display().to_string(),
    )));

    // The HTTP server runs on its own runtime thread; it stops after the agent has
    // stored its last window, so nothing acknowledged is lost.
    let listener = std::net::TcpListener::bind(args.server.listen)
        .with_context(|| format!("cannot listen on {}", args.server.listen))?;
    listener.set_nonblocking(true)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_store = store.clone();
    let limits = args.server.limits();
    let server = thread::Builder::new().name("kiln-server".into()).spawn(
        move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                kiln_server::serve_listener_with_access(
                    server_store,
                    listener,
                    limits,
                    access,
                    async move {
                        let _ = stop_rx.await;
                    },
                )
                .await
            })
        },
    )?;

    eprintln!(
        "kiln: profiling this host; open http://{} for the UI (Ctrl-C to stop)",
        args.server.listen
    );
    let agent_result = crate::agent::run(settings);
    let _ = stop_tx.send(());
    let server_result = server
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?;
    store.close().context("closing the profile store failed")?;
    agent_result?;
    server_result
}
