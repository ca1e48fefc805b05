//! The per-agent cap on new series: a host whose label values churn (short-lived
//! programs with generated names, a misconfigured relabel rule copying a pid) must not
//! flood the store or a Pyroscope tenant with series. Each window may start at most
//! `max_new_per_window` series not seen recently; the samples of the rest are dropped
//! and counted (`kiln_series_limited_total`, `kiln_samples_series_limited_total`).
//!
//! "Seen recently" is a map from series key to the last window that exported it; a
//! series idle for [`FORGET_AFTER_WINDOWS`] windows is forgotten (and counts as new
//! again). The map is bounded by the series of the last `FORGET_AFTER_WINDOWS` windows,
//! at most `max_new_per_window` of them added per window.

use std::collections::HashMap;

/// Windows after which an idle series counts as new again (10 minutes of 15 s windows).
pub const FORGET_AFTER_WINDOWS: u64 = 40;

/// Default of `--max-new-series-per-window`: far above a host's steady churn (a new
/// service or container now and then), far below what would hurt a store.
pub const DEFAULT_MAX_NEW_SERIES_PER_WINDOW: usize = 500;

#[derive(Debug)]
pub struct SeriesLimiter {
    max_new_per_window: usize,
    /// Series key -> last window that exported it.
    known: HashMap<u64, u64>,
}

/// What [`SeriesLimiter::admit`] decided for one window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Indices (into the caller's list) of the series to export.
    pub admitted: Vec<usize>,
    /// New series refused, and their samples.
    pub limited_series: u64,
    pub limited_samples: u64,
}

impl SeriesLimiter {
    pub fn new(max_new_per_window: usize) -> Self {
        Self {
            max_new_per_window,
            known: HashMap::new(),
        }
    }

    /// Decides which of this window's series (key, samples) are exported: all known ones,
    /// and the new ones with the most samples up to the cap. Then forgets series idle for
    /// too long.
    pub fn admit(&mut self, window: u64, series: &[(u64, u64)]) -> Admission {
        let mut out = Admission::default();
        let mut new: Vec<usize> = Vec::new();
        for (i, &(key, _)) in series.iter().enumerate() {
            if let Some(last) = self.known.get_mut(&key) {
                *last = window;
                out.admitted.push(i);
            } else {
                new.push(i);
            }
        }
        // The biggest new series first: a cap should cost the fewest samples.
        new.sort_by_key(|&i| std::cmp::Reverse(series[i].1));
        for (n, i) in new.into_iter().enumerate() {
            if n < self.max_new_per_window {
                self.known.insert(series[i].0, window);
                out.admitted.push(i);
            } else {
                out.limited_series += 1;
                out.limited_samples += series[i].1;
            }
        }
        self.known
            .retain(|_, last| window.saturating_sub(*last) < FORGET_AFTER_WINDOWS);
        out
    }

    /// Series currently remembered.
    pub fn known(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_series_beyond_the_cap_are_refused_and_counted() {
        let mut l = SeriesLimiter::new(2);
        // Window 0: four new series; the two biggest pass.
        let a = l.admit(0, &[(1, 10), (2, 50), (3, 5), (4, 40)]);
        let mut admitted: Vec<u64> = a.admitted.iter().map(|&i| [1, 2, 3, 4][i]).collect();
        admitted.sort();
        assert_eq!(admitted, vec![2, 4]);
        assert_eq!((a.limited_series, a.limited_samples), (2, 15));
        // Window 1: known ones always pass; two new slots again.
        let a = l.admit(1, &[(2, 1), (4, 1), (1, 1), (3, 1), (5, 1)]);
        assert_eq!(a.admitted.len(), 4);
        assert_eq!(a.limited_series, 1);
        assert_eq!(l.known(), 4);
    }

    #[test]
    fn idle_series_are_forgotten_so_memory_stays_bounded() {
        let mut l = SeriesLimiter::new(1000);
        for w in 0..200u64 {
            // Every window, 100 series never seen again (churning names).
            let series: Vec<(u64, u64)> = (0..100).map(|i| (w * 1000 + i, 1)).collect();
            let a = l.admit(w, &series);
            assert_eq!(a.admitted.len(), 100);
            assert!(l.known() <= 100 * FORGET_AFTER_WINDOWS as usize);
        }
        // A series seen at window 0 and idle since is new again.
        let mut l = SeriesLimiter::new(0);
        assert_eq!(l.admit(0, &[(7, 1)]).limited_series, 1);
        let mut l = SeriesLimiter::new(1);
        l.admit(0, &[(7, 1)]);
        l.admit(FORGET_AFTER_WINDOWS, &[]);
        assert_eq!(l.known(), 0);
    }
}
