//! Query text: selectors and time expressions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_store::selector::parse_query(s);
        let _ = kiln_server::timeparse::parse_time(s, 1_700_000_000_000_000_000);
        let _ = kiln_server::timeparse::parse_size(s);
    }
});
