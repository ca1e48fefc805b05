//! Compiles a binary's DWARF call frame information (`.eh_frame`, plus `.debug_frame`
//! where present) into the compact rows the kernel unwinder evaluates.
//!
//! Only what x86_64 code needs to find its caller is kept: how to compute the CFA
//! (rsp + N or rbp + N), where rbp was saved (CFA - 8k, or unchanged) and whether the
//! return address exists at all (undefined = outermost frame). The return address is
//! always at CFA - 8 on x86_64; any other rule, and DWARF expressions except the PLT's
//! well-known one, become [`row_kind::UNSUPPORTED`] rows so the kernel stops there (and
//! counts it) instead of guessing. FDEs of signal trampolines (CIE augmentation `S`)
//! become [`row_kind::SIGNAL`] rows: the kernel reads the interrupted registers from the
//! `ucontext_t` instead of evaluating their expressions.
//!
//! Rows are sorted by pc, identical neighbours merged, and holes between FDEs marked
//! with [`row_kind::GAP`] rows. `.eh_frame_hdr` is not needed: it only indexes the FDEs
//! that are enumerated here anyway.

use std::{io::Read as _, path::Path};

use anyhow::{bail, Context as _};
use gimli::{
    BaseAddresses, CfaRule, CieOrFde, DebugFrame, EhFrame, EndianSlice, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection, X86_64,
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};
use profiler_common::unwind::{row_kind, UnwindRow};

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// An executable `PT_LOAD` segment: how file offsets map to virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u64,
    pub vaddr: u64,
    pub file_size: u64,
}

/// What compiling one binary found, for logs and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub eh_frame_fdes: u32,
    pub debug_frame_fdes: u32,
    /// CFI rows before compaction.
    pub cfi_rows: u32,
    pub plt_rows: u32,
    pub signal_fdes: u32,
    pub unsupported_rows: u32,
    /// FDEs dropped because another FDE already covers their start.
    pub overlapping_fdes: u32,
}

/// The compiled table of one binary.
#[derive(Clone, Debug)]
pub struct UnwindTable {
    /// Virtual address that row pc 0 stands for.
    pub base: u64,
    pub rows: Vec<UnwindRow>,
    pub segments: Vec<Segment>,
    #[cfg_attr(not(test), allow(dead_code))] // read by tests and the table-size bench
    pub stats: TableStats,
}

impl UnwindTable {
    /// Kernel memory the rows take.
    pub fn bytes(&self) -> usize {
        self.rows.len() * size_of::<UnwindRow>()
    }

    /// The bias for a mapping of this binary at `start` from file offset `file_offset`
    /// (row pc = address - bias), or None if no executable segment holds that offset.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn bias_for(&self, start: u64, file_offset: u64) -> Option<u64> {
        bias(self.base, &self.segments, start, file_offset)
    }

    /// The row that applies at virtual address `vaddr` (for tests and tools).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn lookup(&self, vaddr: u64) -> Option<&UnwindRow> {
        let rel = u32::try_from(vaddr.checked_sub(self.base)?).ok()?;
        let i = self.rows.partition_point(|r| r.pc <= rel);
        self.rows.get(i.checked_sub(1)?)
    }
}

/// The bias (row pc = address - bias) of a mapping at `start` from file offset
/// `file_offset` of a binary whose table starts at `base`, or None if no executable
/// segment holds that offset.
pub fn bias(base: u64, segments: &[Segment], start: u64, file_offset: u64) -> Option<u64> {
    const PAGE: u64 = 4096;
    let seg = segments.iter().find(|s| {
        s.file_offset & !(PAGE - 1) <= file_offset && file_offset < s.file_offset + s.file_size
    })?;
    // vaddr(addr) = addr - start + file_offset - seg.file_offset + seg.vaddr
    Some(
        start
            .wrapping_sub(file_offset)
            .wrapping_add(seg.file_offset)
            .wrapping_sub(seg.vaddr)
            .wrapping_add(base),
    )
}

/// Compiles the file at `path`. `Ok(None)`: the binary has no CFI (frame pointers only).
pub fn compile_file(path: &Path) -> anyhow::Result<Option<UnwindTable>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: read-only private mapping; a binary truncated underneath us can fault,
    // which is the same risk every ELF reader that mmaps (blazesym too) takes.
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("mapping {}", path.display()))?;
    compile(&map).with_context(|| format!("reading the unwind information of {}", path.display()))
}

/// A rule over `[pc, next rule's pc)`, in virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    kind: u8,
    cfa_offset: u16,
    rbp_offset: i8,
}

const GAP: Rule = Rule {
    kind: row_kind::GAP,
    cfa_offset: 0,
    rbp_offset: 0,
};
const UNSUPPORTED: Rule = Rule {
    kind: row_kind::UNSUPPORTED,
    cfa_offset: 0,
    rbp_offset: 0,
};

/// An FDE's range and where it sits in its section. Its rules are evaluated only when
/// rows are written, in address order, so no list of every rule of the binary is ever
/// held (for a 20 MB binary that list was 4 MB more than the table itself).
struct Fde {
    start: u64,
    end: u64,
    /// 0 = .eh_frame, 1 = .debug_frame (the former wins where both cover a pc).
    source: u8,
    offset: usize,
}

/// Compiles an ELF image. `Ok(None)`: no CFI.
pub fn compile(data: &[u8]) -> anyhow::Result<Option<UnwindTable>> {
    let obj = object::File::parse(data).context("not an ELF file")?;
    if obj.architecture() != object::Architecture::X86_64 {
        bail!("unwind tables are built for x86_64 only");
    }
    let segments: Vec<Segment> = obj
        .segments()
        .filter(|s| match s.flags() {
            object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
            _ => false,
        })
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            Segment {
                file_offset,
                vaddr: s.address(),
                file_size,
            }
        })
        .collect();
    let mut stats = TableStats::default();
    let mut fdes = Vec::new();

    let addr_of = |name: &str| obj.section_by_name(name).map(|s| s.address());
    let mut eh_frame = None;
    if let Some(section) = obj.section_by_name(".eh_frame") {
        let data = section.data().context("reading .eh_frame")?;
        let mut bases = BaseAddresses::default().set_eh_frame(section.address());
        if let Some(a) = addr_of(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(a);
        }
        if let Some(a) = addr_of(".text") {
            bases = bases.set_text(a);
        }
        if let Some(a) = addr_of(".got") {
            bases = bases.set_got(a);
        }
        let eh = EhFrame::new(data, LittleEndian);
        stats.eh_frame_fdes = list_fdes(&eh, &bases, 0, &mut fdes).context("parsing .eh_frame")?;
        eh_frame = Some((eh, bases));
    }
    let debug_frame_data = match obj.section_by_name(".debug_frame") {
        Some(section) => section_bytes(&section).context("reading .debug_frame")?,
        None => Vec::new(),
    };
    let mut debug_frame = None;
    if !debug_frame_data.is_empty() {
        let mut df = DebugFrame::new(&debug_frame_data, LittleEndian);
        df.set_address_size(8);
        // A broken .debug_frame must not cost the binary its .eh_frame table.
        let before = fdes.len();
        match list_fdes(&df, &BaseAddresses::default(), 1, &mut fdes) {
            Ok(n) => {
                stats.debug_frame_fdes = n;
                debug_frame = Some(df);
            }
            Err(e) => {
                log::debug!("ignoring .debug_frame: {e}");
                fdes.truncate(before);
            }
        }
    }
    if fdes.is_empty() {
        return Ok(None);
    }
    fdes.sort_by_key(|f| (f.start, f.source));

    // Rows are written directly, pcs relative to the first FDE's start (where its first
    // rule is), from one FDE's rules at a time.
    let base = fdes[0].start;
    let last_end = fdes.iter().map(|f| f.end).max().unwrap_or(base);
    if last_end - base > u64::from(u32::MAX) {
        bail!("the binary's code spans more than 4 GiB of addresses");
    }
    let mut ctx = Box::new(UnwindContext::new());
    let mut own = Vec::new();
    let mut rows: Vec<UnwindRow> = Vec::new();
    let mut covered_to = 0u64;
    for fde in &fdes {
        if fde.start < covered_to {
            stats.overlapping_fdes += 1;
            continue;
        }
        own.clear();
        match (fde.source, &eh_frame, &debug_frame) {
            (0, Some((eh, bases)), _) => fde_rules(eh, bases, fde, &mut ctx, &mut own, &mut stats),
            (1, _, Some(df)) => {
                let bases = BaseAddresses::default();
                fde_rules(df, &bases, fde, &mut ctx, &mut own, &mut stats)
            }
            _ => unreachable!("an FDE is listed only from a parsed section"),
        }
        if own.is_empty() {
            continue;
        }
        if !rows.is_empty() && fde.start > covered_to {
            push_rule(&mut rows, (covered_to - base) as u32, GAP);
        }
        for &(pc, rule) in &own {
            push_rule(&mut rows, (pc - base) as u32, rule);
        }
        covered_to = fde.end;
    }
    drop(fdes);
    push_rule(&mut rows, (covered_to - base) as u32, GAP);
    rows.shrink_to_fit();
    Ok(Some(UnwindTable {
        base,
        rows,
        segments,
        stats,
    }))
}

/// Section contents, decompressing zlib-compressed (`SHF_COMPRESSED`) debug sections.
fn section_bytes(section: &object::Section<'_, '_>) -> anyhow::Result<Vec<u8>> {
    let compressed = section.compressed_data()?;
    match compressed.format {
        object::CompressionFormat::None => Ok(compressed.data.to_vec()),
        object::CompressionFormat::Zlib => {
            let mut out = Vec::with_capacity(compressed.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .take(1 << 30)
                .read_to_end(&mut out)?;
            Ok(out)
        }
        other => bail!("unsupported section compression {other:?}"),
    }
}

/// Appends a row for `rule` at `pc` unless it repeats the last one; a rule at the pc of
/// the last row replaces it.
fn push_rule(rows: &mut Vec<UnwindRow>, pc: u32, rule: Rule) {
    let same = |row: &UnwindRow| {
        row.kind == rule.kind
            && row.cfa_offset == rule.cfa_offset
            && row.rbp_offset == rule.rbp_offset
    };
    if let Some(last) = rows.last_mut() {
        if same(last) {
            return;
        }
        if last.pc == pc {
            *last = UnwindRow {
                pc,
                cfa_offset: rule.cfa_offset,
                kind: rule.kind,
                rbp_offset: rule.rbp_offset,
            };
            // Merging may now make it equal to the one before.
            if rows.len() >= 2 && same(&rows[rows.len() - 2]) {
                rows.pop();
            }
            return;
        }
    }
    rows.push(UnwindRow {
        pc,
        cfa_offset: rule.cfa_offset,
        kind: rule.kind,
        rbp_offset: rule.rbp_offset,
    });
}

/// Lists every non-empty FDE of `section` in `out`; returns how many.
fn list_fdes<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    bases: &BaseAddresses,
    source: u8,
    out: &mut Vec<Fde>,
) -> anyhow::Result<u32>
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let mut entries = section.entries(bases);
    let mut count = 0;
    while let Some(entry) = entries.next()? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        let fde = match partial.parse(|s, b, o| s.cie_from_offset(b, o)) {
            Ok(fde) => fde,
            Err(e) => {
                log::debug!("skipping an FDE: {e}");
                continue;
            }
        };
        let (start, end) = (fde.initial_address(), fde.end_address());
        if start >= end || start == 0 && source == 1 {
            // Empty, or a .debug_frame FDE of discarded code (address 0).
            continue;
        }
        count += 1;
        out.push(Fde {
            start,
            end,
            source,
            offset: fde.offset(),
        });
    }
    Ok(count)
}

/// Evaluates the CFI of `fde` into `rules` (absolute pcs, consecutive duplicates
/// dropped); leaves it empty if the FDE cannot be read.
fn fde_rules<'a, S: UnwindSection<Slice<'a>>>(
    section: &S,
    bases: &BaseAddresses,
    fde: &Fde,
    ctx: &mut UnwindContext<usize>,
    rules: &mut Vec<(u64, Rule)>,
    stats: &mut TableStats,
) where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let (start, end) = (fde.start, fde.end);
    let parsed = section.fde_from_offset(bases, S::Offset::from(fde.offset), |s, b, o| {
        s.cie_from_offset(b, o)
    });
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            log::debug!("skipping an FDE at {start:#x}: {e}");
            return;
        }
    };
    if parsed.cie().is_signal_trampoline() {
        stats.signal_fdes += 1;
        rules.push((
            start,
            Rule {
                kind: row_kind::SIGNAL,
                cfa_offset: 0,
                rbp_offset: 0,
            },
        ));
        return;
    }
    let mut table = match parsed.rows(section, bases, ctx) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("skipping an FDE at {start:#x}: {e}");
            return;
        }
    };
    loop {
        match table.next_row() {
            Ok(Some(row)) => {
                stats.cfi_rows += 1;
                let rule = convert(row, section, stats);
                if rules.last().is_none_or(|(_, r)| *r != rule) {
                    rules.push((row.start_address(), rule));
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Keep what was understood; the rest of the FDE is unsupported.
                log::debug!("CFI of the FDE at {start:#x} is malformed: {e}");
                let pc = rules.last().map_or(start, |(pc, _)| *pc + 1).min(end - 1);
                rules.push((pc, UNSUPPORTED));
                break;
            }
        }
    }
}

fn convert<'a, S: UnwindSection<Slice<'a>>>(
    row: &gimli::UnwindTableRow<usize>,
    section: &S,
    stats: &mut TableStats,
) -> Rule
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let unsupported = |stats: &mut TableStats| {
        stats.unsupported_rows += 1;
        UNSUPPORTED
    };
    match row.register(X86_64::RA) {
        Some(RegisterRule::Undefined) => {
            return Rule {
                kind: row_kind::END,
                cfa_offset: 0,
                rbp_offset: 0,
            }
        }
        Some(RegisterRule::Offset(-8)) => {}
        _ => return unsupported(stats),
    }
    let rbp_offset = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined) | Some(RegisterRule::SameValue) => 0,
        Some(RegisterRule::Offset(o)) if o < 0 && o % 8 == 0 && o >= -8 * 128 => (o / 8) as i8,
        Some(_) => return unsupported(stats),
    };
    match *row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let kind = if register == X86_64::RSP {
                row_kind::CFA_RSP
            } else if register == X86_64::RBP {
                row_kind::CFA_RBP
            } else {
                return unsupported(stats);
            };
            match u16::try_from(offset) {
                Ok(cfa_offset) => Rule {
                    kind,
                    cfa_offset,
                    rbp_offset,
                },
                Err(_) => unsupported(stats),
            }
        }
        CfaRule::Expression(ref expr) => {
            let bytes = expr.get(section).map(|e| e.0.slice()).unwrap_or(&[]);
            match plt_expression(bytes) {
                Some((offset, threshold)) => {
                    stats.plt_rows += 1;
                    Rule {
                        kind: row_kind::PLT,
                        cfa_offset: offset,
                        rbp_offset: threshold as i8,
                    }
                }
                None => unsupported(stats),
            }
        }
    }
}

/// Recognizes the CFA expression every x86_64 linker emits for PLT entries:
/// `DW_OP_breg7 (rsp) N; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and; DW_OP_litK;
/// DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`, i.e.
/// CFA = rsp + N + 8 * ((rip & 15) >= K). Returns (N, K).
fn plt_expression(bytes: &[u8]) -> Option<(u16, u8)> {
    const DW_OP_LIT0: u8 = 0x30;
    match *bytes {
        [0x77, n, 0x80, 0x00, 0x3f, 0x1a, lit, 0x2a, 0x33, 0x24, 0x22]
            if n < 0x40 && (DW_OP_LIT0..DW_OP_LIT0 + 16).contains(&lit) =>
        {
            Some((u16::from(n), lit - DW_OP_LIT0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
