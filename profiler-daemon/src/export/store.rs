//! The embedded store as an exporter (`kiln run`): each window's profiles are written in
//! one transaction; `Ok` means durable.
//!
//! The store refuses some profiles for good ([`StoreError::is_client_error`]: an invalid
//! profile or label, a series limit). Such a window is not retried: its profiles are
//! stored one by one, the refused ones dropped and counted by cause
//! ([`Sink::take_rejected`]), the rest kept. Profiles already stored for a window are
//! remembered, so a retry after a storage error does not store them twice.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
};

use kiln_store::{IngestRequest, InvalidInput, Store, StoreError};
use prost::Message;

use super::{Batch, ExportError, ExportFuture, Flavor, SeriesProfile, Sink};

/// Decompressed-size cap for our own profiles (they are small; this only guards bugs).
const MAX_PROFILE_BYTES: usize = 256 << 20;

pub struct StoreSink {
    store: Arc<Store>,
    destination: String,
    /// Series keys of the window being delivered that are already stored (window seq).
    stored: Mutex<(u64, HashSet<u64>)>,
    /// Profiles refused since the last `take_rejected`, by cause.
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

impl StoreSink {
    pub fn new(store: Arc<Store>, destination: String) -> Self {
        Self {
            store,
            destination,
            stored: Mutex::new((u64::MAX, HashSet::new())),
            rejected: Mutex::default(),
        }
    }

    fn reject(&self, cause: &'static str) {
        *lock(&self.rejected).entry(cause).or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `cause` label of a profile the store refused.
pub fn rejection_cause(e: &StoreError) -> &'static str {
    match e {
        StoreError::Limit(_) => "limit",
        StoreError::Invalid(InvalidInput::Profile(_)) => "invalid_profile",
        StoreError::Invalid(InvalidInput::TooManySamples { .. }) => "too_many_samples",
        StoreError::Invalid(
            InvalidInput::LabelName(_)
            | InvalidInput::LabelValue { .. }
            | InvalidInput::DuplicateLabel(_)
            | InvalidInput::TooManyLabels { .. },
        ) => "invalid_labels",
        StoreError::Invalid(_) => "invalid_input",
        StoreError::Poisoned => "store_poisoned",
        StoreError::Closed => "store_closed",
        _ => "rejected",
    }
}

/// A store error as an export error: client errors and a store that can never write
/// again are permanent, the rest (I/O, a failed commit) may pass on a retry.
fn export_error(e: StoreError) -> ExportError {
    let message = format!("storing profiles failed: {e}");
    if e.is_client_error() || matches!(e, StoreError::Poisoned | StoreError::Closed) {
        ExportError::rejected(rejection_cause(&e), message)
    } else {
        ExportError::retryable(message)
    }
}

fn request(s: &SeriesProfile, from: i64, until: i64) -> Option<Result<IngestRequest, String>> {
    let bytes = s.get(Flavor::Compact)?;
    let decoded = kiln_proto::gzip::decompress_capped(bytes, MAX_PROFILE_BYTES)
        .map_err(|e| e.to_string())
        .and_then(|raw| {
            kiln_proto::pprof::Profile::decode(raw.as_slice()).map_err(|e| e.to_string())
        });
    Some(decoded.map(|profile| IngestRequest {
        labels: s.labels.clone(),
        profile,
        from_nanos: from,
        until_nanos: until,
    }))
}

impl Sink for StoreSink {
    fn kind(&self) -> &'static str {
        "store"
    }

    fn destination(&self) -> String {
        self.destination.clone()
    }

    fn flavor(&self) -> Flavor {
        // Without per-process sample labels: each distinct sample-label set is a series.
        Flavor::Compact
    }

    fn take_rejected(&self) -> Vec<(&'static str, u64)> {
        std::mem::take(&mut *lock(&self.rejected))
            .into_iter()
            .collect()
    }

    fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a> {
        Box::pin(async move {
            let from = batch
                .start
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_err(|e| ExportError::permanent(e.to_string()))?
                .as_nanos() as i64;
            let until = from + batch.duration.as_nanos() as i64;
            let done: HashSet<u64> = {
                let mut stored = lock(&self.stored);
                if stored.0 != batch.seq {
                    *stored = (batch.seq, HashSet::new());
                }
                stored.1.clone()
            };
            let mut pending = Vec::with_capacity(batch.series.len());
            let mut reqs = Vec::with_capacity(batch.series.len());
            for s in batch
                .series
                .iter()
                .filter(|s| !done.contains(&s.series_key))
            {
                match request(s, from, until) {
                    None => {}
                    Some(Ok(r)) => {
                        pending.push(s);
                        reqs.push(r);
                    }
                    // Our own encoding failed to decode: a bug, but only this profile's.
                    Some(Err(e)) => {
                        log::warn!("store exporter: undecodable profile dropped: {e}");
                        self.reject("invalid_profile");
                    }
                }
            }
            let store = self.store.clone();
            let all = tokio::task::spawn_blocking(move || store.ingest_many(reqs))
                .await
                .map_err(|e| ExportError::retryable(e.to_string()))?;
            match all {
                Ok(_) => Ok(()),
                Err(e) if e.is_client_error() => {
                    // Some profile is refused and the whole transaction with it: store
                    // them one by one, so only the refused ones are lost.
                    log::debug!(
                        "store exporter: window {} refused ({e}); storing profiles one by one",
                        batch.seq
                    );
                    for s in pending {
                        let Some(Ok(req)) = request(s, from, until) else {
                            continue;
                        };
                        let store = self.store.clone();
                        let one = tokio::task::spawn_blocking(move || store.ingest(req))
                            .await
                            .map_err(|e| ExportError::retryable(e.to_string()))?;
                        match one {
                            Ok(_) => {
                                lock(&self.stored).1.insert(s.series_key);
                            }
                            Err(e) if e.is_client_error() => {
                                log::debug!(
                                    "store exporter: profile of {:?} refused: {e}",
                                    s.label("service_name")
                                );
                                self.reject(rejection_cause(&e));
                                lock(&self.stored).1.insert(s.series_key);
                            }
                            Err(e) => return Err(export_error(e)),
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(export_error(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::Ordering::Relaxed,
        time::{Duration, Instant, SystemTime},
    };

    use kiln_proto::{builder::FrameSpec, builder::MappingSpec, ProfileBuilder};
    use kiln_store::StoreOptions;

    use super::*;
    use crate::export::{DropReason, ExportSettings, Exporter};

    fn profile(function: &str) -> Vec<u8> {
        let mut b = ProfileBuilder::new(&[("samples", "count")], ("cpu", "nanoseconds"), 10);
        let m = b.mapping(&MappingSpec {
            filename: "/bin/x".into(),
            ..Default::default()
        });
        let f = FrameSpec {
            name: function,
            filename: "x.c",
            line: 1,
        };
        let l = b.location(m, 0x10, std::slice::from_ref(&f));
        b.add_sample(&[l], &[3], &[]);
        kiln_proto::gzip::compress(&b.build().encode_to_vec())
    }

    fn series(key: u64, service: &str, extra: Option<(&str, &str)>) -> SeriesProfile {
        let mut labels = vec![
            ("__name__".to_owned(), "process_cpu".to_owned()),
            ("service_name".to_owned(), service.to_owned()),
        ];
        if let Some((k, v)) = extra {
            labels.push((k.to_owned(), v.to_owned()));
        }
        SeriesProfile {
            labels,
            series_key: key,
            samples: 3,
            detailed: None,
            compact: Some(profile(service)),
        }
    }

    fn batch(seq: u64, series: Vec<SeriesProfile>) -> Arc<Batch> {
        Arc::new(Batch {
            seq,
            start: SystemTime::now() - Duration::from_secs(15),
            duration: Duration::from_secs(15),
            series,
        })
    }

    fn settings() -> ExportSettings {
        ExportSettings {
            queue_windows: 8,
            queue_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
            max_attempts: 8,
            // A retry would be visible: the test's deadline is far below it.
            max_backoff: Duration::from_secs(30),
            basic_auth: None,
            bearer_token: None,
            tenant_id: None,
            push_sample_labels: vec![],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_profiles_are_dropped_at_once_counted_and_the_rest_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            Store::open(
                dir.path(),
                StoreOptions {
                    max_series: 2,
                    ..StoreOptions::default()
                },
            )
            .expect("store"),
        );
        let sink = Arc::new(StoreSink::new(store.clone(), "test".into()));
        let e = Exporter::start(sink, &settings(), &tokio::runtime::Handle::current());
        let started = Instant::now();
        // Window 0: a good profile, one with a label name the store refuses, and one
        // more good one. Window 1: a third series, over the store's series limit.
        // Window 2: a good profile of a known series.
        e.offer(batch(
            0,
            vec![
                series(1, "good", None),
                series(2, "bad", Some(("not a label!", "x"))),
                series(3, "also-good", None),
            ],
        ));
        e.offer(batch(1, vec![series(4, "one-too-many", None)]));
        e.offer(batch(2, vec![series(1, "good", None)]));
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_secs(20)).await;
        let took = started.elapsed();

        assert!(took < Duration::from_secs(5), "no backoff: took {took:?}");
        assert_eq!(stats.failed_attempts.load(Relaxed), 0, "nothing retried");
        assert_eq!(stats.retries.load(Relaxed), 0);
        assert_eq!(
            stats.rejected_by_cause(),
            vec![("invalid_labels", 1), ("limit", 1)]
        );
        assert_eq!(stats.windows_exported.load(Relaxed), 2);
        assert_eq!(
            stats.windows_dropped[DropReason::PermanentError as usize].load(Relaxed),
            1,
            "window 1 had nothing the store would take"
        );
        assert_eq!(
            stats.profiles_dropped[DropReason::PermanentError as usize].load(Relaxed),
            2
        );
        assert_eq!(stats.profiles_exported.load(Relaxed), 3);
        let st = store.stats();
        assert_eq!(st.series, 2);
        assert_eq!(st.ingested_profiles, 3, "good, also-good, then good again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_store_is_not_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path(), StoreOptions::default()).expect("store"));
        store.close().expect("close");
        let sink = Arc::new(StoreSink::new(store, "test".into()));
        let e = Exporter::start(sink, &settings(), &tokio::runtime::Handle::current());
        e.offer(batch(0, vec![series(1, "good", None)]));
        let stats = e.stats.clone();
        e.shutdown(Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(stats.failed_attempts.load(Relaxed), 0);
        assert_eq!(stats.rejected_by_cause(), vec![("store_closed", 1)]);
    }
}
