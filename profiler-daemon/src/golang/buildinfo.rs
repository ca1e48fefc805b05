//! The Go version from `.go.buildinfo`, which survives stripping.

use object::{Object, ObjectSection, ObjectSegment};

const MAGIC: &[u8] = b"\xff Go buildinf:";

/// The version string (e.g. "go1.19.8") of a Go binary, or None for other binaries.
pub fn go_version(file: &object::File<'_>) -> Option<String> {
    if let Some(sec) = file.section_by_name(".go.buildinfo") {
        if let Ok(data) = sec.data() {
            if let Some(v) = parse(data, file) {
                return Some(v);
            }
        }
    }
    // Section headers may be gone: the blob sits 16-byte aligned in a writable segment.
    for seg in file.segments() {
        let Ok(data) = seg.data() else { continue };
        let mut off = 0;
        while off + MAGIC.len() <= data.len() {
            if &data[off..off + MAGIC.len()] == MAGIC {
                if let Some(v) = parse(&data[off..], file) {
                    return Some(v);
                }
            }
            off += 16;
        }
    }
    None
}

fn parse(data: &[u8], file: &object::File<'_>) -> Option<String> {
    if data.len() < 32 || !data.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = data[14] as usize;
    let flags = data[15];
    if flags & 2 != 0 {
        // Go >= 1.18: inline varint-prefixed strings after the 32-byte header.
        let (len, n) = uvarint(&data[32..])?;
        let start = 32 + n;
        return std::str::from_utf8(data.get(start..start + len as usize)?)
            .ok()
            .map(str::to_owned);
    }
    // Older: a pointer to a Go string header {ptr, len}.
    let read_ptr = |b: &[u8]| -> Option<u64> {
        Some(match ptr_size {
            8 => u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            4 => u64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    };
    let hdr = read_ptr(&data[16..])?;
    let hdr_bytes = read_vaddr(file, hdr, 2 * ptr_size as u64)?;
    let str_ptr = read_ptr(&hdr_bytes)?;
    let str_len = read_ptr(&hdr_bytes[ptr_size..])?;
    let s = read_vaddr(file, str_ptr, str_len.min(64))?;
    String::from_utf8(s).ok()
}

fn read_vaddr(file: &object::File<'_>, addr: u64, len: u64) -> Option<Vec<u8>> {
    file.segments().find_map(|seg| {
        let off = addr.checked_sub(seg.address())?;
        if off + len > seg.size() {
            return None;
        }
        seg.data()
            .ok()?
            .get(off as usize..(off + len) as usize)
            .map(<[u8]>::to_vec)
    })
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}
