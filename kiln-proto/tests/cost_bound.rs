//! The decode-cost estimate is an upper bound of what prost really allocates: measured
//! with a counting allocator while decoding realistic and hostile bodies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kiln_proto::cost::{cost, PROFILE, PUSH_REQUEST};
use kiln_proto::pprof::{Label, Profile, Sample};
use kiln_proto::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use prost::Message;

struct Counting;
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
/// Tests run on several threads and the count is global: one test at a time.
static ONE: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as u64, Ordering::SeqCst) + l.size() as u64;
        PEAK.fetch_max(now, Ordering::SeqCst);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Ordering::SeqCst);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let base = LIVE.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    let out = f();
    (PEAK.load(Ordering::SeqCst) - base, out)
}

fn check_profile(bytes: &[u8]) -> (u64, u64) {
    let c = cost(bytes, &PROFILE).unwrap();
    let (peak, p) = peak_of(|| Profile::decode(bytes).unwrap());
    assert_eq!(c.samples(), p.sample.len() as u64);
    assert!(
        peak <= c.heap_bytes,
        "decoding allocated {peak} bytes, estimated {}",
        c.heap_bytes
    );
    drop(p);
    (peak, c.heap_bytes)
}

#[test]
fn realistic_profile_is_bounded_and_not_wildly_over() {
    let _g = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut b =
        kiln_proto::ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 10);
    for i in 0..5000u64 {
        let locs: Vec<u64> = (0..(i % 40 + 1))
            .map(|d| {
                b.location(
                    0,
                    0,
                    &[kiln_proto::builder::FrameSpec {
                        name: &format!("fn_{}_{d}", i % 300),
                        filename: "main.go",
                        line: d as i64,
                    }],
                )
            })
            .collect();
        b.add_sample(&locs, &[i as i64], &[("thread", "main")]);
    }
    let bytes = b.build().encode_to_vec();
    let (peak, est) = check_profile(&bytes);
    assert!(
        est < peak * 4,
        "estimate {est} is far above the real {peak}"
    );
}

#[test]
fn hostile_empty_samples_are_bounded() {
    let _g = ONE.lock().unwrap_or_else(|e| e.into_inner());
    // 2 bytes per sample on the wire, a 72-byte struct decoded.
    let bytes = [0x12u8, 0x00].repeat(200_000);
    let (peak, _) = check_profile(&bytes);
    assert!(
        peak > 100 * bytes.len() as u64 / 10,
        "the attack this guards against"
    );
    // Samples with labels and unpacked ids.
    let s = Sample {
        location_id: vec![1],
        value: vec![1],
        label: vec![Label::default(); 3],
    };
    let mut one = Vec::new();
    s.encode(&mut one).unwrap();
    let mut body = Vec::new();
    for _ in 0..20_000 {
        body.push(0x12);
        prost::encoding::encode_varint(one.len() as u64, &mut body);
        body.extend_from_slice(&one);
    }
    check_profile(&body);
    // Empty strings and locations.
    check_profile(&[0x32u8, 0x00, 0x22, 0x00].repeat(100_000));
}

#[test]
fn push_request_is_bounded() {
    let _g = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let req = PushRequest {
        series: (0..500)
            .map(|i| RawProfileSeries {
                labels: vec![LabelPair::default(); 30],
                samples: vec![RawSample {
                    raw_profile: vec![7; i],
                    id: String::new(),
                }],
                annotations: vec![],
            })
            .collect(),
    };
    let bytes = req.encode_to_vec();
    let c = cost(&bytes, &PUSH_REQUEST).unwrap();
    let (peak, r) = peak_of(|| PushRequest::decode(bytes.as_slice()).unwrap());
    assert_eq!(r.series.len(), 500);
    assert!(peak <= c.heap_bytes, "{peak} > {}", c.heap_bytes);
}
