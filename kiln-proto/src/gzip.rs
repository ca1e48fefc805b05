//! gzip with a cap on the decompressed size, so a small hostile body cannot expand into
//! gigabytes (a gzip bomb).

use std::io::{Read, Write};

use flate2::{read::GzDecoder, write::GzEncoder, Compression};

#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("decompressed size exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("invalid gzip data")]
    Invalid(#[source] std::io::Error),
}

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

pub fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    enc.write_all(bytes).expect("write to Vec");
    enc.finish().expect("finish to Vec")
}

/// Decompresses `bytes`, failing once the output would exceed `limit` bytes.
pub fn decompress_capped(bytes: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = Vec::new();
    let mut reader = GzDecoder::new(bytes).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(GzipError::Invalid)?;
    if out.len() > limit {
        return Err(GzipError::TooLarge { limit });
    }
    Ok(out)
}

/// Decompresses when `bytes` is gzip, else returns them as they are (still capped).
pub fn maybe_decompress(
    bytes: &[u8],
    limit: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, GzipError> {
    if is_gzip(bytes) {
        decompress_capped(bytes, limit).map(std::borrow::Cow::Owned)
    } else if bytes.len() > limit {
        Err(GzipError::TooLarge { limit })
    } else {
        Ok(std::borrow::Cow::Borrowed(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = b"hello hello hello".repeat(100);
        let z = compress(&data);
        assert!(is_gzip(&z));
        assert_eq!(decompress_capped(&z, data.len()).unwrap(), data);
    }

    #[test]
    fn bomb_is_refused() {
        let z = compress(&vec![0u8; 10 << 20]);
        assert!(z.len() < 100_000);
        assert!(matches!(
            decompress_capped(&z, 1 << 20),
            Err(GzipError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            decompress_capped(&[0x1f, 0x8b, 1, 2, 3], 100),
            Err(GzipError::Invalid(_))
        ));
    }
}
