//! Parsing of the times, durations and sizes that query strings and flags carry.
//!
//! Times: unix seconds (`1700000000`), unix milliseconds (`1700000000000`, any number
//! above 10^11), `now`, `now-<duration>` (`now-1h`, `now-15m`, `now-7d`), and also
//! `now+<duration>`. Durations: an integer with unit `ms`, `s`, `m`, `h`, `d`, `w`, or
//! several (`1h30m`).

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimeError {
    #[error(
        "invalid time {0:?}: expected unix seconds, unix ms, now or now-<duration> (e.g. now-1h)"
    )]
    Time(String),
    #[error("invalid duration {0:?}: expected e.g. 30s, 15m, 1h, 7d, 1h30m")]
    Duration(String),
    #[error("invalid size {0:?}: expected e.g. 500MB, 10GiB, 4194304")]
    Size(String),
}

const NS: i64 = 1_000_000_000;

/// Parses a duration into nanoseconds.
pub fn parse_duration_nanos(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError::Duration(s.to_owned());
    let s = s.trim();
    if s.is_empty() {
        return Err(err());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let mult = match &rest[..unit_len] {
            "ns" => 1,
            "us" => 1_000,
            "ms" => 1_000_000,
            "s" => NS,
            "m" => 60 * NS,
            "h" => 3600 * NS,
            "d" => 86400 * NS,
            "w" => 7 * 86400 * NS,
            "y" => 365 * 86400 * NS,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, TimeError> {
    parse_duration_nanos(s).map(|n| std::time::Duration::from_nanos(n as u64))
}

/// Parses a time into unix nanoseconds, relative to `now_nanos`.
pub fn parse_time(s: &str, now_nanos: i64) -> Result<i64, TimeError> {
    let t = s.trim();
    let err = || TimeError::Time(s.to_owned());
    if t == "now" {
        return Ok(now_nanos);
    }
    if let Some(rest) = t.strip_prefix("now-") {
        return Ok(now_nanos.saturating_sub(parse_duration_nanos(rest).map_err(|_| err())?));
    }
    if let Some(rest) = t.strip_prefix("now+") {
        return Ok(now_nanos.saturating_add(parse_duration_nanos(rest).map_err(|_| err())?));
    }
    let n: i64 = t.parse().map_err(|_| err())?;
    if n < 0 {
        return Err(err());
    }
    // Unix ms from 1973 on are > 10^11; unix seconds stay below it until year 5138.
    Ok(if n > 100_000_000_000 {
        n.saturating_mul(1_000_000)
    } else {
        n.saturating_mul(NS)
    })
}

/// Parses a byte size: plain bytes, or with KB/MB/GB/TB (10^3) or KiB/MiB/GiB/TiB (2^10).
pub fn parse_size(s: &str) -> Result<u64, TimeError> {
    let err = || TimeError::Size(s.to_owned());
    let t = s.trim();
    let digits = t.bytes().take_while(|c| c.is_ascii_digit()).count();
    let n: u64 = t[..digits].parse().map_err(|_| err())?;
    let mult: u64 = match t[digits..].trim() {
        "" | "B" => 1,
        "K" | "KB" | "k" | "kB" => 1_000,
        "KiB" | "Ki" => 1 << 10,
        "M" | "MB" => 1_000_000,
        "MiB" | "Mi" => 1 << 20,
        "G" | "GB" => 1_000_000_000,
        "GiB" | "Gi" => 1 << 30,
        "T" | "TB" => 1_000_000_000_000,
        "TiB" | "Ti" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times() {
        let now = 1_700_000_000 * NS;
        assert_eq!(parse_time("now", now).unwrap(), now);
        assert_eq!(parse_time("now-1h", now).unwrap(), now - 3600 * NS);
        assert_eq!(parse_time("now-15m", now).unwrap(), now - 900 * NS);
        assert_eq!(parse_time("now-7d", now).unwrap(), now - 7 * 86400 * NS);
        assert_eq!(parse_time("1700000000", now).unwrap(), now);
        assert_eq!(parse_time("1700000000000", now).unwrap(), now);
        for bad in ["", "yesterday", "now-", "now-1x", "-5", "1.5"] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86400);
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("1XB").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_time(&s, 0);
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }
    }
}
