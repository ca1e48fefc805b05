//! Function lookup in Go's pclntab (Go >= 1.18 layout), which stripping keeps.

use object::{Object, ObjectSection};

/// Entry address of the function `name` (also matching its `.abi0` variant).
pub fn find_function(file: &object::File<'_>, name: &str) -> Option<u64> {
    if let Some(sec) = file
        .section_by_name(".gopclntab")
        .or_else(|| file.section_by_name(".data.rel.ro.gopclntab"))
    {
        return find_in(sec.data().ok()?, name);
    }
    // Externally linked PIE (cgo with -buildmode=pie): the external linker merges the
    // table into `.data.rel.ro` (only the `runtime.pclntab` symbol, gone when stripped,
    // marks it), so look for its header there.
    let sec = file.section_by_name(".data.rel.ro")?;
    let data = sec.data().ok()?;
    candidates(data).find_map(|at| find_in(&data[at..], name))
}

/// Offsets in `data` where a Go 1.18+ amd64 pclntab header may start: the magic, two
/// zero pad bytes, minimum instruction size 1 and pointer size 8, 8-byte aligned.
fn candidates(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    (0..data.len().saturating_sub(8)).step_by(8).filter(|&at| {
        let w = &data[at..at + 8];
        (w[..4] == [0xf0, 0xff, 0xff, 0xff] || w[..4] == [0xf1, 0xff, 0xff, 0xff])
            && w[4..] == [0, 0, 1, 8]
    })
}

fn find_in(tab: &[u8], name: &str) -> Option<u64> {
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
