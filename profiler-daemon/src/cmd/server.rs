//! `kiln server`: the profile store and its HTTP API and UI, without profiling.

use std::sync::Arc;

use anyhow::Context as _;

pub use kiln_server::ServerArgs;

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime failed")?;
    rt.block_on(kiln_server::serve(args, async {
        let _ = tokio::signal::ctrl_c().await;
    }))
}

/// Opens the store once for a process that both writes and serves it.
pub fn open(args: &ServerArgs) -> anyhow::Result<Arc<kiln_store::Store>> {
    Ok(Arc::new(kiln_server::open_store(args)?))
}
