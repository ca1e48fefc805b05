//! The on-disk sample block decoder (a corrupt file must give an error, not a panic), and
//! encode/decode round trips of whatever decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = kiln_store::codec::decode_block(data) {
        let mut sorted = pairs.clone();
        kiln_store::codec::normalize(&mut sorted);
        let again = kiln_store::codec::decode_block(&kiln_store::codec::encode_block(&sorted));
        assert_eq!(again.as_deref(), Ok(&sorted[..]));
    }
});
