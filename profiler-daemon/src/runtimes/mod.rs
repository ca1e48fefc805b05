//! Language runtimes whose own stacks Kiln reads from unmodified processes (Python; Go's
//! labels live in `crate::golang` for now).

pub mod python;
