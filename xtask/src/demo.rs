//! `cargo xtask demo`: the rideshare story on this host. Three instances of a Go service
//! (REGION = us-east-1, us-west-1, eu-west-1), a load generator, and `kiln run` labeling
//! `region` from each process's REGION variable. The Go program knows nothing of Kiln.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

use anyhow::Context as _;

use crate::{root, run, step};

pub const REGIONS: [&str; 3] = ["us-east-1", "us-west-1", "eu-west-1"];

/// Builds the demo's Go binaries into `target/demo/` and returns (service, load generator).
pub fn build() -> anyhow::Result<(PathBuf, PathBuf)> {
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out)?;
    let src = root().join("examples/rideshare");
    step("building the rideshare demo (Go)");
    let service = out.join("rideshare");
    let loadgen = out.join("rideshare-loadgen");
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&service)
        .arg(".")
        .current_dir(&src))?;
    run(Command::new("go")
        .args(["build", "-o"])
        .arg(&loadgen)
        .arg("./loadgen")
        .current_dir(&src))?;
    Ok((service, loadgen))
}

/// Children killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn demo(kiln: &Path, phase_seconds: u32, kiln_args: &[String]) -> anyhow::Result<()> {
    let (service, loadgen) = build()?;
    let mut children = Children(Vec::new());
    let mut targets = Vec::new();
    for (i, region) in REGIONS.iter().enumerate() {
        let listen = format!("127.0.0.1:{}", 5001 + i);
        children.0.push(
            Command::new(&service)
                .env("REGION", region)
                .env("LISTEN", &listen)
                .env("MUTEX_PHASE_SECONDS", phase_seconds.to_string())
                .spawn()
                .context("starting rideshare")?,
        );
        targets.push(format!("http://{listen}"));
    }
    children.0.push(
        Command::new(&loadgen)
            .arg("-targets")
            .arg(targets.join(","))
            .spawn()
            .context("starting the load generator")?,
    );
    step(&format!(
        "rideshare running in {} (us-west-1's mutexLock flips every {phase_seconds} s); starting kiln run",
        REGIONS.join(", ")
    ));
    let mut cmd = Command::new(kiln);
    cmd.args(["run", "--env-label", "REGION=region"])
        .args(kiln_args);
    // kiln run stops on Ctrl-C; the guard then stops the demo processes.
    let status = cmd.status().context("starting kiln run")?;
    drop(children);
    if !status.success() {
        anyhow::bail!("kiln run exited with {status}");
    }
    Ok(())
}
