//! Rates and medians.

use super::workload::Sample;

/// Throughput in [from, to], interpolating the 100 ms reports.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Rate {
    /// Operations per wall-clock second.
    pub(super) wall: f64,
    /// Operations per second of the workload's own CPU time.
    pub(super) cpu: f64,
}

pub(super) fn rate(trace: &[Sample], from: u64, to: u64) -> Option<Rate> {
    let at = |t: u64| -> Option<(f64, f64)> {
        let i = trace.iter().position(|&(ns, _, _)| ns >= t)?;
        if i == 0 {
            return (trace[0].0 == t).then_some((trace[0].1 as f64, trace[0].2 as f64));
        }
        let ((t0, o0, c0), (t1, o1, c1)) = (trace[i - 1], trace[i]);
        let f = (t - t0) as f64 / (t1 - t0) as f64;
        Some((
            o0 as f64 + (o1 - o0) as f64 * f,
            c0 as f64 + (c1 - c0) as f64 * f,
        ))
    };
    let ((o0, c0), (o1, c1)) = (at(from)?, at(to)?);
    (to > from && c1 > c0).then(|| Rate {
        wall: (o1 - o0) / ((to - from) as f64 / 1e9),
        cpu: (o1 - o0) / ((c1 - c0) / 1e9),
    })
}

pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
