//! Hostile and broken requests get a clear 4xx; the server keeps serving and nothing
//! stored before is lost.

use kiln_testkit::{pprof::*, *};
use prost::Message;

#[test]
fn bad_requests_are_refused_and_nothing_is_lost() {
    let limits = kiln_server::Limits {
        max_body_bytes: 1 << 20,
        max_profile_bytes: 4 << 20,
        ..Default::default()
    };
    let srv = TestServer::start_with(limits);
    let t = kiln_store::now_nanos() / S - 60;
    let good = push_body(
        &[("service_name", "keep")],
        &cpu_profile(&[(&["main", "precious"], 7, &[])], t * S),
        false,
    );
    let proto = [("content-type", "application/proto")];
    assert_eq!(
        srv.post("/push.v1.PusherService/Push", &proto, &good)
            .status,
        200
    );
    let render = format!(
        "/pyroscope/render?query={}&from={}&until={}",
        urlencode(&format!("{SAMPLES}{{service_name=\"keep\"}}")),
        t - 10,
        t + 20
    );
    let intact = || {
        let r = srv.get_json(&render);
        assert_eq!(r["flamebearer"]["numTicks"], 7, "stored data changed: {r}");
    };

    let bomb = kiln_proto::gzip::compress(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let neg = {
        let mut p = cpu_profile(&[(&["main", "x"], 1, &[])], t * S);
        p.sample[0].value[0] = -5;
        push_body(&[("service_name", "keep")], &p, false)
    };
    let bad_label = push_body(
        &[("service_name", "keep"), ("bad-label!", "x")],
        &cpu_profile(&[(&["main", "x"], 1, &[])], t * S),
        false,
    );
    let dangling = {
        let mut p = cpu_profile(&[(&["main", "x"], 1, &[])], t * S);
        p.sample[0].location_id = vec![12345];
        push_body(&[("service_name", "keep")], &p, false)
    };
    let bomb_inside = {
        let req = kiln_proto::push::PushRequest {
            series: vec![kiln_proto::push::RawProfileSeries {
                labels: vec![kiln_proto::push::LabelPair::new("service_name", "keep")],
                samples: vec![kiln_proto::push::RawSample {
                    raw_profile: bomb.clone(),
                    id: String::new(),
                }],
                annotations: vec![],
            }],
        };
        req.encode_to_vec()
    };
    let truncated = good[..good.len() - 7].to_vec();
    let oversized = vec![b'x'; (1 << 20) + 4096];

    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let push = "/push.v1.PusherService/Push".to_owned();
    let cases: Vec<Case<'_>> = vec![
        (
            "truncated protobuf",
            push.clone(),
            proto.to_vec(),
            truncated,
            400,
            "protobuf",
        ),
        (
            "not protobuf",
            push.clone(),
            proto.to_vec(),
            b"hello, this is not protobuf".to_vec(),
            400,
            "protobuf",
        ),
        (
            "wrong content type",
            push.clone(),
            vec![("content-type", "text/plain")],
            good.clone(),
            415,
            "content-type",
        ),
        (
            "missing content type",
            push.clone(),
            vec![],
            good.clone(),
            415,
            "content-type",
        ),
        (
            "gzip bomb body",
            push.clone(),
            vec![
                ("content-type", "application/proto"),
                ("content-encoding", "gzip"),
            ],
            bomb.clone(),
            413,
            "limit",
        ),
        (
            "gzip bomb profile",
            push.clone(),
            proto.to_vec(),
            bomb_inside,
            413,
            "limit",
        ),
        (
            "fake gzip",
            push.clone(),
            vec![
                ("content-type", "application/proto"),
                ("content-encoding", "gzip"),
            ],
            good.clone(),
            400,
            "gzip",
        ),
        (
            "unknown encoding",
            push.clone(),
            vec![
                ("content-type", "application/proto"),
                ("content-encoding", "br"),
            ],
            good.clone(),
            415,
            "content-encoding",
        ),
        (
            "oversized body",
            push.clone(),
            proto.to_vec(),
            oversized.clone(),
            413,
            "limit",
        ),
        (
            "invalid label name",
            push.clone(),
            proto.to_vec(),
            bad_label,
            400,
            "label name",
        ),
        (
            "negative value",
            push.clone(),
            proto.to_vec(),
            neg,
            400,
            "negative",
        ),
        (
            "dangling location",
            push.clone(),
            proto.to_vec(),
            dangling,
            400,
            "location",
        ),
        (
            "invalid json",
            push.clone(),
            vec![("content-type", "application/json")],
            b"{\"series\": [".to_vec(),
            400,
            "JSON",
        ),
        (
            "ingest from after until",
            format!("/ingest?name=keep.cpu&from={}&until={}", t + 100, t),
            vec![],
            b"main;x 1\n".to_vec(),
            400,
            "after",
        ),
        (
            "ingest bad folded",
            format!("/ingest?name=keep.cpu&from={t}&until={t}"),
            vec![],
            b"main;x notanumber\n".to_vec(),
            400,
            "line 1",
        ),
        (
            "ingest negative",
            format!("/ingest?name=keep.cpu&from={t}&until={t}"),
            vec![],
            b"main;x -3\n".to_vec(),
            400,
            "negative",
        ),
        (
            "ingest bad pprof",
            format!("/ingest?name=keep.cpu&format=pprof&from={t}&until={t}"),
            vec![],
            b"\x0a\xff\xff".to_vec(),
            400,
            "protobuf",
        ),
        (
            "ingest unsupported format",
            format!("/ingest?name=keep.cpu&format=trie&from={t}&until={t}"),
            vec![],
            b"x".to_vec(),
            400,
            "format",
        ),
        (
            "ingest oversized",
            format!("/ingest?name=keep.cpu&from={t}&until={t}"),
            vec![],
            oversized,
            413,
            "limit",
        ),
        (
            "ingest bomb",
            format!("/ingest?name=keep.cpu&format=pprof&from={t}&until={t}"),
            vec![],
            bomb,
            413,
            "limit",
        ),
        (
            "ingest without name",
            "/ingest".to_owned(),
            vec![],
            b"main;x 1\n".to_vec(),
            400,
            "name",
        ),
    ];
    for (what, path, headers, body, status, needle) in cases {
        let r = srv.post(&path, &headers, &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let j = r.json();
        let msg = j["message"].as_str().unwrap_or_default();
        assert!(
            msg.to_lowercase().contains(&needle.to_lowercase()),
            "{what}: message {msg:?} lacks {needle:?}"
        );
        assert!(j["code"].is_string(), "{what}: {j}");
        intact();
    }

    // Bad queries.
    let gets = [
        (
            format!(
                "/pyroscope/render?query={}&from=now&until=now-1h",
                urlencode(SAMPLES)
            ),
            400,
            "after",
        ),
        (
            format!("/pyroscope/render?query={}", urlencode("nope:a:b:c:d")),
            404,
            "unknown profile type",
        ),
        (
            format!("/pyroscope/render?query={}", urlencode("x{a=b}")),
            400,
            "selector",
        ),
        (
            format!(
                "/pyroscope/render?query={}&from=yesterday",
                urlencode(SAMPLES)
            ),
            400,
            "invalid time",
        ),
        ("/pyroscope/render".to_owned(), 400, "missing"),
        (
            format!("/pyroscope/render?query={}&format=dot", urlencode(SAMPLES)),
            400,
            "format",
        ),
        (
            format!("/pyroscope/render?query={}&maxNodes=-1", urlencode(SAMPLES)),
            400,
            "maxnodes",
        ),
        (
            format!("/api/v1/group-totals?query={}", urlencode(SAMPLES)),
            400,
            "groupby",
        ),
        (
            format!("/api/v1/export?query={}&format=png", urlencode(SAMPLES)),
            400,
            "format",
        ),
        ("/pyroscope/label-values".to_owned(), 400, "label"),
    ];
    for (path, status, needle) in gets {
        let r = srv.get(&path);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.to_lowercase().contains(needle),
            "{path}: {msg:?} lacks {needle:?}"
        );
        intact();
    }
    let m = srv.get("/metrics").text();
    assert!(
        m.contains("kiln_rejected_requests_total{reason=\"too_large\"}"),
        "{m}"
    );
    assert!(
        m.contains("kiln_rejected_requests_total{reason=\"invalid_protobuf\"}"),
        "{m}"
    );
}
