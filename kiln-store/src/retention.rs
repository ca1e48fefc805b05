//! Retention: deleting rows older than a cutoff, by age or to stay under a size.
//!
//! Raw rows older than the cutoff go, and rollup buckets that end by the cutoff. A rollup
//! bucket straddling the cutoff stays until it is wholly expired, so queries over that
//! bucket may still see up to one bucket (at most a day) of expired data. Interned
//! symbols are kept (they are small next to samples).

use redb::WriteTransaction;

use crate::buckets;
use crate::error::Result;
use crate::index::SeriesIndex;
use crate::schema;

pub fn delete_before(txn: &WriteTransaction, index: &SeriesIndex, cutoff: i64) -> Result<u64> {
    let mut raw = txn.open_table(schema::RAW)?;
    let mut rollups = txn.open_table(schema::ROLLUPS)?;
    let mut totals = txn.open_table(schema::TOTALS)?;
    let mut raw_totals = txn.open_table(schema::RAW_TOTALS)?;
    let mut deleted = 0u64;
    for (id, s) in index.series.iter().enumerate() {
        let id = id as u32;
        if s.first >= cutoff || s.last < s.first {
            continue;
        }
        let mut count = |_: (u32, i64), _: &[u8]| {
            deleted += 1;
            false
        };
        raw.retain_in((id, i64::MIN)..(id, cutoff), |k, v| count(k, v))?;
        raw_totals.retain_in((id, i64::MIN)..(id, cutoff), |_, _| false)?;
        for level in 1..=3u8 {
            let end = cutoff - buckets::size(level) + 1;
            rollups.retain_in((level, id, i64::MIN)..(level, id, end), |_, _| {
                deleted += 1;
                false
            })?;
            totals.retain_in((level, id, i64::MIN)..(level, id, end), |_, _| false)?;
        }
    }
    Ok(deleted)
}
