//! Tells a user which privilege is missing before the kernel answers with a bare EPERM.

use anyhow::bail;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn check() -> anyhow::Result<()> {
    let caps = effective_caps();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| *name)
        .collect();
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "kiln must run as root or with CAP_BPF and CAP_PERFMON (missing: {}); try `sudo kiln ...`",
            missing.join(", ")
        );
    }
    bail!(
        "kiln runs as root but lacks {} in its effective capabilities; grant them (e.g. in the container's securityContext)",
        missing.join(" and ")
    )
}
