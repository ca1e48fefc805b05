//! DWARF CFI unwinding, userspace half: compile each binary's call frame information
//! into compact rows ([`table`]) and keep the kernel's tables and per-process mapping
//! lists in step with the processes being profiled ([`loader`]).

pub mod loader;
pub mod table;
