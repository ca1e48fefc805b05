//! `bench scale`.

#[derive(clap::Args, Clone)]
pub struct ScaleArgs {}

pub(super) fn run(_args: ScaleArgs) -> anyhow::Result<()> {
    Ok(())
}
