//! Multi-resolution rollups: pre-aggregated sample blocks per series over 5 minutes,
//! 1 hour and 1 day, so long-range queries read a few blocks instead of every profile.
//!
//! Level `L` (1..=3) has a *watermark* `wm[L]`: every bucket of that level that ends at or
//! before it holds exactly the sum of the raw rows in it. Compaction advances watermarks
//! over finished buckets (older than `now - grace`), building level 1 from raw rows and
//! each coarser level from the one below. Data arriving late for a bucket below a watermark
//! is added to that bucket directly at ingest, so the invariant always holds. A query
//! covers `[from, until)` with the coarsest whole buckets below the watermarks and reads
//! raw rows only at the edges ([`plan`]).

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};

use crate::buckets::{ceil, floor, size, NS};
use crate::codec::{decode_block, encode_block, merge_pairs};
use crate::error::{Result, StoreError};
use crate::index::SeriesIndex;
use crate::schema;

/// At most this much time (ns) is compacted per level in one transaction.
const MAX_SPAN: [i64; 3] = [6 * 3600 * NS, 2 * 86400 * NS, 14 * 86400 * NS];

/// One range of rows to read: `level` 0 for raw rows, else rollup buckets with start in
/// `[lo, hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub level: u8,
    pub lo: i64,
    pub hi: i64,
}

/// Covers `[from, until)` with whole buckets of the coarsest levels allowed by the
/// watermarks, leaving the edges to finer levels and finally raw rows.
pub fn plan(from: i64, until: i64, watermarks: &[i64; 3]) -> Vec<Span> {
    let mut segments = vec![(from, until)];
    let mut spans = Vec::new();
    for level in (1..=3u8).rev() {
        let s = size(level);
        let wm = watermarks[level as usize - 1];
        let mut next = Vec::new();
        for (a, b) in segments {
            let lo = ceil(a, s);
            let hi = floor(b.min(wm), s);
            if lo < hi {
                spans.push(Span { level, lo, hi });
                if a < lo {
                    next.push((a, lo));
                }
                if hi < b {
                    next.push((hi, b));
                }
            } else {
                next.push((a, b));
            }
        }
        segments = next;
    }
    for (a, b) in segments {
        if a < b {
            spans.push(Span {
                level: 0,
                lo: a,
                hi: b,
            });
        }
    }
    spans
}

/// Where `level` may advance to now, given the watermark of the level below (or, for
/// level 1, `now - grace`).
pub fn target(level: u8, watermarks: &[i64; 3], now_minus_grace: i64) -> i64 {
    let below = if level == 1 {
        now_minus_grace
    } else {
        watermarks[level as usize - 2]
    };
    floor(below, size(level))
}

/// Builds the buckets of `level` in `[wm, new_wm)` for every series, returning the new
/// watermark (possibly less than `new_wm` when the span is capped).
pub fn compact_level(
    txn: &WriteTransaction,
    index: &SeriesIndex,
    level: u8,
    wm: i64,
    new_wm: i64,
) -> Result<i64> {
    let s = size(level);
    let new_wm = new_wm.min(wm.saturating_add(MAX_SPAN[level as usize - 1]));
    let new_wm = floor(new_wm, s);
    if new_wm <= wm {
        return Ok(wm);
    }
    let raw = txn.open_table(schema::RAW)?;
    let mut rollups = txn.open_table(schema::ROLLUPS)?;
    let mut totals = txn.open_table(schema::TOTALS)?;
    let corrupt = |source| StoreError::Corrupt {
        table: "rollups",
        source,
    };
    for (id, info) in index.series.iter().enumerate() {
        let id = id as u32;
        if !info.overlaps(wm, new_wm) {
            continue;
        }
        let mut buckets: BTreeMap<i64, Vec<(u32, u64)>> = BTreeMap::new();
        let mut add = |t: i64, block: &[u8]| -> Result<()> {
            let pairs = decode_block(block).map_err(corrupt)?;
            let b = buckets.entry(floor(t, s)).or_default();
            *b = if b.is_empty() {
                pairs
            } else {
                merge_pairs(b, &pairs)
            };
            Ok(())
        };
        if level == 1 {
            for row in raw.range((id, wm)..(id, new_wm))? {
                let (k, v) = row?;
                add(k.value().1, v.value())?;
            }
        } else {
            for row in rollups.range((level - 1, id, wm)..(level - 1, id, new_wm))? {
                let (k, v) = row?;
                add(k.value().2, v.value())?;
            }
        }
        for (bucket, pairs) in buckets {
            if pairs.is_empty() {
                continue;
            }
            let total = pairs.iter().map(|p| p.1).fold(0u64, u64::saturating_add);
            // A bucket at or above the old watermark has no rollup yet; merge defensively.
            let key = (level, id, bucket);
            let merged = match rollups.get(key)? {
                Some(old) => merge_pairs(&decode_block(old.value()).map_err(corrupt)?, &pairs),
                None => pairs,
            };
            rollups.insert(key, encode_block(&merged).as_slice())?;
            let old_total = totals.get(key)?.map_or(0, |v| v.value());
            totals.insert(key, old_total.saturating_add(total))?;
        }
    }
    Ok(new_wm)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * NS;
    const M5: i64 = 300 * NS;

    #[test]
    fn plan_uses_coarse_buckets_inside_and_raw_at_edges() {
        let wm = [100 * H, 100 * H, 0];
        let p = plan(H - 10 * NS, 3 * H + M5 + 7 * NS, &wm);
        assert!(p.contains(&Span {
            level: 2,
            lo: H,
            hi: 3 * H
        }));
        assert!(p.contains(&Span {
            level: 1,
            lo: 3 * H,
            hi: 3 * H + M5
        }));
        assert!(p.contains(&Span {
            level: 0,
            lo: H - 10 * NS,
            hi: H
        }));
        assert!(p.contains(&Span {
            level: 0,
            lo: 3 * H + M5,
            hi: 3 * H + M5 + 7 * NS
        }));
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn plan_respects_watermarks() {
        let p = plan(0, 10 * H, &[2 * H, H, 0]);
        assert!(p.contains(&Span {
            level: 2,
            lo: 0,
            hi: H
        }));
        assert!(p.contains(&Span {
            level: 1,
            lo: H,
            hi: 2 * H
        }));
        assert!(p.contains(&Span {
            level: 0,
            lo: 2 * H,
            hi: 10 * H
        }));
    }
}
