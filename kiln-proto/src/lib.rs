//! Wire formats: pprof's `profile.proto` and Grafana Pyroscope's push API.
//!
//! The message types are written with prost derives from the public field numbers, so no
//! `protoc` is needed to build. On top of them: [`builder::ProfileBuilder`], which
//! deduplicates strings, functions, locations and mappings; [`validate`], a structural check
//! (every id resolves, string indices in range); and [`gzip`] helpers whose decoder caps the
//! decompressed size. And [`exposition`]: the Prometheus text format of the agent's and
//! the server's `/metrics`, each metric declared once as data, label values escaped.

pub mod builder;
pub mod cost;
pub mod exposition;
pub mod gzip;
pub mod pprof;
pub mod push;
pub mod validate;

pub use builder::ProfileBuilder;
pub use validate::{validate, ValidationError};
