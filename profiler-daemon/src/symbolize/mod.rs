//! Turns addresses into function names: user addresses by (binary, file offset) with
//! blazesym (ELF symbols, DWARF with inlined functions and lines, Go, demangling), kernel
//! addresses with kallsyms (our compact table, see [`kallsyms`]). Results are cached
//! per binary and offset, so an address seen again costs one hash lookup.

pub mod kallsyms;

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use blazesym::symbolize::{
    evict,
    source::{Elf, Source},
    CodeInfo, Input, Sym, Symbolized, Symbolizer as Blazesym,
};

use self::kallsyms::Kallsyms;
use crate::capture::procs::{Binary, BinaryId};

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
    /// Entries dropped because a cache was full.
    pub evicted: u64,
}

/// Where separate debug files are looked up (blazesym's defaults, named here because
/// releasing a binary must also release the debug file blazesym found for it).
const DEBUG_DIRS: &[&str] = &["/usr/lib/debug", "/lib/debug"];

/// A binary blazesym holds parsed.
struct Parsed {
    path: PathBuf,
    build_id: Option<String>,
    /// The drain that last used it.
    drain: u64,
}

pub struct Symbolizer {
    blazesym: Blazesym,
    debug_dirs: Vec<PathBuf>,
    /// Loaded on the first kernel address.
    kallsyms: Option<Kallsyms>,
    user: HashMap<(BinaryId, u64), Frames>,
    kernel: HashMap<u64, Frames>,
    max_entries: usize,
    /// Binaries blazesym holds parsed (ELF, DWARF).
    parsed: HashMap<BinaryId, Parsed>,
    drain: u64,
    hits: u64,
    misses: u64,
    evicted: u64,
    /// Names of Python frames (code objects of registered CPython processes).
    pub python: crate::runtimes::python::code::CodeNames,
}

impl Symbolizer {
    /// `max_entries` caps each cache; past it the cache is cleared (cheap to refill,
    /// since blazesym keeps the parsed binaries).
    pub fn new(max_entries: usize) -> Self {
        Self::with_debug_dirs(max_entries, DEBUG_DIRS.iter().map(PathBuf::from).collect())
    }

    fn with_debug_dirs(max_entries: usize, debug_dirs: Vec<PathBuf>) -> Self {
        Self {
            blazesym: new_blazesym(&debug_dirs),
            debug_dirs,
            kallsyms: None,
            user: HashMap::new(),
            kernel: HashMap::new(),
            max_entries,
            parsed: HashMap::new(),
            drain: 0,
            hits: 0,
            misses: 0,
            evicted: 0,
            python: Default::default(),
        }
    }

    pub fn stats(&self) -> SymbolizerStats {
        SymbolizerStats {
            hits: self.hits,
            misses: self.misses,
            cached: self.user.len() + self.kernel.len(),
            evicted: self.evicted,
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
            self.evicted += self.user.len() as u64;
            self.user.clear();
        }
        let path = binary.open_path();
        self.parsed.insert(
            id,
            Parsed {
                path: path.clone(),
                build_id: binary.build_id.clone(),
                drain: self.drain,
            },
        );
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
            self.evicted += self.kernel.len() as u64;
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
        let mut by_age: Vec<(u64, BinaryId)> =
            self.parsed.iter().map(|(id, p)| (p.drain, *id)).collect();
        by_age.sort_unstable_by(|a, b| b.cmp(a));
        for (i, (used, id)) in by_age.into_iter().enumerate() {
            if used == current && i < keep {
                continue;
            }
            self.release(id);
        }
        if self.parsed.is_empty() {
            // Nothing needs to stay parsed: a fresh instance guarantees that whatever
            // blazesym opened along the way (debug links by name, say) is gone too.
            self.blazesym = new_blazesym(&self.debug_dirs);
        }
    }

    /// Drops everything cached for a binary that is being closed.
    pub fn forget(&mut self, id: BinaryId) {
        self.user.retain(|(b, _), _| *b != id);
        self.release(id);
    }

    /// Lets blazesym drop a parsed binary: the binary itself and the separate debug file
    /// it found by build id, which its cache keys by its own path. Releasing only the
    /// binary would leave the debug file's inflated DWARF (10 MB for libc) resident.
    fn release(&mut self, id: BinaryId) {
        let Some(parsed) = self.parsed.remove(&id) else {
            return;
        };
        let _ = self
            .blazesym
            .evict(&evict::Evict::Elf(evict::Elf::new(parsed.path)));
        for debug_file in parsed
            .build_id
            .iter()
            .flat_map(|id| debug_file_candidates(&self.debug_dirs, id))
        {
            let _ = self
                .blazesym
                .evict(&evict::Evict::Elf(evict::Elf::new(debug_file)));
        }
    }
}

fn new_blazesym(debug_dirs: &[PathBuf]) -> Blazesym {
    Blazesym::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .set_debug_dirs(Some(debug_dirs))
        .build()
}

/// `<dir>/.build-id/<first byte>/<rest>.debug`, the paths blazesym tries for a build id.
fn debug_file_candidates<'a>(
    debug_dirs: &'a [PathBuf],
    build_id: &'a str,
) -> impl Iterator<Item = PathBuf> + 'a {
    let split =
        (build_id.len() >= 16 && build_id.is_char_boundary(2)).then(|| build_id.split_at(2));
    split.into_iter().flat_map(move |(first, rest)| {
        debug_dirs.iter().map(move |dir| {
            dir.join(".build-id")
                .join(first)
                .join(format!("{rest}.debug"))
        })
    })
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

    fn is_mapped(path: &std::path::Path) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|l| l.ends_with(path.to_str().unwrap()))
    }

    /// A C program whose DWARF lives in a separate, compressed debug file found by build
    /// id (as distributions ship them), and the file offset of its `work` function.
    fn program_with_separate_debug_file(dir: &std::path::Path) -> (Binary, PathBuf, u64) {
        use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
        let run = |cmd: &mut std::process::Command| {
            let status = cmd.status().unwrap();
            assert!(status.success(), "{cmd:?}");
        };
        let src = dir.join("t.c");
        std::fs::write(
            &src,
            "int work(int n) { int s = 0; for (int i = 0; i < n; i++) s += i * i; return s; }\n\
             int main(int argc, char **argv) { return work(argc); }\n",
        )
        .unwrap();
        let prog = dir.join("prog");
        run(std::process::Command::new("gcc")
            .args(["-O1", "-g", "-Wl,--build-id", "-o"])
            .args([&prog, &src]));
        let build_id: String = blazesym::helper::read_elf_build_id(&prog)
            .unwrap()
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let debug_file = dir
            .join("debug/.build-id")
            .join(&build_id[..2])
            .join(format!("{}.debug", &build_id[2..]));
        std::fs::create_dir_all(debug_file.parent().unwrap()).unwrap();
        run(std::process::Command::new("objcopy")
            .args(["--only-keep-debug", "--compress-debug-sections=zlib"])
            .args([&prog, &debug_file]));
        run(std::process::Command::new("objcopy")
            .arg("--strip-debug")
            .arg(format!("--add-gnu-debuglink={}", debug_file.display()))
            .arg(&prog));

        let data = std::fs::read(&prog).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        let addr = elf
            .symbols()
            .find(|s| s.name() == Ok("work"))
            .unwrap()
            .address();
        let seg = elf
            .segments()
            .find(|s| (s.address()..s.address() + s.size()).contains(&addr))
            .unwrap();
        let offset = addr - seg.address() + seg.file_range().0;
        let mut binary = Binary::open(prog.to_str().unwrap()).unwrap();
        binary.build_id = Some(build_id);
        (binary, debug_file, offset)
    }

    #[test]
    fn releasing_a_binary_unmaps_its_separate_debug_file() {
        let dir = tempfile::tempdir().unwrap();
        let (binary, debug_file, offset) = program_with_separate_debug_file(dir.path());
        let mut sym = Symbolizer::with_debug_dirs(1000, vec![dir.path().join("debug")]);

        let frames = sym.user(1, &binary, offset);
        assert_eq!(&*frames[0].function, "work");
        // File and line come from the DWARF, which only the debug file has.
        assert!(
            frames[0]
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("t.c")),
            "{frames:?}"
        );
        assert!(is_mapped(&debug_file));

        // Another binary stays parsed, so this is the per-binary release, not a reset.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let other = Binary::open(exe.to_str().unwrap()).unwrap();
        sym.end_drain(16);
        sym.user(2, &other, 0x2000);
        sym.end_drain(16);
        assert_eq!(sym.parsed.len(), 1);
        assert!(
            !is_mapped(&debug_file),
            "the debug file of a released binary is still mapped"
        );

        // Needed again: parsed again, and the answer is the same.
        sym.user.clear();
        assert_eq!(sym.user(1, &binary, offset), frames);
        sym.forget(1);
        assert!(!is_mapped(&debug_file));
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
