//! Structural check of a pprof profile: what `go tool pprof` relies on, and what the store
//! needs before it trusts ids and indices from an untrusted body.

use std::collections::HashSet;

use crate::pprof::Profile;

/// A set of pprof ids (non-zero `u64`s chosen by the client). Ids are nearly always dense
/// (`1..=n`), so membership is a bitmap indexed by id; when the largest id is far beyond
/// the number of entries (sparse or huge ids) it falls back to a `HashSet` with the
/// default, flooding-resistant hasher, so a hostile body cannot make either path slow or
/// large.
enum IdSet {
    Bits(Vec<u64>),
    Hash(HashSet<u64>),
}

impl IdSet {
    /// A set sized for `ids`; `max` is their largest value.
    fn for_ids(count: usize, max: u64) -> IdSet {
        // At most ~64 bits per entry plus a small constant: a bitmap of up to
        // `8 * count + 512` bytes.
        let limit = (count as u64).saturating_mul(64).saturating_add(4096);
        if max < limit {
            IdSet::Bits(vec![0; (max / 64 + 1) as usize])
        } else {
            IdSet::Hash(HashSet::with_capacity(count))
        }
    }

    /// Adds `id`; false when it was already present.
    #[inline]
    fn insert(&mut self, id: u64) -> bool {
        match self {
            IdSet::Bits(b) => {
                let (w, bit) = ((id / 64) as usize, 1u64 << (id % 64));
                // `for_ids` sized the bitmap for the largest id inserted.
                let word = &mut b[w];
                let fresh = *word & bit == 0;
                *word |= bit;
                fresh
            }
            IdSet::Hash(h) => h.insert(id),
        }
    }

    #[inline]
    fn contains(&self, id: u64) -> bool {
        match self {
            IdSet::Bits(b) => b
                .get((id / 64) as usize)
                .is_some_and(|w| w & (1u64 << (id % 64)) != 0),
            IdSet::Hash(h) => h.contains(&id),
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("string_table[0] must be the empty string")]
    FirstStringNotEmpty,
    #[error("{what} refers to string {index}, but the string table has {len} entries")]
    StringOutOfRange {
        what: &'static str,
        index: i64,
        len: usize,
    },
    #[error("{what} id {id} is 0 or duplicated")]
    BadId { what: &'static str, id: u64 },
    #[error("{what} refers to {target} id {id}, which does not exist")]
    Dangling {
        what: &'static str,
        target: &'static str,
        id: u64,
    },
    #[error("sample {index} has {got} values but the profile has {want} sample types")]
    ValueCount {
        index: usize,
        got: usize,
        want: usize,
    },
    #[error("sample {index} has a negative value {value}")]
    NegativeValue { index: usize, value: i64 },
    #[error("the profile has no sample types")]
    NoSampleTypes,
}

/// Checks that every id resolves and every string index is in range. Negative sample
/// values are refused: for the profile types Kiln stores they are always wrong.
pub fn validate(p: &Profile) -> Result<(), ValidationError> {
    let len = p.string_table.len();
    if len > 0 && !p.string_table[0].is_empty() {
        return Err(ValidationError::FirstStringNotEmpty);
    }
    let check_str = |what: &'static str, index: i64| {
        if index < 0 || index as usize >= len.max(1) {
            Err(ValidationError::StringOutOfRange { what, index, len })
        } else {
            Ok(())
        }
    };
    if p.sample_type.is_empty() {
        return Err(ValidationError::NoSampleTypes);
    }
    for vt in p.sample_type.iter().chain(p.period_type.iter()) {
        check_str("value type", vt.r#type)?;
        check_str("value type unit", vt.unit)?;
    }
    for c in &p.comment {
        check_str("comment", *c)?;
    }
    check_str("drop_frames", p.drop_frames)?;
    check_str("keep_frames", p.keep_frames)?;
    check_str("default_sample_type", p.default_sample_type)?;

    let max_id = |ids: &mut dyn Iterator<Item = u64>| ids.max().unwrap_or(0);
    let mut mappings = IdSet::for_ids(p.mapping.len(), max_id(&mut p.mapping.iter().map(|m| m.id)));
    for m in &p.mapping {
        if m.id == 0 || !mappings.insert(m.id) {
            return Err(ValidationError::BadId {
                what: "mapping",
                id: m.id,
            });
        }
        check_str("mapping filename", m.filename)?;
        check_str("mapping build_id", m.build_id)?;
    }
    let mut functions = IdSet::for_ids(
        p.function.len(),
        max_id(&mut p.function.iter().map(|f| f.id)),
    );
    for f in &p.function {
        if f.id == 0 || !functions.insert(f.id) {
            return Err(ValidationError::BadId {
                what: "function",
                id: f.id,
            });
        }
        check_str("function name", f.name)?;
        check_str("function system_name", f.system_name)?;
        check_str("function filename", f.filename)?;
    }
    let mut locations = IdSet::for_ids(
        p.location.len(),
        max_id(&mut p.location.iter().map(|l| l.id)),
    );
    for l in &p.location {
        if l.id == 0 || !locations.insert(l.id) {
            return Err(ValidationError::BadId {
                what: "location",
                id: l.id,
            });
        }
        if l.mapping_id != 0 && !mappings.contains(l.mapping_id) {
            return Err(ValidationError::Dangling {
                what: "location",
                target: "mapping",
                id: l.mapping_id,
            });
        }
        for line in &l.line {
            if !functions.contains(line.function_id) {
                return Err(ValidationError::Dangling {
                    what: "line",
                    target: "function",
                    id: line.function_id,
                });
            }
        }
    }
    let want = p.sample_type.len();
    for (index, s) in p.sample.iter().enumerate() {
        if s.value.len() != want {
            return Err(ValidationError::ValueCount {
                index,
                got: s.value.len(),
                want,
            });
        }
        if let Some(&value) = s.value.iter().find(|v| **v < 0) {
            return Err(ValidationError::NegativeValue { index, value });
        }
        for id in &s.location_id {
            if !locations.contains(*id) {
                return Err(ValidationError::Dangling {
                    what: "sample",
                    target: "location",
                    id: *id,
                });
            }
        }
        for label in &s.label {
            check_str("label key", label.key)?;
            check_str("label value", label.str)?;
            check_str("label unit", label.num_unit)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{Location, Sample, ValueType};
    use proptest::prelude::*;
    use prost::Message;

    fn minimal() -> Profile {
        Profile {
            string_table: vec!["".into(), "samples".into(), "count".into()],
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            location: vec![Location {
                id: 1,
                ..Default::default()
            }],
            sample: vec![Sample {
                location_id: vec![1],
                value: vec![1],
                label: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn accepts_minimal() {
        validate(&minimal()).unwrap();
    }

    #[test]
    fn rejects_dangling_and_out_of_range() {
        let mut p = minimal();
        p.sample[0].location_id = vec![9];
        assert!(matches!(
            validate(&p),
            Err(ValidationError::Dangling { .. })
        ));
        let mut p = minimal();
        p.sample_type[0].unit = 99;
        assert!(matches!(
            validate(&p),
            Err(ValidationError::StringOutOfRange { .. })
        ));
        let mut p = minimal();
        p.sample[0].value = vec![-1];
        assert!(matches!(
            validate(&p),
            Err(ValidationError::NegativeValue { .. })
        ));
    }

    proptest! {
        // Arbitrary bytes never panic the decoder or the validator.
        #[test]
        fn decode_and_validate_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(p) = Profile::decode(bytes.as_slice()) {
                let _ = validate(&p);
            }
        }
    }
}
