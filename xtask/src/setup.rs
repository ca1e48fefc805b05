//! `cargo xtask setup`: the eBPF toolchain (nightly rust-src and a bpf-linker built
//! against the nightly toolchain's own libLLVM), Debian packages, and the web UI.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

use crate::{root, run, step};

/// bpf-linker release known to work with the nightly's LLVM here.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// How setup tells that a Debian package's job is done.
enum Probe {
    /// A command on PATH (another install of it is as good).
    Command(&'static str),
    /// The package itself, per dpkg.
    Package,
}

/// (Debian package, how to tell it is there, why Kiln needs it). Every tool or host file
/// a test uses is here: tests fail, not skip, when it is missing (`KILN_REQUIRE_ROOT=1`).
const DEBIAN_PACKAGES: &[(&str, Probe, &str)] = &[
    ("gcc", Probe::Command("gcc"), "builds the C test workloads"),
    (
        "binutils",
        Probe::Command("objcopy"),
        "objcopy and readelf check and split test binaries",
    ),
    (
        "golang-go",
        Probe::Command("go"),
        "`go tool pprof` validates pprof output; builds the Go demo and workloads",
    ),
    (
        "util-linux",
        Probe::Command("setpriv"),
        "tests drop privileges with setpriv",
    ),
    (
        "linux-perf",
        Probe::Command("perf"),
        "tests and benchmarks compare with perf",
    ),
    ("nodejs", Probe::Command("node"), "builds the web UI"),
    (
        "npm",
        Probe::Command("npm"),
        "installs the web UI's packages",
    ),
    (
        "python3.11-dev",
        Probe::Package,
        "the Python layout tests compile against its headers",
    ),
    (
        "chromium",
        Probe::Command("chromium"),
        "UI end-to-end tests and screenshots",
    ),
    (
        "python3.11",
        Probe::Package,
        "/usr/bin/python3.11 is a real input of the unwind-table tests",
    ),
    (
        "python3-venv",
        Probe::Package,
        "the Pyroscope SDK tests install PyPI clients into venvs",
    ),
    (
        "python3-pip",
        Probe::Package,
        "tests install Go toolchains and clients from PyPI",
    ),
    (
        "systemd",
        Probe::Command("systemd-analyze"),
        "systemd-analyze verifies the shipped units",
    ),
];

pub fn all(ui: bool) -> anyhow::Result<()> {
    debian_packages()?;
    rust_src()?;
    bpf_linker()?;
    if ui {
        web_ui()?;
    }
    step("setup complete");
    Ok(())
}

fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether each package is installed per dpkg, in one call.
fn dpkg_installed(packages: &[&str]) -> std::collections::HashSet<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Status}\\n"])
        .args(packages)
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return Default::default();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(" installed"))
        .map(str::to_owned)
        .collect()
}

fn debian_packages() -> anyhow::Result<()> {
    let by_dpkg: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, probe, _)| matches!(probe, Probe::Package))
        .map(|(pkg, _, _)| *pkg)
        .collect();
    let installed = dpkg_installed(&by_dpkg);
    let missing: Vec<&(&str, Probe, &str)> = DEBIAN_PACKAGES
        .iter()
        .filter(|(pkg, probe, _)| match probe {
            Probe::Command(cmd) => !has_command(cmd),
            Probe::Package => !installed.contains(*pkg),
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(pkg, _, _)| *pkg).collect();
    let why = missing
        .iter()
        .map(|(pkg, _, why)| format!("{pkg} ({why})"))
        .collect::<Vec<_>>()
        .join("; ");
    step(&format!(
        "installing Debian packages: {}",
        packages.join(" ")
    ));
    apt_install(&packages).with_context(|| format!("they provide: {why}"))
}

/// `apt-get update`, then installs `packages`: a fresh machine's package lists can be
/// stale, and an install from them fails.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !has_command("apt-get") {
        bail!(
            "no apt-get to install {}: install them by hand",
            packages.join(" ")
        );
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["update"]) {
        bail!("`apt-get update` failed: are you root, and is the Debian mirror reachable?");
    }
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(packages);
    if !apt(&install) {
        bail!(
            "could not install the Debian packages {} (are you root?)",
            packages.join(" ")
        );
    }
    Ok(())
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("rustup is required (https://rustup.rs)")?;
    if !out.status.success() {
        bail!(
            "the nightly Rust toolchain is missing; it builds the eBPF programs. Install it with `rustup toolchain install nightly --component rust-src`"
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn rust_src() -> anyhow::Result<()> {
    let sysroot = nightly_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        return Ok(());
    }
    step("adding rust-src to the nightly toolchain (eBPF builds core from source)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

pub fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// bpf-linker must link against the same LLVM the nightly rustc emits bitcode for. There
/// is no system LLVM of that version, so build it against the toolchain's own libLLVM.
fn bpf_linker() -> anyhow::Result<()> {
    let bin = cargo_bin_dir().join("bpf-linker");
    if bin.is_file()
        && Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    let sysroot = nightly_sysroot()?;
    let vv = Command::new("rustc").args(["+nightly", "-vV"]).output()?;
    let vv = String::from_utf8(vv.stdout)?;
    let llvm_major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("cannot read the nightly toolchain's LLVM version from `rustc -vV`")?
        .to_owned();
    let lib = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        .with_context(|| {
            format!(
                "no libLLVM in {}: the nightly toolchain is incomplete",
                lib.display()
            )
        })?;
    let link = lib.join("libLLVM.so");
    if !link.exists() {
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("cannot create {}", link.display()))?;
    }
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {llvm_major} (about a minute, once)"
    ));
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &sysroot))
    .context("building bpf-linker failed")
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.filter_map(Result::ok) {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n == "node_modules" || n == "dist")
            {
                continue;
            }
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(path);
            } else if let Ok(m) = meta.modified() {
                newest = newest.max(Some(m));
            }
        }
    }
    newest
}

fn web_ui() -> anyhow::Result<()> {
    let ui = root().join("ui");
    if !ui.join("package.json").is_file() {
        return Ok(());
    }
    let lock = ui.join("package-lock.json");
    let stamp = ui.join("node_modules/.package-lock.json");
    let stale = |a: &Path, b: &Path| match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.modified().ok() > b.modified().ok(),
        _ => true,
    };
    if !stamp.exists() || stale(&lock, &stamp) {
        step("installing the web UI's npm packages");
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&ui))?;
    }
    let index = ui.join("dist/index.html");
    let built = index.metadata().and_then(|m| m.modified()).ok();
    if built.is_none() || newest_mtime(&ui) > built {
        step("building the web UI");
        run(Command::new("npm").args(["run", "build"]).current_dir(&ui))?;
    }
    Ok(())
}
