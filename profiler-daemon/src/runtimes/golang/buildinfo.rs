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
    // Only a file without section headers is scanned: scanning every binary of a host
    // would read (and keep resident) whole files, tens of MB each, to learn they are not Go.
    if file.sections().next().is_some() {
        return None;
    }
    // The blob sits 16-byte aligned in a writable segment.
    for seg in file.segments().filter(is_writable) {
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

fn is_writable(seg: &object::Segment<'_, '_>) -> bool {
    const PF_W: u32 = 2;
    matches!(seg.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & PF_W != 0)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF with no section headers and one PT_LOAD segment holding a Go >= 1.18
    /// build-info blob at offset 0x80 of the file.
    fn headerless_elf(p_flags: u32) -> Vec<u8> {
        let mut blob = MAGIC.to_vec();
        blob.extend([8, 2]); // pointer size, inline-strings flag
        blob.resize(32, 0);
        blob.push(8);
        blob.extend(b"go1.21.4");
        let (data_off, len) = (0x80u64, 0x80 + blob.len() as u64);

        let mut f = vec![0u8; data_off as usize];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1; // version
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = &mut f[64..120];
        ph[..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        ph[4..8].copy_from_slice(&(p_flags | 4).to_le_bytes()); // always readable
        ph[16..24].copy_from_slice(&0x40_0000u64.to_le_bytes()); // p_vaddr
        ph[24..32].copy_from_slice(&0x40_0000u64.to_le_bytes()); // p_paddr
        ph[32..40].copy_from_slice(&len.to_le_bytes()); // p_filesz
        ph[40..48].copy_from_slice(&len.to_le_bytes()); // p_memsz
        ph[48..56].copy_from_slice(&0x1000u64.to_le_bytes());
        f.extend(blob);
        f
    }

    #[test]
    fn headerless_go_binary_is_found_in_its_writable_segment() {
        let elf = headerless_elf(2);
        let file = object::File::parse(&*elf).unwrap();
        assert_eq!(go_version(&file).as_deref(), Some("go1.21.4"));
    }

    #[test]
    fn code_segments_are_not_scanned() {
        let elf = headerless_elf(1);
        let file = object::File::parse(&*elf).unwrap();
        assert_eq!(go_version(&file), None);
    }

    #[test]
    fn a_binary_with_section_headers_and_no_go_section_is_not_go() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let file = object::File::parse(&*exe).unwrap();
        assert!(file.sections().next().is_some());
        assert_eq!(go_version(&file), None);
    }
}
