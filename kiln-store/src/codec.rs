//! Byte encodings of what the store writes: varints, length-prefixed strings, and sample
//! blocks.
//!
//! A *sample block* holds one row's `(stack id, value)` pairs, sorted by stack id, in a
//! columnar layout: `varint n, varint scale, n x varint stack-id delta, n x varint
//! value/scale`. `scale` is the GCD of the values, so CPU time in nanoseconds sampled at
//! a fixed period (every value a multiple of 10 ms) costs one or two bytes per value.

use crate::error::CorruptError;

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, CorruptError> {
    let mut v = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(*pos).ok_or(CorruptError::Truncated)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(CorruptError::VarintOverflow);
        }
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(CorruptError::VarintOverflow);
        }
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn get_str(buf: &[u8], pos: &mut usize) -> Result<String, CorruptError> {
    let len = get_varint(buf, pos)? as usize;
    let end = pos.checked_add(len).ok_or(CorruptError::Truncated)?;
    let bytes = buf.get(*pos..end).ok_or(CorruptError::Truncated)?;
    *pos = end;
    String::from_utf8(bytes.to_vec()).map_err(|_| CorruptError::Utf8)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Encodes sorted, duplicate-free pairs with non-zero values.
pub fn encode_block(pairs: &[(u32, u64)]) -> Vec<u8> {
    debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
    let scale = pairs.iter().fold(0, |g, p| gcd(g, p.1)).max(1);
    let mut out = Vec::with_capacity(4 + pairs.len() * 3);
    put_varint(&mut out, pairs.len() as u64);
    put_varint(&mut out, scale);
    let mut prev = 0u32;
    for &(s, _) in pairs {
        put_varint(&mut out, u64::from(s - prev));
        prev = s;
    }
    for &(_, v) in pairs {
        put_varint(&mut out, v / scale);
    }
    out
}

/// Calls `f(stack, value)` for each pair of an encoded block, without allocating.
pub fn for_each_pair(buf: &[u8], mut f: impl FnMut(u32, u64)) -> Result<(), CorruptError> {
    let mut pos = 0;
    let n = get_varint(buf, &mut pos)? as usize;
    let scale = get_varint(buf, &mut pos)?;
    if n > buf.len() {
        return Err(CorruptError::Truncated);
    }
    let mut vpos = pos;
    // Skip the ids to find where the values start.
    for _ in 0..n {
        get_varint(buf, &mut vpos)?;
    }
    let mut stack = 0u64;
    for _ in 0..n {
        stack += get_varint(buf, &mut pos)?;
        let v = get_varint(buf, &mut vpos)?;
        let stack = u32::try_from(stack).map_err(|_| CorruptError::IdOverflow)?;
        f(stack, v.saturating_mul(scale));
    }
    Ok(())
}

pub fn decode_block(buf: &[u8]) -> Result<Vec<(u32, u64)>, CorruptError> {
    let mut out = Vec::new();
    for_each_pair(buf, |s, v| out.push((s, v)))?;
    Ok(out)
}

/// Merges two sorted pair lists, summing values of equal stacks.
pub fn merge_pairs(a: &[(u32, u64)], b: &[(u32, u64)]) -> Vec<(u32, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Sorts pairs by stack and sums duplicates; drops zero values.
pub fn normalize(pairs: &mut Vec<(u32, u64)>) {
    pairs.sort_unstable_by_key(|p| p.0);
    let mut w = 0;
    for r in 0..pairs.len() {
        if pairs[r].1 == 0 {
            continue;
        }
        if w > 0 && pairs[w - 1].0 == pairs[r].0 {
            pairs[w - 1].1 = pairs[w - 1].1.saturating_add(pairs[r].1);
        } else {
            pairs[w] = pairs[r];
            w += 1;
        }
    }
    pairs.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn block_round_trip_and_scale() {
        let pairs = vec![(1, 10_000_000), (5, 20_000_000), (900, 30_000_000)];
        let b = encode_block(&pairs);
        assert!(b.len() <= 2 + 4 + 6, "{} bytes", b.len());
        assert_eq!(decode_block(&b).unwrap(), pairs);
    }

    #[test]
    fn merge_and_normalize() {
        let m = merge_pairs(&[(1, 1), (3, 3)], &[(2, 2), (3, 4)]);
        assert_eq!(m, vec![(1, 1), (2, 2), (3, 7)]);
        let mut v = vec![(3, 1), (1, 0), (3, 2), (2, 5)];
        normalize(&mut v);
        assert_eq!(v, vec![(2, 5), (3, 3)]);
    }

    proptest! {
        #[test]
        fn blocks_round_trip(mut pairs in proptest::collection::vec((any::<u32>(), 1u64..u64::MAX / 2), 0..200)) {
            normalize(&mut pairs);
            let b = encode_block(&pairs);
            prop_assert_eq!(decode_block(&b).unwrap(), pairs);
        }

        #[test]
        fn garbage_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_block(&bytes);
        }
    }
}
