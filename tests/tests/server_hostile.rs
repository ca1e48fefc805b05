//! Hostile pushes against a real `kiln server` process: small gzip'd bodies that inflate
//! into millions of valid pprof samples (or text lines). Four of them at once, on every
//! ingest path (Connect push, `/ingest` pprof, folded, lines and multipart), must each get
//! a 4xx without the server's peak RSS (VmHWM) growing by 256 MiB, every refusal is
//! counted by cause in `/metrics`, and a normal push right after succeeds.

use kiln_proto::builder::FrameSpec;
use kiln_proto::ProfileBuilder;
use kiln_tests::{server::*, *};
use prost::Message;

const MIB: usize = 1 << 20;

/// A valid pprof profile (one function, one location) whose samples, 8 bytes each on the
/// wire, fill `bytes`.
fn sample_flood(bytes: usize) -> Vec<u8> {
    let p = one_frame_profile("flood", 1);
    let l = p.location[0].id;
    let mut out = p.encode_to_vec();
    // Sample { location_id: [l], value: [1] }, packed.
    let sample = [0x12, 0x06, 0x0a, 0x01, l as u8, 0x12, 0x01, 0x01];
    while out.len() + sample.len() <= bytes {
        out.extend_from_slice(&sample);
    }
    out
}

/// Gzip at the best ratio: the default level of some deflate backends (zlib-rs, which a
/// full workspace build selects) leaves the bomb several times larger than ~100 KB.
fn gzip_best(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("write to Vec");
    enc.finish().expect("finish to Vec")
}

fn normal_push(srv: &KilnServer, service: &str) {
    let p = one_frame_profile("normal_work", 30_000_000);
    let body = push_request(&cpu_series(service), vec![gzip_best(&p.encode_to_vec())]);
    let a = srv
        .request(
            "POST",
            "/push.v1.PusherService/Push",
            &[("content-type", "application/proto")],
            &body,
        )
        .expect("normal push");
    assert_eq!(a.status, 200, "a normal push failed: {}", a.text());
}

struct Hostile {
    what: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn multipart(profile: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kilnhostileboundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(profile);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn hostile_bodies() -> Vec<Hostile> {
    // The measured attack: 8 profiles, each 8 MiB of samples once inflated.
    let flood = gzip_best(&sample_flood(8 * MIB));
    let push = push_request(&cpu_series("hostile"), vec![flood.clone(); 8]);
    let big_flood = gzip_best(&sample_flood(15 * MIB));
    let folded = gzip_best(&b"main;leaf 1\n".repeat(15 * MIB / 12));
    let lines = gzip_best(&b"main;work\n".repeat(15 * MIB / 10));
    let (mp_type, mp_body) = multipart(&big_flood);
    let ingest = |fmt: &str| format!("/ingest?name=hostile.cpu&format={fmt}&sampleRate=100");
    vec![
        Hostile {
            what: "connect push",
            path: "/push.v1.PusherService/Push".into(),
            headers: vec![("content-type", "application/proto".into())],
            body: push,
        },
        Hostile {
            what: "/ingest pprof",
            path: ingest("pprof"),
            headers: vec![("content-type", "application/octet-stream".into())],
            body: big_flood,
        },
        Hostile {
            what: "/ingest folded",
            path: ingest("folded"),
            headers: vec![("content-type", "text/plain".into())],
            body: folded,
        },
        Hostile {
            what: "/ingest lines",
            path: ingest("lines"),
            headers: vec![("content-type", "text/plain".into())],
            body: lines,
        },
        Hostile {
            what: "/ingest multipart",
            path: ingest("pprof"),
            headers: vec![("content-type", mp_type)],
            body: mp_body,
        },
    ]
}

#[test]
fn hostile_pushes_do_not_exhaust_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = KilnServer::start(dir.path(), &[]);
    normal_push(&srv, "before");
    let base = srv.peak_rss();

    for h in hostile_bodies() {
        assert!(
            h.body.len() < 200 * 1024,
            "{}: body of {} bytes is not the small kind",
            h.what,
            h.body.len()
        );
        let answers: Vec<Answer> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let headers: Vec<(&str, &str)> =
                            h.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        srv.request("POST", &h.path, &headers, &h.body)
                            .unwrap_or_else(|e| panic!("{}: {e}\n{}", h.what, srv.log()))
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for a in &answers {
            assert!(
                (400..500).contains(&a.status),
                "{}: answered {} {}",
                h.what,
                a.status,
                a.text()
            );
        }
        let grew = srv.peak_rss().saturating_sub(base);
        assert!(
            grew < 256 * MIB as u64,
            "{}: peak RSS grew by {} MiB",
            h.what,
            grew / MIB as u64
        );
        eprintln!(
            "{}: {} -> peak RSS +{} MiB",
            h.what,
            answers[0].status,
            grew / MIB as u64
        );
        assert!(srv.try_wait_alive(), "server died:\n{}", srv.log());
        normal_push(&srv, "after");
    }

    let m = srv
        .request("GET", "/metrics", &[], b"")
        .expect("metrics")
        .text();
    let budget = metric(
        &m,
        "kiln_rejected_requests_total",
        &[("reason", "over_memory_budget")],
    ) + metric(
        &m,
        "kiln_rejected_requests_total",
        &[("reason", "over_sample_budget")],
    );
    assert!(
        budget >= 20.0,
        "20 hostile requests, {budget} counted as over budget:\n{m}"
    );
    // The data pushed after the attacks is there.
    let q = srv
        .request(
            "GET",
            "/pyroscope/label-values?label=service_name",
            &[],
            b"",
        )
        .expect("label values")
        .text();
    assert!(q.contains("after") && !q.contains("hostile"), "{q}");
}

#[test]
fn concurrent_pushes_past_the_limit_get_429_with_retry_after() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = KilnServer::start(dir.path(), &["--max-concurrent-ingests", "1"]);
    // A push that sends its headers and a little of its body, then stalls: it holds the
    // only ingest turn.
    let mut slow = std::net::TcpStream::connect(srv.addr).expect("connect");
    write!(
        slow,
        "POST /push.v1.PusherService/Push HTTP/1.1\r\nHost: {}\r\ncontent-type: application/proto\r\nContent-Length: 100000\r\n\r\n",
        srv.addr
    )
    .unwrap();
    slow.write_all(&[0x0a; 10]).unwrap();
    slow.flush().unwrap();
    // Wait until the server has counted it (taken the turn) before pushing again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = srv.request("GET", "/metrics", &[], b"").unwrap().text();
        if metric(&m, "kiln_push_requests_total", &[("endpoint", "push")]) >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slow push never arrived"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = std::time::Instant::now();
    let mut b = ProfileBuilder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
    let l = b.location(
        0,
        0,
        &[FrameSpec {
            name: "f",
            filename: "",
            line: 0,
        }],
    );
    b.add_sample(&[l], &[1], &[]);
    let body = push_request(&cpu_series("waiting"), vec![b.build().encode_to_vec()]);
    let a = srv
        .request(
            "POST",
            "/push.v1.PusherService/Push",
            &[("content-type", "application/proto")],
            &body,
        )
        .unwrap();
    assert_eq!(a.status, 429, "{}", a.text());
    assert_eq!(a.header("retry-after"), Some("1"), "{:?}", a.headers);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "answered 429 without waiting for a turn"
    );
    let m = srv.request("GET", "/metrics", &[], b"").unwrap().text();
    assert_eq!(
        metric(&m, "kiln_rejected_requests_total", &[("reason", "busy")]),
        1.0,
        "{m}"
    );
    // The stalled client goes away: its turn is free again.
    drop(slow);
    normal_push(&srv, "after-busy");
}
