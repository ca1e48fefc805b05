//! Real kernel threads and a real memfd program on this host: labels that do not grow
//! with thread instances, work items or run-time names. Runs without root (kernel
//! threads' stat files are world-readable).

use std::{ffi::CString, os::fd::FromRawFd, process::Command};

use kiln_labels::{kthread, Discoverer, DiscoveryOptions};

/// Pid 2 is kthreadd, the parent of every kernel thread.
const KTHREADD: u32 = 2;

fn kernel_thread_pids() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc") {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is between the first '(' and the last ')'; flags is the 7th field after.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let flags: u32 = stat[close + 2..]
            .split(' ')
            .nth(6)
            .and_then(|f| f.parse().ok())
            .expect("flags field");
        if kthread::is_kernel_thread(flags) {
            out.push((pid, comm));
        }
    }
    out
}

#[test]
fn real_kernel_threads_are_one_service_with_bounded_kinds() {
    let mut d = Discoverer::new(DiscoveryOptions::default()).expect("discoverer");
    let kthreadd = d.target(KTHREADD).expect("kthreadd is always there");
    assert_eq!(kthreadd.get("service_name"), Some("kernel"));
    assert_eq!(kthreadd.get("kernel_thread"), Some("kthreadd"));
    assert!(kthreadd.get("process").is_none(), "no executable");

    let threads = kernel_thread_pids();
    assert!(threads.len() > 10, "a Linux host has many kernel threads");
    let mut comms = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut series = std::collections::BTreeSet::new();
    for (pid, comm) in &threads {
        // A kworker may exit between the listing and the read.
        let Some(t) = d.target(*pid) else { continue };
        assert_eq!(t.get("service_name"), Some("kernel"), "{pid} {comm}");
        let kind = t.get("kernel_thread").expect("kind label").to_owned();
        assert!(
            !kind.contains(['/', ':', '+']),
            "{comm} normalized to {kind}"
        );
        assert_eq!(kind, kthread::normalize(comm));
        comms.insert(comm.clone());
        kinds.insert(kind);
        series.insert(t.series_key());
    }
    // Per-CPU and per-work-item names collapse: at least one kind covers several names
    // (ksoftirqd/0, ksoftirqd/1, ... or kworker/...), and series follow kinds.
    assert!(
        kinds.len() < comms.len(),
        "kinds {kinds:?} vs names {comms:?}"
    );
    assert_eq!(series.len(), kinds.len());
    assert!(
        kinds.contains("kworker") || kinds.contains("ksoftirqd"),
        "{kinds:?}"
    );
}

/// A copy of `sleep` in a memfd named `name`, executed through `/proc/self/fd/<fd>`:
/// `/proc/<pid>/exe` is then `/memfd:<name> (deleted)`.
fn spawn_from_memfd(name: &str) -> std::process::Child {
    let cname = CString::new(name).expect("name");
    // SAFETY: memfd_create takes a NUL-terminated name and flags; no CLOEXEC, so the
    // child inherits the fd it executes.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned here.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let sleep = std::fs::read("/bin/sleep").expect("read /bin/sleep");
    std::io::Write::write_all(&mut file, &sleep).expect("fill memfd");
    let child = Command::new(format!("/proc/self/fd/{fd}"))
        .arg("30")
        .spawn()
        .expect("exec from memfd");
    drop(file);
    child
}

#[test]
fn program_run_from_a_memfd_falls_back_to_its_comm() {
    let name = format!("kiln-transient-{:016x}", kiln_testkit::random_u64());
    let mut child = spawn_from_memfd(&name);
    let pid = child.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    assert!(
        exe.to_string_lossy().starts_with("/memfd:kiln-transient-"),
        "{exe:?}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    let mut d = Discoverer::new(DiscoveryOptions::default()).expect("discoverer");
    let t = d.target(pid).expect("target");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(t.get("service_name"), Some(comm.trim()));
    assert!(t.get("process").is_none(), "no executable name: {t:?}");
    assert!(!format!("{:?}", t.labels()).contains(&name), "{t:?}");
    assert!(t.get("kernel_thread").is_none());
}
