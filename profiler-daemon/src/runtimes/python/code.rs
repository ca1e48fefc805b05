//! Names of the Python frames the kernel read: each code object's qualname, file, first
//! line and location table, read from the process's memory once and cached.
//!
//! Code objects are freed and their memory reused, so the cache is keyed by (pid, code
//! address, tag), where the tag is the hash the kernel computed from the code object's
//! fields at sample time; a code object read here whose fields no longer hash to the tag
//! is not the one sampled, and its frame is not named (counted, never guessed).

use std::{collections::HashMap, fs::File, os::unix::fs::FileExt as _, sync::Arc};

use profiler_common::python::{
    py_code_tag, PyFrame, PY_CODE_TAG_BYTES, PY_FRAME_ENTRY, PY_INSTR_UNKNOWN,
};

use super::{linetable, Layout};

/// Longest name or file name read.
const MAX_STRING: u64 = 1024;
/// Longest location table read (bytes; a 10k-line function needs a few KiB).
const MAX_LINETABLE: u64 = 64 * 1024;
/// Code objects cached before the cache is cleared (a few hundred bytes each).
const MAX_CACHED: usize = 100_000;
/// Bytes of names and line tables cached before the cache is cleared.
const MAX_CACHED_BYTES: usize = 32 << 20;

/// What a code object tells about its frames.
#[derive(Debug)]
pub struct CodeInfo {
    pub qualname: Arc<str>,
    pub filename: Arc<str>,
    pub first_line: i32,
    linetable: Box<[u8]>,
}

/// One named Python frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PyFrameName {
    pub qualname: Arc<str>,
    pub filename: Arc<str>,
    pub line: u32,
}

struct Process {
    layout: Layout,
}

#[derive(Default)]
pub struct CodeNames {
    processes: HashMap<u32, Process>,
    cache: HashMap<(u32, u64, u32), Option<Arc<CodeInfo>>>,
    /// Bytes of names and line tables in `cache`.
    cached_bytes: usize,
    /// Samples whose Python frames could not all be named (a code object unreadable or
    /// not the one sampled): they keep their native stack.
    pub unreadable: u64,
    /// Samples whose Python frames did not fit their native stack's interpreter
    /// activations: they keep their native stack.
    pub mismatched: u64,
    /// Cached names dropped because the cache was full, since creation.
    pub evicted: u64,
}

impl CodeNames {
    /// Names frames of `pid` with `layout` from now on.
    pub fn register(&mut self, pid: u32, layout: Layout) {
        self.processes.insert(pid, Process { layout });
        self.drop_cached(pid);
    }

    /// Drops the cached code objects of `pid`.
    fn drop_cached(&mut self, pid: u32) {
        self.cache.retain(|(p, _, _), _| *p != pid);
        self.cached_bytes = self.cache.values().flatten().map(|i| i.bytes()).sum();
    }

    /// Code objects whose names (or unreadability) are cached.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    pub fn any_registered(&self) -> bool {
        !self.processes.is_empty()
    }

    pub fn is_registered(&self, pid: u32) -> bool {
        self.processes.contains_key(&pid)
    }

    /// Forgets a process that exited or exec'd.
    pub fn forget(&mut self, pid: u32) {
        if self.processes.remove(&pid).is_some() {
            self.drop_cached(pid);
        }
    }

    /// The name of one frame of `pid`, or None.
    pub fn name(&mut self, pid: u32, frame: &PyFrame) -> Option<PyFrameName> {
        let key = (pid, frame.code, frame.tag);
        let info = match self.cache.get(&key) {
            Some(info) => info.clone(),
            None => {
                let process = self.processes.get(&pid)?;
                // Opened per miss, not kept: a host may run thousands of Python
                // processes, and misses are rare once their code objects are named.
                let info = File::open(format!("/proc/{pid}/mem"))
                    .ok()
                    .and_then(|mem| read_code(&mem, &process.layout, frame.code, frame.tag))
                    .map(Arc::new);
                let bytes = info.as_ref().map_or(0, |i| i.bytes());
                if self.cache.len() >= MAX_CACHED || self.cached_bytes + bytes > MAX_CACHED_BYTES {
                    self.evicted += self.cache.len() as u64;
                    self.cache.clear();
                    self.cached_bytes = 0;
                }
                self.cached_bytes += bytes;
                self.cache.insert(key, info.clone());
                info
            }
        };
        let info = info?;
        let layout = self.processes.get(&pid)?.layout;
        let instr = frame.instr & !PY_FRAME_ENTRY;
        let scale = layout.frame_lasti.map_or(1, |(_, scale)| scale);
        let line = (instr != PY_INSTR_UNKNOWN && instr >= layout.code_bytecode)
            .then(|| {
                let offset = (instr - layout.code_bytecode).checked_mul(scale)?;
                linetable::line(layout.lines, &info.linetable, info.first_line, offset)
            })
            .flatten()
            .unwrap_or(info.first_line.max(0) as u32);
        Some(PyFrameName {
            qualname: info.qualname.clone(),
            filename: info.filename.clone(),
            line,
        })
    }
}

impl CodeInfo {
    /// Heap bytes it holds.
    fn bytes(&self) -> usize {
        self.qualname.len() + self.filename.len() + self.linetable.len()
    }
}

fn read_bytes(mem: &File, addr: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    mem.read_exact_at(&mut buf, addr).ok()?;
    Some(buf)
}

fn word(buf: &[u8], off: u32) -> Option<u64> {
    let off = off as usize;
    Some(u64::from_le_bytes(buf.get(off..off + 8)?.try_into().ok()?))
}

fn read_code(mem: &File, layout: &Layout, code: u64, tag: u32) -> Option<CodeInfo> {
    // Up to the bytecode (3.11+), and at least past every field read.
    let header_len = [
        layout.code_bytecode,
        layout.code_tag_offset + PY_CODE_TAG_BYTES as u32,
        layout.code_linetable + 8,
        layout.code_first_line + 8,
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    let header = read_bytes(mem, code, u64::from(header_len))?;
    let tag_start = layout.code_tag_offset as usize;
    let tagged = header.get(tag_start..tag_start + PY_CODE_TAG_BYTES)?;
    let mut words = [0u64; PY_CODE_TAG_BYTES / 8];
    for (w, chunk) in words.iter_mut().zip(tagged.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    if py_code_tag(&words) != tag {
        // Freed and reused since the sample: not the code object the frame ran.
        return None;
    }
    let first_line = word(&header, layout.code_first_line)? as u32 as i32;
    let qualname = read_unicode(mem, layout, word(&header, layout.code_qualname)?)?;
    let filename = read_unicode(mem, layout, word(&header, layout.code_filename)?)?;
    let linetable =
        read_bytes_object(mem, layout, word(&header, layout.code_linetable)?).unwrap_or_default();
    Some(CodeInfo {
        qualname: qualname.into(),
        filename: filename.into(),
        first_line,
        linetable: linetable.into(),
    })
}

/// A compact `str` object's text (names and file names always are compact).
fn read_unicode(mem: &File, layout: &Layout, addr: u64) -> Option<String> {
    let header = read_bytes(mem, addr, u64::from(layout.unicode_state) + 8)?;
    let len = word(&header, layout.var_size)?;
    let state = word(&header, layout.unicode_state)? as u32;
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    if !compact || len > MAX_STRING {
        return None;
    }
    if ascii {
        let data = read_bytes(mem, addr + u64::from(layout.unicode_ascii_data), len)?;
        return String::from_utf8(data).ok();
    }
    let width = match kind {
        1 | 2 | 4 => u64::from(kind),
        _ => return None,
    };
    let data = read_bytes(
        mem,
        addr + u64::from(layout.unicode_compact_data),
        len * width,
    )?;
    let chars = data.chunks_exact(width as usize).map(|c| {
        let mut v = [0u8; 4];
        v[..c.len()].copy_from_slice(c);
        char::from_u32(u32::from_le_bytes(v)).unwrap_or(char::REPLACEMENT_CHARACTER)
    });
    Some(chars.collect())
}

/// A `bytes` object's contents.
fn read_bytes_object(mem: &File, layout: &Layout, addr: u64) -> Option<Vec<u8>> {
    let header = read_bytes(mem, addr, u64::from(layout.var_size) + 8)?;
    let len = word(&header, layout.var_size)?;
    if len > MAX_LINETABLE {
        return None;
    }
    read_bytes(mem, addr + u64::from(layout.bytes_data), len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtimes::python::layout;
    use profiler_common::python::PyFrame;

    /// Names of a live interpreter's frames, read from its memory: the code object of a
    /// function found by its own `id()` (CPython's address), tagged as the kernel would.
    #[test]
    fn names_code_objects_of_a_live_interpreter_and_rejects_a_wrong_tag() {
        let mut child = std::process::Command::new("/usr/bin/python3.11")
            .args([
                "-c",
                "class Walrus:\n    def dive(self):\n        pass\n\
                 import sys\nprint(id(Walrus.dive.__code__), flush=True)\nsys.stdin.read()",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("Debian's python3.11 is needed for this test");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let code: u64 = line.trim().parse().unwrap();
        let pid = child.id();
        let layout = *layout::layout((3, 11)).unwrap();
        // The tag as the kernel computes it, from the same bytes.
        let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
        let bytes = read_bytes(
            &mem,
            code + u64::from(layout.code_tag_offset),
            PY_CODE_TAG_BYTES as u64,
        )
        .unwrap();
        let mut words = [0u64; PY_CODE_TAG_BYTES / 8];
        for (w, c) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(c.try_into().unwrap());
        }
        let tag = py_code_tag(&words);

        let mut names = CodeNames::default();
        names.register(pid, layout);
        let frame = PyFrame {
            code,
            tag,
            instr: PY_INSTR_UNKNOWN,
        };
        let name = names.name(pid, &frame).expect("named");
        assert_eq!(&*name.qualname, "Walrus.dive");
        assert_eq!(&*name.filename, "<string>");
        assert_eq!(name.line, 2);
        // Another tag: not the code object sampled, never named.
        let reused = PyFrame {
            tag: tag ^ 1,
            ..frame
        };
        assert!(names.name(pid, &reused).is_none());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The cache stays under its cap and counts what it drops: unreadable code objects
    /// (addresses in the unmapped first page of this process) are cached too.
    #[test]
    fn the_code_name_cache_is_capped_and_counts_its_evictions() {
        let mut names = CodeNames::default();
        let pid = std::process::id();
        names.register(pid, *layout::layout((3, 11)).unwrap());
        for i in 0..=MAX_CACHED as u64 {
            let frame = PyFrame {
                code: 8 + i % 512 * 8,
                tag: (i / 512) as u32,
                instr: PY_INSTR_UNKNOWN,
            };
            assert!(names.name(pid, &frame).is_none());
            assert!(names.cached() <= MAX_CACHED);
        }
        assert_eq!(names.evicted, MAX_CACHED as u64);
        assert_eq!(names.cached(), 1);
    }
}
