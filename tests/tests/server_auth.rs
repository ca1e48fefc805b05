//! Access control of a real `kiln server` process over real HTTP: with
//! `--auth-token-file`, push, query and UI answer 401 without the token and 200 with it
//! (bearer or basic); on loopback a foreign `Host` (DNS rebinding) gets 421; a
//! non-loopback address without auth refuses to start unless `--insecure-no-auth`; and
//! `kiln agent` pushes into a token-protected server with its `--bearer-token`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::{agent::*, server::*, *};
use prost::Message;

const TOKEN: &str = "kiln-test-token-4b1d";

fn push_body() -> Vec<u8> {
    let p = one_frame_profile("authed_work", 10_000_000);
    push_request(
        &cpu_series("authed"),
        vec![kiln_proto::gzip::compress(&p.encode_to_vec())],
    )
}

fn basic(user: &str, password: &str) -> String {
    // Standard base64, as browsers send it.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for c in raw.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[test]
fn token_guards_push_query_and_ui() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let srv = KilnServer::start(
        dir.path(),
        &["--auth-token-file", token_file.to_str().unwrap()],
    );
    let body = push_body();
    let proto = ("content-type", "application/proto");
    let bearer = format!("Bearer {TOKEN}");
    let routes: [(&str, &str, &[u8]); 4] = [
        ("POST", "/push.v1.PusherService/Push", &body),
        ("GET", "/pyroscope/label-values?label=service_name", b""),
        ("GET", "/", b""),
        ("GET", "/metrics", b""),
    ];
    for (method, path, b) in routes {
        let no = srv.request(method, path, &[proto], b).unwrap();
        assert_eq!(
            no.status,
            401,
            "{method} {path} without token: {}",
            no.text()
        );
        assert!(
            no.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic")),
            "{path}: {:?}",
            no.headers
        );
        let wrong = srv
            .request(method, path, &[proto, ("authorization", "Bearer nope")], b)
            .unwrap();
        assert_eq!(wrong.status, 401, "{method} {path} with a wrong token");
        let wrong_basic = srv
            .request(
                method,
                path,
                &[proto, ("authorization", &basic(TOKEN, "x"))],
                b,
            )
            .unwrap();
        assert_eq!(
            wrong_basic.status, 401,
            "{method} {path}: token as user name"
        );
        let ok = srv
            .request(method, path, &[proto, ("authorization", &bearer)], b)
            .unwrap();
        assert_eq!(ok.status, 200, "{method} {path} with token: {}", ok.text());
        let ok = srv
            .request(
                method,
                path,
                &[proto, ("authorization", &basic("admin", TOKEN))],
                b,
            )
            .unwrap();
        assert_eq!(
            ok.status,
            200,
            "{method} {path} with basic auth: {}",
            ok.text()
        );
    }
    let values = srv
        .request(
            "GET",
            "/pyroscope/label-values?label=service_name",
            &[("authorization", &bearer)],
            b"",
        )
        .unwrap();
    assert!(values.text().contains("authed"), "{}", values.text());
    // Liveness stays open.
    assert_eq!(
        srv.request("GET", "/healthz", &[], b"").unwrap().status,
        200
    );
    // Refusals are counted, and the token is never logged.
    let m = srv
        .request("GET", "/metrics", &[("authorization", &bearer)], b"")
        .unwrap()
        .text();
    assert!(
        metric(
            &m,
            "kiln_rejected_requests_total",
            &[("reason", "unauthorized")]
        ) >= 12.0,
        "{m}"
    );
    let log = srv.log();
    assert!(!log.contains(TOKEN), "the token is in the log:\n{log}");
}

#[test]
fn loopback_refuses_foreign_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = KilnServer::start(dir.path(), &[]);
    let port = srv.addr.port();
    for host in [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        format!("10.1.2.3:{port}"),
    ] {
        for path in ["/", "/pyroscope/label-values?label=service_name"] {
            let a = srv.request("GET", path, &[("host", &host)], b"").unwrap();
            assert_eq!(a.status, 421, "Host {host} {path}: {}", a.text());
        }
        let a = srv
            .request(
                "POST",
                "/push.v1.PusherService/Push",
                &[("host", &host), ("content-type", "application/proto")],
                &push_body(),
            )
            .unwrap();
        assert_eq!(a.status, 421, "push with Host {host}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let a = srv
            .request(
                "GET",
                "/pyroscope/label-values?label=service_name",
                &[("host", &host)],
                b"",
            )
            .unwrap();
        assert_eq!(a.status, 200, "Host {host}: {}", a.text());
    }
}

#[test]
fn non_loopback_listen_needs_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(kiln_bin())
        .args(["server", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("refused"))
        .stdin(Stdio::null())
        .output()
        .expect("run kiln server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started without auth on 0.0.0.0:\n{err}"
    );
    assert!(
        err.contains("without authentication") && err.contains("--auth-token-file"),
        "{err}"
    );
    assert!(
        !dir.path().join("refused").exists(),
        "the store was created before refusing"
    );
    // `kiln run` shares the flags and refuses before profiling anything.
    let out = Command::new(kiln_bin())
        .args(["run", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("refused-run"))
        .stdin(Stdio::null())
        .output()
        .expect("run kiln run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kiln run started without auth:
{err}"
    );
    assert!(err.contains("without authentication"), "{err}");
    // With --insecure-no-auth it starts; no Host check off loopback.
    let srv = KilnServer::start_on(dir.path(), "0.0.0.0:0", &["--insecure-no-auth"]);
    let a = srv
        .request(
            "GET",
            "/pyroscope/label-values?label=service_name",
            &[("host", "kiln.example:4040")],
            b"",
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(srv.stop().success());
}

#[test]
fn agent_pushes_into_a_token_protected_server() {
    if skip_unless_root("agent_pushes_into_a_token_protected_server") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = build_workload("agent_burn", &[]);
    let tok = token();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let srv = KilnServer::start(
        dir.path(),
        &["--auth-token-file", token_file.to_str().unwrap()],
    );
    let rules = write_file(
        dir.path(),
        "rules.toml",
        &format!(
            "[[relabel_configs]]\nsource_labels = [\"__meta_env_var_KILN_TEST\"]\nregex = \"{tok}\"\naction = \"keep\"\n"
        ),
    );
    let push_url = format!("http://{}", srv.addr);
    let agent = Agent::start(
        &[
            "--env-label",
            "KILN_TEST=kiln_test",
            "--relabel-config",
            rules.to_str().unwrap(),
            "--push-url",
            &push_url,
            "--bearer-token",
            TOKEN,
            "--collect-interval",
            "1",
        ],
        dir.path(),
    );
    let _burner = spawn_in_cgroups(&exe, &["60000"], &[("KILN_TEST", tok.as_str())], &[]);
    let path = "/pyroscope/label-values?label=kiln_test";
    let bearer = format!("Bearer {TOKEN}");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let a = srv
            .request("GET", path, &[("authorization", &bearer)], b"")
            .unwrap();
        if a.status == 200 && a.text().contains(&tok) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent's pushes never arrived: {} {}\nagent:\n{}\nserver:\n{}",
            a.status,
            a.text(),
            agent.log(),
            srv.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = agent.metrics();
    assert_eq!(
        metric(
            &m,
            "kiln_exporter_windows_dropped_total",
            &[("exporter", "push")]
        ),
        0.0,
        "the server refused windows:\n{}",
        agent.log()
    );
    assert!(!agent.log().contains(TOKEN), "the agent logged the token");
    let (status, log) = agent.stop(Duration::from_secs(20));
    assert!(status.success(), "agent exit {status}:\n{log}");
}
