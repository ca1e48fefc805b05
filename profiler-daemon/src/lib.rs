//! The Kiln engine: everything between the kernel's samples and a stored or pushed
//! profile. The `kiln` binary (`main.rs`, `cmd/`) only parses arguments and calls in here,
//! so nothing in this library depends on the command line.
//!
//! The modules follow the data path:
//!
//! ```text
//! capture ──> unwind, runtimes ──> symbolize ──> aggregate ──> agent ──> export
//!   (eBPF sampler, drain,        (DWARF tables,  (names)      (stacks    (windows,   (push, dir,
//!    process events, /proc)       Go labels)                  + counts)  labels)     store)
//! ```
//!
//! `output` writes `kiln record`'s files; `metrics` serves the agent's own `/metrics`.

pub mod agent;
pub mod aggregate;
pub mod bounded;
pub mod capture;
pub mod export;
pub mod metrics;
pub mod output;
pub mod runtimes;
pub mod symbolize;
pub mod unwind;
