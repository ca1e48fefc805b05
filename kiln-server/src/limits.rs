//! Request limits (as Grafana Pyroscope has them, configurable) and capped body decoding.

use kiln_proto::gzip::{self, GzipError};

/// Limits applied to every request.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted, as sent (compressed) — Pyroscope: 4 MiB.
    pub max_body_bytes: usize,
    /// Largest decompressed body or profile — stops gzip bombs.
    pub max_profile_bytes: usize,
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
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid gzip data")]
    Gzip(#[source] GzipError),
    #[error("invalid protobuf: {0}")]
    Protobuf(#[source] prost::DecodeError),
}

/// Un-gzips `bytes` when they are gzip (by magic), capping the output at `limit`.
pub fn decompress(bytes: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, BodyError> {
    gzip::maybe_decompress(bytes, limit).map_err(|e| match e {
        GzipError::TooLarge { limit } => BodyError::TooLarge { limit },
        other => BodyError::Gzip(other),
    })
}

/// Decodes a (possibly gzip'd) pprof profile.
pub fn decode_profile(bytes: &[u8], limit: usize) -> Result<kiln_proto::pprof::Profile, BodyError> {
    let raw = decompress(bytes, limit)?;
    <kiln_proto::pprof::Profile as prost::Message>::decode(&*raw).map_err(BodyError::Protobuf)
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
