//! A userspace mirror of the kernel side's label walk (`profiler-ebpf/src/golabels.rs`):
//! thread pointer → g → g.m → m.curg → curg.labels → map (Go ≤ 1.23) or slice (≥ 1.24),
//! with the same limits. It reads through [`Memory`], so the layout assumptions can be
//! checked on memory captured from a live Go process and on hand-built buffers.
//! Test-only: the sampler reads labels in BPF.

use profiler_common::{GoOffsets, GO_KEY_LEN, GO_LABELS_SLICE, GO_MAX_LABELS, GO_VALUE_LEN};

/// Go ≤ 1.23 hmap: `B` (log2 of the bucket count) and the buckets pointer.
const HMAP_B: u64 = 9;
const HMAP_BUCKETS: u64 = 16;
/// A bucket: 8 tophash bytes, 8 string keys at 8, 8 string values at 136, overflow.
const BUCKET_SIZE: u64 = 272;
const BUCKET_KEYS: u64 = 8;
const BUCKET_VALUES: u64 = 136;
/// tophash values below this mark empty or evacuated slots.
const MIN_TOP_HASH: u8 = 5;
/// Buckets the kernel side walks.
const MAX_BUCKETS: u64 = 4;
/// A slice element: `{key, value string}`.
const SLICE_ELEM: u64 = 32;

/// Reads another address space; `false` when `addr..addr+buf.len()` is unreadable.
pub trait Memory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;

    fn u64_at(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// Memory as a set of captured regions (base address, bytes).
#[derive(Default, Debug, Clone)]
pub struct Captured(pub Vec<(u64, Vec<u8>)>);

impl Memory for Captured {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.iter().any(|(base, bytes)| {
            let Some(off) = addr.checked_sub(*base) else {
                return false;
            };
            let Some(src) = bytes.get(off as usize..off as usize + buf.len()) else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        })
    }
}

/// One goroutine's labels as the sampler would report them: at most
/// [`GO_MAX_LABELS`], keys cut to `GO_KEY_LEN - 1` bytes and values to
/// `GO_VALUE_LEN - 1` bytes, in the order the walk meets them.
pub type Labels = Vec<(Vec<u8>, Vec<u8>)>;

/// The labels of the goroutine running on the thread whose thread pointer is `fsbase`:
/// `Ok(None)` when there is none or it has no labels (as the kernel side's 0), `Err`
/// when a pointer on the way cannot be read (the kernel side's "unreadable").
pub fn goroutine_labels(
    mem: &impl Memory,
    fsbase: u64,
    o: &GoOffsets,
) -> Result<Option<Labels>, ()> {
    if fsbase == 0 {
        return Ok(None);
    }
    let g = mem
        .u64_at((fsbase as i64 + o.tls_offset) as u64)
        .ok_or(())?;
    if g == 0 {
        return Ok(None);
    }
    let m = mem.u64_at(g + o.g_m as u64).ok_or(())?;
    if m == 0 {
        return Ok(None);
    }
    let curg = mem.u64_at(m + o.m_curg as u64).ok_or(())?;
    if curg == 0 {
        return Ok(None);
    }
    let labels = mem.u64_at(curg + o.g_labels as u64).ok_or(())?;
    if labels == 0 {
        return Ok(None);
    }
    decode(mem, labels, o.labels_format).map(Some)
}

/// The label set at `labels` (the value of `g.labels`).
pub fn decode(mem: &impl Memory, labels: u64, format: u32) -> Result<Labels, ()> {
    let mut out = Labels::new();
    if format == GO_LABELS_SLICE {
        let ptr = mem.u64_at(labels).ok_or(())?;
        let len = mem.u64_at(labels + 8).ok_or(())?;
        for i in 0..len.min(GO_MAX_LABELS as u64) {
            let elem = ptr + i * SLICE_ELEM;
            let w = |k: u64| mem.u64_at(elem + 8 * k).ok_or(());
            store(mem, &mut out, w(0)?, w(1)?, w(2)?, w(3)?)?;
        }
        return Ok(out);
    }
    let hmap = mem.u64_at(labels).ok_or(())?;
    if hmap == 0 {
        return Ok(out);
    }
    let mut b = [0u8; 1];
    if !mem.read(hmap + HMAP_B, &mut b) {
        return Err(());
    }
    let buckets = mem.u64_at(hmap + HMAP_BUCKETS).ok_or(())?;
    let n_buckets = 1u64 << (b[0] & 7);
    for bucket in 0..n_buckets.min(MAX_BUCKETS) {
        let mut raw = vec![0u8; BUCKET_SIZE as usize];
        if !mem.read(buckets + bucket * BUCKET_SIZE, &mut raw) {
            return Err(());
        }
        let word =
            |at: u64| u64::from_le_bytes(raw[at as usize..at as usize + 8].try_into().unwrap());
        for slot in 0..8u64 {
            if raw[slot as usize] < MIN_TOP_HASH {
                continue;
            }
            let (k, v) = (BUCKET_KEYS + slot * 16, BUCKET_VALUES + slot * 16);
            store(mem, &mut out, word(k), word(k + 8), word(v), word(v + 8))?;
        }
    }
    Ok(out)
}

fn store(
    mem: &impl Memory,
    out: &mut Labels,
    kptr: u64,
    klen: u64,
    vptr: u64,
    vlen: u64,
) -> Result<(), ()> {
    if out.len() >= GO_MAX_LABELS {
        return Ok(());
    }
    let string = |ptr: u64, len: u64, cap: usize| -> Result<Vec<u8>, ()> {
        let mut s = vec![0u8; len.min(cap as u64 - 1) as usize];
        if !s.is_empty() && !mem.read(ptr, &mut s) {
            return Err(());
        }
        Ok(s)
    };
    out.push((
        string(kptr, klen, GO_KEY_LEN)?,
        string(vptr, vlen, GO_VALUE_LEN)?,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::golang::runtime_offsets;

    /// Builds memory the way a Go runtime lays it out, at made-up addresses.
    #[derive(Default)]
    struct Builder {
        next: u64,
        mem: Captured,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                next: 0x7f00_0000_0000,
                mem: Captured::default(),
            }
        }

        fn alloc(&mut self, bytes: Vec<u8>) -> u64 {
            let addr = self.next;
            self.next += (bytes.len() as u64 + 0x100) & !0xf;
            self.mem.0.push((addr, bytes));
            addr
        }

        fn string(&mut self, s: &str) -> (u64, u64) {
            (self.alloc(s.as_bytes().to_vec()), s.len() as u64)
        }

        fn words(&mut self, w: &[u64]) -> u64 {
            self.alloc(w.iter().flat_map(|x| x.to_le_bytes()).collect())
        }

        /// Go ≥ 1.24: g.labels → `{ptr, len, cap}` → `[{key, value}]`.
        fn slice(&mut self, labels: &[(&str, &str)]) -> u64 {
            let mut elems = Vec::new();
            for (k, v) in labels {
                let (kp, kl) = self.string(k);
                let (vp, vl) = self.string(v);
                elems.extend([kp, kl, vp, vl]);
            }
            let arr = self.words(&elems);
            let n = labels.len() as u64;
            self.words(&[arr, n, n])
        }

        /// Go ≤ 1.23: g.labels → map variable → hmap → buckets; `slots` per bucket as
        /// (tophash, key, value).
        fn map(&mut self, log2_buckets: u8, buckets: &[Vec<(u8, &str, &str)>]) -> u64 {
            let mut raw = Vec::new();
            for slots in buckets {
                let mut b = vec![0u8; BUCKET_SIZE as usize];
                for (i, (top, k, v)) in slots.iter().enumerate() {
                    let (kp, kl) = self.string(k);
                    let (vp, vl) = self.string(v);
                    b[i] = *top;
                    let put = |b: &mut Vec<u8>, at: usize, w: u64| {
                        b[at..at + 8].copy_from_slice(&w.to_le_bytes())
                    };
                    put(&mut b, BUCKET_KEYS as usize + i * 16, kp);
                    put(&mut b, BUCKET_KEYS as usize + i * 16 + 8, kl);
                    put(&mut b, BUCKET_VALUES as usize + i * 16, vp);
                    put(&mut b, BUCKET_VALUES as usize + i * 16 + 8, vl);
                }
                raw.extend(b);
            }
            let buckets_addr = self.alloc(raw);
            let count: usize = buckets.iter().map(Vec::len).sum();
            let mut hmap = vec![0u8; 48];
            hmap[..8].copy_from_slice(&(count as u64).to_le_bytes());
            hmap[9] = log2_buckets;
            hmap[16..24].copy_from_slice(&buckets_addr.to_le_bytes());
            let hmap = self.alloc(hmap);
            self.words(&[hmap])
        }

        /// A thread whose g, m and curg chain ends at `labels`; returns fsbase.
        fn thread(&mut self, o: &GoOffsets, labels: u64) -> u64 {
            let mut curg = vec![0u8; o.g_labels as usize + 8];
            curg[o.g_labels as usize..].copy_from_slice(&labels.to_le_bytes());
            let curg = self.alloc(curg);
            let mut m = vec![0u8; o.m_curg as usize + 8];
            m[o.m_curg as usize..].copy_from_slice(&curg.to_le_bytes());
            let m = self.alloc(m);
            // g0 (the g in TLS, as in cgo or on the system stack) is not curg.
            let mut g0 = vec![0u8; o.g_m as usize + 8];
            g0[o.g_m as usize..].copy_from_slice(&m.to_le_bytes());
            let g0 = self.alloc(g0);
            let tls = self.words(&[g0, 0]);
            (tls as i64 - o.tls_offset) as u64
        }
    }

    fn text(l: &Labels) -> Vec<(String, String)> {
        l.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.clone()).unwrap(),
                    String::from_utf8(v.clone()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn slice_layout_of_go_1_24_and_later() {
        for version in [(1, 24), (1, 25), (1, 26)] {
            let mut o = runtime_offsets(version).unwrap();
            assert_eq!(o.labels_format, GO_LABELS_SLICE, "{version:?}");
            o.tls_offset = -8;
            let mut b = Builder::new();
            // Twelve labels sorted by key, as labelSet keeps them; lengths at the limits.
            let v20 = "value_of_exactly_20b";
            let v60 = "0123456789".repeat(6);
            let mut labels: Vec<(String, String)> = (0..10)
                .map(|i| (format!("k{i:02}"), format!("v{i:02}")))
                .collect();
            labels.insert(0, ("a_key_of_16_byte".into(), v20.into()));
            labels.insert(1, ("b_key_15_bytes_".into(), v60.clone()));
            let refs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let set = b.slice(&refs);
            let fsbase = b.thread(&o, set);
            let got = text(&goroutine_labels(&b.mem, fsbase, &o).unwrap().unwrap());
            assert_eq!(got.len(), GO_MAX_LABELS, "{got:?}");
            // The first ten by key order are kept, cut to 15/47 bytes.
            assert_eq!(got[0], ("a_key_of_16_byt".into(), v20.into()));
            assert_eq!(got[1], ("b_key_15_bytes_".into(), v60[..47].to_owned()));
            for (i, (k, v)) in got[2..].iter().enumerate() {
                assert_eq!((k.as_str(), v.as_str()), refs[i + 2]);
            }
            // An empty set, and a thread with no goroutine.
            let empty = b.slice(&[]);
            let fsbase = b.thread(&o, empty);
            assert_eq!(goroutine_labels(&b.mem, fsbase, &o), Ok(Some(vec![])));
            let none = b.thread(&o, 0);
            assert_eq!(goroutine_labels(&b.mem, none, &o), Ok(None));
            // A label pointing at memory that is not there is unreadable, not empty.
            let dangling = b.words(&[0xdead_0000, 1, 1]);
            assert_eq!(decode(&b.mem, dangling, GO_LABELS_SLICE), Err(()));
        }
    }

    #[test]
    fn map_layout_of_go_1_23_and_earlier() {
        let mut o = runtime_offsets((1, 19)).unwrap();
        o.tls_offset = -8;
        let mut b = Builder::new();
        // Two buckets (B = 1); empty (0), deleted (1) and evacuated (2..4) slots skipped.
        let set = b.map(
            1,
            &[
                vec![(0x9a, "task", "a"), (1, "deleted", "x"), (0xff, "k1", "v1")],
                vec![(0, "empty", "x"), (4, "evacuated", "x"), (5, "k2", "v2")],
            ],
        );
        let fsbase = b.thread(&o, set);
        let got = text(&goroutine_labels(&b.mem, fsbase, &o).unwrap().unwrap());
        let want: Vec<(String, String)> = [("task", "a"), ("k1", "v1"), ("k2", "v2")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        // More buckets than the kernel walks: only the first four are read.
        let many: Vec<Vec<(u8, &str, &str)>> = (0..8).map(|_| vec![(9, "k", "v")]).collect();
        let set = b.map(3, &many);
        assert_eq!(decode(&b.mem, set, 0).unwrap().len(), 4);
        // A nil map variable: no labels.
        let nil = b.words(&[0]);
        assert_eq!(decode(&b.mem, nil, 0), Ok(vec![]));
    }

    /// Reads `/proc/<pid>/mem` and keeps a copy of every successful read.
    struct Recording {
        mem: std::fs::File,
        seen: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
    }

    impl Memory for Recording {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let ok = std::os::unix::fs::FileExt::read_exact_at(&self.mem, buf, addr).is_ok();
            if ok {
                self.seen.borrow_mut().push((addr, buf.to_vec()));
            }
            ok
        }
    }

    /// Stops thread `tid` with ptrace and returns its thread pointer (fs_base), while it
    /// is stopped, to `f`.
    fn with_stopped_thread<T>(tid: i32, f: impl FnOnce(u64) -> T) -> Option<T> {
        // SAFETY: ptrace and waitpid on a thread of our own child, detached before return.
        unsafe {
            if libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) != 0 {
                return None;
            }
            let mut out = None;
            if libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) == 0 {
                let mut status = 0;
                if libc::waitpid(tid, &mut status, libc::__WALL) == tid && libc::WIFSTOPPED(status)
                {
                    let mut regs: libc::user_regs_struct = std::mem::zeroed();
                    if libc::ptrace(libc::PTRACE_GETREGS, tid, 0, &mut regs) == 0 {
                        out = Some(f(regs.fs_base));
                    }
                }
            }
            libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0);
            out
        }
    }

    /// The label walk on a live Go 1.19 process (map layout): stop its threads at random
    /// moments, decode through /proc/<pid>/mem, then decode the captured bytes again.
    #[test]
    fn map_layout_in_a_live_go_process() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/workloads/go");
        if kiln_testkit::skip_unless_root("map_layout_in_a_live_go_process") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("golabels");
        let built = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&exe)
            .arg(".")
            .current_dir(&src)
            .env("CGO_ENABLED", "0")
            .status();
        match built {
            Ok(s) => assert!(s.success(), "go build failed"),
            Err(e) => panic!("no go toolchain ({e}): run `cargo xtask setup`"),
        }
        let (version, o) = crate::runtimes::golang::detect(&exe)
            .unwrap()
            .expect("a Go program");
        assert!(version.starts_with("go1.19"), "{version}");
        let mut child = std::process::Command::new(&exe)
            .args(["features", "60"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let kill = scopeguard(move || unsafe {
            libc::kill(pid, libc::SIGKILL);
        });

        let many: Vec<(String, String)> = (0..12)
            .map(|i| (format!("many{i:02}"), format!("value{i:02}")))
            .collect();
        let mut seen = std::collections::BTreeMap::<String, u32>::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let done = |seen: &std::collections::BTreeMap<String, u32>| {
            [
                "outer",
                "outer+inner",
                "parent",
                "many",
                "long",
                "unlabeled",
            ]
            .iter()
            .all(|k| seen.contains_key(*k))
        };
        while !done(&seen) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(7));
            let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            for tid in tids {
                let mem = Recording {
                    mem: std::fs::File::open(format!("/proc/{pid}/mem")).unwrap(),
                    seen: Default::default(),
                };
                let Some((fsbase, got)) =
                    with_stopped_thread(tid, |fs| (fs, goroutine_labels(&mem, fs, &o)))
                else {
                    continue;
                };
                let got = got.expect("the walk reads only mapped memory");
                // The same bytes, captured, decode to the same labels.
                let captured = Captured(mem.seen.take());
                assert_eq!(goroutine_labels(&captured, fsbase, &o), Ok(got.clone()));
                let Some(labels) = got else {
                    *seen.entry("unlabeled".into()).or_default() += 1;
                    continue;
                };
                let mut t = text(&labels);
                t.sort();
                let kind = match t
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>()[..]
                {
                    [("task", "outer")] => "outer",
                    [("sub", "inner"), ("task", "outer")] => "outer+inner",
                    [("task", "parent")] => "parent",
                    _ if t.iter().all(|kv| many.contains(kv)) => {
                        // 12 labels in two buckets: ten kept, fewer only when one bucket
                        // overflowed (overflow buckets are not walked).
                        assert!((8..=10).contains(&t.len()), "{t:?}");
                        "many"
                    }
                    _ if t.iter().any(|(k, _)| k == "long") => {
                        let want: Vec<(String, String)> = [
                            ("key_of_15_bytes", "value_of_exactly_20b".to_owned()),
                            ("key_of_16_bytes", "v".to_owned()),
                            ("long", "0123456789".repeat(6)[..47].to_owned()),
                            ("v47", "x".repeat(47)),
                        ]
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                        assert_eq!(t, want);
                        "long"
                    }
                    _ => panic!("unexpected labels {t:?}"),
                };
                *seen.entry(kind.into()).or_default() += 1;
            }
        }
        drop(kill);
        let _ = child.wait();
        eprintln!("label sets seen: {seen:?}");
        assert!(
            done(&seen),
            "not every label set was seen in 30 s: {seen:?}"
        );
    }

    /// Runs `f` when dropped (so the child is killed even when an assertion fails).
    fn scopeguard(f: impl FnOnce()) -> impl Drop {
        struct Guard<F: FnOnce()>(Option<F>);
        impl<F: FnOnce()> Drop for Guard<F> {
            fn drop(&mut self) {
                if let Some(f) = self.0.take() {
                    f()
                }
            }
        }
        Guard(Some(f))
    }
}
