//! Request limits (as Grafana Pyroscope has them, configurable) and body decoding within a
//! per-request memory and sample budget.

use std::borrow::Cow;
use std::time::Duration;

use kiln_proto::cost::{self, CostError};
use kiln_proto::gzip::{self, GzipError};
use kiln_proto::pprof::Profile;
use kiln_proto::push::PushRequest;
use prost::Message;

/// Limits applied to every request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted, as sent (compressed) — Pyroscope: 4 MiB.
    pub max_body_bytes: usize,
    /// Largest decompressed body or profile — stops gzip bombs.
    pub max_profile_bytes: usize,
    /// Memory one push may use to decompress and decode its profiles, all together
    /// (estimated before decoding, see [`kiln_proto::cost`]).
    pub max_request_memory: u64,
    /// Samples one push may carry across all of its profiles.
    pub max_request_samples: u64,
    /// Pushes decoded and stored at once; with `max_request_memory` this bounds the
    /// memory all pushes together can take.
    pub max_concurrent_ingests: usize,
    /// How long a push waits for its turn before a 429 with `Retry-After`.
    pub ingest_queue_wait: Duration,
    /// Frames kept per stack (leaf-most) — Pyroscope: 1000.
    pub max_stack_depth: usize,
    /// Flame graph nodes when a query does not ask (`maxNodes`) — Pyroscope: 8192.
    pub max_nodes: usize,
    /// Upper bound for a requested `maxNodes`.
    pub max_nodes_cap: usize,
    /// Queries running at once; more wait (bounds memory and CPU).
    pub max_concurrent_queries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_profile_bytes: 16 << 20,
            max_request_memory: 128 << 20,
            max_request_samples: 1_000_000,
            max_concurrent_ingests: 2,
            ingest_queue_wait: Duration::from_secs(5),
            max_stack_depth: 1000,
            max_nodes: 8192,
            max_nodes_cap: 65536,
            max_concurrent_queries: 8,
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("decompressed body exceeds the limit of {limit} bytes (--max-profile-bytes)")]
    TooLarge { limit: usize },
    #[error("decoding this request would take more than {limit} bytes of memory (--max-request-memory): send fewer or smaller profiles per request")]
    OverMemoryBudget { limit: u64 },
    #[error("this request carries more than {limit} samples (--max-request-samples): send fewer or smaller profiles per request")]
    OverSampleBudget { limit: u64 },
    #[error("invalid gzip data")]
    Gzip(#[source] GzipError),
    #[error("invalid protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
    #[error("invalid protobuf: {0}")]
    Malformed(#[source] CostError),
}

/// What one request may still decompress and decode. Everything a request decodes is
/// charged here *before* it is allocated, so a hostile body is refused at the first
/// profile that would go over, not after decoding all of them.
#[derive(Debug)]
pub struct RequestBudget {
    memory_limit: u64,
    memory_left: u64,
    samples_limit: u64,
    samples_left: u64,
    max_profile_bytes: usize,
}

impl RequestBudget {
    pub fn new(limits: &Limits) -> Self {
        RequestBudget {
            memory_limit: limits.max_request_memory,
            memory_left: limits.max_request_memory,
            samples_limit: limits.max_request_samples,
            samples_left: limits.max_request_samples,
            max_profile_bytes: limits.max_profile_bytes,
        }
    }

    /// Takes `bytes` of memory from the budget.
    pub fn charge_memory(&mut self, bytes: u64) -> Result<(), BodyError> {
        self.memory_left =
            self.memory_left
                .checked_sub(bytes)
                .ok_or(BodyError::OverMemoryBudget {
                    limit: self.memory_limit,
                })?;
        Ok(())
    }

    /// Gives back memory charged for a buffer that has been freed.
    pub fn release_memory(&mut self, bytes: u64) {
        self.memory_left = (self.memory_left + bytes).min(self.memory_limit);
    }

    /// Takes `n` samples from the budget.
    pub fn charge_samples(&mut self, n: u64) -> Result<(), BodyError> {
        self.samples_left =
            self.samples_left
                .checked_sub(n)
                .ok_or(BodyError::OverSampleBudget {
                    limit: self.samples_limit,
                })?;
        Ok(())
    }

    /// Samples still allowed.
    pub fn samples_left(&self) -> u64 {
        self.samples_left
    }

    /// Un-gzips `bytes` when they are gzip (by magic). The output is capped at
    /// `max_profile_bytes` and at the memory left, and charged; call
    /// [`release_memory`](Self::release_memory) with its length once it is dropped.
    pub fn decompress<'a>(&mut self, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, BodyError> {
        let left = usize::try_from(self.memory_left).unwrap_or(usize::MAX);
        let cap = self.max_profile_bytes.min(left);
        let out = gzip::maybe_decompress(bytes, cap).map_err(|e| match e {
            GzipError::TooLarge { .. } if cap < self.max_profile_bytes => {
                BodyError::OverMemoryBudget {
                    limit: self.memory_limit,
                }
            }
            GzipError::TooLarge { limit } => BodyError::TooLarge { limit },
            other => BodyError::Gzip(other),
        })?;
        if let Cow::Owned(v) = &out {
            self.charge_memory(v.len() as u64)?;
        }
        Ok(out)
    }

    /// Decodes a pprof profile after charging its samples and its decoded size.
    pub fn decode_raw_profile(&mut self, raw: &[u8]) -> Result<Profile, BodyError> {
        let c = cost::cost(raw, &cost::PROFILE).map_err(BodyError::Malformed)?;
        self.charge_samples(c.samples())?;
        self.charge_memory(c.heap_bytes)?;
        Profile::decode(raw).map_err(BodyError::Protobuf)
    }

    /// Decodes a (possibly gzip'd) pprof profile; the decompressed bytes are given back
    /// once decoded, the decoded profile stays charged.
    pub fn decode_profile(&mut self, bytes: &[u8]) -> Result<Profile, BodyError> {
        let raw = self.decompress(bytes)?;
        let owned = matches!(raw, Cow::Owned(_)).then_some(raw.len() as u64);
        let r = self.decode_raw_profile(&raw);
        drop(raw);
        if let Some(n) = owned {
            self.release_memory(n);
        }
        r
    }

    /// Decodes a `PushRequest` after charging its decoded size (not its profiles: they
    /// are decoded one by one with [`decode_profile`](Self::decode_profile)).
    pub fn decode_push(&mut self, raw: &[u8]) -> Result<PushRequest, BodyError> {
        let c = cost::cost(raw, &cost::PUSH_REQUEST).map_err(BodyError::Malformed)?;
        self.charge_memory(c.heap_bytes)?;
        PushRequest::decode(raw).map_err(BodyError::Protobuf)
    }
}

/// Un-gzips `bytes` when they are gzip (by magic), capping the output at `limit`.
pub fn decompress(bytes: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, BodyError> {
    gzip::maybe_decompress(bytes, limit).map_err(|e| match e {
        GzipError::TooLarge { limit } => BodyError::TooLarge { limit },
        other => BodyError::Gzip(other),
    })
}

/// Decodes a (possibly gzip'd) pprof profile with a budget of `limit` bytes for both the
/// decompressed and the decoded profile.
pub fn decode_profile(bytes: &[u8], limit: usize) -> Result<Profile, BodyError> {
    RequestBudget::new(&Limits {
        max_profile_bytes: limit,
        max_request_memory: limit as u64,
        max_request_samples: u64::MAX,
        ..Limits::default()
    })
    .decode_profile(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bomb_is_capped() {
        let z = gzip::compress(&vec![0u8; 8 << 20]);
        assert!(matches!(
            decompress(&z, 1 << 20),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn hostile_samples_are_refused_before_decoding() {
        // 8 MiB of 2-byte empty samples: 4M samples, ~300 MiB once decoded.
        let z = gzip::compress(&[0x12u8, 0x00].repeat(4 << 20));
        let mut b = RequestBudget::new(&Limits::default());
        assert!(matches!(
            b.decode_profile(&z),
            Err(BodyError::OverSampleBudget { .. })
        ));
        let mut b = RequestBudget::new(&Limits {
            max_request_samples: u64::MAX,
            ..Limits::default()
        });
        assert!(matches!(
            b.decode_profile(&z),
            Err(BodyError::OverMemoryBudget { .. })
        ));
    }

    #[test]
    fn budget_spans_the_profiles_of_a_request() {
        let mut p =
            kiln_proto::ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
        let l = p.location(
            0,
            0,
            &[kiln_proto::builder::FrameSpec {
                name: "f",
                filename: "",
                line: 0,
            }],
        );
        for i in 0..10 {
            p.add_sample(&[l], &[i], &[("i", &i.to_string())]);
        }
        let z = gzip::compress(&p.build().encode_to_vec());
        let mut b = RequestBudget::new(&Limits {
            max_request_samples: 25,
            ..Limits::default()
        });
        b.decode_profile(&z).unwrap();
        b.decode_profile(&z).unwrap();
        assert_eq!(b.samples_left(), 5);
        assert!(matches!(
            b.decode_profile(&z),
            Err(BodyError::OverSampleBudget { limit: 25 })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode_profile(&bytes, 1 << 20);
        }

        #[test]
        fn decode_gzip_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut z = vec![0x1f, 0x8b];
            z.extend(bytes);
            let _ = decode_profile(&z, 1 << 20);
        }
    }
}
