//! Profiles and push requests built the way Kiln's agent builds them, for tests that
//! feed a server or a store.

use kiln_proto::builder::FrameSpec;
use kiln_proto::pprof::Profile;
use kiln_proto::push::{LabelPair, PushRequest, RawProfileSeries, RawSample};
use kiln_proto::ProfileBuilder;
use prost::Message as _;

/// One second in nanoseconds.
pub const S: i64 = 1_000_000_000;
/// The agent's CPU time profile type, as queried.
pub const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The agent's sample count profile type, as queried.
pub const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds";

/// `(frames root→leaf, count, sample labels)`.
pub type StackSpec<'a> = (&'a [&'a str], i64, &'a [(&'a str, &'a str)]);

/// A CPU pprof like the eBPF agent's: samples/count and cpu/nanoseconds at 10 ms, each
/// frame in `app.rs` line 1, stamped `time_nanos` with a 10 s duration.
pub fn cpu_profile(stacks: &[StackSpec<'_>], time_nanos: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    for (frames, n, labels) in stacks {
        let locs: Vec<u64> = frames
            .iter()
            .rev()
            .map(|f| {
                b.location(
                    0,
                    0,
                    &[FrameSpec {
                        name: f,
                        filename: "app.rs",
                        line: 1,
                    }],
                )
            })
            .collect();
        b.add_sample(&locs, &[*n, n * 10_000_000], labels);
    }
    b.set_time(time_nanos, 10 * S);
    b.build()
}

/// A profile of one sample type, cpu/nanoseconds, stamped now, with one sample of
/// `nanos` in `function`.
pub fn one_frame_profile(function: &str, nanos: i64) -> Profile {
    let mut b = ProfileBuilder::new(
        &[("cpu", "nanoseconds")],
        ("cpu", "nanoseconds"),
        10_000_000,
    );
    let l = b.location(
        0,
        0,
        &[FrameSpec {
            name: function,
            filename: "",
            line: 0,
        }],
    );
    b.add_sample(&[l], &[nanos], &[]);
    let mut p = b.build();
    p.time_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    p
}

/// An encoded Connect `PushRequest`: one series labelled `labels` holding `raw_profiles`
/// (encoded pprof, gzip'd or not).
pub fn push_request(labels: &[(&str, &str)], raw_profiles: Vec<Vec<u8>>) -> Vec<u8> {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: labels.iter().map(|(k, v)| LabelPair::new(*k, *v)).collect(),
            samples: raw_profiles
                .into_iter()
                .map(|raw_profile| RawSample {
                    raw_profile,
                    id: String::new(),
                })
                .collect(),
            annotations: vec![],
        }],
    }
    .encode_to_vec()
}

/// [`push_request`] with one profile, gzip'd when `gzip_profile`.
pub fn push_body(labels: &[(&str, &str)], profile: &Profile, gzip_profile: bool) -> Vec<u8> {
    let raw = profile.encode_to_vec();
    let raw = if gzip_profile {
        kiln_proto::gzip::compress(&raw)
    } else {
        raw
    };
    push_request(labels, vec![raw])
}
