//! The series index: which series exist, their labels, profile types and time spans.
//!
//! A *series* is one profile type plus one set of labels: the labels the client sent with
//! the profile, plus the pprof sample labels of the samples in it (each distinct
//! sample-label set makes a sub-series, as in Pyroscope). Everything lives in memory and is
//! persisted in the `series` and `profile_types` tables; selectors scan the series of one
//! profile type, which is cheap at the cardinalities allowed by `max_series`.

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};

use crate::buckets::LEVELS;
use crate::codec::{get_str, get_varint, put_str, put_varint};
use crate::error::{CorruptError, Result, StoreError};
use crate::hash::FxHashMap;
use crate::schema;
use crate::selector::Matcher;

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Debug)]
pub struct SeriesInfo {
    pub profile_type: u32,
    /// Sorted by name, names unique.
    pub labels: Labels,
    /// Earliest and latest row time seen (ns); a hint, widened on ingest.
    pub first: i64,
    pub last: i64,
}

impl SeriesInfo {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].1.as_str())
    }

    pub fn matches(&self, matchers: &[Matcher]) -> bool {
        matchers.iter().all(|m| m.matches(self.label(&m.name)))
    }

    pub fn overlaps(&self, from: i64, until: i64) -> bool {
        self.first < until && self.last >= from
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileTypeInfo {
    /// `<__name__>:<sample type>:<sample unit>:<period type>:<period unit>`.
    pub id: String,
    /// Sampling period in period units (latest seen); 0 when unknown.
    pub period: i64,
}

#[derive(Default)]
pub struct SeriesIndex {
    pub types: Vec<ProfileTypeInfo>,
    type_ids: FxHashMap<String, u32>,
    pub series: Vec<SeriesInfo>,
    series_ids: FxHashMap<(u32, Labels), u32>,
    by_type: Vec<Vec<u32>>,
}

/// Lengths at one point, to persist or roll back what came after.
#[derive(Clone, Copy, Debug, Default)]
pub struct IndexMark {
    types: usize,
    series: usize,
}

impl SeriesIndex {
    pub fn type_id(&self, id: &str) -> Option<u32> {
        self.type_ids.get(id).copied()
    }

    pub fn intern_type(&mut self, id: &str, period: i64) -> u32 {
        if let Some(&t) = self.type_ids.get(id) {
            return t;
        }
        let t = self.types.len() as u32;
        self.types.push(ProfileTypeInfo {
            id: id.to_owned(),
            period,
        });
        self.type_ids.insert(id.to_owned(), t);
        self.by_type.push(Vec::new());
        t
    }

    pub fn lookup(&self, profile_type: u32, labels: &Labels) -> Option<u32> {
        self.series_ids
            .get(&(profile_type, labels.clone()))
            .copied()
    }

    /// Returns the id of the series, creating it; `None` when creating would exceed
    /// `max_series`.
    pub fn intern_series(&mut self, profile_type: u32, labels: Labels, max: usize) -> Option<u32> {
        let key = (profile_type, labels);
        if let Some(&id) = self.series_ids.get(&key) {
            return Some(id);
        }
        if self.series.len() >= max {
            return None;
        }
        let id = self.series.len() as u32;
        self.series.push(SeriesInfo {
            profile_type,
            labels: key.1.clone(),
            first: i64::MAX,
            last: i64::MIN,
        });
        self.by_type[profile_type as usize].push(id);
        self.series_ids.insert(key, id);
        Some(id)
    }

    pub fn touch(&mut self, series: u32, t: i64) {
        let s = &mut self.series[series as usize];
        s.first = s.first.min(t);
        s.last = s.last.max(t);
    }

    /// Series of `profile_type` matching all `matchers` with data in `[from, until)`.
    pub fn select(
        &self,
        profile_type: u32,
        matchers: &[Matcher],
        from: i64,
        until: i64,
    ) -> Vec<u32> {
        self.by_type
            .get(profile_type as usize)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|&id| {
                        let s = &self.series[id as usize];
                        s.overlaps(from, until) && s.matches(matchers)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Series of any type (or only `profile_type`) matching, with data in range.
    pub fn select_any(
        &self,
        profile_type: Option<u32>,
        matchers: &[Matcher],
        from: i64,
        until: i64,
    ) -> Vec<u32> {
        match profile_type {
            Some(t) => self.select(t, matchers, from, until),
            None => (0..self.types.len() as u32)
                .flat_map(|t| self.select(t, matchers, from, until))
                .collect(),
        }
    }

    pub fn label_names(&self, ids: &[u32]) -> BTreeSet<String> {
        ids.iter()
            .flat_map(|&i| {
                self.series[i as usize]
                    .labels
                    .iter()
                    .map(|(n, _)| n.clone())
            })
            .collect()
    }

    pub fn mark(&self) -> IndexMark {
        IndexMark {
            types: self.types.len(),
            series: self.series.len(),
        }
    }

    pub fn rollback(&mut self, m: IndexMark) {
        for s in self.series.drain(m.series..) {
            self.series_ids.remove(&(s.profile_type, s.labels));
            self.by_type[s.profile_type as usize].retain(|&id| (id as usize) < m.series);
        }
        for t in self.types.drain(m.types..) {
            self.type_ids.remove(&t.id);
        }
        self.by_type.truncate(m.types);
    }

    pub fn persist_since(&self, m: IndexMark, txn: &WriteTransaction) -> Result<()> {
        let mut t = txn.open_table(schema::PROFILE_TYPES)?;
        for (i, ty) in self.types.iter().enumerate().skip(m.types) {
            t.insert(i as u32, (ty.id.as_str(), ty.period))?;
        }
        let mut t = txn.open_table(schema::SERIES)?;
        let mut buf = Vec::new();
        for (i, s) in self.series.iter().enumerate().skip(m.series) {
            buf.clear();
            put_varint(&mut buf, u64::from(s.profile_type));
            put_varint(&mut buf, s.labels.len() as u64);
            for (n, v) in &s.labels {
                put_str(&mut buf, n);
                put_str(&mut buf, v);
            }
            t.insert(i as u32, buf.as_slice())?;
        }
        Ok(())
    }

    /// Loads types and series, then each series' time span from the raw and rollup rows.
    pub fn load(txn: &redb::ReadTransaction) -> Result<Self> {
        let mut idx = SeriesIndex::default();
        let corrupt = |source| StoreError::Corrupt {
            table: "series",
            source,
        };
        if let Ok(t) = txn.open_table(schema::PROFILE_TYPES) {
            for row in t.iter()? {
                let (_, v) = row?;
                let (id, period) = v.value();
                idx.intern_type(id, period);
            }
        }
        if let Ok(t) = txn.open_table(schema::SERIES) {
            for row in t.iter()? {
                let (k, v) = row?;
                let buf = v.value();
                let mut pos = 0;
                let ty = get_varint(buf, &mut pos).map_err(corrupt)? as u32;
                let n = get_varint(buf, &mut pos).map_err(corrupt)? as usize;
                if n > buf.len() || ty as usize >= idx.types.len() {
                    return Err(corrupt(CorruptError::Truncated));
                }
                let mut labels = Vec::with_capacity(n);
                for _ in 0..n {
                    let name = get_str(buf, &mut pos).map_err(corrupt)?;
                    let value = get_str(buf, &mut pos).map_err(corrupt)?;
                    labels.push((name, value));
                }
                let id = idx.intern_series(ty, labels, usize::MAX);
                if id != Some(k.value()) {
                    return Err(corrupt(CorruptError::IdOverflow));
                }
            }
        }
        if let Ok(raw) = txn.open_table(schema::RAW) {
            for id in 0..idx.series.len() as u32 {
                if let Some(first) = raw.range((id, i64::MIN)..=(id, i64::MAX))?.next() {
                    let t = first?.0.value().1;
                    idx.touch(id, t);
                }
                if let Some(last) = raw.range((id, i64::MIN)..=(id, i64::MAX))?.next_back() {
                    let t = last?.0.value().1;
                    idx.touch(id, t);
                }
            }
        }
        if let Ok(roll) = txn.open_table(schema::ROLLUPS) {
            for level in 1..=LEVELS.len() as u8 {
                for id in 0..idx.series.len() as u32 {
                    let r = (level, id, i64::MIN)..=(level, id, i64::MAX);
                    if let Some(first) = roll.range(r.clone())?.next() {
                        idx.touch(id, first?.0.value().2);
                    }
                    if let Some(last) = roll.range(r)?.next_back() {
                        let t = last?.0.value().2;
                        idx.touch(id, t + LEVELS[level as usize - 1] - 1);
                    }
                }
            }
        }
        Ok(idx)
    }
}
