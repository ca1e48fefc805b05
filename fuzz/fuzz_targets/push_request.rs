//! A Connect push body: PushRequest protobuf, each raw profile possibly gzip'd, through
//! the same capped decoders and checks the server uses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = kiln_server::limits::decompress(data, 1 << 20) else {
        return;
    };
    let Ok(req) = kiln_proto::push::PushRequest::decode(&*body) else {
        return;
    };
    for series in &req.series {
        for sample in &series.samples {
            if let Ok(p) = kiln_server::limits::decode_profile(&sample.raw_profile, 1 << 20) {
                let _ = kiln_proto::validate(&p);
            }
        }
    }
});
