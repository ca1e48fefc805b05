//! Goroutine pprof labels of unmodified Go programs, read at sample time.
//!
//! thread pointer (fsbase) → g (TLS) → g.m → m.curg → curg.labels. `m.curg` rather than
//! the TLS g itself, because on the system stack, in cgo or in a signal handler the TLS
//! g is g0/gsignal while `curg` is still the user goroutine (Go's own profiler does the
//! same). The label set is read on every sample and stored once per buffer under a hash
//! of its contents (addresses of freed sets are reused by later ones).

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_task, bpf_probe_read_user as probe_read_user_raw},
    },
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use profiler_common::{
    defaults, GoLabelSetKey, GoLabels, GoOffsets, Stat, GO_KEY_LEN, GO_LABELS_SLICE, GO_MAX_LABELS,
    GO_VALUE_LEN,
};

/// Set by the loader from the kernel's BTF; 0 disables label reading.
#[no_mangle]
static FSBASE_OFFSET: u64 = 0;

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
    bucket: [u8; BUCKET_SIZE],
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
    let fsbase_offset = unsafe { core::ptr::read_volatile(&FSBASE_OFFSET) };
    if fsbase_offset == 0 {
        return 0;
    }
    match read_labels(tgid, buffer, offsets, fsbase_offset) {
        Ok(addr) => addr,
        Err(stat) => {
            count(stat);
            0
        }
    }
}

#[inline(always)]
fn read_labels(tgid: u32, buffer: u32, o: &GoOffsets, fsbase_offset: u64) -> Result<u64, Stat> {
    let unreadable = |_| Stat::GoLabelsUnreadable;
    let task = unsafe { bpf_get_current_task() };
    let fsbase: u64 = unsafe { bpf_probe_read_kernel((task + fsbase_offset) as *const u64) }
        .map_err(|_| Stat::GoLabelsUnreadable)?;
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
        read_slice(labels, &mut scratch.labels).map_err(unreadable)?;
    } else {
        read_map(labels, scratch).map_err(unreadable)?;
    }
    if scratch.labels.count == 0 {
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
        labels_addr: hash,
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

/// Go >= 1.24: `labels` points at a slice header of `{key, value string}`, sorted by key.
#[inline(always)]
fn read_slice(labels: u64, out: &mut GoLabels) -> Result<(), ()> {
    let ptr = read_u64(labels)?;
    let len = read_u64(labels + 8)?;
    for i in 0..GO_MAX_LABELS {
        if i as u64 >= len {
            break;
        }
        let elem = ptr + i as u64 * 32;
        let kptr = read_u64(elem)?;
        let klen = read_u64(elem + 8)?;
        let vptr = read_u64(elem + 16)?;
        let vlen = read_u64(elem + 24)?;
        store(out, kptr, klen, vptr, vlen)?;
    }
    Ok(())
}

/// Go <= 1.23: `labels` points at a `map[string]string` variable, which points at its hmap.
#[inline(always)]
fn read_map(labels: u64, scratch: &mut Scratch) -> Result<(), ()> {
    let hmap = read_u64(labels)?;
    if hmap == 0 {
        return Ok(());
    }
    let log2_buckets: u8 =
        unsafe { bpf_probe_read_user((hmap + 9) as *const u8) }.map_err(|_| ())?;
    let buckets = read_u64(hmap + 16)?;
    let n_buckets = 1u64 << (log2_buckets & 7);
    for b in 0..MAX_BUCKETS {
        if b >= n_buckets {
            break;
        }
        let rc = unsafe {
            probe_read_user_raw(
                scratch.bucket.as_mut_ptr().cast(),
                BUCKET_SIZE as u32,
                (buckets + b * BUCKET_SIZE as u64) as *const _,
            )
        };
        if rc != 0 {
            return Err(());
        }
        for slot in 0..8 {
            if scratch.bucket[slot] < MIN_TOP_HASH {
                continue;
            }
            let field = |base: usize, word: usize| -> u64 {
                let at = base + slot * 16 + word * 8;
                let mut v = [0u8; 8];
                v.copy_from_slice(&scratch.bucket[at..at + 8]);
                u64::from_le_bytes(v)
            };
            let (kptr, klen) = (field(BUCKET_KEYS, 0), field(BUCKET_KEYS, 1));
            let (vptr, vlen) = (field(BUCKET_VALUES, 0), field(BUCKET_VALUES, 1));
            store(&mut scratch.labels, kptr, klen, vptr, vlen)?;
        }
    }
    Ok(())
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
