//! Prometheus text metrics: ingestion, rejections by reason, store size, query latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kiln_store::StoreStats;

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
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP kiln_push_requests_total Push requests received, by endpoint.\n# TYPE kiln_push_requests_total counter\nkiln_push_requests_total{{endpoint=\"push\"}} {}\nkiln_push_requests_total{{endpoint=\"ingest\"}} {}",
            self.push_requests.load(Ordering::Relaxed),
            self.ingest_requests.load(Ordering::Relaxed)
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "kiln_ingested_profiles_total",
            "Profiles stored (acknowledged) by this process.",
            store.ingested_profiles,
        );
        counter(
            "kiln_ingested_samples_total",
            "Stack/value pairs stored by this process.",
            store.ingested_samples,
        );
        let _ = writeln!(
            o,
            "# HELP kiln_rejected_requests_total Requests refused, by reason.\n# TYPE kiln_rejected_requests_total counter"
        );
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(o, "kiln_rejected_requests_total{{reason=\"{reason}\"}} {n}");
        }
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "kiln_store_file_bytes",
            "Size of the database file.",
            store.file_bytes,
        );
        gauge(
            "kiln_store_series",
            "Series in the store.",
            store.series as u64,
        );
        gauge(
            "kiln_store_stacks",
            "Distinct stacks (trie nodes) interned.",
            store.stacks as u64,
        );
        gauge(
            "kiln_store_functions",
            "Distinct functions interned.",
            store.functions as u64,
        );
        gauge(
            "kiln_store_profile_types",
            "Profile types present.",
            store.profile_types as u64,
        );
        let _ = writeln!(
            o,
            "# HELP kiln_query_duration_seconds Query latency by endpoint.\n# TYPE kiln_query_duration_seconds histogram"
        );
        for (ep, h) in self
            .queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "kiln_query_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "kiln_query_duration_seconds_bucket{{endpoint=\"{ep}\",le=\"+Inf\"}} {}\nkiln_query_duration_seconds_sum{{endpoint=\"{ep}\"}} {}\nkiln_query_duration_seconds_count{{endpoint=\"{ep}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        o
    }
}
