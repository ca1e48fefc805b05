//! The hash user stacks are stored under (`USER_STACKS`), shared by the frame-pointer
//! path and the DWARF unwinder, which both hash frames as they take them.

/// FNV-1a over whole frames: cheap, and 64 bits make collisions negligible.
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const HASH_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline(always)]
pub fn hash_step(hash: u64, ip: u64) -> u64 {
    (hash ^ ip).wrapping_mul(HASH_PRIME)
}

/// The key a stack of `len` frames is stored under (never 0).
#[inline(always)]
pub fn hash_finish(hash: u64, len: u64) -> u64 {
    hash_step(hash, len) | 1
}
