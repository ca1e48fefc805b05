//! Interning of strings, functions, locations and stacks.
//!
//! Everything a profile refers to is stored once and named by a dense `u32` id: a string,
//! a function `(name, filename)`, a location `(mapping filename, address, lines)` and a
//! stack, which is a node of a trie `(parent stack, location)` so that stacks sharing a
//! prefix from the root share storage. The whole table lives in memory (loaded at open)
//! and grows append-only; new entries are written to redb in the same transaction as the
//! samples that use them, so ids on disk are always consistent.

use std::hash::{Hash, Hasher};

use hashbrown::HashTable;
use redb::{ReadableTable, Table, WriteTransaction};

use crate::codec::{get_varint, put_varint};
use crate::error::{CorruptError, Result, StoreError};
use crate::hash::{FxHashMap, FxHasher};
use crate::schema;

/// A location: where it is (mapping file, address) and its frames, innermost first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocKey {
    pub mapping: u32,
    pub address: u64,
    /// `(function id, line)`, innermost (inlined) first as in pprof.
    pub lines: Box<[(u32, i64)]>,
}

/// Interned strings, packed into one buffer, with a hash table of ids only. A lookup
/// touches a 4-byte slot and the packed text instead of a 24-byte `(Box<str>, u32)` slot
/// plus a separate heap allocation: on a large symbol table both were cache misses, and
/// function-name interning was the biggest single cost of ingest after freeing the profile.
#[derive(Default)]
struct StringTable {
    text: String,
    /// End of each string in `text`; it starts where the previous one ends.
    ends: Vec<usize>,
    ids: HashTable<u32>,
}

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

/// String `id` of a table's `text`/`ends` (a free function so that closures passed to
/// `ids` can borrow those fields while `ids` is borrowed mutably).
fn str_at<'a>(text: &'a str, ends: &[usize], id: u32) -> Option<&'a str> {
    let i = id as usize;
    let end = *ends.get(i)?;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    Some(&text[start..end])
}

impl StringTable {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, id: u32) -> Option<&str> {
        str_at(&self.text, &self.ends, id)
    }

    fn find(&self, s: &str) -> Option<u32> {
        self.ids
            .find(hash_str(s), |&id| self.get(id) == Some(s))
            .copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        let h = hash_str(s);
        let (text, ends) = (&self.text, &self.ends);
        if let Some(&id) = self.ids.find(h, |&id| str_at(text, ends, id) == Some(s)) {
            return id;
        }
        self.push(s, h)
    }

    /// Appends `s` (not present; `h` is its hash) and returns its id.
    fn push(&mut self, s: &str, h: u64) -> u32 {
        let id = self.ends.len() as u32;
        self.text.push_str(s);
        self.ends.push(self.text.len());
        let (text, ends) = (&self.text, &self.ends);
        self.ids.insert_unique(h, id, |&id| {
            hash_str(str_at(text, ends, id).unwrap_or_default())
        });
        id
    }

    /// Strings `from..` as `(id, text)`.
    fn iter_from(&self, from: usize) -> impl Iterator<Item = (u32, &str)> {
        (from..self.len()).map(|i| (i as u32, self.get(i as u32).unwrap_or_default()))
    }

    /// Forgets every string from id `len` on.
    fn truncate(&mut self, len: usize) {
        for id in (len..self.len()).rev() {
            let h = hash_str(self.get(id as u32).unwrap_or_default());
            if let Ok(e) = self.ids.find_entry(h, |&x| x as usize == id) {
                e.remove();
            }
        }
        self.ends.truncate(len);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }
}

#[derive(Default)]
pub struct Symbols {
    strings: StringTable,
    functions: Vec<(u32, u32)>,
    function_ids: FxHashMap<(u32, u32), u32>,
    locations: Vec<LocKey>,
    /// Locations with exactly one line (nearly all of them), keyed without allocating.
    location1_ids: FxHashMap<(u32, u64, u32, i64), u32>,
    /// Every other location (no line, or inlined frames).
    location_ids: FxHashMap<LocKey, u32>,
    stacks: Vec<(u32, u32)>,
    stack_ids: FxHashMap<(u32, u32), u32>,
    /// Per stack (indexed like `stacks`, possibly shorter): its most recently looked-up
    /// child as `(location, child)`, `(u32::MAX, 0)` when none. Children of a node are
    /// usually few and consecutive profiles repeat the same paths, so this answers most
    /// trie lookups from a dense array (nodes of one path are mostly adjacent) before the
    /// big hash map, whose probes are cache misses.
    stack_hint: Vec<(u32, u32)>,
}

/// Lengths of every table at one point, to persist or roll back what came after.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mark {
    strings: usize,
    functions: usize,
    locations: usize,
    stacks: usize,
}

impl Symbols {
    pub fn new() -> Self {
        let mut s = Symbols::default();
        s.string("");
        s.stacks.push((0, 0));
        s
    }

    pub fn string(&mut self, text: &str) -> u32 {
        self.strings.intern(text)
    }

    pub fn function(&mut self, name: u32, filename: u32) -> u32 {
        let key = (name, filename);
        if let Some(&id) = self.function_ids.get(&key) {
            return id;
        }
        let id = self.functions.len() as u32;
        self.functions.push(key);
        self.function_ids.insert(key, id);
        id
    }

    pub fn location(&mut self, key: LocKey) -> u32 {
        self.location_lines(key.mapping, key.address, &key.lines)
    }

    /// [`Symbols::location`] from borrowed parts: allocates only for a new location (or
    /// one with other than one line).
    pub fn location_lines(&mut self, mapping: u32, address: u64, lines: &[(u32, i64)]) -> u32 {
        if let [(f, line)] = *lines {
            let key = (mapping, address, f, line);
            if let Some(&id) = self.location1_ids.get(&key) {
                return id;
            }
            let id = self.locations.len() as u32;
            self.locations.push(LocKey {
                mapping,
                address,
                lines: lines.into(),
            });
            self.location1_ids.insert(key, id);
            return id;
        }
        let key = LocKey {
            mapping,
            address,
            lines: lines.into(),
        };
        if let Some(&id) = self.location_ids.get(&key) {
            return id;
        }
        let id = self.locations.len() as u32;
        self.locations.push(key.clone());
        self.location_ids.insert(key, id);
        id
    }

    fn index_location(&mut self, l: LocKey, id: u32) {
        if let [(f, line)] = *l.lines {
            self.location1_ids
                .insert((l.mapping, l.address, f, line), id);
        } else {
            self.location_ids.insert(l, id);
        }
    }

    fn unindex_location(&mut self, l: &LocKey) {
        if let [(f, line)] = *l.lines {
            self.location1_ids.remove(&(l.mapping, l.address, f, line));
        } else {
            self.location_ids.remove(l);
        }
    }

    /// The stack `parent` extended by `location` toward the leaf.
    #[inline]
    pub fn stack(&mut self, parent: u32, location: u32) -> u32 {
        let p = parent as usize;
        if let Some(&(loc, child)) = self.stack_hint.get(p) {
            if loc == location && child != 0 {
                return child;
            }
        }
        let key = (parent, location);
        let id = match self.stack_ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.stacks.len() as u32;
                self.stacks.push(key);
                self.stack_ids.insert(key, id);
                id
            }
        };
        if p < self.stacks.len() {
            if self.stack_hint.len() < self.stacks.len() {
                self.stack_hint.resize(self.stacks.len(), (u32::MAX, 0));
            }
            self.stack_hint[p] = (location, id);
        }
        id
    }

    pub fn str(&self, id: u32) -> &str {
        self.strings.get(id).unwrap_or_default()
    }

    pub fn lookup_string(&self, text: &str) -> Option<u32> {
        self.strings.find(text)
    }

    pub fn function_of(&self, id: u32) -> (u32, u32) {
        self.functions.get(id as usize).copied().unwrap_or((0, 0))
    }

    pub fn location_of(&self, id: u32) -> Option<&LocKey> {
        self.locations.get(id as usize)
    }

    /// `(parent, location)` of a stack; `None` for the root (0) and unknown ids.
    #[inline]
    pub fn stack_of(&self, id: u32) -> Option<(u32, u32)> {
        if id == 0 {
            return None;
        }
        self.stacks.get(id as usize).copied()
    }

    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    pub fn counts(&self) -> [usize; 4] {
        [
            self.strings.len(),
            self.functions.len(),
            self.locations.len(),
            self.stacks.len(),
        ]
    }

    pub fn mark(&self) -> Mark {
        Mark {
            strings: self.strings.len(),
            functions: self.functions.len(),
            locations: self.locations.len(),
            stacks: self.stacks.len(),
        }
    }

    /// Forgets everything interned after `m` (the transaction that would have stored it
    /// failed).
    pub fn rollback(&mut self, m: Mark) {
        self.strings.truncate(m.strings);
        for f in self.functions.drain(m.functions..) {
            self.function_ids.remove(&f);
        }
        for l in self
            .locations
            .split_off(m.locations.min(self.locations.len()))
        {
            self.unindex_location(&l);
        }
        let cut = m.stacks.min(self.stacks.len());
        for s in self.stacks.drain(cut..) {
            self.stack_ids.remove(&s);
            // A surviving parent must not keep a hint to a forgotten child.
            if let Some(h) = self.stack_hint.get_mut(s.0 as usize) {
                if h.1 as usize >= cut {
                    *h = (u32::MAX, 0);
                }
            }
        }
        self.stack_hint.truncate(cut);
    }

    /// Writes everything interned after `m`.
    pub fn persist_since(&self, m: Mark, txn: &WriteTransaction) -> Result<()> {
        let mut t = txn.open_table(schema::STRINGS)?;
        for (i, s) in self.strings.iter_from(m.strings) {
            t.insert(i, s)?;
        }
        let mut t = txn.open_table(schema::FUNCTIONS)?;
        for (i, f) in self.functions.iter().enumerate().skip(m.functions) {
            t.insert(i as u32, *f)?;
        }
        let mut t = txn.open_table(schema::LOCATIONS)?;
        let mut buf = Vec::new();
        for (i, l) in self.locations.iter().enumerate().skip(m.locations) {
            buf.clear();
            encode_location(&mut buf, l);
            t.insert(i as u32, buf.as_slice())?;
        }
        let mut t: Table<u32, (u32, u32)> = txn.open_table(schema::STACKS)?;
        for (i, s) in self.stacks.iter().enumerate().skip(m.stacks) {
            t.insert(i as u32, *s)?;
        }
        Ok(())
    }

    /// Loads every table. Ids must be dense, as [`Symbols::persist_since`] writes them.
    pub fn load(txn: &redb::ReadTransaction) -> Result<Self> {
        let mut s = Symbols::new();
        let corrupt = |table| move |source| StoreError::Corrupt { table, source };
        if let Ok(t) = txn.open_table(schema::STRINGS) {
            for row in t.range(1u32..)? {
                let (k, v) = row?;
                if k.value() as usize != s.strings.len() {
                    return Err(corrupt("strings")(CorruptError::IdOverflow));
                }
                let text = v.value();
                s.strings.push(text, hash_str(text));
            }
        }
        if let Ok(t) = txn.open_table(schema::FUNCTIONS) {
            for row in t.iter()? {
                let (k, v) = row?;
                if k.value() as usize != s.functions.len() {
                    return Err(corrupt("functions")(CorruptError::IdOverflow));
                }
                s.functions.push(v.value());
                s.function_ids.insert(v.value(), k.value());
            }
        }
        if let Ok(t) = txn.open_table(schema::LOCATIONS) {
            for row in t.iter()? {
                let (k, v) = row?;
                if k.value() as usize != s.locations.len() {
                    return Err(corrupt("locations")(CorruptError::IdOverflow));
                }
                let l = decode_location(v.value()).map_err(corrupt("locations"))?;
                s.locations.push(l.clone());
                s.index_location(l, k.value());
            }
        }
        if let Ok(t) = txn.open_table(schema::STACKS) {
            for row in t.range(1u32..)? {
                let (k, v) = row?;
                if k.value() as usize != s.stacks.len() {
                    return Err(corrupt("stacks")(CorruptError::IdOverflow));
                }
                s.stacks.push(v.value());
                s.stack_ids.insert(v.value(), k.value());
            }
        }
        Ok(s)
    }
}

fn encode_location(out: &mut Vec<u8>, l: &LocKey) {
    put_varint(out, u64::from(l.mapping));
    put_varint(out, l.address);
    put_varint(out, l.lines.len() as u64);
    for &(f, line) in l.lines.iter() {
        put_varint(out, u64::from(f));
        put_varint(out, ((line << 1) ^ (line >> 63)) as u64);
    }
}

fn decode_location(buf: &[u8]) -> Result<LocKey, CorruptError> {
    let mut pos = 0;
    let id = |v: u64| u32::try_from(v).map_err(|_| CorruptError::IdOverflow);
    let mapping = id(get_varint(buf, &mut pos)?)?;
    let address = get_varint(buf, &mut pos)?;
    let n = get_varint(buf, &mut pos)? as usize;
    if n > buf.len() {
        return Err(CorruptError::Truncated);
    }
    let mut lines = Vec::with_capacity(n);
    for _ in 0..n {
        let f = id(get_varint(buf, &mut pos)?)?;
        let z = get_varint(buf, &mut pos)?;
        lines.push((f, ((z >> 1) as i64) ^ -((z & 1) as i64)));
    }
    Ok(LocKey {
        mapping,
        address,
        lines: lines.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_and_rollback() {
        let mut s = Symbols::new();
        let a = s.string("a");
        assert_eq!(s.string("a"), a);
        let m = s.mark();
        let f = s.function(a, 0);
        let l = s.location(LocKey {
            mapping: 0,
            address: 1,
            lines: vec![(f, -3)].into(),
        });
        let st = s.stack(0, l);
        assert_eq!(s.stack(0, l), st);
        assert_eq!(s.stack_of(st), Some((0, l)));
        s.rollback(m);
        assert_eq!(s.counts(), [2, 0, 0, 1]);
        assert_eq!(s.stack_of(st), None);
        // The trie-hint of the root must not survive the rollback either.
        let f2 = s.function(a, 0);
        let l2 = s.location(LocKey {
            mapping: 0,
            address: 2,
            lines: vec![(f2, 1)].into(),
        });
        let st2 = s.stack(0, l2);
        assert_eq!(s.stack_of(st2), Some((0, l2)));
        let leaf = s.stack(st2, l2);
        assert_eq!(s.stack(st2, l2), leaf);
        assert_eq!(s.stack_of(leaf), Some((st2, l2)));
        let m2 = s.mark();
        let other = s.stack(st2, l2 + 7);
        assert_ne!(other, leaf);
        s.rollback(m2);
        assert_eq!(s.stack(st2, l2), leaf);
        assert_eq!(s.stack(st2, l2 + 7), other);
        assert_eq!(s.stack_of(other), Some((st2, l2 + 7)));
    }

    #[test]
    fn strings_roll_back_and_reintern() {
        let mut s = Symbols::new();
        let a = s.string("alpha");
        let m = s.mark();
        let b = s.string("beta");
        let g = s.string("gamma");
        assert_eq!((s.str(a), s.str(b), s.str(g)), ("alpha", "beta", "gamma"));
        assert_eq!(s.string("beta"), b);
        s.rollback(m);
        assert_eq!(s.lookup_string("beta"), None);
        assert_eq!(s.lookup_string("gamma"), None);
        assert_eq!(s.str(b), "");
        assert_eq!(s.lookup_string("alpha"), Some(a));
        assert_eq!(s.lookup_string(""), Some(0));
        // Ids are dense again, and the packed text holds only what survived.
        assert_eq!(s.string("gamma"), b);
        assert_eq!(s.str(b), "gamma");
        assert_eq!(s.string("alpha"), a);
    }

    #[test]
    fn location_codec() {
        let l = LocKey {
            mapping: 7,
            address: u64::MAX,
            lines: vec![(1, -5), (2, i64::MAX)].into(),
        };
        let mut b = Vec::new();
        encode_location(&mut b, &l);
        assert_eq!(decode_location(&b).unwrap(), l);
    }
}
