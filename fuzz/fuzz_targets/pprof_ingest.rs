//! Arbitrary bytes as a pprof profile, ingested into a real store and queried back: any
//! profile that passes validation must be stored and rendered without panicking.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    _dir: tempfile::TempDir,
    store: kiln_store::Store,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = kiln_store::Store::open(dir.path(), kiln_store::StoreOptions::default())
            .expect("open store");
        Fixture { _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = kiln_server::limits::decode_profile(data, 1 << 20) else {
        return;
    };
    let f = fixture();
    let req = kiln_store::IngestRequest {
        labels: vec![("service_name".into(), "fuzz".into())],
        profile,
        from_nanos: 1_700_000_000_000_000_000,
        until_nanos: 1_700_000_010_000_000_000,
    };
    if f.store.ingest(req).is_ok() {
        for t in f.store.profile_types() {
            let _ = f.store.render(
                &t,
                1_700_000_000_000_000_000,
                1_700_000_020_000_000_000,
                &kiln_store::RenderOptions::default(),
            );
        }
    }
});
