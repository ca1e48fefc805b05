//! Helpers for Kiln's end-to-end tests: locate the `kiln` binary, build the C workloads
//! in `tests/workloads/` from source, run child processes that are killed when the test
//! ends, and read kiln's outputs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

pub use kiln_testkit::{has_command, is_root, skip_unless, skip_unless_root, which, ChildGuard};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

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

/// Compiles `tests/workloads/<name>.c` (once per source change) with frame pointers and
/// debug info, and returns the executable.
pub fn build_workload(name: &str, extra_flags: &[&str]) -> PathBuf {
    let src = workspace_root()
        .join("tests/workloads")
        .join(format!("{name}.c"));
    let dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&dir).expect("create target/test-workloads");
    let tag: String = extra_flags.join("").replace(['-', '=', ' ', '/'], "");
    let exe = dir.join(if tag.is_empty() {
        name.to_owned()
    } else {
        format!("{name}-{tag}")
    });
    let newer = |a: &Path, b: &Path| match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.modified().unwrap() >= b.modified().unwrap(),
        _ => false,
    };
    if exe.is_file() && newer(&exe, &src) {
        return exe;
    }
    // Build under a unique name, then rename: tests running side by side share the cache.
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O0", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&tmp)
        .arg(&src)
        .args(extra_flags)
        .status()
        .expect("gcc not found: run `cargo xtask setup`");
    assert!(status.success(), "compiling {} failed", src.display());
    std::fs::rename(&tmp, &exe).unwrap();
    exe
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

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A blocking HTTP/1.0 GET (no chunked encoding to decode); returns status and body.
pub fn http_get(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// GETs a JSON document, panicking with the body on a non-200 answer.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {url}: bad JSON: {e}"))
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Total and self value per function name in a Pyroscope flamebearer render, summed over
/// all nodes.
fn flamebearer_sums(render: &serde_json::Value) -> HashMap<String, (u64, u64)> {
    let fb = &render["flamebearer"];
    let names: Vec<&str> = fb["names"]
        .as_array()
        .expect("names")
        .iter()
        .map(|n| n.as_str().unwrap_or(""))
        .collect();
    let mut sums: HashMap<String, (u64, u64)> = HashMap::new();
    for level in fb["levels"].as_array().expect("levels") {
        let level: Vec<i64> = level
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        // Nodes are [offset, total, self, name].
        for node in level.chunks(4) {
            let sum = sums.entry(names[node[3] as usize].to_owned()).or_default();
            sum.0 += node[1] as u64;
            sum.1 += node[2] as u64;
        }
    }
    sums
}

/// Self value per function name in a Pyroscope flamebearer render, summed over all nodes.
pub fn flamebearer_self(render: &serde_json::Value) -> HashMap<String, u64> {
    flamebearer_sums(render)
        .into_iter()
        .map(|(name, (_, own))| (name, own))
        .collect()
}

/// Totals per function name in a flamebearer (single format: 4 ints per node), and the
/// root's total. A name counted once per node, so recursion double counts.
pub fn flamebearer_totals(render: &serde_json::Value) -> (HashMap<String, u64>, u64) {
    let totals = flamebearer_sums(render)
        .into_iter()
        .map(|(name, (total, _))| (name, total))
        .collect();
    (
        totals,
        render["flamebearer"]["numTicks"].as_u64().unwrap_or(0),
    )
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
