//! Language runtimes: each one is a room of its own behind one small interface: it
//! recognizes its programs from their binary and tells the kernel side what to read
//! (offsets, TLS slots), so the rest of the data path stays runtime-agnostic. Go gives
//! goroutine labels; Python gives its own frames, merged into the native stack.

pub mod golang;
pub mod python;
