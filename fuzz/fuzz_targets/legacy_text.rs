//! Legacy `/ingest` bodies (folded and lines) and app names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = kiln_server::routes::ingest::parse_app_name(s);
        for format in ["folded", "lines"] {
            if let Ok(p) = kiln_server::routes::ingest::text_profile(format, s, "", "cpu", 100, 1000) {
                assert!(kiln_proto::validate(&p).is_ok());
            }
        }
    }
});
