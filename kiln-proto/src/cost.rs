//! What decoding a message with prost will allocate, found by a walk of its wire format
//! that allocates nothing. A server uses it to refuse a hostile body *before* decoding it:
//! a 2-byte empty `Sample` decodes into a 72-byte struct, so a few MiB of them become
//! hundreds of MiB of heap.
//!
//! The estimate is an upper bound of the bytes prost requests from the allocator: each
//! repeated field's `Vec` is charged the capacity that pushing its elements one by one
//! reaches (a power of two, at least 4) plus the half-size buffer it grew from (both live
//! during the last realloc), plus a per-allocation overhead; strings and bytes their
//! length. Unknown fields and singular messages (decoded in place, holding only
//! integers in the schemas here) cost nothing.

use std::mem::size_of;

use crate::pprof;
use crate::push;

/// Bytes the allocator may add to each allocation (glibc's chunk header and rounding).
const ALLOC_OVERHEAD: u64 = 16;

/// How a field decodes.
#[derive(Clone, Copy)]
enum Kind {
    /// `Vec<M>`: each occurrence pushes a `size`-byte struct, whose own fields (when
    /// `inner` is given) may allocate too.
    RepeatedMessage {
        size: usize,
        inner: Option<&'static Schema>,
    },
    /// `Vec<u64>`/`Vec<i64>` of varints, packed or not.
    RepeatedVarint { size: usize },
    /// `String` / `Vec<u8>`.
    Bytes,
    /// `Vec<String>` / `Vec<Vec<u8>>`.
    RepeatedBytes,
}

/// The fields of a message that allocate, by field number; others are skipped.
pub struct Schema {
    fields: &'static [(u32, Kind)],
}

/// What a message would cost to decode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Upper bound of the heap bytes the decoded message holds.
    pub heap_bytes: u64,
    /// Occurrences of each top-level field, by position in the schema (for pprof's
    /// `Profile`, see [`Cost::samples`]).
    counts: [u64; MAX_FIELDS],
}

const MAX_FIELDS: usize = 8;

impl Cost {
    /// Top-level `sample` entries of a pprof `Profile` costed with [`PROFILE`].
    pub fn samples(&self) -> u64 {
        self.counts[PROFILE_SAMPLE_POSITION]
    }
}

/// Why a body is not a well-formed protobuf message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CostError {
    #[error("truncated protobuf message")]
    Truncated,
    #[error("invalid protobuf wire type {0}")]
    WireType(u64),
    #[error("protobuf varint is too long")]
    Varint,
}

/// The cost of decoding `buf` as the message `schema` describes.
pub fn cost(buf: &[u8], schema: &Schema) -> Result<Cost, CostError> {
    let mut c = Cost::default();
    c.heap_bytes = walk(buf, schema, Some(&mut c.counts))?;
    Ok(c)
}

fn vec_bytes(n: u64, elem: usize) -> u64 {
    if n == 0 {
        return 0;
    }
    let cap = n.max(4).next_power_of_two();
    // While growing to `cap`, the old buffer (cap / 2) is live until realloc copies it.
    (cap + cap / 2).saturating_mul(elem as u64) + ALLOC_OVERHEAD
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, CostError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos).ok_or(CostError::Truncated)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return Err(CostError::Varint);
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CostError::Varint)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: u64) -> Result<&'a [u8], CostError> {
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| pos.checked_add(l))
        .filter(|&e| e <= buf.len())
        .ok_or(CostError::Truncated)?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

/// Heap bytes of one message instance; `counts`, when given, receives the occurrences of
/// each of its fields.
fn walk(
    buf: &[u8],
    schema: &Schema,
    counts: Option<&mut [u64; MAX_FIELDS]>,
) -> Result<u64, CostError> {
    debug_assert!(schema.fields.len() <= MAX_FIELDS);
    let mut n = [0u64; MAX_FIELDS];
    let mut heap = 0u64;
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => {
                varint(buf, &mut pos)?;
                None
            }
            1 => Some(take(buf, &mut pos, 8)?),
            2 => {
                let len = varint(buf, &mut pos)?;
                Some(take(buf, &mut pos, len)?)
            }
            5 => Some(take(buf, &mut pos, 4)?),
            w => return Err(CostError::WireType(w)),
        };
        let Some(i) = schema
            .fields
            .iter()
            .position(|(f, _)| u64::from(*f) == field)
        else {
            continue;
        };
        let data = if wire == 2 { payload } else { None };
        match (schema.fields[i].1, data) {
            (Kind::RepeatedMessage { inner, .. }, Some(d)) => {
                n[i] += 1;
                if let Some(s) = inner {
                    heap = heap.saturating_add(walk(d, s, None)?);
                }
            }
            (Kind::RepeatedVarint { .. }, Some(d)) => {
                n[i] += d.iter().filter(|b| *b & 0x80 == 0).count() as u64;
            }
            (Kind::RepeatedVarint { .. }, None) if wire == 0 => n[i] += 1,
            (Kind::Bytes, Some(d)) => {
                heap = heap.saturating_add(d.len() as u64 + ALLOC_OVERHEAD);
            }
            (Kind::RepeatedBytes, Some(d)) => {
                n[i] += 1;
                heap = heap.saturating_add(d.len() as u64 + ALLOC_OVERHEAD);
            }
            // A wire type that does not match the field: prost refuses it when decoding.
            _ => {}
        }
    }
    for (i, (_, kind)) in schema.fields.iter().enumerate() {
        let elem = match kind {
            Kind::RepeatedMessage { size, .. } => *size,
            Kind::RepeatedVarint { size } => *size,
            Kind::RepeatedBytes => size_of::<String>(),
            Kind::Bytes => 0,
        };
        heap = heap.saturating_add(vec_bytes(n[i], elem));
    }
    if let Some(c) = counts {
        *c = n;
    }
    Ok(heap)
}

const fn repeated<T>(inner: Option<&'static Schema>) -> Kind {
    Kind::RepeatedMessage {
        size: size_of::<T>(),
        inner,
    }
}

static SAMPLE: Schema = Schema {
    fields: &[
        (1, Kind::RepeatedVarint { size: 8 }),
        (2, Kind::RepeatedVarint { size: 8 }),
        (3, repeated::<pprof::Label>(None)),
    ],
};

static LOCATION: Schema = Schema {
    fields: &[(4, repeated::<pprof::Line>(None))],
};

const PROFILE_SAMPLE_POSITION: usize = 1;

/// pprof's `Profile`.
pub static PROFILE: Schema = Schema {
    fields: &[
        (1, repeated::<pprof::ValueType>(None)),
        (2, repeated::<pprof::Sample>(Some(&SAMPLE))),
        (3, repeated::<pprof::Mapping>(None)),
        (4, repeated::<pprof::Location>(Some(&LOCATION))),
        (5, repeated::<pprof::Function>(None)),
        (6, Kind::RepeatedBytes),
        (13, Kind::RepeatedVarint { size: 8 }),
    ],
};

static STRING_PAIR: Schema = Schema {
    fields: &[(1, Kind::Bytes), (2, Kind::Bytes)],
};

static SERIES: Schema = Schema {
    fields: &[
        (1, repeated::<push::LabelPair>(Some(&STRING_PAIR))),
        (2, repeated::<push::RawSample>(Some(&STRING_PAIR))),
        (3, repeated::<push::ProfileAnnotation>(Some(&STRING_PAIR))),
    ],
};

/// Pyroscope's `PushRequest` (the raw profiles it carries are costed separately, once
/// decompressed).
pub static PUSH_REQUEST: Schema = Schema {
    fields: &[(1, repeated::<push::RawProfileSeries>(Some(&SERIES)))],
};

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn counts_samples_packed_and_unpacked() {
        let mut p = pprof::Profile::default();
        for i in 0..10 {
            p.sample.push(pprof::Sample {
                location_id: vec![1, 2, 3],
                value: vec![i],
                label: vec![],
            });
        }
        p.string_table = vec![String::new(), "cpu".into()];
        let c = cost(&p.encode_to_vec(), &PROFILE).unwrap();
        assert_eq!(c.samples(), 10);
        assert!(c.heap_bytes >= 10 * size_of::<pprof::Sample>() as u64);
        // An unpacked location id (wire type 0) counts as one element.
        let unpacked = [0x12, 0x02, 0x08, 0x05];
        assert_eq!(cost(&unpacked, &PROFILE).unwrap().samples(), 1);
    }

    #[test]
    fn malformed_is_an_error() {
        assert_eq!(
            cost(&[0x12, 0x05, 0x00], &PROFILE),
            Err(CostError::Truncated)
        );
        assert_eq!(cost(&[0x0b], &PROFILE), Err(CostError::WireType(3)));
        assert_eq!(cost(&[0xff; 11], &PROFILE), Err(CostError::Varint));
    }
}
