//! Builds the eBPF programs (profiler-ebpf) for bpfel-unknown-none with the nightly
//! toolchain and bpf-linker, so that `cargo build` of the daemon embeds a fresh object.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker is not installed: run `cargo xtask setup` once to install the eBPF toolchain"
        ));
    }
    println!(
        "cargo:rerun-if-changed={}/../profiler-common/src",
        env!("CARGO_MANIFEST_DIR")
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "profiler-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (profiler-ebpf) failed")
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    let home_bin = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home_bin)
        .map(|dir| dir.join("bpf-linker"))
        .find(|p| p.is_file())
}
