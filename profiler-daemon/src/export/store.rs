//! The embedded store as an exporter (`kiln run`): each window's profiles are written in
//! one transaction; `Ok` means durable.

use std::sync::Arc;

use kiln_store::{IngestRequest, Store};
use prost::Message;

use super::{Batch, ExportError, ExportFuture, Flavor, Sink};

/// Decompressed-size cap for our own profiles (they are small; this only guards bugs).
const MAX_PROFILE_BYTES: usize = 256 << 20;

pub struct StoreSink {
    store: Arc<Store>,
    destination: String,
}

impl StoreSink {
    pub fn new(store: Arc<Store>, destination: String) -> Self {
        Self { store, destination }
    }
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

    fn export<'a>(&'a self, batch: &'a Batch) -> ExportFuture<'a> {
        Box::pin(async move {
            let from = batch
                .start
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map_err(|e| ExportError::permanent(e.to_string()))?
                .as_nanos() as i64;
            let until = from + batch.duration.as_nanos() as i64;
            let mut reqs = Vec::with_capacity(batch.series.len());
            for s in &batch.series {
                let Some(bytes) = s.get(Flavor::Compact) else {
                    continue;
                };
                let raw = kiln_proto::gzip::decompress_capped(bytes, MAX_PROFILE_BYTES)
                    .map_err(|e| ExportError::permanent(e.to_string()))?;
                let profile = kiln_proto::pprof::Profile::decode(raw.as_slice())
                    .map_err(|e| ExportError::permanent(e.to_string()))?;
                reqs.push(IngestRequest {
                    labels: s.labels.clone(),
                    profile,
                    from_nanos: from,
                    until_nanos: until,
                });
            }
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.ingest_many(reqs))
                .await
                .map_err(|e| ExportError::retryable(e.to_string()))?
                .map_err(|e| ExportError::retryable(format!("storing profiles failed: {e}")))?;
            Ok(())
        })
    }
}
