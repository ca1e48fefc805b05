//! The [`Store`]: opening, group-committed ingest, maintenance (rollups, retention, file
//! compaction) and closing. Queries are in [`crate::query`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::{Database, ReadableDatabase, ReadableTable, Table};

use crate::buckets::{self, MAX_TIME};
use crate::codec::{decode_block, encode_block, merge_pairs, normalize};
use crate::error::{CorruptError, Result, StoreError};
use crate::hash::IdMap;
use crate::index::SeriesIndex;
use crate::ingest::{prepare, IngestOutcome, IngestRequest, Prepared};
use crate::options::StoreOptions;
use crate::rollup;
use crate::schema;
use crate::symbols::Symbols;

/// Counters and sizes, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub ingested_profiles: u64,
    pub ingested_samples: u64,
    pub series: usize,
    pub profile_types: usize,
    pub strings: usize,
    pub functions: usize,
    pub locations: usize,
    pub stacks: usize,
    /// Size of the database file.
    pub file_bytes: u64,
}

/// What one [`Store::maintain`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Watermarks of the rollup levels after the run (unix ns).
    pub watermarks: [i64; 3],
    /// Rows deleted by retention.
    pub deleted_rows: u64,
    /// Whether the file was compacted.
    pub vacuumed: bool,
}

struct Job {
    batch: Vec<Prepared>,
    done: mpsc::SyncSender<Result<IngestOutcome>>,
}

/// An embedded profile store in one redb file. Cheap to share: wrap it in an `Arc`; every
/// method takes `&self` and is safe to call from many threads.
pub struct Store {
    path: PathBuf,
    db: RwLock<Option<Database>>,
    pub(crate) symbols: RwLock<Symbols>,
    pub(crate) index: RwLock<SeriesIndex>,
    pub(crate) watermarks: RwLock<[i64; 3]>,
    /// Longest duration of any raw row (ns), persisted as `max_raw_duration`.
    pub(crate) max_raw_duration: AtomicI64,
    pub(crate) opts: StoreOptions,
    queue: Mutex<Vec<Job>>,
    write_lock: Mutex<()>,
    ingested_profiles: AtomicU64,
    ingested_samples: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (or creates) the store in directory `dir` (file `kiln.redb`).
    pub fn open(dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("kiln.redb");
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(&path)?;
        {
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(schema::META)?;
                let v = meta.get(schema::KEY_SCHEMA)?.map(|g| g.value());
                match v {
                    None => {
                        meta.insert(schema::KEY_SCHEMA, schema::SCHEMA_VERSION)?;
                    }
                    Some(schema::SCHEMA_VERSION) => {}
                    Some(1) => {
                        let moved = migrate_raw_totals(&txn)?;
                        log::info!("kiln-store: migrated {moved} raw totals to schema 2");
                        meta.insert(schema::KEY_SCHEMA, schema::SCHEMA_VERSION)?;
                    }
                    Some(other) => {
                        return Err(StoreError::Corrupt {
                            table: "meta",
                            source: CorruptError::Schema(other),
                        })
                    }
                }
                // Create every table so readers never meet a missing one.
                txn.open_table(schema::STRINGS)?;
                txn.open_table(schema::FUNCTIONS)?;
                txn.open_table(schema::LOCATIONS)?;
                txn.open_table(schema::STACKS)?;
                txn.open_table(schema::PROFILE_TYPES)?;
                txn.open_table(schema::SERIES)?;
                txn.open_table(schema::RAW)?;
                txn.open_table(schema::ROLLUPS)?;
                txn.open_table(schema::TOTALS)?;
                txn.open_table(schema::RAW_TOTALS)?;
            }
            txn.commit()?;
        }
        let (symbols, index, watermarks, max_raw_duration) = {
            let txn = db.begin_read()?;
            let symbols = Symbols::load(&txn)?;
            let index = SeriesIndex::load(&txn)?;
            let meta = txn.open_table(schema::META)?;
            let mut wm = [0i64; 3];
            for (l, w) in wm.iter_mut().enumerate() {
                *w = meta
                    .get(schema::watermark_key(l + 1).as_str())?
                    .map_or(0, |g| g.value() as i64);
            }
            let max_raw_duration = meta
                .get(schema::KEY_MAX_RAW_DURATION)?
                .map_or(0, |g| g.value() as i64);
            (symbols, index, wm, max_raw_duration)
        };
        log::info!(
            "kiln-store: opened {} ({} series, {} stacks)",
            path.display(),
            index.series.len(),
            symbols.stack_count()
        );
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
            symbols: RwLock::new(symbols),
            index: RwLock::new(index),
            watermarks: RwLock::new(watermarks),
            max_raw_duration: AtomicI64::new(max_raw_duration),
            opts,
            queue: Mutex::new(Vec::new()),
            write_lock: Mutex::new(()),
            ingested_profiles: AtomicU64::new(0),
            ingested_samples: AtomicU64::new(0),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    pub(crate) fn db(&self) -> Result<DbGuard<'_>> {
        let g = read(&self.db);
        if g.is_none() {
            return Err(StoreError::Closed);
        }
        Ok(DbGuard(g))
    }

    /// Stores one profile. Returns once it is durable (fsync'd): data acknowledged with
    /// `Ok` survives a crash or `kill -9`. Concurrent callers are committed together.
    pub fn ingest(&self, req: IngestRequest) -> Result<IngestOutcome> {
        self.ingest_many(vec![req])
    }

    /// Stores several profiles in one transaction (all or nothing for storage errors;
    /// any invalid request fails the whole call before anything is written).
    pub fn ingest_many(&self, reqs: Vec<IngestRequest>) -> Result<IngestOutcome> {
        if self.write_lock.is_poisoned() {
            return Err(StoreError::Poisoned);
        }
        let batch = reqs
            .into_iter()
            .map(|r| prepare(r, &self.opts))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::sync_channel(1);
        lock(&self.queue).push(Job { batch, done: tx });
        {
            let Ok(_g) = self.write_lock.lock() else {
                // A writer panicked mid-transaction: the in-memory symbols and series
                // index may hold what it never committed, so nothing more is written.
                for job in std::mem::take(&mut *lock(&self.queue)) {
                    let _ = job.done.send(Err(StoreError::Poisoned));
                }
                return rx.recv().unwrap_or(Err(StoreError::Poisoned));
            };
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            let jobs = std::mem::take(&mut *lock(&self.queue));
            self.commit_jobs(jobs);
        }
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Writes `jobs` in one transaction and answers each. Caller holds `write_lock`.
    fn commit_jobs(&self, jobs: Vec<Job>) {
        let db = match self.db() {
            Ok(db) => db,
            Err(_) => {
                for j in jobs {
                    let _ = j.done.send(Err(StoreError::Closed));
                }
                return;
            }
        };
        let wms = *read(&self.watermarks);
        let mut results: Vec<Option<Result<IngestOutcome>>> = Vec::with_capacity(jobs.len());
        let outcome = (|| -> Result<()> {
            let mut txn = db.begin_write()?;
            txn.set_quick_repair(true);
            let (sym_mark, idx_mark);
            {
                let mut sym = write(&self.symbols);
                let mut idx = write(&self.index);
                sym_mark = sym.mark();
                idx_mark = idx.mark();
                let r = (|| -> Result<()> {
                    let mut tables = Tables {
                        raw: txn.open_table(schema::RAW)?,
                        raw_totals: txn.open_table(schema::RAW_TOTALS)?,
                        rollups: txn.open_table(schema::ROLLUPS)?,
                        totals: txn.open_table(schema::TOTALS)?,
                    };
                    for job in &jobs {
                        let job_mark = idx.mark();
                        let mut out = IngestOutcome::default();
                        // Series first: only they can hit a limit, and nothing of this
                        // job is written until all its series exist.
                        let series: Result<Vec<_>> = job
                            .batch
                            .iter()
                            .map(|p| self.intern_series(p, &mut idx))
                            .collect();
                        let series = match series {
                            Ok(s) => s,
                            Err(e) => {
                                idx.rollback(job_mark);
                                results.push(Some(Err(e)));
                                continue;
                            }
                        };
                        for (p, series_of) in job.batch.iter().zip(&series) {
                            self.apply(
                                p,
                                series_of,
                                &mut sym,
                                &mut idx,
                                &mut tables,
                                &wms,
                                &mut out,
                            )?;
                        }
                        results.push(Some(Ok(out)));
                    }
                    Ok(())
                })();
                let r = r.and_then(|()| {
                    sym.persist_since(sym_mark, &txn)?;
                    idx.persist_since(idx_mark, &txn)?;
                    self.persist_max_duration(&jobs, &txn)
                });
                if let Err(e) = r {
                    sym.rollback(sym_mark);
                    idx.rollback(idx_mark);
                    return Err(e);
                }
            }
            // Readers may now see the new symbols and series (harmless: no committed rows
            // use them yet) while we fsync without blocking them.
            if let Err(e) = txn.commit() {
                write(&self.symbols).rollback(sym_mark);
                write(&self.index).rollback(idx_mark);
                return Err(e.into());
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    if let Some(Ok(o)) = &r {
                        self.ingested_profiles
                            .fetch_add(job.batch.len() as u64, Ordering::Relaxed);
                        self.ingested_samples
                            .fetch_add(o.samples, Ordering::Relaxed);
                    }
                    let _ = job.done.send(r.unwrap_or(Err(StoreError::Closed)));
                }
            }
            Err(e) => {
                log::error!("kiln-store: write failed: {e:#}");
                let msg = format!("{e}");
                let mut first = Some(e);
                for job in jobs {
                    let err = first
                        .take()
                        .unwrap_or_else(|| StoreError::WriteFailed(msg.clone()));
                    let _ = job.done.send(Err(err));
                }
            }
        }
    }

    /// Raises `max_raw_duration` to the longest profile of `jobs` (one lookup per commit).
    /// The in-memory value may run ahead of a failed commit: a longer look-back only costs
    /// a few reads.
    fn persist_max_duration(&self, jobs: &[Job], txn: &redb::WriteTransaction) -> Result<()> {
        let longest = jobs
            .iter()
            .flat_map(|j| &j.batch)
            .map(|p| p.duration)
            .max()
            .unwrap_or(0);
        if longest > 0 {
            let mut meta = txn.open_table(schema::META)?;
            let stored = meta
                .get(schema::KEY_MAX_RAW_DURATION)?
                .map_or(0, |g| g.value() as i64);
            if longest > stored {
                meta.insert(schema::KEY_MAX_RAW_DURATION, longest as u64)?;
            }
            self.max_raw_duration.fetch_max(longest, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The series of each `(label set, sample type)` of `p` that has a non-zero value,
    /// indexed `set * types + type`.
    fn intern_series(&self, p: &Prepared, idx: &mut SeriesIndex) -> Result<Vec<Option<u32>>> {
        let prof = &p.profile;
        let ntypes = p.types.len();
        let type_ids: Vec<u32> = p
            .types
            .iter()
            .map(|id| idx.intern_type(id, p.period))
            .collect();
        let mut series_of: Vec<Option<u32>> = vec![None; p.label_sets.len() * ntypes];
        for (i, s) in prof.sample.iter().enumerate() {
            let set = p.sample_set[i] as usize;
            for (ti, &v) in s.value.iter().enumerate() {
                let slot = &mut series_of[set * ntypes + ti];
                if v > 0 && slot.is_none() {
                    let id = idx
                        .intern_series(
                            type_ids[ti],
                            p.label_sets[set].clone(),
                            self.opts.max_series,
                        )
                        .ok_or_else(|| {
                            StoreError::Limit(format!(
                                "series limit of {} reached",
                                self.opts.max_series
                            ))
                        })?;
                    *slot = Some(id);
                }
            }
        }
        Ok(series_of)
    }

    /// Interns one prepared profile's symbols and writes its rows.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        p: &Prepared,
        series_of: &[Option<u32>],
        sym: &mut Symbols,
        idx: &mut SeriesIndex,
        t: &mut Tables<'_>,
        wms: &[i64; 3],
        out: &mut IngestOutcome,
    ) -> Result<()> {
        let prof = &p.profile;
        let ntypes = p.types.len();
        // pprof string index -> store string id, filled on first use (function file names
        // repeat across a profile's functions).
        let mut strs: Vec<u32> = vec![u32::MAX; prof.string_table.len()];
        let mut string = |sym: &mut Symbols, i: i64| -> u32 {
            // `validate` checked every index we are given here.
            let slot = &mut strs[i as usize];
            if *slot == u32::MAX {
                *slot = sym.string(prof.string(i));
            }
            *slot
        };
        let mut funcs = IdMap::for_ids(prof.function.iter().map(|f| f.id), prof.function.len());
        for f in &prof.function {
            let name = string(sym, f.name);
            let file = string(sym, f.filename);
            funcs.insert(f.id, sym.function(name, file));
        }
        let mut maps = IdMap::for_ids(prof.mapping.iter().map(|m| m.id), prof.mapping.len());
        for m in &prof.mapping {
            let file = string(sym, m.filename);
            maps.insert(m.id, file);
        }
        let mut locs = IdMap::for_ids(prof.location.iter().map(|l| l.id), prof.location.len());
        let mut lines: Vec<(u32, i64)> = Vec::new();
        for l in &prof.location {
            lines.clear();
            lines.extend(l.line.iter().map(|ln| (funcs.get(ln.function_id), ln.line)));
            let id = sym.location_lines(maps.get(l.mapping_id), l.address, &lines);
            locs.insert(l.id, id);
        }
        // Pairs per `(label set, sample type)` slot of `series_of` (distinct slots are
        // distinct series).
        let mut acc: Vec<Vec<(u32, u64)>> = vec![Vec::new(); series_of.len()];
        // Stacks: visit samples ordered by their root-first location path, so that a
        // sample's prefix shared with the previous one resolves without any lookup and
        // each trie node of this profile is looked up once. Paths are copied root-first
        // into one buffer so the sort compares plain slices.
        let max_depth = self.opts.max_stack_depth;
        let mut paths: Vec<u64> = Vec::new();
        let mut bounds: Vec<(u32, u32)> = Vec::with_capacity(prof.sample.len());
        for s in &prof.sample {
            let ids = &s.location_id[..s.location_id.len().min(max_depth)];
            let start = paths.len() as u32;
            paths.extend(ids.iter().rev());
            bounds.push((start, paths.len() as u32));
        }
        let path = |i: usize| {
            let (a, b) = bounds[i];
            &paths[a as usize..b as usize]
        };
        let mut order: Vec<u32> = (0..prof.sample.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| path(a as usize).cmp(path(b as usize)));
        // The previous sample's path, and the stack id at each of its depths.
        let mut prev: &[u64] = &[];
        let mut prev_stacks: Vec<u32> = Vec::new();
        for &i in &order {
            let i = i as usize;
            let s = &prof.sample[i];
            let set = p.sample_set[i] as usize;
            let cur = path(i);
            let shared = cur.iter().zip(prev).take_while(|(a, b)| a == b).count();
            prev_stacks.truncate(shared);
            let mut stack = prev_stacks.last().copied().unwrap_or(0);
            for &id in &cur[shared..] {
                stack = sym.stack(stack, locs.get(id));
                prev_stacks.push(stack);
            }
            prev = cur;
            for (ti, &v) in s.value.iter().enumerate() {
                let slot = set * ntypes + ti;
                if v > 0 && series_of[slot].is_some() {
                    acc[slot].push((stack, v as u64));
                }
            }
        }
        // Phase 2: write rows.
        let time = p.from;
        let corrupt = |source| StoreError::Corrupt {
            table: "raw",
            source,
        };
        for (slot, mut pairs) in acc.into_iter().enumerate() {
            let Some(series) = series_of[slot] else {
                continue;
            };
            normalize(&mut pairs);
            if pairs.is_empty() {
                continue;
            }
            let total = pairs.iter().map(|p| p.1).fold(0u64, u64::saturating_add);
            out.samples += pairs.len() as u64;
            out.series += 1;
            idx.touch(series, time);
            let key = (series, time);
            let merged = match t.raw.get(key)? {
                Some(old) => Some(merge_pairs(
                    &decode_block(old.value()).map_err(corrupt)?,
                    &pairs,
                )),
                None => None,
            };
            t.raw.insert(
                key,
                encode_block(merged.as_ref().unwrap_or(&pairs)).as_slice(),
            )?;
            let (old_total, old_duration) = t.raw_totals.get(key)?.map_or((0, 0), |g| g.value());
            t.raw_totals.insert(
                key,
                (
                    old_total.saturating_add(total),
                    old_duration.max(p.duration),
                ),
            )?;
            // Late data for buckets already rolled up goes into them directly.
            for level in 1..=3u8 {
                let bucket = buckets::floor(time, buckets::size(level));
                if bucket < wms[level as usize - 1] {
                    let key = (level, series, bucket);
                    let merged = match t.rollups.get(key)? {
                        Some(old) => {
                            merge_pairs(&decode_block(old.value()).map_err(corrupt)?, &pairs)
                        }
                        None => pairs.clone(),
                    };
                    t.rollups.insert(key, encode_block(&merged).as_slice())?;
                    add_total(&mut t.totals, key, total)?;
                }
            }
        }
        Ok(())
    }

    /// Builds rollups for finished time buckets and applies retention. Call it
    /// periodically (the server does every 30 s); `now_nanos` is wall-clock time.
    pub fn maintain(&self, now_nanos: i64) -> Result<MaintenanceReport> {
        let grace = self.opts.rollup_grace.as_nanos() as i64;
        let mut report = MaintenanceReport::default();
        for level in 1..=3u8 {
            // Bounded number of transactions per run; each releases the write lock.
            for _ in 0..10_000 {
                let _g = lock(&self.write_lock);
                let mut wms = *read(&self.watermarks);
                let li = level as usize - 1;
                if wms[li] == 0 {
                    let first = read(&self.index).series.iter().map(|s| s.first).min();
                    match first {
                        Some(f) if f < MAX_TIME => {
                            wms[li] = buckets::floor(f, buckets::size(level))
                        }
                        _ => break,
                    }
                }
                let target = rollup::target(level, &wms, now_nanos - grace);
                if target <= wms[li] {
                    // Persist an initialised watermark even when nothing is to do.
                    if wms != *read(&self.watermarks) {
                        self.save_watermarks(&wms)?;
                    }
                    break;
                }
                let db = self.db()?;
                let mut txn = db.begin_write()?;
                txn.set_quick_repair(true);
                let new = {
                    let idx = read(&self.index);
                    rollup::compact_level(&txn, &idx, level, wms[li], target)?
                };
                wms[li] = new;
                write_watermarks(&txn, &wms)?;
                txn.commit()?;
                *write(&self.watermarks) = wms;
            }
        }
        report.deleted_rows = self.apply_retention(now_nanos)?;
        if report.deleted_rows > 0 {
            if let Some(limit) = self.opts.retention_bytes {
                if self.file_bytes() > limit {
                    report.vacuumed = self.vacuum()?;
                }
            }
        }
        report.watermarks = *read(&self.watermarks);
        Ok(report)
    }

    fn save_watermarks(&self, wms: &[i64; 3]) -> Result<()> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        write_watermarks(&txn, wms)?;
        txn.commit()?;
        *write(&self.watermarks) = *wms;
        Ok(())
    }

    fn apply_retention(&self, now_nanos: i64) -> Result<u64> {
        let mut deleted = 0;
        if let Some(age) = self.opts.retention_age {
            let cutoff = now_nanos.saturating_sub(age.as_nanos().min(i64::MAX as u128) as i64);
            deleted += self.delete_before(cutoff)?;
        }
        if let Some(limit) = self.opts.retention_bytes {
            // Drop the oldest hour at a time while over the limit (bounded).
            for _ in 0..10_000 {
                if self.used_bytes()? <= limit {
                    break;
                }
                let oldest = read(&self.index)
                    .series
                    .iter()
                    .filter(|s| s.last >= s.first)
                    .map(|s| s.first)
                    .min();
                let Some(oldest) = oldest else { break };
                let n = self
                    .delete_before(buckets::floor(oldest, 3_600_000_000_000) + 3_600_000_000_000)?;
                deleted += n;
                if n == 0 {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes rows older than `cutoff` (rollup buckets that end by then).
    pub fn delete_before(&self, cutoff: i64) -> Result<u64> {
        let _g = lock(&self.write_lock);
        let db = self.db()?;
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        let n = {
            let idx = read(&self.index);
            crate::retention::delete_before(&txn, &idx, cutoff)?
        };
        txn.commit()?;
        let mut idx = write(&self.index);
        for s in idx.series.iter_mut() {
            if s.first < cutoff {
                s.first = cutoff;
            }
        }
        Ok(n)
    }

    /// Bytes of the file in use by pages (excluding free space).
    pub fn used_bytes(&self) -> Result<u64> {
        let db = self.db()?;
        let txn = db.begin_write()?;
        let st = txn.stats()?;
        let used = st.allocated_pages() * st.page_size() as u64;
        txn.abort()?;
        Ok(used)
    }

    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Compacts the database file, returning free pages to the file system. Blocks all
    /// readers and writers while it runs.
    pub fn vacuum(&self) -> Result<bool> {
        let _g = lock(&self.write_lock);
        let mut db = write(&self.db);
        match db.as_mut() {
            Some(db) => Ok(db.compact()?),
            None => Err(StoreError::Closed),
        }
    }

    pub fn stats(&self) -> StoreStats {
        let [strings, functions, locations, stacks] = read(&self.symbols).counts();
        let idx = read(&self.index);
        StoreStats {
            ingested_profiles: self.ingested_profiles.load(Ordering::Relaxed),
            ingested_samples: self.ingested_samples.load(Ordering::Relaxed),
            series: idx.series.len(),
            profile_types: idx.types.len(),
            strings,
            functions,
            locations,
            stacks,
            file_bytes: self.file_bytes(),
        }
    }

    /// Waits for in-flight writes, then closes the database. Later calls fail with
    /// [`StoreError::Closed`]. Dropping the store also closes it.
    pub fn close(&self) -> Result<()> {
        let _g = lock(&self.write_lock);
        let db = write(&self.db).take();
        if let Some(db) = db {
            db.close()?;
            log::info!("kiln-store: closed {}", self.path.display());
        }
        Ok(())
    }
}

pub(crate) struct DbGuard<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for DbGuard<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.0.as_ref().expect("checked in Store::db")
    }
}

struct Tables<'t> {
    raw: Table<'t, (u32, i64), &'static [u8]>,
    raw_totals: Table<'t, (u32, i64), (u64, i64)>,
    rollups: Table<'t, (u8, u32, i64), &'static [u8]>,
    totals: Table<'t, (u8, u32, i64), u64>,
}

fn add_total(t: &mut Table<'_, (u8, u32, i64), u64>, key: (u8, u32, i64), v: u64) -> Result<()> {
    let old = t.get(key)?.map_or(0, |g| g.value());
    t.insert(key, old.saturating_add(v))?;
    Ok(())
}

/// Schema 1 → 2: raw totals move from level 0 of `totals` to `raw_totals`, with an unknown
/// duration (0: drawn as a point in time, as schema 1 did).
fn migrate_raw_totals(txn: &redb::WriteTransaction) -> Result<u64> {
    let mut totals = txn.open_table(schema::TOTALS)?;
    let mut raw_totals = txn.open_table(schema::RAW_TOTALS)?;
    let level0 = (0u8, 0u32, i64::MIN)..=(0u8, u32::MAX, i64::MAX);
    let mut moved = 0;
    for row in totals.range(level0.clone())? {
        let (k, v) = row?;
        let (_, series, time) = k.value();
        raw_totals.insert((series, time), (v.value(), 0))?;
        moved += 1;
    }
    totals.retain_in(level0, |_, _| false)?;
    Ok(moved)
}

fn write_watermarks(txn: &redb::WriteTransaction, wms: &[i64; 3]) -> Result<()> {
    let mut meta = txn.open_table(schema::META)?;
    for (l, w) in wms.iter().enumerate() {
        meta.insert(schema::watermark_key(l + 1).as_str(), *w as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod poison_tests {
    use super::*;

    #[test]
    fn a_writer_that_panicked_poisons_later_ingests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("open");
        std::thread::scope(|s| {
            let r = s
                .spawn(|| {
                    let _g = store.write_lock.lock();
                    panic!("a writer fails while holding the write lock");
                })
                .join();
            assert!(r.is_err());
        });
        let req = IngestRequest {
            labels: vec![("service_name".into(), "x".into())],
            profile: kiln_proto::pprof::Profile::default(),
            from_nanos: 1,
            until_nanos: 2,
        };
        let e = store.ingest(req).expect_err("poisoned");
        assert!(matches!(e, StoreError::Poisoned), "{e}");
        assert!(!e.is_client_error());
        // Reads and closing still work.
        store.close().expect("close");
    }
}
