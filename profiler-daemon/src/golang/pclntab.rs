//! Function lookup in Go's pclntab (Go >= 1.18 layout), which stripping keeps.

use object::{Object, ObjectSection};

/// Entry address of the function `name` (also matching its `.abi0` variant).
pub fn find_function(file: &object::File<'_>, name: &str) -> Option<u64> {
    let sec = file
        .section_by_name(".gopclntab")
        .or_else(|| file.section_by_name(".data.rel.ro.gopclntab"))?;
    let tab = sec.data().ok()?;
    let magic = u32::from_le_bytes(tab.get(..4)?.try_into().ok()?);
    // 0xfffffff0: Go 1.18-1.19; 0xfffffff1: Go 1.20+. Same header layout.
    if magic != 0xfffffff0 && magic != 0xfffffff1 {
        return None;
    }
    let ptr_size = *tab.get(7)? as usize;
    if ptr_size != 8 {
        return None;
    }
    let word = |i: usize| -> Option<u64> {
        let at = 8 + i * ptr_size;
        Some(u64::from_le_bytes(tab.get(at..at + 8)?.try_into().ok()?))
    };
    let nfunc = word(0)? as usize;
    let text_start = word(2)?;
    let funcname_off = word(3)? as usize;
    let pcln_off = word(7)? as usize;
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(tab.get(at..at + 4)?.try_into().ok()?))
    };
    let want_abi0 = format!("{name}.abi0");
    for i in 0..nfunc.min(1 << 22) {
        let entry_off = u32_at(pcln_off + i * 8)?;
        let func_off = u32_at(pcln_off + i * 8 + 4)? as usize;
        let name_off = u32_at(pcln_off + func_off + 4)? as usize;
        let start = funcname_off + name_off;
        let rest = tab.get(start..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        let fname = &rest[..end];
        if fname == name.as_bytes() || fname == want_abi0.as_bytes() {
            return Some(text_start + u64::from(entry_off));
        }
    }
    None
}
