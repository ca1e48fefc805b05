//! Goroutine pprof labels of unmodified Go programs, read at sample time.
//!
//! thread pointer (fsbase) → g (TLS) → g.m → m.curg → curg.labels. `m.curg` rather than
//! the TLS g itself, because on the system stack, in cgo or in a signal handler the TLS
//! g is g0/gsignal while `curg` is still the user goroutine (Go's own profiler does the
//! same). The label set is read on every sample and stored once per buffer under a hash
//! of its contents (addresses of freed sets are reused by later ones).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_loop, bpf_probe_read_user as probe_read_user_raw},
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use profiler_common::{
    defaults, GoLabelSetKey, GoLabels, GoOffsets, Stat, GO_KEY_LEN, GO_LABELS_SLICE, GO_MAX_LABELS,
    GO_VALUE_LEN,
};

#[map]
static GO_PROCS: HashMap<u32, GoOffsets> = HashMap::with_max_entries(defaults::GO_PROCS_ENTRIES, 0);
#[map]
static GO_LABEL_SETS_0: HashMap<GoLabelSetKey, GoLabels> =
    HashMap::with_max_entries(defaults::GO_LABEL_SETS_ENTRIES, 0);
#[map]
static GO_LABEL_SETS_1: HashMap<GoLabelSetKey, GoLabels> =
    HashMap::with_max_entries(defaults::GO_LABEL_SETS_ENTRIES, 0);

/// Go <= 1.23 map buckets: 8 tophash bytes, 8 string keys, 8 string values, overflow.
const BUCKET_SIZE: usize = 272;
const BUCKET_KEYS: usize = 8;
const BUCKET_VALUES: usize = 136;
/// tophash values below this mark empty or evacuated slots.
const MIN_TOP_HASH: u8 = 5;
/// Buckets walked: 1 << B for B <= 2, i.e. up to ~26 labels before the map grows further;
/// overflow buckets and a map mid-growth are ignored (see docs/ARCHITECTURE.md).
const MAX_BUCKETS: u64 = 4;

#[repr(C)]
struct Scratch {
    labels: GoLabels,
    /// One map bucket (272 bytes), as words: every field we read is 8-byte aligned in it.
    /// 64 words so that a masked index is always in bounds.
    bucket: [u64; 64],
    /// State of the `bpf_loop` walks below. In map memory rather than on the stack, so
    /// the verifier checks each callback about once (see the unwinder's `Walk`).
    table: u64,
    table_len: u64,
    failed: u32,
    _pad: u32,
}

/// Per-CPU scratch: the label set and a bucket are too big for the 512-byte BPF stack.
#[map]
static GO_SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn read_u64(addr: u64) -> Result<u64, ()> {
    unsafe { bpf_probe_read_user(addr as *const u64) }.map_err(|_| ())
}

/// Copies at most `CAP - 1` bytes of a Go string and NUL-terminates it.
#[inline(always)]
fn read_str<const CAP: usize>(dst: &mut [u8; CAP], ptr: u64, len: u64) -> Result<(), ()> {
    // A plain clamp, not a mask: CAP - 1 is no bit mask when CAP is not a power of two
    // (values are 48 bytes: `& 47` turned a 20-byte value into its first 4 bytes).
    let n = if len > (CAP - 1) as u64 {
        CAP - 1
    } else {
        len as usize
    };
    if n > 0 {
        let rc = unsafe { probe_read_user_raw(dst.as_mut_ptr().cast(), n as u32, ptr as *const _) };
        if rc != 0 {
            return Err(());
        }
    }
    if let Some(end) = dst.get_mut(n) {
        *end = 0;
    }
    Ok(())
}

/// The label-set address for the current goroutine of `tgid` (0 = none), after making
/// sure the set itself is in `GO_LABEL_SETS_{buffer}`.
#[inline(always)]
pub fn current_labels(tgid: u32, buffer: u32, count: impl Fn(Stat)) -> u64 {
    let Some(offsets) = (unsafe { GO_PROCS.get(&tgid) }) else {
        return 0;
    };
    if !crate::task::fsbase_known() {
        return 0;
    }
    match read_labels(tgid, buffer, offsets) {
        Ok(addr) => addr,
        Err(stat) => {
            count(stat);
            0
        }
    }
}

#[inline(always)]
fn read_labels(tgid: u32, buffer: u32, o: &GoOffsets) -> Result<u64, Stat> {
    let unreadable = |_| Stat::GoLabelsUnreadable;
    let fsbase = crate::task::current_fsbase().ok_or(Stat::GoLabelsUnreadable)?;
    if fsbase == 0 {
        return Ok(0);
    }
    let g = read_u64((fsbase as i64 + o.tls_offset) as u64).map_err(unreadable)?;
    if g == 0 {
        // A thread Go does not run (a C thread of a cgo program).
        return Ok(0);
    }
    let m = read_u64(g + o.g_m as u64).map_err(unreadable)?;
    if m == 0 {
        return Ok(0);
    }
    let curg = read_u64(m + o.m_curg as u64).map_err(unreadable)?;
    if curg == 0 {
        // Scheduling: no user goroutine, so no labels.
        return Ok(0);
    }
    let labels = read_u64(curg + o.g_labels as u64).map_err(unreadable)?;
    if labels == 0 {
        return Ok(0);
    }
    // The set is read on every sample and named by a hash of its contents, not by its
    // address: once a label set is garbage, Go reuses its memory for the next one, so
    // an address seen earlier in the same buffer may now hold other labels.
    let scratch = GO_SCRATCH.get_ptr_mut(0).ok_or(Stat::GoLabelsUnreadable)?;
    let scratch = unsafe { &mut *scratch };
    let words = (&mut scratch.labels as *mut GoLabels).cast::<u64>();
    for i in 0..LABELS_WORDS {
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    if o.labels_format == GO_LABELS_SLICE {
        read_slice(labels).map_err(unreadable)?;
    } else {
        read_map(labels).map_err(unreadable)?;
    }
    if unsafe { core::ptr::read_volatile(&scratch.labels.count) } == 0 {
        return Ok(0);
    }
    let words = (&scratch.labels as *const GoLabels).cast::<u64>();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..LABELS_WORDS {
        hash = (hash ^ unsafe { core::ptr::read_volatile(words.add(i)) })
            .wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hash = hash | 1;
    let key = GoLabelSetKey {
        tgid,
        _pad: 0,
        labels_hash: hash,
    };
    let sets = if buffer == 0 {
        &GO_LABEL_SETS_0
    } else {
        &GO_LABEL_SETS_1
    };
    if unsafe { sets.get(&key) }.is_none() && sets.insert(&key, &scratch.labels, 0).is_err() {
        return Err(Stat::GoLabelSetsFull);
    }
    Ok(hash)
}

/// `GoLabels` as 64-bit words (for zeroing and hashing).
const LABELS_WORDS: usize = core::mem::size_of::<GoLabels>() / 8;
const _: () = assert!(core::mem::size_of::<GoLabels>() % 8 == 0);

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch> {
    Some(unsafe { &mut *GO_SCRATCH.get_ptr_mut(0)? })
}

/// Whether a callback of the last walk failed. Read through a fresh lookup: the
/// callbacks wrote it behind the compiler's back.
#[inline(always)]
fn loop_failed() -> Result<(), ()> {
    match scratch() {
        Some(s) if unsafe { core::ptr::read_volatile(&s.failed) } == 0 => Ok(()),
        _ => Err(()),
    }
}

/// Go >= 1.24: `labels` points at a slice header of `{key, value string}` pairs, sorted
/// by key; the walk's `table` = its data pointer, `table_len` = its length.
#[inline(always)]
fn read_slice(labels: u64) -> Result<(), ()> {
    let scratch = scratch().ok_or(())?;
    scratch.table = read_u64(labels)?;
    scratch.table_len = read_u64(labels + 8)?;
    scratch.failed = 0;
    unsafe {
        bpf_loop(
            GO_MAX_LABELS as u32,
            slice_label as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    loop_failed()
}

extern "C" fn slice_label(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = scratch() else { return 1 };
    if i >= scratch.table_len {
        return 1;
    }
    // One LabelPair: key (ptr, len), value (ptr, len).
    let pair: [u64; 4] = match unsafe { bpf_probe_read_user((scratch.table + i * 32) as *const _) }
    {
        Ok(p) => p,
        Err(_) => {
            scratch.failed = 1;
            return 1;
        }
    };
    if store(&mut scratch.labels, pair[0], pair[1], pair[2], pair[3]).is_err() {
        scratch.failed = 1;
        return 1;
    }
    0
}

/// Go <= 1.23: `labels` points at a `map[string]string` variable, which points at its
/// hmap; the walk's `table` = its buckets, `table_len` = how many.
#[inline(always)]
fn read_map(labels: u64) -> Result<(), ()> {
    let scratch = scratch().ok_or(())?;
    let hmap = read_u64(labels)?;
    if hmap == 0 {
        return Ok(());
    }
    let log2_buckets: u8 =
        unsafe { bpf_probe_read_user((hmap + 9) as *const u8) }.map_err(|_| ())?;
    scratch.table = read_u64(hmap + 16)?;
    scratch.table_len = (1u64 << (log2_buckets & 7)).min(MAX_BUCKETS);
    scratch.failed = 0;
    unsafe {
        bpf_loop(
            (MAX_BUCKETS * 8) as u32,
            map_slot as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    loop_failed()
}

/// Slot `i % 8` of bucket `i / 8`; reads the bucket at its first slot.
extern "C" fn map_slot(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(scratch) = scratch() else { return 1 };
    let (b, slot) = (i / 8, (i % 8) as usize);
    if b >= scratch.table_len {
        return 1;
    }
    if slot == 0 {
        let rc = unsafe {
            probe_read_user_raw(
                scratch.bucket.as_mut_ptr().cast(),
                BUCKET_SIZE as u32,
                (scratch.table + b * BUCKET_SIZE as u64) as *const _,
            )
        };
        if rc != 0 {
            scratch.failed = 1;
            return 1;
        }
    }
    let tophash = (scratch.bucket[0] >> (8 * slot)) as u8;
    if tophash < MIN_TOP_HASH {
        return 0;
    }
    let word = |base: usize, w: usize| scratch.bucket[(base / 8 + slot * 2 + w) & 63];
    let (kptr, klen) = (word(BUCKET_KEYS, 0), word(BUCKET_KEYS, 1));
    let (vptr, vlen) = (word(BUCKET_VALUES, 0), word(BUCKET_VALUES, 1));
    if store(&mut scratch.labels, kptr, klen, vptr, vlen).is_err() {
        scratch.failed = 1;
        return 1;
    }
    0
}

#[inline(always)]
fn store(out: &mut GoLabels, kptr: u64, klen: u64, vptr: u64, vlen: u64) -> Result<(), ()> {
    let i = out.count as usize;
    if i >= GO_MAX_LABELS {
        return Ok(());
    }
    read_str::<GO_KEY_LEN>(&mut out.keys[i], kptr, klen)?;
    read_str::<GO_VALUE_LEN>(&mut out.values[i], vptr, vlen)?;
    out.count += 1;
    Ok(())
}
