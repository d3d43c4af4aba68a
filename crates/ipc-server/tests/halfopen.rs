//! Server-side TCP keepalive against a client that vanishes without a FIN
//! or RST: with `ServerConfig::keepalive` the server reports the dead
//! connection (a timed-out I/O error naming the peer), closes it and keeps
//! serving.
//!
//! Like `ipc-client`'s half-open test, it re-runs itself inside a private
//! network namespace (`unshare --net`, root only) where a blackhole routing
//! rule silently drops every packet to 127.0.0.1. Without root, `unshare`
//! (util-linux) or `ip` (iproute2) it prints `skipped: <reason>` and
//! passes, unless `CI=true` or `NIPC_REQUIRE_NETNS=1` is set (then it
//! fails).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use ipc_server::{Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::{Endpoint, Keepalive};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);
const CHILD: &str = "NIPC_NETNS_CHILD";
const TEST: &str = "keepalive_detects_a_vanished_client";

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "`{cmd} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `{cmd}`: {e}")),
    }
}

fn missing_precondition() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root".into());
    }
    if let Err(e) = run("ip", &["-V"]) {
        return Some(format!("needs `ip` (Debian package iproute2): {e}"));
    }
    if let Err(e) = run("unshare", &["--net", "--", "ip", "link", "set", "lo", "up"]) {
        return Some(format!(
            "needs `unshare --net` (util-linux, CAP_SYS_ADMIN): {e}"
        ));
    }
    None
}

/// Under CI (`CI=true` or `CI=1`, as `cargo xtask test` reads it) or with
/// `NIPC_REQUIRE_NETNS=1` a missing precondition fails instead of skipping.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("NIPC_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

#[tokio::test]
async fn keepalive_detects_a_vanished_client() {
    if std::env::var_os(CHILD).is_some() {
        in_namespace().await;
        return;
    }
    if let Some(reason) = missing_precondition() {
        if required() {
            panic!("CI=true or NIPC_REQUIRE_NETNS=1, but the half-open test cannot run: {reason}");
        }
        println!("skipped: {reason}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "namespaced run failed:\n{stdout}\n{stderr}"
    );
}

/// Runs inside the private network namespace.
async fn in_namespace() {
    run("ip", &["link", "set", "lo", "up"]).unwrap();
    let keepalive = Keepalive {
        time: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        retries: 2,
    };
    let server = Server::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ServerConfig {
            keepalive: Some(keepalive),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut events = server.events();
    let local = timeout(T, server.start()).await.unwrap().unwrap();
    let Endpoint::Tcp { port, .. } = local else {
        panic!("{local:?}")
    };
    // A client that connects and then says nothing.
    let silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let silent_addr = silent.local_addr().unwrap();
    timeout(T, async {
        loop {
            if let Some(ServerEvent::Connect(_)) = events.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(server.connections(), 1);

    // The client's host "loses power": every packet is dropped silently.
    run(
        "sh",
        &[
            "-c",
            "ip rule add pref 1 to 127.0.0.1 blackhole && ip rule del pref 0 && ip rule add pref 2 lookup local",
        ],
    )
    .unwrap();
    let cut = tokio::time::Instant::now();
    let err = timeout(T, async {
        loop {
            match events.recv().await {
                Some(ServerEvent::Error { error, .. }) => return error,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("keepalive never reported the dead client");
    let detected = cut.elapsed();
    println!("keepalive error after {detected:?}: {err}");
    let ServerError::Io { peer, source } = &*err else {
        panic!("expected the connection's I/O error, got {err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}");
    assert!(peer.contains(&silent_addr.to_string()), "{peer}");
    assert!(
        detected < keepalive.detection_time() + Duration::from_secs(5),
        "took {detected:?}"
    );
    timeout(T, async {
        while server.connections() != 0 {
            if let Some(ServerEvent::Close(_)) = events.recv().await {
                continue;
            }
        }
    })
    .await
    .expect("the dead connection was not closed");

    // The network is back: the server still serves new clients.
    run("ip", &["rule", "del", "pref", "1"]).unwrap();
    let next = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    timeout(T, async {
        loop {
            if let Some(ServerEvent::Connect(_)) = events.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap();
    drop((silent, next));
    let stopped = tokio::time::Instant::now();
    server.stop().await;
    println!("stopped in {:?}", stopped.elapsed());
}
