//! `cargo xtask run`: `kiln run` on this host, in the foreground, until Ctrl-C.
//!
//! A terminal's Ctrl-C reaches both xtask and kiln (one process group). xtask only
//! forwards SIGINT/SIGTERM to kiln and waits, so kiln stores its last window and the
//! command's exit status is kiln's.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicI32, Ordering},
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::step;

/// The last SIGINT or SIGTERM received, 0 for none.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(signal: libc::c_int) {
    PENDING_SIGNAL.store(signal, Ordering::Relaxed);
}

pub fn kiln_run(kiln: &Path, kiln_args: &[String]) -> anyhow::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe. A
        // handler (unlike SIG_IGN) is reset to the default in the child at exec.
        unsafe {
            libc::signal(
                signal,
                remember_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    step(&format!(
        "starting {} run {}",
        kiln.display(),
        kiln_args.join(" ")
    ));
    let mut child = Command::new(kiln)
        .arg("run")
        .args(kiln_args)
        .spawn()
        .with_context(|| format!("cannot start {}", kiln.display()))?;
    let pid = child.id() as libc::pid_t;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let signal = PENDING_SIGNAL.swap(0, Ordering::Relaxed);
        if signal != 0 {
            // SAFETY: pid is our child, not yet reaped (try_wait returned None).
            unsafe { libc::kill(pid, signal) };
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        bail!("kiln run exited with {status}");
    }
    step("kiln run stopped");
    Ok(())
}
