//! The HTTP API against a real server on a free port: push (Connect proto/JSON, gzip),
//! legacy ingest (folded, lines, pprof, multipart), render, diff, labels, group totals,
//! export, metrics, health, UI.

use kiln_testkit::{flamebearer::*, pprof::*, *};
use prost::Message;

fn now_s() -> i64 {
    kiln_store::now_nanos() / S
}

fn seed(srv: &TestServer, t: i64) {
    for (region, stacks) in [
        (
            "us-west-1",
            vec![
                (&["main", "work", "hot_function"][..], 8, &[][..]),
                (
                    &["main", "only_in_us_west"][..],
                    2,
                    &[("vehicle", "car")][..],
                ),
            ],
        ),
        (
            "eu-north-1",
            vec![(
                &["main", "work", "hot_function"][..],
                5,
                &[("vehicle", "bike")][..],
            )],
        ),
    ] {
        let body = push_body(
            &[
                ("__name__", "process_cpu"),
                ("service_name", "shop"),
                ("region", region),
            ],
            &cpu_profile(&stacks, t * S),
            true,
        );
        let r = srv.post(
            "/push.v1.PusherService/Push",
            &[
                ("content-type", "application/proto"),
                ("content-encoding", "gzip"),
            ],
            &kiln_proto::gzip::compress(&body),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/proto"));
    }
}

#[test]
fn push_and_query_round_trip() {
    let srv = TestServer::start();
    let t = now_s() - 60;
    seed(&srv, t);
    let range = format!("&from={}&until={}", t - 10, t + 20);

    let types = srv.get_json("/api/v1/profile-types");
    assert_eq!(types, serde_json::json!([CPU, SAMPLES]));

    let q = urlencode(&format!("{CPU}{{service_name=\"shop\"}}"));
    let r = srv.get_json(&format!("/pyroscope/render?query={q}{range}&format=json"));
    let fb = &r["flamebearer"];
    assert_eq!(fb["numTicks"], 15 * 10_000_000);
    assert_eq!(fb["names"][0], "total");
    assert_eq!(fb["levels"][0].as_array().unwrap().len(), 4);
    assert_eq!(function_total(fb, "hot_function"), 13 * 10_000_000);
    assert_eq!(r["metadata"]["format"], "single");
    assert_eq!(r["metadata"]["units"], "samples");
    assert_eq!(r["metadata"]["sampleRate"], 1_000_000_000);
    assert_eq!(r["timeline"]["durationDelta"], 10);
    let tl_sum: u64 = r["timeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(tl_sum, 15 * 10_000_000);
    assert!(r["timeline"]["startTime"].as_i64().unwrap() <= t);

    // Series label and sample label (dynamic tag) filters, regexes, legacy names.
    for (sel, want_total, has_west) in [
        ("{region=\"us-west-1\"}", 10, true),
        ("{region=~\"eu-.*\"}", 5, false),
        ("{region!~\"eu-.*\"}", 10, true),
        ("{vehicle=\"car\"}", 2, true),
        ("{vehicle!=\"car\"}", 13, false),
    ] {
        let q = urlencode(&format!("{SAMPLES}{sel}"));
        let r = srv.get_json(&format!("/pyroscope/render?query={q}{range}"));
        assert_eq!(r["flamebearer"]["numTicks"], want_total, "{sel}");
        assert_eq!(
            names(&r["flamebearer"]).contains(&"only_in_us_west".to_owned()),
            has_west,
            "{sel}"
        );
    }
    let r = srv.get_json(&format!("/pyroscope/render?query=shop.cpu{range}"));
    assert_eq!(r["flamebearer"]["numTicks"], 15 * 10_000_000);
    let r = srv.get_json(&format!(
        "/pyroscope/render?query={}{range}",
        urlencode(CPU)
    ));
    assert_eq!(r["flamebearer"]["numTicks"], 15 * 10_000_000);

    // maxNodes truncation keeps the root and merges the rest into "other".
    let r = srv.get_json(&format!("/pyroscope/render?query={q}{range}&maxNodes=2"));
    assert!(names(&r["flamebearer"]).contains(&"other".to_owned()));

    // groupBy adds per-value timelines.
    let r = srv.get_json(&format!(
        "/pyroscope/render?query={q}{range}&groupBy=region"
    ));
    assert!(r["groups"]["us-west-1"]["samples"].is_array(), "{r}");

    // Labels.
    let n = srv.get_json(&format!(
        "/pyroscope/label-names?query={}{range}",
        urlencode(&format!("{CPU}{{}}"))
    ));
    for name in ["__name__", "region", "service_name", "vehicle"] {
        assert!(n.as_array().unwrap().iter().any(|v| v == name), "{n}");
    }
    let v = srv.get_json(&format!(
        "/pyroscope/label-values?label=region&query={}{range}",
        urlencode(CPU)
    ));
    assert_eq!(v, serde_json::json!(["eu-north-1", "us-west-1"]));
    let v = srv.get_json("/pyroscope/label-values?label=vehicle");
    assert_eq!(v, serde_json::json!(["bike", "car"]));
    let v = srv.get_json(&format!(
        "/pyroscope/label-values?label=region&from={}&until={}",
        t - 7200,
        t - 3600
    ));
    assert_eq!(v, serde_json::json!([]));

    // Group totals.
    let g = srv.get_json(&format!(
        "/api/v1/group-totals?query={}{range}&groupBy=region",
        urlencode(SAMPLES)
    ));
    assert_eq!(g["groupBy"], "region");
    assert_eq!(g["total"], 15);
    assert_eq!(g["groups"][0]["value"], "us-west-1");
    assert_eq!(g["groups"][0]["total"], 10);
    assert_eq!(g["groups"][0]["timeline"]["durationDelta"], 10);
    let g = srv.get_json(&format!(
        "/api/v1/group-totals?query={}{range}&groupBy=nope",
        urlencode(SAMPLES)
    ));
    assert_eq!(g["groups"][0]["value"], "");

    // Export.
    let r = srv.get(&format!(
        "/api/v1/export?query={}{range}&format=pprof",
        urlencode(SAMPLES)
    ));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let p = kiln_proto::pprof::Profile::decode(
        &*kiln_proto::gzip::decompress_capped(&r.body, 1 << 24).unwrap(),
    )
    .unwrap();
    kiln_proto::validate(&p).unwrap();
    assert_eq!(p.sample.iter().map(|s| s.value[0]).sum::<i64>(), 15);
    let r = srv.get(&format!(
        "/api/v1/export?query={}{range}&format=folded",
        urlencode(SAMPLES)
    ));
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("main;work;hot_function 13\n"),
        "{}",
        r.text()
    );

    // Querier (Connect JSON).
    let r = srv.post(
        "/querier.v1.QuerierService/LabelValues",
        &[("content-type", "application/json")],
        br#"{"name":"region"}"#,
    );
    assert_eq!(
        r.json()["names"],
        serde_json::json!(["eu-north-1", "us-west-1"])
    );
    let r = srv.post(
        "/querier.v1.QuerierService/ProfileTypes",
        &[("content-type", "application/json")],
        b"{}",
    );
    assert_eq!(r.json()["profileTypes"][0]["ID"], CPU);

    // Metrics and health.
    let m = srv.get("/metrics").text();
    assert!(m.contains("kiln_ingested_profiles_total 2"), "{m}");
    assert!(
        m.contains("kiln_query_duration_seconds_count{endpoint=\"render\"}"),
        "{m}"
    );
    assert!(m.contains("kiln_store_file_bytes"), "{m}");
    assert_eq!(srv.get("/healthz").status, 200);
}

#[test]
fn diff_between_ranges() {
    let srv = TestServer::start();
    let t = now_s() - 600;
    for (dt, grows) in [(0, 1), (300, 9)] {
        let body = push_body(
            &[("service_name", "d")],
            &cpu_profile(
                &[
                    (&["main", "grows"], grows, &[]),
                    (&["main", "steady"], 4, &[]),
                ],
                (t + dt) * S,
            ),
            false,
        );
        let r = srv.post(
            "/push.v1.PusherService/Push",
            &[("content-type", "application/proto")],
            &body,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let q = urlencode(SAMPLES);
    let r = srv.get_json(&format!(
        "/pyroscope/render-diff?leftQuery={q}&leftFrom={}&leftUntil={}&rightQuery={q}&rightFrom={}&rightUntil={}&format=json",
        t - 1, t + 100, t + 200, t + 400
    ));
    assert_eq!(r["metadata"]["format"], "double");
    assert_eq!(r["leftTicks"], 5);
    assert_eq!(r["rightTicks"], 13);
    assert_eq!(r["flamebearer"]["numTicks"], 18);
    let names = names(&r["flamebearer"]);
    let grows = names.iter().position(|n| n == "grows").unwrap() as u64;
    let level: Vec<u64> = r["flamebearer"]["levels"][2]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(level.len() % 7, 0);
    let node = level.chunks(7).find(|c| c[6] == grows).unwrap();
    assert_eq!((node[1], node[4]), (1, 9));
}

#[test]
fn push_json_and_legacy_ingest_formats() {
    let srv = TestServer::start();
    let t = now_s() - 100;
    // Connect JSON.
    let req = kiln_proto::push::PushRequest {
        series: vec![kiln_proto::push::RawProfileSeries {
            labels: vec![kiln_proto::push::LabelPair::new("service_name", "jsonapp")],
            samples: vec![kiln_proto::push::RawSample {
                raw_profile: cpu_profile(&[(&["main", "from_json"], 3, &[])], t * S)
                    .encode_to_vec(),
                id: String::new(),
            }],
            annotations: vec![],
        }],
    };
    let r = srv.post(
        "/push.v1.PusherService/Push",
        &[("content-type", "application/json")],
        serde_json::to_string(&req).unwrap().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{}");

    // Folded (default format).
    let r = srv.post(
        &format!(
            "/ingest?name={}&from={t}&until={}&sampleRate=100&spyName=rbspy",
            urlencode("folded.cpu{env=prod}"),
            t + 10
        ),
        &[("content-type", "text/plain")],
        b"main;fold_a 3\nmain;fold_b 1\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Lines.
    let r = srv.post(
        &format!(
            "/ingest?name=lines.cpu&format=lines&from={t}&until={}",
            t + 10
        ),
        &[],
        b"main;line_a\nmain;line_a\nmain;line_b\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // pprof, gzip'd, octet-stream (as pyroscope-io 0.8 sends).
    let prof = kiln_proto::gzip::compress(
        &cpu_profile(&[(&["main", "from_pprof"], 4, &[])], 0).encode_to_vec(),
    );
    let r = srv.post(
        &format!("/ingest?name=pp.cpu&format=pprof&from={t}&until={}", t + 10),
        &[("content-type", "binary/octet-stream")],
        &prof,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // multipart with sample_type_config keeping only `cpu`.
    let boundary = "XkilnBoundary42";
    let mut mp = Vec::new();
    mp.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
    mp.extend_from_slice(&cpu_profile(&[(&["main", "from_multipart"], 2, &[])], 0).encode_to_vec());
    mp.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"c.json\"\r\n\r\n{{\"cpu\":{{\"units\":\"samples\"}}}}\r\n--{boundary}--\r\n").as_bytes());
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = srv.post(
        &format!("/ingest?name=mp.cpu&from={t}&until={}", t + 10),
        &[("content-type", &ct)],
        &mp,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let range = format!("&from={}&until={}", t - 10, t + 20);
    let check = |query: &str, func: &str, ticks: u64| {
        let r = srv.get_json(&format!(
            "/pyroscope/render?query={}{range}",
            urlencode(query)
        ));
        assert_eq!(r["flamebearer"]["numTicks"], ticks, "{query}: {r}");
        assert!(
            names(&r["flamebearer"]).contains(&func.to_owned()),
            "{query}"
        );
    };
    check("jsonapp.cpu", "from_json", 30_000_000);
    check(
        &format!("{CPU}{{service_name=\"folded\",env=\"prod\"}}"),
        "fold_a",
        40_000_000,
    );
    check("lines.cpu", "line_a", 30_000_000);
    check(
        &format!("{CPU}{{service_name=\"pp\"}}"),
        "from_pprof",
        40_000_000,
    );
    check(
        &format!("{SAMPLES}{{service_name=\"pp\"}}"),
        "from_pprof",
        4,
    );
    check(
        &format!("{CPU}{{service_name=\"mp\"}}"),
        "from_multipart",
        20_000_000,
    );
    let r = srv.get(&format!(
        "/pyroscope/render?query={}{range}",
        urlencode(&format!("{SAMPLES}{{service_name=\"mp\"}}"))
    ));
    assert_eq!(
        r.json()["flamebearer"]["numTicks"],
        0,
        "sample_type_config dropped samples:count"
    );
    let spy = srv.get_json(&format!("/pyroscope/render?query=folded.cpu{range}"));
    assert_eq!(spy["metadata"]["spyName"], "rbspy");
}

#[test]
fn ui_is_served_with_spa_fallback() {
    let srv = TestServer::start();
    let r = srv.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().to_lowercase().contains("<html") || r.text().contains("<!doctype"));
    let deep = srv.get("/some/app/route");
    assert_eq!(deep.status, 200);
    assert_eq!(deep.body, r.body);
    assert_eq!(srv.get("/missing.js").status, 404);
    assert_eq!(srv.get("/api/v1/nope").status, 404);
    let gz = srv.request("GET", "/", &[("accept-encoding", "gzip")], &[]);
    assert_eq!(gz.status, 200);
}
