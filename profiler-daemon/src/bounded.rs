//! A map that grows with the host but not without bound: at its cap it is emptied at once
//! (its values are cheap to recompute, so a clear costs less than LRU bookkeeping on
//! every hit) and the entries dropped are counted for `/metrics`.

use std::{collections::HashMap, hash::Hash};

#[derive(Debug)]
pub struct ClearingCache<K, V> {
    map: HashMap<K, V>,
    cap: usize,
    evicted: u64,
}

impl<K: Eq + Hash, V> ClearingCache<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// The value of `key`, computed by `f` on a miss (after emptying a full cache).
    pub fn get_or_insert_with(&mut self, key: K, f: impl FnOnce() -> V) -> &V {
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.evicted += self.map.len() as u64;
            self.map.clear();
        }
        self.map.entry(key).or_insert_with(f)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries dropped because the cache was full, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_its_cap_and_counts_what_it_drops() {
        let mut c = ClearingCache::new(100);
        let mut computed = 0;
        for i in 0..1000u32 {
            c.get_or_insert_with(i, || {
                computed += 1;
                i * 2
            });
            assert!(c.len() <= 100);
        }
        assert_eq!(computed, 1000);
        assert_eq!(c.evicted(), 900);
        // A hit neither recomputes nor evicts.
        let v = *c.get_or_insert_with(999, || unreachable!());
        assert_eq!(v, 1998);
        assert_eq!(c.evicted(), 900);
    }
}
