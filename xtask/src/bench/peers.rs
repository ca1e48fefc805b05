//! The peers kiln is measured against (perf, bcc, bpftrace): names, and installing them.

use std::{
    collections::HashMap,
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use super::watch::uname_r;
use crate::step;

// ---------------------------------------------------------------------------------------
// Profilers

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Profiler {
    Kiln,
    Perf,
    Bcc,
    Bpftrace,
}

impl Profiler {
    pub(super) fn name(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln record",
            Profiler::Perf => "perf record -g + perf script",
            Profiler::Bcc => "bcc profile-bpfcc -f",
            Profiler::Bpftrace => "bpftrace profile:hz",
        }
    }
    pub(super) fn slug(self) -> &'static str {
        match self {
            Profiler::Kiln => "kiln",
            Profiler::Perf => "perf",
            Profiler::Bcc => "bcc",
            Profiler::Bpftrace => "bpftrace",
        }
    }
}

pub(super) fn has_command(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn apt_install(packages: &[&str]) -> bool {
    step(&format!("installing {} for the peers", packages.join(" ")));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(packages);
    apt(&install) || (apt(&["update"]) && apt(&install))
}

/// bcc compiles its program at run time and needs kernel headers. There are none for this
/// kernel; Debian 12's 6.1 headers work: `build` -> the arch part, `source` -> the common
/// part. Returns a reason when bcc cannot be made to work.
pub(super) fn kernel_headers() -> Result<(), String> {
    let modules = PathBuf::from(format!("/lib/modules/{}", uname_r()));
    let build = modules.join("build");
    if build.join("include/generated").is_dir() {
        return Ok(());
    }
    let find = || -> Option<(PathBuf, PathBuf)> {
        let mut dirs: Vec<(u32, PathBuf)> = fs::read_dir("/usr/src")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let abi = n
                    .strip_prefix("linux-headers-6.1.0-")?
                    .strip_suffix("-amd64")?;
                Some((abi.parse().ok()?, e.path()))
            })
            .collect();
        dirs.sort();
        let (_, arch) = dirs.pop()?;
        let common = PathBuf::from(arch.to_string_lossy().replace("-amd64", "-common"));
        common.is_dir().then_some((arch, common))
    };
    if find().is_none() {
        let out = Command::new("apt-cache")
            .args([
                "search",
                "--names-only",
                r"^linux-headers-6\.1\.0-[0-9]+-amd64$",
            ])
            .output()
            .map_err(|e| format!("apt-cache: {e}"))?;
        let newest = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|p| {
                let abi = p
                    .strip_prefix("linux-headers-6.1.0-")?
                    .strip_suffix("-amd64")?;
                Some((abi.parse::<u32>().ok()?, p.to_owned()))
            })
            .max();
        let Some((_, pkg)) = newest else {
            return Err("no linux-headers-6.1.0-*-amd64 package in apt".into());
        };
        if !apt_install(&[&pkg]) {
            return Err(format!("apt-get install {pkg} failed"));
        }
    }
    let (arch, common) = find().ok_or("kernel headers not found in /usr/src")?;
    fs::create_dir_all(&modules).map_err(|e| e.to_string())?;
    for (link, to) in [(&build, &arch), (&modules.join("source"), &common)] {
        let _ = fs::remove_file(link);
        std::os::unix::fs::symlink(to, link).map_err(|e| format!("{}: {e}", link.display()))?;
    }
    Ok(())
}

/// Installs what each peer needs; a peer that cannot be set up is skipped with a reason.
pub(super) fn setup_peers(profilers: &[Profiler]) -> HashMap<Profiler, String> {
    let mut skipped = HashMap::new();
    for &p in profilers {
        let (cmd, pkg) = match p {
            Profiler::Kiln => continue,
            Profiler::Perf => ("perf", "linux-perf"),
            Profiler::Bcc => ("profile-bpfcc", "bpfcc-tools"),
            Profiler::Bpftrace => ("bpftrace", "bpftrace"),
        };
        if !has_command(cmd) && !apt_install(&[pkg]) {
            skipped.insert(p, format!("not installed: apt-get install {pkg} failed"));
            continue;
        }
        if p == Profiler::Bcc {
            if let Err(why) = kernel_headers() {
                skipped.insert(p, format!("no kernel headers for bcc: {why}"));
            }
        }
    }
    skipped
}
