//! Kernel symbol lookup from `/proc/kallsyms`, stored compactly: one sorted array of
//! (address, name offset) and all names in one string. A kernel has ~120 000 symbols;
//! keeping each as its own `String` (what a general-purpose resolver does) costs about
//! twice the memory, and the agent holds this table for its whole life.

pub struct Kallsyms {
    /// (address, offset of the name in `names`), sorted by address.
    symbols: Vec<(u64, u32)>,
    /// Names, each terminated by `\n`.
    names: String,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`. Empty when it cannot be read or its addresses are hidden
    /// (`kptr_restrict`): every lookup then misses.
    pub fn load() -> Self {
        match std::fs::File::open("/proc/kallsyms") {
            Ok(f) => {
                let table = Self::parse(std::io::BufReader::with_capacity(64 * 1024, f));
                log::debug!("{} kernel text symbols loaded", table.len());
                table
            }
            Err(e) => {
                log::warn!("kernel frames stay unnamed: reading /proc/kallsyms failed: {e}");
                Self::empty()
            }
        }
    }

    fn empty() -> Self {
        Self {
            symbols: Vec::new(),
            names: String::new(),
        }
    }

    /// Parses the `address type name [module]` lines of a kallsyms file. Only text
    /// symbols are kept: samples only ever land in code.
    pub fn parse(reader: impl std::io::BufRead) -> Self {
        let mut symbols = Vec::new();
        let mut names = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let Ok(offset) = u32::try_from(names.len()) else {
                break;
            };
            symbols.push((addr, offset));
            names.push_str(name);
            names.push('\n');
        }
        if symbols.iter().all(|&(addr, _)| addr == 0) {
            return Self::empty();
        }
        symbols.sort_unstable_by_key(|&(addr, _)| addr);
        symbols.shrink_to_fit();
        names.shrink_to_fit();
        Self { symbols, names }
    }

    /// The function containing `addr`: the symbol with the greatest address not above it.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let i = self.symbols.partition_point(|&(a, _)| a <= addr);
        let (_, offset) = *self.symbols.get(i.checked_sub(1)?)?;
        let rest = &self.names[offset as usize..];
        Some(&rest[..rest.find('\n').unwrap_or(rest.len())])
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_text_symbol() {
        let text = "\
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff82000000 D some_data
ffffffff81000200 T do_syscall_64
ffffffffc0000000 t mod_fn\t[mymod]
";
        let k = Kallsyms::parse(text.as_bytes());
        assert_eq!(k.len(), 4);
        assert_eq!(k.lookup(0xffffffff81000000), Some("_stext"));
        assert_eq!(k.lookup(0xffffffff810000ff), Some("_stext"));
        assert_eq!(k.lookup(0xffffffff81000150), Some("helper"));
        assert_eq!(k.lookup(0xffffffff81000234), Some("do_syscall_64"));
        assert_eq!(k.lookup(0xffffffffc0000010), Some("mod_fn"));
        assert_eq!(k.lookup(0xffffffff80000000), None);
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        let k = Kallsyms::parse("0000000000000000 T a\n0000000000000000 t b\n".as_bytes());
        assert_eq!(k.len(), 0);
        assert_eq!(k.lookup(0x1234), None);
    }

    #[test]
    fn this_kernel_names_a_syscall_entry() {
        // Readable as root; hidden (all zero) otherwise, which must not panic either.
        let k = Kallsyms::load();
        if k.is_empty() {
            return;
        }
        let addr = k
            .symbols
            .iter()
            .find(|&&(_, off)| k.names[off as usize..].starts_with("do_syscall_64\n"))
            .map(|&(a, _)| a)
            .expect("do_syscall_64 in kallsyms");
        assert_eq!(k.lookup(addr + 1), Some("do_syscall_64"));
    }
}
