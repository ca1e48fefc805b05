//! Capture: the eBPF sampler and its userspace half. [`sampler`] loads the kernel programs
//! and drains their buffers, [`procs`] keeps what /proc says about each sampled process
//! while it lives, and [`collector`] drives both and hands symbolized samples on.

pub mod collector;
pub mod privileges;
pub mod procs;
pub mod retention;
pub mod sampler;
