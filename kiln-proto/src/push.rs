//! Grafana Pyroscope's push API (`push.v1.PusherService/Push`) and the label types it uses
//! (`types.v1`). Field numbers from the public API; JSON shapes follow Connect's protobuf
//! JSON mapping (camelCase, bytes as base64).

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct PushResponse {}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    #[serde(default)]
    pub samples: Vec<RawSample>,
    #[prost(message, repeated, tag = "3")]
    #[serde(default)]
    pub annotations: Vec<ProfileAnnotation>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message, Serialize, Deserialize)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSample {
    /// A pprof `Profile`, possibly gzip'd.
    #[prost(bytes = "vec", tag = "1")]
    #[serde(default, with = "base64_bytes")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    #[serde(default, rename = "ID")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ProfileAnnotation {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub key: String,
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub value: String,
}

impl LabelPair {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Standard base64 (with padding), as protobuf JSON encodes `bytes`; decoding also accepts
/// the URL-safe alphabet and missing padding, as the protobuf JSON spec requires.
mod base64_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map_err(D::Error::custom)
    }

    pub(super) fn decode(s: &str) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in s.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                b'=' => break,
                _ => return Err("invalid base64 in bytes field"),
            };
            acc = (acc << 6) | u32::from(v);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_encodes_bytes_as_base64() {
        let req = PushRequest {
            series: vec![RawProfileSeries {
                labels: vec![LabelPair::new("service_name", "svc")],
                samples: vec![RawSample {
                    raw_profile: vec![0, 1, 2, 250, 251, 252, 7],
                    id: "x".into(),
                }],
                annotations: vec![],
            }],
        };
        let json = serde_json::to_string(&req).unwrap();
        assert!(json.contains("\"rawProfile\":\"AAEC+vv8Bw==\""), "{json}");
        let back: PushRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn base64_accepts_url_safe_and_unpadded() {
        assert_eq!(base64_bytes::decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(base64_bytes::decode("a b").is_err());
    }
}
