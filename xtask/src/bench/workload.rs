//! The programs being profiled: the sampler bench's workload, reporting its throughput.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::Context as _;

use crate::root;

/// One report of the workload: (monotonic ns, total ops, process CPU ns).
pub(super) type Sample = (u64, u64, u64);

/// The workload, with its running total of operations read from its stdout.
pub(super) struct Workload {
    pub(super) pid: i32,
    pub(super) trace: Arc<Mutex<Vec<Sample>>>,
    pub(super) reader: Option<thread::JoinHandle<()>>,
}

impl Workload {
    pub(super) fn start(exe: &Path, mode: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg(mode)
            .arg("0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child.stdout.take().unwrap();
        let trace = Arc::new(Mutex::new(Vec::new()));
        let t = trace.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if let [ns, ops, cpu] = v[..] {
                    t.lock().unwrap().push((ns, ops, cpu));
                }
            }
        });
        let w = Workload {
            pid: child.id() as i32,
            trace,
            reader: Some(reader),
        };
        // Wait for its first report so that it is really running.
        for _ in 0..50 {
            if !w.trace.lock().unwrap().is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(w)
    }

    /// Stops the workload and returns its reports.
    pub(super) fn stop(mut self) -> Vec<Sample> {
        // SAFETY: our own child.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.trace.lock().unwrap())
    }
}

pub(super) fn build_workload(out: &Path) -> anyhow::Result<PathBuf> {
    let src = root().join("tests/workloads/bench_load.c");
    let exe = out.join("bench_load");
    crate::run(
        Command::new("gcc")
            .args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&exe)
            .arg(&src),
    )?;
    Ok(exe)
}
