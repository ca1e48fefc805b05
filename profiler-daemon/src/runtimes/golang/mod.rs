//! Go support: find a Go binary's runtime version and the offsets the kernel side needs to
//! read goroutine pprof labels (`pprof.Do(ctx, pprof.Labels(...))`) from unmodified
//! programs. Versions without known offsets are reported and skipped, never guessed.

mod btf;
mod buildinfo;
#[cfg(test)]
mod labels;
mod pclntab;

use std::path::Path;

use object::{Object, ObjectSection, ObjectSegment};
use profiler_common::{GoOffsets, GO_LABELS_MAP, GO_LABELS_SLICE};

pub use btf::fsbase_offset;
pub use buildinfo::go_version;

#[derive(Debug, thiserror::Error)]
pub enum GoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file: {0}")]
    Elf(#[from] object::Error),
    #[error("Go {0} has no known runtime offsets; labels are not read for it")]
    UnsupportedVersion(String),
    #[error("cannot find the TLS offset of g: {0}")]
    Tls(&'static str),
}

/// A Go version as `(major, minor)` from strings like "go1.19.8", "go1.24rc1 X:foo", "devel ...".
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let rest = v.strip_prefix("go")?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Runtime struct offsets for amd64, by Go version (from the runtime's DWARF; 1.19
/// verified here by a pointer chase in a live process).
pub fn runtime_offsets(version: (u32, u32)) -> Option<GoOffsets> {
    let (g_m, m_curg, g_labels, format) = match version {
        (1, 17..=20) => (48, 192, 360, GO_LABELS_MAP),
        (1, 21..=22) => (48, 192, 344, GO_LABELS_MAP),
        (1, 23) => (48, 192, 352, GO_LABELS_MAP),
        (1, 24) => (48, 192, 352, GO_LABELS_SLICE),
        (1, 25) => (48, 184, 344, GO_LABELS_SLICE),
        (1, 26) => (48, 184, 352, GO_LABELS_SLICE),
        _ => return None,
    };
    Some(GoOffsets {
        tls_offset: 0,
        g_m,
        m_curg,
        g_labels,
        labels_format: format,
    })
}

/// What the sampler needs to read labels in processes running `path`, or `Ok(None)` if
/// it is not a Go program.
pub fn detect(path: &Path) -> Result<Option<(String, GoOffsets)>, GoError> {
    let read_error = |source| GoError::Read {
        path: path.display().to_string(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_error)?;
    // Mapped, not read: only the headers, build info and pclntab pages are touched, so a
    // large binary costs no heap. A file truncated under us can SIGBUS, the same risk every
    // ELF reader that maps files (blazesym too) takes.
    // SAFETY: read-only mapping of a regular file.
    let data = unsafe { memmap2::Mmap::map(&f) }.map_err(read_error)?;
    let file = object::File::parse(&*data)?;
    let Some(version) = go_version(&file) else {
        return Ok(None);
    };
    let parsed =
        parse_version(&version).ok_or_else(|| GoError::UnsupportedVersion(version.clone()))?;
    let mut offsets =
        runtime_offsets(parsed).ok_or_else(|| GoError::UnsupportedVersion(version.clone()))?;
    offsets.tls_offset = tls_offset(&file)?;
    Ok(Some((version, offsets)))
}

/// Offset of g from the thread pointer. Pure-Go binaries have no PT_TLS and keep g at
/// fs:-8; cgo binaries place it in the TLS block, so decode the instruction in
/// `runtime.stackcheck` that loads it (found through pclntab, which survives stripping).
fn tls_offset(file: &object::File<'_>) -> Result<i64, GoError> {
    let entry = pclntab::find_function(file, "runtime.stackcheck")
        .ok_or(GoError::Tls("runtime.stackcheck not found in pclntab"))?;
    let code =
        read_at(file, entry, 32).ok_or(GoError::Tls("runtime.stackcheck is not in the file"))?;
    decode_tls_load(&code).ok_or(GoError::Tls("unrecognized TLS load in runtime.stackcheck"))
}

fn read_at(file: &object::File<'_>, addr: u64, len: u64) -> Option<Vec<u8>> {
    for seg in file.segments() {
        let (start, size) = (seg.address(), seg.size());
        if addr >= start && addr + len <= start + size {
            let data = seg.data().ok()?;
            let off = (addr - start) as usize;
            return data.get(off..off + len as usize).map(<[u8]>::to_vec);
        }
    }
    for sec in file.sections() {
        let (start, size) = (sec.address(), sec.size());
        if addr >= start && addr + len <= start + size {
            let data = sec.data().ok()?;
            let off = (addr - start) as usize;
            return data.get(off..off + len as usize).map(<[u8]>::to_vec);
        }
    }
    None
}

/// Recognizes the forms the Go linker emits for `MOVQ (TLS), reg`:
/// `mov %fs:disp32, reg` (non-PIE) and `mov $imm32, %rcx; mov %fs:(%rcx), reg` (PIE).
fn decode_tls_load(code: &[u8]) -> Option<i64> {
    for i in 0..code.len().saturating_sub(8) {
        let w = &code[i..];
        // 64 48 8b <modrm: mod=00 rm=100> 25 disp32
        if w[0] == 0x64
            && (w[1] & 0xf8) == 0x48
            && w[2] == 0x8b
            && (w[3] & 0xc7) == 0x04
            && w[4] == 0x25
        {
            return Some(i64::from(i32::from_le_bytes(w[5..9].try_into().ok()?)));
        }
        // 48 c7 c<reg> imm32 ; 64 48 8b <modrm referencing that reg>
        if (w[0] & 0xf8) == 0x48 && w[1] == 0xc7 && (w[2] & 0xf8) == 0xc0 && w.len() >= 11 {
            let imm = i64::from(i32::from_le_bytes(w[3..7].try_into().ok()?));
            let n = &w[7..];
            if n[0] == 0x64 && (n[1] & 0xf8) == 0x48 && n[2] == 0x8b {
                return Some(imm);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("go1.19.8"), Some((1, 19)));
        assert_eq!(
            parse_version("go1.24rc1 X:nocoverageredesign"),
            Some((1, 24))
        );
        assert_eq!(parse_version("devel +abc"), None);
        assert_eq!(runtime_offsets((1, 19)).unwrap().g_labels, 360);
        assert_eq!(
            runtime_offsets((1, 24)).unwrap().labels_format,
            GO_LABELS_SLICE
        );
        assert!(runtime_offsets((1, 16)).is_none());
        assert!(runtime_offsets((1, 30)).is_none());
    }

    #[test]
    fn decodes_tls_loads() {
        // mov %fs:0xfffffffffffffff8,%rax ; cmp ...
        let non_pie = [
            0x64, 0x48, 0x8b, 0x04, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x48, 0x39, 0x60, 0x08,
        ];
        assert_eq!(decode_tls_load(&non_pie), Some(-8));
        // mov $-8,%rcx ; mov %fs:(%rcx),%rax
        let pie = [
            0x48, 0xc7, 0xc1, 0xf8, 0xff, 0xff, 0xff, 0x64, 0x48, 0x8b, 0x01, 0x90, 0x90,
        ];
        assert_eq!(decode_tls_load(&pie), Some(-8));
        let cgo = [
            0x64, 0x48, 0x8b, 0x04, 0x25, 0xa8, 0xff, 0xff, 0xff, 0x90, 0x90, 0x90,
        ];
        assert_eq!(decode_tls_load(&cgo), Some(-0x58));
        assert_eq!(decode_tls_load(&[0x90; 16]), None);
    }

    #[test]
    fn detects_the_go_toolchain_itself() {
        // Debian's go command is a Go 1.19 binary: a real input, no fixture needed.
        let go = Path::new("/usr/lib/go-1.19/bin/go");
        let missing = format!("{} not installed (Debian golang-go)", go.display());
        if kiln_testkit::skip_unless(go.exists(), "detects_the_go_toolchain_itself", &missing) {
            return;
        }
        let (version, offsets) = detect(go).unwrap().expect("go is a Go program");
        assert!(version.starts_with("go1.19"), "{version}");
        assert_eq!(offsets.g_labels, 360);
        assert!(offsets.tls_offset < 0);
        assert!(detect(Path::new("/bin/sh")).unwrap().is_none());
    }
}
