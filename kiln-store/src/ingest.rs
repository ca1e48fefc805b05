//! Checking an ingest request and splitting a pprof profile into series.
//!
//! A profile with `k` sample types yields `k` profile types, each id
//! `<__name__>:<sample type>:<sample unit>:<period type>:<period unit>`. Each distinct set of
//! string sample labels (pprof `Sample.label` with `str` set; numeric labels are ignored)
//! makes a sub-series whose labels are the request labels plus the sample labels (a sample
//! label overrides a request label of the same name). Sample labels with invalid names are
//! dropped rather than failing the whole profile.

use kiln_proto::pprof::Profile;

use crate::buckets::MAX_TIME;
use crate::error::InvalidInput;
use crate::hash::FxHashMap;
use crate::index::Labels;
use crate::options::StoreOptions;

/// What an agent or the HTTP server hands to [`crate::Store::ingest`].
#[derive(Clone, Debug, Default)]
pub struct IngestRequest {
    /// Series labels: `__name__` (profile type family, default `process_cpu`),
    /// `service_name` (default `unknown_service`), static tags.
    pub labels: Vec<(String, String)>,
    pub profile: Profile,
    /// Time range the profile covers, unix ns. `from_nanos == 0` means "use the profile's
    /// `time_nanos`, or now when that is 0 too"; `until_nanos == 0` means from + duration.
    pub from_nanos: i64,
    pub until_nanos: i64,
}

/// What an acknowledged ingest stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// `(stack, value)` pairs written, over all profile types.
    pub samples: u64,
    /// Series written to.
    pub series: usize,
}

pub const MAX_LABEL_NAME: usize = 1024;
pub const MAX_LABEL_VALUE: usize = 4096;

pub fn valid_label_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_NAME
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
}

/// Checks names and values, sorts by name, fills in `__name__` and `service_name`.
pub fn normalize_labels(
    mut labels: Vec<(String, String)>,
    max: usize,
) -> Result<Labels, InvalidInput> {
    for (n, v) in &labels {
        if !valid_label_name(n) {
            return Err(InvalidInput::LabelName(n.clone()));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(InvalidInput::LabelValue {
                name: n.clone(),
                max: MAX_LABEL_VALUE,
            });
        }
    }
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(InvalidInput::DuplicateLabel(w[0].0.clone()));
    }
    for (name, default) in [
        ("__name__", "process_cpu"),
        ("service_name", "unknown_service"),
    ] {
        if let Err(i) = labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            labels.insert(i, (name.to_owned(), default.to_owned()));
        }
    }
    if labels.len() > max {
        return Err(InvalidInput::TooManyLabels {
            got: labels.len(),
            max,
        });
    }
    Ok(labels)
}

/// A request that passed every check, ready for the writer.
pub struct Prepared {
    pub profile: Profile,
    pub from: i64,
    /// Nanoseconds the profile covers from `from` (0: a point in time).
    pub duration: i64,
    /// Per sample type: `(profile type id, period)`.
    pub types: Vec<String>,
    pub period: i64,
    /// Distinct label sets (request labels + sample labels).
    pub label_sets: Vec<Labels>,
    /// For each sample, its index in `label_sets`.
    pub sample_set: Vec<u32>,
}

fn type_part(s: &str) -> Result<&str, InvalidInput> {
    if s.contains(':') {
        Err(InvalidInput::ProfileTypePart(s.to_owned()))
    } else {
        Ok(s)
    }
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub fn prepare(req: IngestRequest, opts: &StoreOptions) -> Result<Prepared, InvalidInput> {
    let IngestRequest {
        labels,
        profile,
        mut from_nanos,
        mut until_nanos,
    } = req;
    kiln_proto::validate(&profile)?;
    if profile.sample.len() > opts.max_samples_per_profile {
        return Err(InvalidInput::TooManySamples {
            got: profile.sample.len(),
            max: opts.max_samples_per_profile,
        });
    }
    if from_nanos == 0 {
        from_nanos = if profile.time_nanos > 0 {
            profile.time_nanos
        } else {
            now_nanos()
        };
    }
    if until_nanos == 0 {
        until_nanos = from_nanos.saturating_add(profile.duration_nanos.max(0));
    }
    if from_nanos > until_nanos {
        return Err(InvalidInput::ReversedRange {
            from_nanos,
            until_nanos,
        });
    }
    for t in [from_nanos, until_nanos] {
        if !(0..=MAX_TIME).contains(&t) {
            return Err(InvalidInput::TimeOutOfRange(t));
        }
    }
    let labels = normalize_labels(labels, opts.max_labels)?;
    let name = labels
        .iter()
        .find(|(n, _)| n == "__name__")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let name = type_part(&name)?.to_owned();
    let (pt, pu) = profile
        .period_type
        .map(|vt| (profile.string(vt.r#type), profile.string(vt.unit)))
        .unwrap_or(("", ""));
    let (pt, pu) = (type_part(pt)?, type_part(pu)?);
    let mut types = Vec::with_capacity(profile.sample_type.len());
    for vt in &profile.sample_type {
        let t = type_part(profile.string(vt.r#type))?;
        let u = type_part(profile.string(vt.unit))?;
        types.push(format!("{name}:{t}:{u}:{pt}:{pu}"));
    }

    let mut label_sets: Vec<Labels> = vec![labels.clone()];
    let mut set_ids: FxHashMap<Vec<(i64, i64)>, u32> = FxHashMap::default();
    set_ids.insert(Vec::new(), 0);
    let mut sample_set = Vec::with_capacity(profile.sample.len());
    let mut key: Vec<(i64, i64)> = Vec::new();
    for s in &profile.sample {
        key.clear();
        key.extend(
            s.label
                .iter()
                .filter(|l| l.str != 0 && valid_label_name(profile.string(l.key)))
                .map(|l| (l.key, l.str)),
        );
        key.sort_unstable();
        key.dedup_by_key(|k| k.0);
        if let Some(&id) = set_ids.get(&key) {
            sample_set.push(id);
            continue;
        }
        let mut set = labels.clone();
        for &(k, v) in &key {
            let (k, v) = (profile.string(k), profile.string(v));
            if v.len() > MAX_LABEL_VALUE {
                return Err(InvalidInput::LabelValue {
                    name: k.to_owned(),
                    max: MAX_LABEL_VALUE,
                });
            }
            match set.binary_search_by(|(n, _)| n.as_str().cmp(k)) {
                Ok(i) => set[i].1 = v.to_owned(),
                Err(i) => set.insert(i, (k.to_owned(), v.to_owned())),
            }
        }
        if set.len() > opts.max_labels {
            return Err(InvalidInput::TooManyLabels {
                got: set.len(),
                max: opts.max_labels,
            });
        }
        let id = label_sets.len() as u32;
        label_sets.push(set);
        set_ids.insert(key.clone(), id);
        sample_set.push(id);
    }
    Ok(Prepared {
        period: profile.period,
        profile,
        from: from_nanos,
        duration: until_nanos - from_nanos,
        types,
        label_sets,
        sample_set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_proto::builder::FrameSpec;
    use kiln_proto::ProfileBuilder;

    fn profile() -> Profile {
        let mut b = ProfileBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        let l = b.location(
            0,
            0,
            &[FrameSpec {
                name: "f",
                filename: "",
                line: 0,
            }],
        );
        b.add_sample(&[l], &[1, 10_000_000], &[("vehicle", "car")]);
        b.add_sample(&[l], &[1, 10_000_000], &[]);
        b.set_time(5, 10);
        b.build()
    }

    #[test]
    fn splits_types_and_sub_series() {
        let p = prepare(
            IngestRequest {
                labels: vec![("service_name".into(), "svc".into())],
                profile: profile(),
                ..Default::default()
            },
            &StoreOptions::default(),
        )
        .unwrap();
        assert_eq!(
            p.types,
            vec![
                "process_cpu:samples:count:cpu:nanoseconds",
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            ]
        );
        assert_eq!(p.from, 5);
        assert_eq!(p.duration, 10);
        assert_eq!(p.label_sets.len(), 2);
        assert_eq!(p.sample_set, vec![1, 0]);
        assert!(p.label_sets[1].contains(&("vehicle".into(), "car".into())));
    }

    #[test]
    fn rejects_bad_input() {
        let opts = StoreOptions::default();
        let bad_label = IngestRequest {
            labels: vec![("bad-name".into(), "x".into())],
            profile: profile(),
            ..Default::default()
        };
        assert!(matches!(
            prepare(bad_label, &opts),
            Err(InvalidInput::LabelName(_))
        ));
        let reversed = IngestRequest {
            profile: profile(),
            from_nanos: 10,
            until_nanos: 5,
            ..Default::default()
        };
        assert!(matches!(
            prepare(reversed, &opts),
            Err(InvalidInput::ReversedRange { .. })
        ));
        let mut neg = profile();
        neg.sample[0].value[0] = -1;
        let negative = IngestRequest {
            profile: neg,
            ..Default::default()
        };
        assert!(matches!(
            prepare(negative, &opts),
            Err(InvalidInput::Profile(_))
        ));
    }
}
