//! redb tables: names, key and value types. See the crate docs for the layout overview.

use redb::TableDefinition;

/// Bumped when the on-disk layout changes incompatibly. Version 1 kept raw totals in
/// `totals` (level 0), without durations; [`crate::Store::open`] migrates it.
pub const SCHEMA_VERSION: u64 = 2;

/// `key -> value` settings: `schema_version`, `watermark.<level>`, `max_raw_duration`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Interned strings: `id -> text`. Id 0 is "".
pub const STRINGS: TableDefinition<u32, &str> = TableDefinition::new("strings");
/// Functions: `id -> (name string id, filename string id)`.
pub const FUNCTIONS: TableDefinition<u32, (u32, u32)> = TableDefinition::new("functions");
/// Locations: `id -> encoded (mapping filename id, address, [(function id, line)])`.
pub const LOCATIONS: TableDefinition<u32, &[u8]> = TableDefinition::new("locations");
/// Stack trie nodes: `id -> (parent stack id, location id)`. Id 0 is the empty stack.
pub const STACKS: TableDefinition<u32, (u32, u32)> = TableDefinition::new("stacks");
/// Profile types: `id -> (type id text, period)`.
pub const PROFILE_TYPES: TableDefinition<u32, (&str, i64)> = TableDefinition::new("profile_types");
/// Series: `id -> encoded (profile type id, sorted labels)`.
pub const SERIES: TableDefinition<u32, &[u8]> = TableDefinition::new("series");
/// Raw rows, one per ingested profile and series: `(series, start time ns) -> sample block`.
pub const RAW: TableDefinition<(u32, i64), &[u8]> = TableDefinition::new("raw");
/// Rollups: `(level, series, bucket start ns) -> sample block` (levels 1..).
pub const ROLLUPS: TableDefinition<(u8, u32, i64), &[u8]> = TableDefinition::new("rollups");
/// Totals of rollup buckets, for timelines: `(level, series, bucket start ns) -> sum of
/// values` (levels 1..).
pub const TOTALS: TableDefinition<(u8, u32, i64), u64> = TableDefinition::new("totals");
/// Totals of raw rows, for timelines: `(series, start time ns) -> (sum of values, duration
/// ns)`. The duration is the longest of the profiles merged into the row (0: unknown, a
/// point in time); timelines spread the sum over `[start, start + duration)`.
pub const RAW_TOTALS: TableDefinition<(u32, i64), (u64, i64)> = TableDefinition::new("raw_totals");

pub const KEY_SCHEMA: &str = "schema_version";
/// Longest duration of any raw row ingested (ns): how far back a timeline looks for rows
/// that started before its range but reach into it.
pub const KEY_MAX_RAW_DURATION: &str = "max_raw_duration";

pub fn watermark_key(level: usize) -> String {
    format!("watermark.{level}")
}
