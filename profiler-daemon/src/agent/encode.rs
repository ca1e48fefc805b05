//! Turns one window's [`Aggregate`] and its targets into a [`Batch`]: one pprof per series
//! (final label set), encoded and gzip'd once per flavor the exporters need. Runs on its
//! own thread so that sampling never waits for encoding.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use kiln_labels::Target;
use kiln_proto::pprof::{Label, Profile, Sample};
use prost::Message;

use crate::{
    aggregate::Aggregate,
    export::{Batch, SeriesProfile},
};

/// Series label naming the profile type, as Pyroscope expects for CPU profiles.
pub const PROFILE_NAME: (&str, &str) = ("__name__", "process_cpu");
/// Sample labels the aggregate attaches itself; series labels of the same name are not
/// repeated as sample labels.
const OWN_SAMPLE_LABELS: [&str; 3] = ["pid", "process", "thread"];

/// Processes of one window that share a series.
pub struct Group {
    pub target: Arc<Target>,
    pub pids: HashSet<u32>,
    pub samples: u64,
}

/// Everything the encoder needs about one finished window.
pub struct WindowData {
    pub seq: u64,
    pub start: SystemTime,
    pub duration: Duration,
    pub frequency: u64,
    pub agg: Aggregate,
    pub groups: Vec<Group>,
}

/// Which encodings to produce, from the exporters configured.
#[derive(Clone, Debug, Default)]
pub struct EncodeOptions {
    pub detailed: bool,
    pub compact: bool,
    /// Sample labels kept in the compact flavor.
    pub compact_sample_labels: Vec<String>,
}

/// `__name__`, `service_name`, then the target's other labels in name order.
pub fn series_labels(target: &Target) -> Vec<(String, String)> {
    let mut labels = vec![(PROFILE_NAME.0.to_owned(), PROFILE_NAME.1.to_owned())];
    let l = target.labels();
    labels.push((
        "service_name".to_owned(),
        l.get("service_name")
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned()),
    ));
    labels.extend(
        l.iter()
            .filter(|(k, _)| k.as_str() != "service_name" && k.as_str() != "__name__")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels
}

pub fn encode(w: &WindowData, opts: &EncodeOptions) -> Batch {
    let mut series = Vec::with_capacity(w.groups.len());
    for g in &w.groups {
        let labels = series_labels(&g.target);
        let extra: Vec<(&str, &str)> = labels
            .iter()
            .filter(|(k, _)| !k.starts_with("__") && !OWN_SAMPLE_LABELS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let profile = w.agg.to_pprof(
            (w.start, w.duration),
            w.frequency,
            if opts.detailed { &extra } else { &[] },
            |k| g.pids.contains(&k.pid),
        );
        let detailed = opts
            .detailed
            .then(|| kiln_proto::gzip::compress(&profile.encode_to_vec()));
        let compact = opts.compact.then(|| {
            let series: Vec<&str> = extra.iter().map(|(k, _)| *k).collect();
            let p = compact(profile, &opts.compact_sample_labels, &series);
            kiln_proto::gzip::compress(&p.encode_to_vec())
        });
        series.push(SeriesProfile {
            labels,
            series_key: g.target.series_key(),
            samples: g.samples,
            detailed,
            compact,
        });
    }
    series.sort_by_key(|s| s.series_key);
    Batch {
        seq: w.seq,
        start: w.start,
        duration: w.duration,
        series,
    }
}

/// Drops the per-process sample labels (pid, process, thread) not named in `keep` and
/// merges samples that become equal. Other sample labels (goroutine labels of Go
/// programs, i.e. dynamic tags) are kept.
/// `series` names the series labels, which the detailed flavor repeats as sample labels.
pub fn compact(mut p: Profile, keep: &[String], series: &[&str]) -> Profile {
    let drop_idx: HashSet<i64> = p
        .string_table
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            (OWN_SAMPLE_LABELS.contains(&s.as_str()) && !keep.iter().any(|k| k == *s))
                || series.contains(&s.as_str())
        })
        .map(|(i, _)| i as i64)
        .collect();
    let mut merged: HashMap<(Vec<u64>, Vec<Label>), usize> = HashMap::new();
    let mut out: Vec<Sample> = Vec::with_capacity(p.sample.len());
    for mut s in std::mem::take(&mut p.sample) {
        s.label.retain(|l| !drop_idx.contains(&l.key));
        let key = (s.location_id.clone(), s.label.clone());
        match merged.get(&key) {
            Some(&i) => {
                for (a, b) in out[i].value.iter_mut().zip(&s.value) {
                    *a += b;
                }
            }
            None => {
                merged.insert(key, out.len());
                out.push(s);
            }
        }
    }
    p.sample = out;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_strips_and_merges() {
        let mut b = kiln_proto::ProfileBuilder::new(&[("samples", "count")], ("cpu", "ns"), 1);
        let m = b.mapping(&Default::default());
        let loc = b.location(
            m,
            0x10,
            &[kiln_proto::builder::FrameSpec {
                name: "f",
                filename: "",
                line: 0,
            }],
        );
        let series = [("region", "eu")];
        b.add_sample(&[loc], &[2], &[("pid", "1"), ("thread", "a"), series[0]]);
        b.add_sample(&[loc], &[3], &[("pid", "2"), ("thread", "a"), series[0]]);
        b.add_sample(&[loc], &[5], &[("pid", "3"), ("thread", "b"), series[0]]);
        // A goroutine label: a dynamic tag that must survive.
        b.add_sample(&[loc], &[7], &[("pid", "3"), ("vehicle", "car"), series[0]]);
        let p = b.build();
        let c = compact(p.clone(), &[], &["region"]);
        assert_eq!(c.sample.len(), 2);
        assert_eq!(c.sample[0].value, vec![10]);
        assert!(c.sample[0].label.is_empty());
        assert_eq!(c.sample[1].label.len(), 1);
        assert_eq!(c.string(c.sample[1].label[0].key), "vehicle");
        let c = compact(p, &["thread".to_owned()], &["region"]);
        assert_eq!(c.sample.len(), 3);
        kiln_proto::validate(&c).expect("still valid");
    }
}
