//! Keeps the kernel's unwind state in step with the processes being profiled.
//!
//! Kernel layout (see `profiler_common::unwind`):
//! - `UNWIND_ROWS`: one array of [`UnwindRow`]s (8 bytes each), sized by the memory cap;
//!   a table is written through a transient mmap of its pages, not one syscall per row.
//!   Each binary's table is one contiguous range, allocated first-fit from a free list.
//! - `UNWIND_MAPPINGS[slot]`: a process's executable mappings ([`ProcUnwindInfo`]).
//! - `UNWIND_PROCS[tgid] = slot`: only processes with at least one table are present;
//!   the others keep the kernel's cheaper frame-pointer walk (`bpf_get_stack`).
//!
//! Tables are shared: one per build id (or per open file when there is none), referenced
//! by every process mapping the binary. A table nobody references stays loaded (so a
//! binary exec'd again and again is compiled once) until its space is needed; then the
//! least recently used one goes. A table that does not fit even then is not loaded and
//! counted: its processes unwind those mappings with frame pointers.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use profiler_common::unwind::{ProcUnwindInfo, UnwindMapping, UnwindRow, MAX_UNWIND_MAPPINGS};

use super::table::{self, Segment, UnwindTable};
use crate::capture::procs::{BinaryId, ExecMapping};

/// Where tables and mapping lists go: the BPF maps, or a fake in tests.
pub trait UnwindMaps {
    /// Rows `UNWIND_ROWS` holds.
    fn row_capacity(&self) -> u32;
    /// Process slots `UNWIND_MAPPINGS` holds.
    fn slot_capacity(&self) -> u32;
    fn write_rows(&mut self, start: u32, rows: &[UnwindRow]) -> anyhow::Result<()>;
    fn set_process(&mut self, pid: u32, slot: u32, info: &ProcUnwindInfo) -> anyhow::Result<()>;
    /// Unregisters `pid` and marks its slot as no longer its own.
    fn remove_process(&mut self, pid: u32, slot: u32);
}

/// Compiles the table of the binary at a path (a seam for tests).
pub type Compiler = fn(&Path) -> anyhow::Result<Option<UnwindTable>>;

/// Counters of the loader, for logs, metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoaderStats {
    /// Tables in kernel memory now, and their rows.
    pub tables: u64,
    pub rows_used: u64,
    pub row_capacity: u64,
    /// Processes unwound with tables now.
    pub processes: u64,
    /// Tables compiled, and the time it took.
    pub compiled: u64,
    pub compile_time: Duration,
    /// Binaries without any CFI (frame pointers only) or whose CFI could not be read.
    pub binaries_without_cfi: u64,
    pub compile_errors: u64,
    /// Tables evicted to make room, and tables that did not fit at all.
    pub evicted: u64,
    pub over_cap: u64,
    /// Processes not unwound with tables because every slot was taken.
    pub slots_full: u64,
    /// Executable mappings beyond MAX_UNWIND_MAPPINGS (unwound as unknown code).
    pub mappings_dropped: u64,
}

impl LoaderStats {
    pub fn summary(&self) -> String {
        format!(
            "{} tables, {:.1} of {:.1} MiB, {} processes; {} compiled in {:.0} ms; {} binaries without CFI, {} errors, {} evicted, {} over the cap, {} processes without a slot, {} mappings dropped",
            self.tables,
            (self.rows_used * 8) as f64 / 1048576.0,
            (self.row_capacity * 8) as f64 / 1048576.0,
            self.processes,
            self.compiled,
            self.compile_time.as_secs_f64() * 1e3,
            self.binaries_without_cfi,
            self.compile_errors,
            self.evicted,
            self.over_cap,
            self.slots_full,
            self.mappings_dropped
        )
    }
}

/// What a table is shared by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TableKey {
    BuildId(String),
    Binary(BinaryId),
}

struct Loaded {
    start: u32,
    len: u32,
    base: u64,
    segments: Vec<Segment>,
    /// Processes referencing it.
    refs: u32,
    last_used: u64,
}

/// A binary as the loader needs it: where to read it and what it is.
pub struct BinaryRef {
    pub path: PathBuf,
    pub build_id: Option<String>,
}

struct ProcEntry {
    slot: u32,
    tables: Vec<TableKey>,
}

pub struct UnwindLoader<M: UnwindMaps> {
    maps: M,
    compile: Compiler,
    free: FreeList,
    tables: HashMap<TableKey, Loaded>,
    /// Per binary: its table, or None (no CFI, unreadable, or over the cap).
    binaries: HashMap<BinaryId, Option<TableKey>>,
    procs: HashMap<u32, ProcEntry>,
    /// Binaries whose table did not fit: retried once space is freed.
    over_cap: Vec<BinaryId>,
    free_slots: Vec<u32>,
    next_slot: u32,
    tick: u64,
    stats: LoaderStats,
}

impl<M: UnwindMaps> UnwindLoader<M> {
    pub fn new(maps: M) -> Self {
        Self::with_compiler(maps, table::compile_file)
    }

    pub fn with_compiler(maps: M, compile: Compiler) -> Self {
        let capacity = maps.row_capacity();
        Self {
            free: FreeList::new(capacity),
            maps,
            compile,
            tables: HashMap::new(),
            binaries: HashMap::new(),
            procs: HashMap::new(),
            over_cap: Vec::new(),
            free_slots: Vec::new(),
            next_slot: 0,
            tick: 0,
            stats: LoaderStats {
                row_capacity: u64::from(capacity),
                ..Default::default()
            },
        }
    }

    pub fn stats(&self) -> LoaderStats {
        let mut s = self.stats;
        s.tables = self.tables.len() as u64;
        s.rows_used = self.tables.values().map(|t| u64::from(t.len)).sum();
        s.processes = self.procs.len() as u64;
        s
    }

    /// (Re)describes a process to the kernel from its executable mappings (sorted).
    /// `resolve` says where to read a binary. Returns whether the process is unwound
    /// with tables.
    pub fn update_process(
        &mut self,
        pid: u32,
        mappings: &[ExecMapping],
        resolve: impl Fn(BinaryId) -> Option<BinaryRef>,
    ) -> bool {
        self.tick += 1;
        let mut info = ProcUnwindInfo::default();
        let mut keys = Vec::new();
        if mappings.len() > MAX_UNWIND_MAPPINGS {
            self.stats.mappings_dropped += (mappings.len() - MAX_UNWIND_MAPPINGS) as u64;
        }
        for (slot, m) in info.mappings.iter_mut().zip(mappings) {
            *slot = UnwindMapping {
                start: m.start,
                end: m.end,
                ..Default::default()
            };
            let Some(id) = m.binary else { continue };
            let Some(key) = self.table_for(id, &resolve) else {
                continue;
            };
            let t = &self.tables[&key];
            let Some(bias) = table::bias(t.base, &t.segments, m.start, m.file_offset) else {
                continue;
            };
            slot.bias = bias;
            slot.table_start = t.start;
            slot.table_len = t.len;
            // Pin it now: compiling a later mapping's table may evict unreferenced ones.
            if let Some(t) = self.tables.get_mut(&key) {
                t.refs += 1;
                t.last_used = self.tick;
            }
            keys.push(key);
        }
        info.len = mappings.len().min(MAX_UNWIND_MAPPINGS) as u32;
        // Unique per write (the tick advances on every update), never 0 (an empty cache
        // entry).
        info.generation = (self.tick as u32).max(1);
        if keys.is_empty() {
            self.remove_process(pid);
            return false;
        }
        let slot = match self.procs.get(&pid) {
            Some(p) => p.slot,
            None => match self.free_slots.pop() {
                Some(s) => s,
                None if self.next_slot < self.maps.slot_capacity() => {
                    self.next_slot += 1;
                    self.next_slot - 1
                }
                None => {
                    self.stats.slots_full += 1;
                    self.unref(&keys);
                    return false;
                }
            },
        };
        if let Err(e) = self.maps.set_process(pid, slot, &info) {
            log::warn!("registering process {pid} for DWARF unwinding failed: {e:#}");
            if !self.procs.contains_key(&pid) {
                self.free_slots.push(slot);
            }
            self.unref(&keys);
            return false;
        }
        let old = self.procs.insert(pid, ProcEntry { slot, tables: keys });
        if let Some(old) = old {
            self.unref(&old.tables);
        }
        true
    }

    /// The process exited or exec'd: forget its mappings.
    pub fn remove_process(&mut self, pid: u32) {
        if let Some(p) = self.procs.remove(&pid) {
            self.maps.remove_process(pid, p.slot);
            self.free_slots.push(p.slot);
            self.unref(&p.tables);
            // Space may be reclaimable now: let tables that did not fit try again.
            for id in self.over_cap.drain(..) {
                self.binaries.remove(&id);
            }
        }
    }

    /// The binary was closed (no process maps it): its id will not come back. A table
    /// only it could use (no build id) is freed now.
    pub fn forget_binary(&mut self, id: BinaryId) {
        if let Some(Some(TableKey::Binary(_))) = self.binaries.remove(&id) {
            let key = TableKey::Binary(id);
            if self.tables.get(&key).is_some_and(|t| t.refs == 0) {
                self.free_table(&key);
            }
        }
    }

    fn unref(&mut self, keys: &[TableKey]) {
        for key in keys {
            if let Some(t) = self.tables.get_mut(key) {
                t.refs = t.refs.saturating_sub(1);
            }
        }
    }

    fn free_table(&mut self, key: &TableKey) {
        if let Some(t) = self.tables.remove(key) {
            self.free.release(t.start, t.len);
            self.binaries.retain(|_, k| k.as_ref() != Some(key));
        }
    }

    fn table_for(
        &mut self,
        id: BinaryId,
        resolve: &impl Fn(BinaryId) -> Option<BinaryRef>,
    ) -> Option<TableKey> {
        if let Some(known) = self.binaries.get(&id) {
            return known.clone();
        }
        let binary = resolve(id)?;
        let key = binary
            .build_id
            .clone()
            .map_or(TableKey::Binary(id), TableKey::BuildId);
        if self.tables.contains_key(&key) {
            self.binaries.insert(id, Some(key.clone()));
            return Some(key);
        }
        let started = Instant::now();
        let compiled = (self.compile)(&binary.path);
        self.stats.compile_time += started.elapsed();
        let table = match compiled {
            Ok(Some(t)) if !t.rows.is_empty() => t,
            Ok(_) => {
                self.stats.binaries_without_cfi += 1;
                self.binaries.insert(id, None);
                return None;
            }
            Err(e) => {
                log::debug!("no unwind table for {}: {e:#}", binary.path.display());
                self.stats.compile_errors += 1;
                self.binaries.insert(id, None);
                return None;
            }
        };
        self.stats.compiled += 1;
        let len = table.rows.len() as u32;
        let start = loop {
            if let Some(start) = self.free.alloc(len) {
                break start;
            }
            // Evict the least recently used unreferenced table and retry.
            let victim = self
                .tables
                .iter()
                .filter(|(_, t)| t.refs == 0)
                .min_by_key(|(_, t)| t.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    self.free_table(&k);
                    self.stats.evicted += 1;
                }
                None => {
                    if self.stats.over_cap == 0 {
                        log::warn!(
                            "the DWARF unwind table memory cap is reached: {} ({} KiB of tables) is unwound with frame pointers; raise --unwind-table-mib",
                            binary.path.display(),
                            table.bytes() / 1024
                        );
                    }
                    self.stats.over_cap += 1;
                    // Retried once a table is freed.
                    self.binaries.insert(id, None);
                    self.over_cap.push(id);
                    return None;
                }
            }
        };
        if let Err(e) = self.maps.write_rows(start, &table.rows) {
            log::warn!(
                "loading the unwind table of {} failed: {e:#}",
                binary.path.display()
            );
            self.free.release(start, len);
            self.stats.compile_errors += 1;
            self.binaries.insert(id, None);
            return None;
        }
        self.tables.insert(
            key.clone(),
            Loaded {
                start,
                len,
                base: table.base,
                segments: table.segments,
                refs: 0,
                last_used: self.tick,
            },
        );
        self.binaries.insert(id, Some(key.clone()));
        Some(key)
    }
}

/// First-fit allocator of row ranges, coalescing on release.
struct FreeList {
    /// start -> len
    free: BTreeMap<u32, u32>,
}

impl FreeList {
    fn new(capacity: u32) -> Self {
        let mut free = BTreeMap::new();
        if capacity > 0 {
            free.insert(0, capacity);
        }
        Self { free }
    }

    fn alloc(&mut self, len: u32) -> Option<u32> {
        let (&start, &have) = self.free.iter().find(|(_, &l)| l >= len)?;
        self.free.remove(&start);
        if have > len {
            self.free.insert(start + len, have - len);
        }
        Some(start)
    }

    fn release(&mut self, mut start: u32, mut len: u32) {
        if let Some((&s, &l)) = self.free.range(..start).next_back() {
            if s + l == start {
                self.free.remove(&s);
                start = s;
                len += l;
            }
        }
        if let Some(&l) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += l;
        }
        self.free.insert(start, len);
    }
}

/// The real maps: `UNWIND_ROWS` mmapped, `UNWIND_PROCS` and `UNWIND_MAPPINGS` through
/// syscalls, and the unwind epoch in the sampler's control map, changed after every
/// write of the other two (`profiler_common::control_index::UNWIND_EPOCH`).
pub struct BpfUnwindMaps {
    rows_len: u32,
    rows_map: aya::maps::MapData,
    procs: aya::maps::HashMap<aya::maps::MapData, u32, u32>,
    mappings: aya::maps::Array<aya::maps::MapData, ProcUnwindInfo>,
    control: aya::maps::Array<aya::maps::MapData, u32>,
    epoch: u32,
}

// SAFETY: the raw pointer is a private shared mapping owned by this struct.
unsafe impl Send for BpfUnwindMaps {}

impl BpfUnwindMaps {
    /// Takes the unwinder's maps out of a loaded object; `control` is a handle on the
    /// sampler's control map (`ACTIVE_BUFFER`).
    pub fn take(
        ebpf: &mut aya::Ebpf,
        rows: u32,
        control: aya::maps::MapData,
    ) -> anyhow::Result<Self> {
        use profiler_common::unwind::names;
        let take = |ebpf: &mut aya::Ebpf, name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("the eBPF object has no map {name}"))
        };
        let aya::maps::Map::Array(rows_map) = take(ebpf, names::ROWS)? else {
            anyhow::bail!("{} is not an array map", names::ROWS);
        };
        let procs = aya::maps::HashMap::try_from(take(ebpf, names::PROCS)?)?;
        let mappings = aya::maps::Array::try_from(take(ebpf, names::MAPPINGS)?)?;
        let control = aya::maps::Array::try_from(aya::maps::Map::Array(control))?;
        Ok(Self {
            rows_len: rows,
            rows_map,
            procs,
            mappings,
            control,
            epoch: 0,
        })
    }

    /// Tells every CPU that its memory of a process's slot and generation may be stale.
    fn bump_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if let Err(e) =
            self.control
                .set(profiler_common::control_index::UNWIND_EPOCH, self.epoch, 0)
        {
            log::warn!("updating the unwind epoch failed: {e}");
        }
    }

    /// The epoch as the kernel side reads it.
    #[cfg(test)]
    pub fn epoch(&self) -> u32 {
        self.control
            .get(&profiler_common::control_index::UNWIND_EPOCH, 0)
            .unwrap()
    }
}

impl UnwindMaps for BpfUnwindMaps {
    fn row_capacity(&self) -> u32 {
        self.rows_len
    }

    fn slot_capacity(&self) -> u32 {
        self.mappings.len()
    }

    fn write_rows(&mut self, start: u32, rows: &[UnwindRow]) -> anyhow::Result<()> {
        assert!(start as usize + rows.len() <= self.rows_len as usize);
        // In windows of 256 KiB: a large binary's table (2 MiB for kiln's own) would
        // otherwise be resident twice while it is copied.
        const CHUNK: usize = (256 << 10) / size_of::<UnwindRow>();
        for (i, chunk) in rows.chunks(CHUNK).enumerate() {
            self.write_window(start + (i * CHUNK) as u32, chunk)?;
        }
        Ok(())
    }

    fn set_process(&mut self, pid: u32, slot: u32, info: &ProcUnwindInfo) -> anyhow::Result<()> {
        let written = self
            .mappings
            .set(slot, info, 0)
            .and_then(|()| self.procs.insert(pid, slot, 0));
        // Also after a failed write: part of it may have landed.
        self.bump_epoch();
        Ok(written?)
    }

    fn remove_process(&mut self, pid: u32, slot: u32) {
        let _ = self.procs.remove(&pid);
        let _ = self.mappings.set(slot, ProcUnwindInfo::default(), 0);
        self.bump_epoch();
    }
}

impl BpfUnwindMaps {
    fn write_window(&mut self, start: u32, rows: &[UnwindRow]) -> anyhow::Result<()> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        if rows.is_empty() {
            return Ok(());
        }
        // Map only the pages being written: a mapping of a BPF array is populated whole
        // when made, so keeping all of it mapped would count the entire array (64 MiB by
        // default) in this process's RSS.
        const PAGE: usize = 4096;
        let first_byte = start as usize * size_of::<UnwindRow>();
        let offset = first_byte & !(PAGE - 1);
        let len = (first_byte + size_of_val(rows) - offset).next_multiple_of(PAGE);
        // SAFETY: a shared mapping of pages inside the BPF_F_MMAPABLE array (the assert
        // above keeps the window within the array's page-rounded size).
        let window = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.rows_map.fd().as_fd().as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if window == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .context("mapping the unwind table map (UNWIND_ROWS) into memory failed");
        }
        // SAFETY: the window covers [offset, offset + len) ⊇ the rows' bytes; the kernel
        // reads these rows only once a process referencing them is registered, which
        // happens after this copy (a syscall).
        unsafe {
            let dst = window
                .cast::<u8>()
                .add(first_byte - offset)
                .cast::<UnwindRow>();
            std::ptr::copy_nonoverlapping(rows.as_ptr(), dst, rows.len());
            libc::munmap(window, len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
