//! Turns addresses into function names: user addresses by (binary, file offset) with
//! blazesym (ELF symbols, DWARF with inlined functions and lines, Go, demangling), kernel
//! addresses with kallsyms (our compact table, see [`crate::kallsyms`]). Results are cached per binary and offset, so an address seen
//! again costs one hash lookup.

use std::{collections::HashMap, sync::Arc};

use blazesym::symbolize::{
    evict,
    source::{Elf, Source},
    CodeInfo, Input, Sym, Symbolized, Symbolizer as Blazesym,
};

use crate::{
    kallsyms::Kallsyms,
    procs::{Binary, BinaryId},
};

/// One function in a location. A location holds several when functions were inlined.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: Arc<str>,
    pub file: Option<Arc<str>>,
    pub line: u32,
}

/// The frames of one address, innermost (inlined) first, as pprof orders them.
pub type Frames = Arc<[Frame]>;

/// Suffix that marks kernel functions in folded output and flame graphs (perf's and
/// inferno's convention, which colors them apart).
pub const KERNEL_SUFFIX: &str = "_[k]";

#[derive(Clone, Copy, Debug, Default)]
pub struct SymbolizerStats {
    pub hits: u64,
    pub misses: u64,
    pub cached: usize,
}

pub struct Symbolizer {
    blazesym: Blazesym,
    /// Loaded on the first kernel address.
    kallsyms: Option<Kallsyms>,
    user: HashMap<(BinaryId, u64), Frames>,
    kernel: HashMap<u64, Frames>,
    max_entries: usize,
    /// Binaries blazesym holds parsed (ELF, DWARF), with the drain that last used them.
    parsed: HashMap<BinaryId, (std::path::PathBuf, u64)>,
    drain: u64,
    hits: u64,
    misses: u64,
}

impl Symbolizer {
    /// `max_entries` caps each cache; past it the cache is cleared (cheap to refill,
    /// since blazesym keeps the parsed binaries).
    pub fn new(max_entries: usize) -> Self {
        let blazesym = Blazesym::builder()
            .enable_code_info(true)
            .enable_inlined_fns(true)
            .enable_demangling(true)
            .build();
        Self {
            blazesym,
            kallsyms: None,
            user: HashMap::new(),
            kernel: HashMap::new(),
            max_entries,
            parsed: HashMap::new(),
            drain: 0,
            hits: 0,
            misses: 0,
        }
    }

    pub fn stats(&self) -> SymbolizerStats {
        SymbolizerStats {
            hits: self.hits,
            misses: self.misses,
            cached: self.user.len() + self.kernel.len(),
        }
    }

    /// Frames at `file_offset` in `binary`.
    pub fn user(&mut self, id: BinaryId, binary: &Binary, file_offset: u64) -> Frames {
        if let Some(f) = self.user.get(&(id, file_offset)) {
            self.hits += 1;
            return f.clone();
        }
        self.misses += 1;
        if self.user.len() >= self.max_entries {
            self.user.clear();
        }
        let path = binary.open_path();
        self.parsed.insert(id, (path.clone(), self.drain));
        let src = Source::Elf(Elf::new(path));
        let frames = match self
            .blazesym
            .symbolize_single(&src, Input::FileOffset(file_offset))
        {
            Ok(Symbolized::Sym(sym)) => frames_of(&sym),
            _ => unknown(&binary.name, file_offset),
        };
        self.user.insert((id, file_offset), frames.clone());
        frames
    }

    pub fn kernel(&mut self, addr: u64) -> Frames {
        if let Some(f) = self.kernel.get(&addr) {
            self.hits += 1;
            return f.clone();
        }
        self.misses += 1;
        if self.kernel.len() >= self.max_entries {
            self.kernel.clear();
        }
        let function = match self
            .kallsyms
            .get_or_insert_with(Kallsyms::load)
            .lookup(addr)
        {
            Some(name) => format!("{name}{KERNEL_SUFFIX}"),
            None => format!("[kernel]+0x{addr:x}{KERNEL_SUFFIX}"),
        };
        let frames: Frames = Arc::from(vec![Frame {
            function: function.into(),
            file: None,
            line: 0,
        }]);
        self.kernel.insert(addr, frames.clone());
        frames
    }

    /// Ends a drain: keeps parsed only the binaries this drain needed, at most `keep` of
    /// them (the most recently used). Their symbolized addresses stay cached, so a binary
    /// that needed nothing new in a whole drain is warm and unlikely to need parsing again
    /// soon, while its parsed debug info (tens of MB for a large binary) would stay
    /// resident for as long as it is kept.
    pub fn end_drain(&mut self, keep: usize) {
        let current = self.drain;
        self.drain += 1;
        let mut by_age: Vec<(u64, BinaryId)> = self
            .parsed
            .iter()
            .map(|(id, (_, used))| (*used, *id))
            .collect();
        by_age.sort_unstable_by(|a, b| b.cmp(a));
        for (i, (used, id)) in by_age.into_iter().enumerate() {
            if used == current && i < keep {
                continue;
            }
            if let Some((path, _)) = self.parsed.remove(&id) {
                let _ = self
                    .blazesym
                    .evict(&evict::Evict::Elf(evict::Elf::new(path)));
            }
        }
    }

    /// Drops everything cached for a binary that is being closed.
    pub fn forget(&mut self, id: BinaryId, binary: &Binary) {
        self.parsed.remove(&id);
        self.user.retain(|(b, _), _| *b != id);
        let _ = self
            .blazesym
            .evict(&evict::Evict::Elf(evict::Elf::new(binary.open_path())));
    }
}

/// A frame for an address we could not name: the binary and offset, which is what a
/// user needs to symbolize it later.
pub fn unknown(binary: &str, offset: u64) -> Frames {
    Arc::from(vec![Frame {
        function: format!("{binary}+0x{offset:x}").into(),
        file: None,
        line: 0,
    }])
}

fn frames_of(sym: &Sym<'_>) -> Frames {
    let frame = |name: &str, ci: Option<&CodeInfo<'_>>| Frame {
        function: name.into(),
        file: ci.map(|ci| Arc::from(ci.to_path().to_string_lossy().as_ref())),
        line: ci.and_then(|ci| ci.line).unwrap_or(0),
    };
    // blazesym reports the outer function first, then inlined calls in nesting order.
    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
    frames.push(frame(&sym.name, sym.code_info.as_deref()));
    for inlined in sym.inlined.iter() {
        frames.push(frame(&inlined.name, inlined.code_info.as_ref()));
    }
    frames.reverse();
    frames.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_binaries_are_released_after_a_drain_that_did_not_need_them() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let binary = Binary::open(exe.to_str().unwrap()).unwrap();
        let mut sym = Symbolizer::new(1000);
        // Any offset inside the text: the answer does not matter, only the parse does.
        let offset = 0x2000;
        sym.user(1, &binary, offset);
        sym.end_drain(16);
        assert_eq!(sym.parsed.len(), 1, "used in this drain: kept parsed");
        sym.end_drain(16);
        assert!(sym.parsed.is_empty(), "unused for a drain: released");
        // Its addresses stay cached.
        let hits = sym.stats().hits;
        sym.user(1, &binary, offset);
        assert_eq!(sym.stats().hits, hits + 1);
        assert!(sym.parsed.is_empty());
    }

    #[test]
    fn at_most_keep_binaries_stay_parsed() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let binary = Binary::open(exe.to_str().unwrap()).unwrap();
        let mut sym = Symbolizer::new(1000);
        for id in 0..3 {
            sym.user(id, &binary, 0x2000);
        }
        sym.end_drain(2);
        assert_eq!(sym.parsed.len(), 2);
    }
}
