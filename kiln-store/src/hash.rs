//! A small, fast, non-cryptographic hasher (the FxHash mix used by rustc) for the in-memory
//! symbol and tree maps, whose keys are small integers and short strings. Keys come from
//! our own interning, so hash flooding by a client is not a concern for the integer maps;
//! string-keyed maps are bounded by the symbol limits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// pprof id (non-zero, unique: `kiln_proto::validate` checked) -> store id, for one
/// profile. Ids are nearly always dense (`1..=n`): then a `Vec` indexed by id; sparse or
/// huge ids (client-chosen) fall back to a map with the default, flooding-resistant hasher.
/// Unknown ids map to 0, as a missing entry always has.
pub enum IdMap {
    Dense(Vec<u32>),
    Sparse(std::collections::HashMap<u64, u32>),
}

impl IdMap {
    pub fn for_ids(ids: impl Iterator<Item = u64>, count: usize) -> IdMap {
        let max = ids.max().unwrap_or(0);
        if max < (count as u64).saturating_mul(4).saturating_add(1024) {
            IdMap::Dense(vec![0; max as usize + 1])
        } else {
            IdMap::Sparse(std::collections::HashMap::with_capacity(count))
        }
    }

    /// `id` must be one of those given to [`IdMap::for_ids`].
    #[inline]
    pub fn insert(&mut self, id: u64, v: u32) {
        match self {
            IdMap::Dense(d) => {
                if let Some(slot) = d.get_mut(id as usize) {
                    *slot = v;
                }
            }
            IdMap::Sparse(m) => {
                m.insert(id, v);
            }
        }
    }

    #[inline]
    pub fn get(&self, id: u64) -> u32 {
        match self {
            IdMap::Dense(d) => usize::try_from(id)
                .ok()
                .and_then(|i| d.get(i))
                .copied()
                .unwrap_or(0),
            IdMap::Sparse(m) => m.get(&id).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdMap;

    #[test]
    fn id_map_dense_and_sparse() {
        for ids in [vec![1u64, 2, 3], vec![5, u64::MAX, 7]] {
            let mut m = IdMap::for_ids(ids.iter().copied(), ids.len());
            for (i, &id) in ids.iter().enumerate() {
                m.insert(id, i as u32 + 10);
            }
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(m.get(id), i as u32 + 10);
            }
            assert_eq!(m.get(0), 0);
            assert_eq!(m.get(4), 0);
        }
    }
}
