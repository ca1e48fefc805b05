// Rust release workload without frame pointers for the DWARF unwinder:
//   main;run;task_deep;recurse x DEPTH;leaf   and   main;run;task_flat;leaf
// built with `rustc -O -C force-frame-pointers=no`. Measures its own thread CPU time:
//   rust_unwind <seconds>
// prints `ready` once started, then {"pid":..,"cpu":{"task_deep":s,"task_flat":s},"total":s}
use std::hint::black_box;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}
extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn now(clock: i32) -> f64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    unsafe { clock_gettime(clock, &mut ts) };
    ts.sec as f64 + ts.nsec as f64 / 1e9
}

#[inline(never)]
fn leaf(n: u64) -> u64 {
    let mut s = 0u64;
    for i in 0..n {
        s = s.wrapping_add(black_box(i) * 3);
    }
    s
}

#[inline(never)]
fn recurse(depth: u32, n: u64) -> u64 {
    if depth <= 1 {
        return black_box(leaf(n)) + 1;
    }
    let r = black_box(recurse(depth - 1, n));
    r.wrapping_add(depth as u64)
}

#[inline(never)]
fn task_deep(n: u64, spent: &mut f64) {
    let t = now(CLOCK_THREAD_CPUTIME_ID);
    black_box(recurse(black_box(70), n));
    *spent += now(CLOCK_THREAD_CPUTIME_ID) - t;
}

#[inline(never)]
fn task_flat(n: u64, spent: &mut f64) {
    let t = now(CLOCK_THREAD_CPUTIME_ID);
    black_box(leaf(n));
    *spent += now(CLOCK_THREAD_CPUTIME_ID) - t;
}

#[inline(never)]
fn run(seconds: f64, spent: &mut [f64; 2]) {
    let start = now(CLOCK_MONOTONIC);
    while now(CLOCK_MONOTONIC) - start < seconds {
        for _ in 0..3 {
            task_deep(300_000, &mut spent[0]);
        }
        for _ in 0..2 {
            task_flat(300_000, &mut spent[1]);
        }
    }
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let mut spent = [0.0; 2];
    // Readiness: past start-up, about to run the measured loop (println! flushes a line).
    println!("ready");
    let t0 = now(CLOCK_THREAD_CPUTIME_ID);
    run(seconds, &mut spent);
    let total = now(CLOCK_THREAD_CPUTIME_ID) - t0;
    println!(
        "{{\"pid\":{},\"cpu\":{{\"task_deep\":{:.6},\"task_flat\":{:.6}}},\"total\":{:.6}}}",
        std::process::id(),
        spent[0],
        spent[1],
        total
    );
}
