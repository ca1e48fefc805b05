//! Python support: find a CPython process's interpreter, its version and the addresses
//! the kernel side needs to read its threads' Python frames ([`detect`]); name the frames
//! it read ([`code::CodeNames`]); and put them into the native stacks ([`merge`]).
//! Versions without a known layout are registered as unsupported, so that their samples
//! are counted, never guessed at.

pub mod code;
pub mod layout;
pub mod linetable;
pub mod merge;

use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use profiler_common::python::{PyProcess, PY_NO_FIELD};

pub use layout::{EntryMark, Layout};

#[derive(Debug, thiserror::Error)]
pub enum PyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file: {0}")]
    Elf(#[from] object::Error),
    #[error("cannot find glibc's pthread key slots (pthread_getspecific not recognized in {0}); Python frames are not read")]
    PthreadLayout(String),
}

/// A CPython process as the sampler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Detected {
    pub version: (u32, u32),
    /// None: a version without a known layout.
    pub layout: Option<Layout>,
    /// What to register in `PY_PROCS` (`supported` = 0 without a layout).
    pub process: PyProcess,
}

/// One file-backed mapping of /proc/<pid>/maps.
struct MapLine {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

fn read_maps(pid: u32) -> Result<Vec<MapLine>, PyError> {
    let path = format!("/proc/{pid}/maps");
    let text = std::fs::read_to_string(&path).map_err(|source| PyError::Read { path, source })?;
    Ok(text.lines().filter_map(parse_map_line).collect())
}

fn parse_map_line(line: &str) -> Option<MapLine> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let _perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    if !path.starts_with('/') {
        return None;
    }
    Some(MapLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        path,
    })
}

/// Whether a mapped file's name is a CPython interpreter or its library (`python3.11`,
/// `libpython3.11.so.1.0`).
pub fn is_interpreter_file(name: &str) -> bool {
    name.starts_with("libpython3") || name.starts_with("python3")
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `libpython3.11.so.1.0` → (3, 11); `python3.11` → (3, 11).
fn version_from_name(name: &str) -> Option<(u32, u32)> {
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The mapping's file, readable from our mount namespace (the process may live in
/// another): `/proc/<pid>/map_files/<range>`.
fn open_path(pid: u32, m: &MapLine) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end))
}

fn map_file(path: &Path) -> Result<memmap2::Mmap, PyError> {
    let read_error = |source| PyError::Read {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_error)?;
    // SAFETY: read-only mapping of a regular file (see golang::detect for the caveat).
    unsafe { memmap2::Mmap::map(&f) }.map_err(read_error)
}

fn find_symbol<'a>(file: &'a object::File<'a>, name: &str) -> Option<object::Symbol<'a, 'a>> {
    file.dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(name) && s.address() != 0)
}

/// Bytes at virtual address `addr` of the file.
fn read_at<'a>(file: &object::File<'a>, addr: u64, len: u64) -> Option<&'a [u8]> {
    for sec in file.sections() {
        let (start, size) = (sec.address(), sec.size());
        if addr >= start && addr + len <= start + size {
            let data = sec.data().ok()?;
            let off = (addr - start) as usize;
            return data.get(off..off + len as usize);
        }
    }
    None
}

/// Load bias of a file mapped in a process: its first mapping (file offset 0) minus the
/// lowest segment address.
fn load_bias(file: &object::File<'_>, maps: &[MapLine], path: &str) -> Option<u64> {
    let base = maps.iter().find(|m| m.path == path && m.offset == 0)?.start;
    let lowest = file.segments().map(|s| s.address()).min()? & !0xfff;
    Some(base.wrapping_sub(lowest))
}

/// If `pid` runs CPython, where its interpreter keeps the thread states and which
/// version it is; Ok(None) if it is not a Python process.
pub fn detect(pid: u32) -> Result<Option<Detected>, PyError> {
    let maps = read_maps(pid)?;
    // The runtime lives in libpython when the interpreter links it, else in the
    // executable (Debian's python3.11).
    let candidate = maps
        .iter()
        .find(|m| file_name(&m.path).starts_with("libpython3"))
        .or_else(|| {
            maps.iter()
                .find(|m| is_interpreter_file(file_name(&m.path)) && m.offset == 0)
        });
    let Some(interp) = candidate else {
        return Ok(None);
    };
    let data = map_file(&open_path(pid, interp))?;
    let file = object::File::parse(&*data)?;
    let Some(runtime) = find_symbol(&file, "_PyRuntime") else {
        return Ok(None);
    };
    // 3.11+ export their version as `Py_Version` (PY_VERSION_HEX); older ones only in
    // the file name.
    let version = find_symbol(&file, "Py_Version")
        .and_then(|s| read_at(&file, s.address(), 4))
        .map(|b| {
            let hex = u32::from_le_bytes(b.try_into().unwrap_or_default());
            (hex >> 24, (hex >> 16) & 0xff)
        })
        .or_else(|| version_from_name(file_name(&interp.path)));
    let Some(version) = version else {
        return Ok(None);
    };
    let layout = if version >= (3, 13) {
        // The interpreter publishes its own layout at the start of `_PyRuntime`.
        read_at(&file, runtime.address(), layout::DEBUG_OFFSETS_BYTES)
            .and_then(|bytes| layout::from_debug_offsets(version, bytes))
    } else {
        layout::layout(version).copied()
    };
    let mut process = PyProcess::default();
    // Thread states are found through glibc's key slots: another libc (musl) leaves the
    // process unsupported, its samples counted.
    let pthread_specific = match pthread_specific_offset(pid, &maps) {
        Ok(offset) => Some(offset),
        Err(e) => {
            log::info!("pid {pid}: {e}");
            None
        }
    };
    if let (Some(layout), Some(bias), Some(pthread_specific)) = (
        &layout,
        load_bias(&file, &maps, &interp.path),
        pthread_specific,
    ) {
        process = PyProcess {
            supported: 1,
            pthread_specific,
            tss_addr: runtime.address().wrapping_add(bias) + layout.runtime_tss,
            tstate_cframe: layout.tstate_cframe.unwrap_or(PY_NO_FIELD),
            current_frame: layout.current_frame,
            frame_code: layout.frame_code,
            frame_previous: layout.frame_previous,
            frame_prev_instr: layout.frame_prev_instr,
            frame_is_entry: match layout.entry {
                EntryMark::IsEntry(off) => off,
                _ => PY_NO_FIELD,
            },
            frame_owner: match layout.entry {
                EntryMark::ShimOwner(off, _) => off,
                _ => PY_NO_FIELD,
            },
            cstack_owner: match layout.entry {
                EntryMark::ShimOwner(_, owner) => owner.into(),
                _ => 0,
            },
            code_tag_offset: layout.code_tag_offset,
            frame_lasti: layout.frame_lasti.map_or(PY_NO_FIELD, |(off, _)| off),
            every_frame_entry: u32::from(layout.entry == EntryMark::EveryFrame),
            _pad: 0,
        };
    }
    Ok(Some(Detected {
        version,
        layout: layout.filter(|_| process.supported != 0),
        process,
    }))
}

/// Offset from the thread pointer of glibc's `struct pthread.specific_1stblock`, from
/// the code of `pthread_getspecific` in the libc the process maps.
fn pthread_specific_offset(pid: u32, maps: &[MapLine]) -> Result<u32, PyError> {
    let libc = maps
        .iter()
        .find(|m| {
            let n = file_name(&m.path);
            n.starts_with("libc.so") || n.starts_with("libc-")
        })
        .ok_or_else(|| PyError::PthreadLayout("(no libc mapped)".into()))?;
    let data = map_file(&open_path(pid, libc))?;
    let file = object::File::parse(&*data)?;
    let code = ["pthread_getspecific", "__pthread_getspecific"]
        .iter()
        .find_map(|name| find_symbol(&file, name))
        .and_then(|s| read_at(&file, s.address(), 48))
        .ok_or_else(|| PyError::PthreadLayout(libc.path.clone()))?;
    decode_pthread_specific(code).ok_or_else(|| PyError::PthreadLayout(libc.path.clone()))
}

/// glibc computes `&self->specific_1stblock[key]` as `((key + N) << 4) + %fs:0x10`:
/// `add $N, %rax; shl $4, %rax`. The slot array starts N * 16 bytes past the thread
/// pointer (which `%fs:0x10`, `header.self`, holds).
fn decode_pthread_specific(code: &[u8]) -> Option<u32> {
    code.windows(8).find_map(|w| {
        (w[0] == 0x48 && w[1] == 0x83 && w[2] == 0xc0 && w[4..8] == [0x48, 0xc1, 0xe0, 0x04])
            .then(|| u32::from(w[3]) * 16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_glibc_pthread_getspecific() {
        // Debian 12's glibc 2.36.
        let code = [
            0x83, 0xff, 0x1f, 0x77, 0x3b, 0x89, 0xf8, 0x48, 0x83, 0xc0, 0x31, 0x48, 0xc1, 0xe0,
            0x04, 0x64, 0x48, 0x03, 0x04, 0x25, 0x10, 0x00, 0x00, 0x00,
        ];
        assert_eq!(decode_pthread_specific(&code), Some(0x310));
        assert_eq!(decode_pthread_specific(&[0x90; 32]), None);
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(version_from_name("libpython3.11.so.1.0"), Some((3, 11)));
        assert_eq!(version_from_name("python3.12"), Some((3, 12)));
        assert_eq!(version_from_name("python3"), None);
    }

    /// A real interpreter: detection finds 3.11, and the TLS key address it computes
    /// holds the key the interpreter created (a small pthread key, initialized).
    #[test]
    fn detects_a_running_python_3_11() {
        let mut child = std::process::Command::new("/usr/bin/python3.11")
            .args([
                "-c",
                "import sys; print('ready', flush=True); sys.stdin.read()",
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
        assert_eq!(line.trim(), "ready");
        let detected = detect(child.id()).unwrap().expect("python3.11 is Python");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(detected.version, (3, 11));
        assert_eq!(detected.process.supported, 1);
        assert_eq!(detected.process.pthread_specific, 0x310);
        assert!(detect(std::process::id()).unwrap().is_none());
    }
}
