//! An acknowledged push survives `kill -9`: a child process (this test binary re-invoked)
//! serves a store, the parent pushes over HTTP and gets 200s, kills the child with
//! SIGKILL, then reopens the store and finds every acknowledged profile.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use kiln_testkit::{pprof::*, *};

const CHILD_ENV: &str = "KILN_DURABILITY_CHILD_DIR";

/// Entry point of the child: only does something when re-invoked by the parent.
#[test]
fn durability_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store =
        Arc::new(kiln_store::Store::open(&dir, kiln_store::StoreOptions::default()).unwrap());
    let srv = TestServer::serve(store, kiln_server::Limits::default());
    println!("LISTENING {}", srv.addr);
    // Serve until killed.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_pushes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "--exact",
            "durability_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("child exited early").unwrap();
        // The harness may print "test durability_child ... " on the same line.
        if let Some((_, a)) = line.split_once("LISTENING ") {
            break a.trim().parse().unwrap();
        }
    };
    let t = kiln_store::now_nanos() / S - 600;
    let mut acked = 0;
    for i in 0..20 {
        let body = push_body(
            &[("service_name", "durable")],
            &cpu_profile(&[(&["main", "persisted"], 1, &[])], (t + i * 10) * S),
            false,
        );
        let r = request(
            addr,
            "POST",
            "/push.v1.PusherService/Push",
            &[("content-type", "application/proto")],
            &body,
        )
        .expect("push answered");
        assert_eq!(r.status, 200, "{}", r.text());
        acked += 1;
    }
    // SIGKILL: no destructor, no clean close of the database.
    let pid = child.0.id() as libc::pid_t;
    // SAFETY: signalling our own child by pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.0.wait().unwrap();
    assert!(!status.success());

    let store = kiln_store::Store::open(dir.path(), kiln_store::StoreOptions::default()).unwrap();
    let tree = store
        .tree(
            &format!("{SAMPLES}{{service_name=\"durable\"}}"),
            (t - 10) * S,
            (t + 300) * S,
        )
        .unwrap();
    assert_eq!(tree.total(0), acked);
    assert_eq!(tree.function_total("persisted", 0), acked);
    store.close().unwrap();
}
