//! Kiln's embedded profile store.
//!
//! Ingests pprof profiles with series labels and a time range, keeps them durably in one
//! [redb](https://www.redb.org) file (an ACID, copy-on-write B-tree engine: an ingest
//! acknowledged with `Ok` survives `kill -9`), and answers the queries a profiling UI
//! needs: merged flame graphs, timelines, label names and values, totals grouped by a
//! label, diffs, and pprof/folded exports.
//!
//! # Use
//!
//! ```no_run
//! use kiln_store::{IngestRequest, Store, StoreOptions};
//! # fn f(profile: kiln_proto::pprof::Profile) -> Result<(), kiln_store::StoreError> {
//! let store = std::sync::Arc::new(Store::open("/var/lib/kiln", StoreOptions::default())?);
//! store.ingest(IngestRequest {
//!     labels: vec![("__name__".into(), "process_cpu".into()), ("service_name".into(), "api".into())],
//!     profile,
//!     from_nanos: 0, // 0: take the profile's time_nanos
//!     until_nanos: 0,
//! })?; // durable once this returns Ok
//! let fb = store.render(
//!     r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}"#,
//!     0, i64::MAX / 4, &kiln_store::RenderOptions::default())?;
//! store.maintain(kiln_store::now_nanos())?; // rollups + retention, call periodically
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! # Data model
//!
//! * A **profile type** is `<__name__>:<sample type>:<sample unit>:<period type>:<period
//!   unit>` (Pyroscope's id form). A pprof with several sample types feeds several types.
//! * A **series** is a profile type plus a label set: the request's labels plus the
//!   pprof *sample* labels of the samples (each distinct sample-label set is a sub-series),
//!   so dynamic tags are selectable exactly like static ones.
//! * A **stack** is a node of a trie `(parent stack, location)`; locations
//!   `(mapping, address, inlined lines)`, functions `(name, file)` and strings are interned
//!   once. Samples are `(stack id, value)` pairs.
//!
//! # On disk (`<data dir>/kiln.redb`, tables in [`schema`])
//!
//! | table | key → value |
//! | --- | --- |
//! | `meta` | `schema_version`, rollup watermarks, longest raw row duration |
//! | `strings`, `functions`, `locations`, `stacks` | dense `u32` id → interned symbol |
//! | `profile_types`, `series` | id → type id and period / type and sorted labels |
//! | `raw` | `(series, profile start ns)` → sample block |
//! | `rollups` | `(level, series, bucket start)` → sample block; levels 5 min, 1 h, 1 d |
//! | `raw_totals` | `(series, profile start ns)` → (sum of the row's values, its duration) |
//! | `totals` | `(level, series, bucket start)` → sum of the rollup block's values |
//!
//! A *sample block* is sorted `(stack id, value)` pairs, columnar, delta + varint
//! encoded, values divided by their GCD (see [`codec`]): typically 2–3 bytes per pair.
//! Symbols, series and samples of one ingest are written in one transaction; concurrent
//! ingests are group-committed (one fsync for all). All symbols and the series index are
//! also held in memory (loaded at open), bounded by `max_series` and by the number of
//! distinct stacks.
//!
//! # Query path
//!
//! 1. [`selector`] parses `type{label="v", re=~"x.*", ...}` (Prometheus semantics,
//!    anchored regexes, missing label = ""); bare legacy names like `app.cpu` resolve to
//!    `service_name="app"` and the matching type.
//! 2. The in-memory [`index`] picks the matching series of that type overlapping the range.
//! 3. [`rollup::plan`] covers `[from, until)` with whole day/hour/5-min buckets below the
//!    rollup watermarks and raw rows at the edges, so a 7-day query reads ~a dozen
//!    blocks per series instead of 40 000 profiles.
//! 4. Blocks are summed into a dense per-stack array, then [`tree::TreeBuilder`] walks
//!    each distinct stack once (memoized on the trie) into a call tree by function name.
//! 5. [`flamebearer`] truncates to `max_nodes` (the lightest nodes of each parent merge
//!    into "other") and encodes Pyroscope's flamebearer levels.
//!
//! Timelines read the `totals` table at the coarsest level whose bucket divides the step,
//! and `raw_totals` elsewhere: a raw row's sum is spread over the steps its profile
//! covers, `[start, start + duration)`, in proportion to the overlap
//! ([`query::spread`]), so a step finer than the profiles (10 s steps, 15 s profiles)
//! draws their rate rather than alternating full and empty steps. Trailing steps so
//! recent that their data may still be on its way are left out
//! ([`query::complete_points`]) instead of drawn as a drop at the right edge.
//!
//! # Maintenance
//!
//! [`Store::maintain`] builds rollups for finished buckets (older than `rollup_grace`),
//! advancing per-level watermarks; late data below a watermark is folded into the
//! rollups at ingest. It then applies retention by age and by size ([`retention`]); when
//! size retention deleted data and the file is still over the limit, the file is
//! compacted ([`Store::vacuum`]).

pub mod buckets;
pub mod codec;
pub mod error;
pub mod export;
pub mod flamebearer;
mod hash;
pub mod index;
pub mod ingest;
pub mod options;
pub mod query;
pub mod retention;
pub mod rollup;
pub mod schema;
pub mod selector;
pub mod store;
pub mod symbols;
pub mod tree;

#[cfg(test)]
mod tests;

pub use error::{InvalidInput, StoreError};
pub use flamebearer::{DiffRender, Flamebearer, Metadata, SingleRender, Timeline};
pub use index::ProfileTypeInfo;
pub use ingest::{now_nanos, IngestOutcome, IngestRequest};
pub use options::StoreOptions;
pub use query::{default_step, GroupTotal, GroupTotals, QueryRange, RenderOptions};
pub use store::{MaintenanceReport, Store, StoreStats};
pub use tree::Tree;
