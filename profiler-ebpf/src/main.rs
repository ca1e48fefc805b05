//! Kiln's kernel side: a perf-event CPU sampler plus exec/exit probes.
//!
//! Per sample: look up the active buffer, record the current thread's user stack (under
//! a hash of its frames) and kernel stack (a `bpf_get_stackid` id), add one to that key's
//! count atomically. Every outcome is counted in the per-CPU `STATS` array so that
//! userspace can report each kind of loss.
//!
//! Two count maps and two stack maps form a double buffer: userspace flips
//! `ACTIVE_BUFFER`, lets in-flight programs finish, and drains the idle pair while new
//! samples land in the other one, so draining never loses samples.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
mod control;
#[cfg(target_arch = "bpf")]
mod golabels;
#[cfg(target_arch = "bpf")]
mod hash;
#[cfg(target_arch = "bpf")]
mod python;
#[cfg(target_arch = "bpf")]
mod sampler;
#[cfg(target_arch = "bpf")]
mod scratch;
#[cfg(target_arch = "bpf")]
mod task;
#[cfg(target_arch = "bpf")]
mod unwinder;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier guarantees no panics; this is never reached.
    loop {}
}
