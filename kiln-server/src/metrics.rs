//! Prometheus text metrics: ingestion, rejections by reason, store size, query latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kiln_proto::exposition::{Exposition, Family, Kind};
use kiln_store::StoreStats;

// Every metric the server exposes, declared once.
const PUSH_REQUESTS: Family = Family::new(
    "kiln_push_requests_total",
    Kind::Counter,
    "Push requests received, by endpoint.",
    &["endpoint"],
);
const INGESTED_PROFILES: Family = Family::counter(
    "kiln_ingested_profiles_total",
    "Profiles stored (acknowledged) by this process.",
);
const INGESTED_SAMPLES: Family = Family::counter(
    "kiln_ingested_samples_total",
    "Stack/value pairs stored by this process.",
);
const REJECTED_REQUESTS: Family = Family::new(
    "kiln_rejected_requests_total",
    Kind::Counter,
    "Requests refused, by reason.",
    &["reason"],
);
const STORE_FILE_BYTES: Family =
    Family::gauge("kiln_store_file_bytes", "Size of the database file.");
const STORE_SERIES: Family = Family::gauge("kiln_store_series", "Series in the store.");
const STORE_STACKS: Family = Family::gauge(
    "kiln_store_stacks",
    "Distinct stacks (trie nodes) interned.",
);
const STORE_FUNCTIONS: Family =
    Family::gauge("kiln_store_functions", "Distinct functions interned.");
const STORE_PROFILE_TYPES: Family =
    Family::gauge("kiln_store_profile_types", "Profile types present.");
const QUERY_DURATION: Family = Family::new(
    "kiln_query_duration_seconds",
    Kind::Histogram,
    "Query latency by endpoint.",
    &["endpoint"],
);

/// Upper bounds (seconds) of the query latency histogram buckets.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters shared by all handlers.
#[derive(Default)]
pub struct Metrics {
    pub pushed_profiles: AtomicU64,
    pub pushed_samples: AtomicU64,
    /// Requests to `/push.v1.PusherService/Push`.
    pub push_requests: AtomicU64,
    /// Requests to the legacy `/ingest`.
    pub ingest_requests: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    queries: Mutex<BTreeMap<&'static str, Histogram>>,
}

impl Metrics {
    /// Counts a refused request; `reason` is a short fixed label (bounded cardinality).
    pub fn reject(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub fn observe_query(&self, endpoint: &'static str, d: Duration) {
        let mut q = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        let h = q.entry(endpoint).or_default();
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    pub fn rejected(&self, reason: &str) -> u64 {
        let r = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        r.get(reason).copied().unwrap_or(0)
    }

    pub fn render(&self, store: &StoreStats) -> String {
        let mut e = Exposition::new();
        e.family(&PUSH_REQUESTS)
            .sample(
                &PUSH_REQUESTS,
                &["push"],
                self.push_requests.load(Ordering::Relaxed),
            )
            .sample(
                &PUSH_REQUESTS,
                &["ingest"],
                self.ingest_requests.load(Ordering::Relaxed),
            );
        e.single(&INGESTED_PROFILES, store.ingested_profiles)
            .single(&INGESTED_SAMPLES, store.ingested_samples);
        e.family(&REJECTED_REQUESTS);
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            e.sample(&REJECTED_REQUESTS, &[reason], n);
        }
        e.single(&STORE_FILE_BYTES, store.file_bytes)
            .single(&STORE_SERIES, store.series)
            .single(&STORE_STACKS, store.stacks)
            .single(&STORE_FUNCTIONS, store.functions)
            .single(&STORE_PROFILE_TYPES, store.profile_types);
        e.family(&QUERY_DURATION);
        for (ep, h) in self
            .queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let le = b.to_string();
                e.histogram_sample(&QUERY_DURATION, "_bucket", &[ep], Some(&le), h.counts[i]);
            }
            e.histogram_sample(&QUERY_DURATION, "_bucket", &[ep], Some("+Inf"), h.count)
                .histogram_sample(&QUERY_DURATION, "_sum", &[ep], None, h.sum)
                .histogram_sample(&QUERY_DURATION, "_count", &[ep], None, h.count);
        }
        e.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_each_family_is_declared_once() {
        let m = Metrics::default();
        m.reject("too_large");
        m.reject("odd \"reason\"\\\n");
        m.observe_query("render", Duration::from_millis(30));
        let text = m.render(&StoreStats::default());
        assert!(
            text.contains("kiln_rejected_requests_total{reason=\"odd \\\"reason\\\"\\\\\\n\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("kiln_rejected_requests_total{reason=\"too_large\"} 1\n"));
        assert!(text
            .contains("kiln_query_duration_seconds_bucket{endpoint=\"render\",le=\"0.05\"} 1\n"));
        assert!(text.contains("kiln_query_duration_seconds_count{endpoint=\"render\"} 1\n"));
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n, "a family declared twice:\n{text}");
        assert_eq!(n, 10);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
