//! Bookkeeping of tables and processes against fake maps: sharing, eviction on exit,
//! the memory cap, slot reuse. No privileges needed.

use std::{collections::HashMap, path::Path, sync::Arc};

use super::*;
use crate::unwind::table::TableStats;

#[derive(Default)]
struct FakeMaps {
    rows: Vec<UnwindRow>,
    slots: u32,
    procs: HashMap<u32, (u32, ProcUnwindInfo)>,
}

impl UnwindMaps for FakeMaps {
    fn row_capacity(&self) -> u32 {
        self.rows.len() as u32
    }
    fn slot_capacity(&self) -> u32 {
        self.slots
    }
    fn write_rows(&mut self, start: u32, rows: &[UnwindRow]) -> anyhow::Result<()> {
        self.rows[start as usize..start as usize + rows.len()].copy_from_slice(rows);
        Ok(())
    }
    fn set_process(&mut self, pid: u32, slot: u32, info: &ProcUnwindInfo) -> anyhow::Result<()> {
        self.procs.insert(pid, (slot, *info));
        Ok(())
    }
    fn remove_process(&mut self, pid: u32, slot: u32) {
        let (owned, _) = self
            .procs
            .remove(&pid)
            .expect("removing a registered process");
        assert_eq!(owned, slot, "removed from the slot it was registered in");
    }
}

/// Fake compiler: "/bin/<rows>" has a table of <rows> rows based at 0x1000 with one
/// executable segment at offset 0x1000 = vaddr 0x1000; "/nocfi" has none.
fn fake_compile(path: &Path) -> anyhow::Result<Option<UnwindTable>> {
    let name = path.file_name().unwrap().to_str().unwrap();
    let Ok(rows) = name.parse::<u32>() else {
        return Ok(None);
    };
    Ok(Some(UnwindTable {
        base: 0x1000,
        rows: (0..rows)
            .map(|i| UnwindRow {
                pc: i * 16,
                cfa_offset: 8,
                kind: 0,
                rbp_offset: 0,
            })
            .collect(),
        segments: vec![Segment {
            file_offset: 0x1000,
            vaddr: 0x1000,
            file_size: 0x10_0000,
        }],
        stats: TableStats::default(),
    }))
}

fn mapping(start: u64, binary: Option<BinaryId>) -> ExecMapping {
    ExecMapping {
        start,
        end: start + 0x10_0000,
        file_offset: 0x1000,
        binary,
        label: Arc::from("x"),
    }
}

/// Binary id N is "/bin/<rows[N]>", with build id "b<N>" when `build_ids`.
fn resolver(rows: &'static [u32]) -> impl Fn(BinaryId) -> Option<BinaryRef> {
    move |id| {
        Some(BinaryRef {
            path: if rows[id as usize] == 0 {
                "/nocfi".into()
            } else {
                format!("/bin/{}", rows[id as usize]).into()
            },
            build_id: Some(format!("b{id}")),
        })
    }
}

fn loader(capacity: usize, slots: u32) -> UnwindLoader<FakeMaps> {
    UnwindLoader::with_compiler(
        FakeMaps {
            rows: vec![UnwindRow::default(); capacity],
            slots,
            ..Default::default()
        },
        fake_compile,
    )
}

const ROWS: &[u32] = &[100, 50, 0, 400];

#[test]
fn tables_are_shared_and_bias_maps_to_row_pcs() {
    let mut l = loader(1000, 8);
    let maps = [
        mapping(0x7f00_0000_1000, Some(0)),
        mapping(0x7f10_0000_1000, Some(1)),
    ];
    assert!(l.update_process(10, &maps, resolver(ROWS)));
    assert!(l.update_process(11, &maps[..1], resolver(ROWS)));
    let s = l.stats();
    assert_eq!(
        (s.tables, s.rows_used, s.compiled, s.processes),
        (2, 150, 2, 2)
    );
    let (_, info) = l.maps.procs[&10];
    assert_eq!(info.len, 2);
    let m = info.mappings[0];
    assert_eq!(m.table_len, 100);
    // Address 0x7f00_0000_1000 is file offset 0x1000 = vaddr 0x1000 = row pc 0.
    assert_eq!(0x7f00_0000_1000u64.wrapping_sub(m.bias), 0);
    assert_eq!(l.maps.procs[&11].1.mappings[0].table_start, m.table_start);
}

#[test]
fn processes_without_tables_stay_on_the_frame_pointer_path() {
    let mut l = loader(1000, 8);
    assert!(!l.update_process(
        10,
        &[mapping(0x1000, Some(2)), mapping(0x9000, None)],
        resolver(ROWS)
    ));
    assert!(l.maps.procs.is_empty());
    assert_eq!(l.stats().binaries_without_cfi, 1);
    // A mapping without a table in an unwound process is kept with table_len 0 (FP).
    assert!(l.update_process(
        10,
        &[mapping(0x1000, Some(2)), mapping(0x20_0000, Some(0))],
        resolver(ROWS)
    ));
    let info = l.maps.procs[&10].1;
    assert_eq!(
        (info.mappings[0].table_len, info.mappings[1].table_len),
        (0, 100)
    );
}

#[test]
fn exit_releases_references_and_space_is_reused_lru() {
    let mut l = loader(500, 8);
    assert!(l.update_process(10, &[mapping(0x1000, Some(0))], resolver(ROWS))); // 100 rows
    assert!(l.update_process(11, &[mapping(0x1000, Some(1))], resolver(ROWS))); // 50 rows
    l.remove_process(10);
    l.remove_process(11);
    assert!(l.maps.procs.is_empty());
    // Unreferenced tables stay loaded: a new process of binary 0 compiles nothing.
    assert!(l.update_process(12, &[mapping(0x1000, Some(0))], resolver(ROWS)));
    assert_eq!(l.stats().compiled, 2);
    // 400 rows need the space of the unreferenced 50-row table and more: binary 1 goes.
    assert!(l.update_process(13, &[mapping(0x1000, Some(3))], resolver(ROWS)));
    let s = l.stats();
    assert_eq!((s.tables, s.rows_used, s.evicted), (2, 500, 1));
}

#[test]
fn a_table_over_the_cap_falls_back_and_is_retried_later() {
    let mut l = loader(450, 8);
    assert!(l.update_process(10, &[mapping(0x1000, Some(0))], resolver(ROWS))); // 100
                                                                                // 400 rows do not fit next to a referenced 100-row table.
    assert!(!l.update_process(11, &[mapping(0x1000, Some(3))], resolver(ROWS)));
    assert_eq!(l.stats().over_cap, 1);
    l.remove_process(10);
    l.forget_binary(0); // has a build id: stays cached but unreferenced
                        // Binary 3 is retried now that references dropped: binary 0's table is evicted.
    assert!(l.update_process(11, &[mapping(0x1000, Some(3))], resolver(ROWS)));
    let s = l.stats();
    assert_eq!((s.rows_used, s.evicted, s.compiled), (400, 1, 3));
    // And the rest of the space still serves a small table.
    assert!(l.update_process(12, &[mapping(0x1000, Some(1))], resolver(ROWS)));
    assert_eq!(l.stats().rows_used, 450);
}

#[test]
fn slots_are_bounded_and_reused() {
    let mut l = loader(1000, 2);
    let m = [mapping(0x1000, Some(0))];
    assert!(l.update_process(1, &m, resolver(ROWS)));
    assert!(l.update_process(2, &m, resolver(ROWS)));
    assert!(!l.update_process(3, &m, resolver(ROWS)));
    assert_eq!(l.stats().slots_full, 1);
    l.remove_process(1);
    assert!(l.update_process(3, &m, resolver(ROWS)));
    assert_eq!(l.maps.procs[&3].0, 0, "slot 0 reused");
    // Updating a process keeps its slot and does not leak references.
    assert!(l.update_process(3, &m, resolver(ROWS)));
    assert_eq!(l.tables.values().map(|t| t.refs).sum::<u32>(), 2);
}

#[test]
fn free_list_coalesces() {
    let mut f = FreeList::new(100);
    let a = f.alloc(30).unwrap();
    let b = f.alloc(30).unwrap();
    let c = f.alloc(40).unwrap();
    assert_eq!(f.alloc(1), None);
    f.release(a, 30);
    f.release(c, 40);
    assert_eq!(f.alloc(50), None);
    f.release(b, 30);
    assert_eq!(f.alloc(100), Some(0));
}

#[test]
fn real_libc_table_through_the_loader() {
    // Our own process maps libc: compile it for real and check the registered bias
    // lands every libc code address inside the table's rows.
    let mut procs = crate::capture::procs::ProcessTable::default();
    let pid = std::process::id();
    let p = procs.ensure(pid).unwrap();
    let mappings = p.mappings.clone();
    let mut l = UnwindLoader::new(FakeMaps {
        rows: vec![UnwindRow::default(); 4 << 20],
        slots: 4,
        ..Default::default()
    });
    let binaries = &procs.binaries;
    assert!(l.update_process(pid, &mappings, |id| {
        binaries.get(id).map(|b| BinaryRef {
            path: b.open_path(),
            build_id: b.build_id.clone(),
        })
    }));
    let info = l.maps.procs[&pid].1;
    let addr = libc::getpid as *const () as u64;
    let m = info.mappings[..info.len as usize]
        .iter()
        .find(|m| m.start <= addr && addr < m.end)
        .expect("libc is mapped");
    assert!(m.table_len > 1000);
    let rel = addr.wrapping_sub(m.bias);
    let rows = &l.maps.rows[m.table_start as usize..(m.table_start + m.table_len) as usize];
    assert!(
        rel < u64::from(rows.last().unwrap().pc),
        "{rel:#x} inside the table"
    );
    assert!(rel >= u64::from(rows[0].pc));
}

#[test]
fn a_table_resolved_for_a_process_is_not_evicted_by_its_next_mapping() {
    // 450 rows: binary 0 (100) fits, binary 3 (400) only if binary 0 were evicted. It is
    // in use by the process being registered, so binary 3 falls back to frame pointers.
    let mut l = loader(450, 8);
    assert!(l.update_process(
        10,
        &[mapping(0x1000, Some(0)), mapping(0x20_0000, Some(3))],
        resolver(ROWS)
    ));
    let info = l.maps.procs[&10].1;
    assert_eq!(
        (info.mappings[0].table_len, info.mappings[1].table_len),
        (100, 0)
    );
    assert_eq!(l.stats().over_cap, 1);
}

#[test]
fn every_write_of_a_process_has_a_new_generation() {
    // The kernel side caches rows per (generation, pc): a rewrite of a process (exec,
    // dlopen, a slot reused by another process) must never keep an old generation.
    let mut l = loader(1000, 1);
    let maps = [mapping(0x7f00_0000_1000, Some(0))];
    assert!(l.update_process(10, &maps, resolver(ROWS)));
    let first = l.maps.procs[&10].1.generation;
    assert!(l.update_process(10, &maps, resolver(ROWS)));
    let second = l.maps.procs[&10].1.generation;
    l.remove_process(10);
    assert!(l.update_process(11, &maps, resolver(ROWS)));
    let (slot, info) = l.maps.procs[&11];
    assert_eq!(slot, 0, "the only slot is reused");
    let gens = [first, second, info.generation];
    assert!(gens.iter().all(|&g| g != 0), "{gens:?}");
    assert!(first != second && second != info.generation && first != info.generation);
}
