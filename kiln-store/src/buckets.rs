//! Time arithmetic of the rollup levels: their bucket sizes, rounding to a bucket, and the
//! largest time accepted. Used by the series index (time ranges of rollup rows), rollups,
//! ingest (time checks), queries and maintenance.

/// One second in nanoseconds.
pub const NS: i64 = 1_000_000_000;
/// Bucket sizes (ns) of levels 1, 2, 3.
pub const LEVELS: [i64; 3] = [300 * NS, 3600 * NS, 86400 * NS];
/// Largest time accepted (year ~2116), so bucket arithmetic cannot overflow.
pub const MAX_TIME: i64 = 1 << 62;

/// Bucket size (ns) of rollup level 1..=3.
pub fn size(level: u8) -> i64 {
    LEVELS[level as usize - 1]
}

/// Start of the `step`-sized bucket holding `t`.
pub fn floor(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// `t` rounded up to a multiple of `step`.
pub fn ceil(t: i64, step: i64) -> i64 {
    let f = floor(t, step);
    if f == t {
        t
    } else {
        f.saturating_add(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_ceil_negative() {
        assert_eq!(floor(-1, 10), -10);
        assert_eq!(ceil(-1, 10), 0);
        assert_eq!(ceil(10, 10), 10);
    }
}
