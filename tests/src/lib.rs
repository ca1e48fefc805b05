//! Helpers for Kiln's end-to-end tests of the `kiln` binary: locate it, run it, and read
//! its outputs. [`agent`] runs `kiln agent` against workloads in real cgroups and a real
//! push receiver, [`server`] runs `kiln server`, [`kube`] plays the Kubernetes API server.
//! Generic helpers (HTTP client, pprof builders, C workloads, child processes, cgroups)
//! come from `kiln-testkit` and are re-exported here.

pub mod agent;
pub mod kube;
pub mod server;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

pub use kiln_testkit::flamebearer::{flamebearer_self, flamebearer_totals};
pub use kiln_testkit::{
    build_workload, get_json, has_command, http_get, is_root, random_container_id, random_pod_uid,
    random_u64, skip_unless, skip_unless_root, spawn_announced, urlencode, wait_for_announced_addr,
    which, workspace_root, CgroupTree, ChildGuard, SECRET_VALUE, UNIFIED,
};

/// The kiln binary under test: `$KILN_BIN`, else the release build, else the debug build.
pub fn kiln_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KILN_BIN") {
        let p = PathBuf::from(p);
        // Tests run in tests/: a relative path means relative to the workspace.
        return if p.is_relative() {
            workspace_root().join(p)
        } else {
            p
        };
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("kiln");
        if p.is_file() {
            return p;
        }
    }
    panic!("no kiln binary: run `cargo build --release -p profiler-daemon` (or set KILN_BIN)");
}

/// What `kiln server` and `kiln run` print once bound, before the address.
pub const SERVING_MARKER: &str = "serving the UI and API on ";

/// Starts `kiln run --listen 127.0.0.1:0 --data-dir <data> <args>` (`RUST_LOG=warn`,
/// stderr in `<data>.log`) and returns it with its base URL once `/healthz` answers 200.
pub fn start_kiln_run(data: &Path, args: &[&str]) -> (ChildGuard, String) {
    let log = data.with_extension("log");
    let (mut kiln, addr) = spawn_announced(
        Command::new(kiln_bin())
            .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "warn"),
        &log,
        SERVING_MARKER,
    );
    let api = format!("http://{addr}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while http_get(&format!("{api}/healthz")).map(|a| a.status).ok() != Some(200) {
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "kiln run not healthy on {api}:\n{}",
            log()
        );
        assert!(
            kiln.0.try_wait().unwrap().is_none(),
            "kiln run exited early:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (kiln, api)
}

/// Starts a workload with piped stdout.
pub fn spawn_workload(exe: &Path, args: &[&str]) -> ChildGuard {
    ChildGuard::spawn(Command::new(exe).args(args).stdout(Stdio::piped()))
}

/// Runs `kiln` with `args` to completion.
pub fn kiln(args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running kiln")
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "kiln failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One folded line: frames root first (the process name first) and a count.
#[derive(Clone, Debug)]
pub struct FoldedStack {
    pub frames: Vec<String>,
    pub count: u64,
}

pub fn read_folded(path: &Path) -> Vec<FoldedStack> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').expect("folded line has a count");
            FoldedStack {
                frames: stack.split(';').map(str::to_owned).collect(),
                count: count.parse().expect("count is a number"),
            }
        })
        .collect()
}

/// Decodes a gzip'd pprof file.
pub fn read_pprof(path: &Path) -> kiln_proto::pprof::Profile {
    use prost::Message;
    let bytes = std::fs::read(path).unwrap();
    let raw = kiln_proto::gzip::decompress_capped(&bytes, 1 << 30).expect("pprof is gzip'd");
    kiln_proto::pprof::Profile::decode(raw.as_slice()).expect("pprof decodes")
}

/// Folded stacks rebuilt from a pprof profile (root = the `process` sample label), to
/// compare with kiln's own folded output.
pub fn pprof_to_folded(p: &kiln_proto::pprof::Profile) -> HashMap<String, u64> {
    let functions: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string(f.name)))
        .collect();
    let locations: HashMap<u64, &kiln_proto::pprof::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    let mut out = HashMap::new();
    for s in &p.sample {
        let process = s
            .label
            .iter()
            .find(|l| p.string(l.key) == "process")
            .map(|l| p.string(l.str))
            .unwrap_or("?");
        let mut frames = vec![process.to_owned()];
        for id in s.location_id.iter().rev() {
            for line in locations[id].line.iter().rev() {
                frames.push(functions[&line.function_id].replace(';', ":"));
            }
        }
        *out.entry(frames.join(";")).or_default() += s.value[0] as u64;
    }
    out
}

/// The value of sample label `key`, if any.
pub fn sample_label<'a>(
    p: &'a kiln_proto::pprof::Profile,
    s: &kiln_proto::pprof::Sample,
    key: &str,
) -> Option<&'a str> {
    s.label
        .iter()
        .find(|l| p.string(l.key) == key)
        .map(|l| p.string(l.str))
}

/// Sum of the samples of metric `name` whose labels include all of `want`.
pub fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}
