//! node-ipc's README examples against this crate's ports of them
//! (`ipc/examples/`), both ways, with real node-ipc 14 processes running the
//! JS originals (`interop/js/readme/`): world ↔ hello over a Unix socket,
//! UDP world ↔ UDP hello over udp4, and the cluster server (node's cluster
//! module) visited by the cluster client's port.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// udp_hello includes udp_world for its message type, exactly as it is built
// on its own.
#![allow(clippy::duplicate_mod)]

#[path = "../../ipc/examples/cluster_client.rs"]
#[allow(dead_code)]
mod cluster_client;
#[path = "../../ipc/examples/hello.rs"]
#[allow(dead_code)]
mod hello;
#[path = "../../ipc/examples/udp_hello.rs"]
#[allow(dead_code)]
mod udp_hello;
#[path = "../../ipc/examples/udp_world.rs"]
#[allow(dead_code)]
mod udp_world;
#[path = "../../ipc/examples/world.rs"]
#[allow(dead_code)]
mod world;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Stdio;
use std::time::Duration;

use ipc_interop::{free_udp_port, interop_dir, node_binary, require_peer, Flavor};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(30);
const FLAVOR: Flavor = Flavor::V14Fast;

/// Starts `interop/js/readme/<script>` on node-ipc 14's Node with `env`.
fn node(script: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(node_binary(FLAVOR));
    cmd.arg(interop_dir().join("js/readme").join(script))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn node")
}

/// Waits (bounded) for a node script that ends by itself; returns its
/// standard output.
async fn finished(child: Child) -> String {
    match run_to_end(child).await {
        Ok(out) => out,
        Err(report) => panic!("{report}"),
    }
}

/// Runs a node script that picks up a pre-chosen UDP port (node-ipc cannot
/// bind port 0) to its end, choosing a fresh port when the one handed out
/// was taken before Node bound it (at most 5 tries).
async fn finished_on_fresh_port(start: impl Fn(u16) -> Child) -> String {
    for _ in 0..5 {
        let port = free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        match run_to_end(start(port)).await {
            Ok(out) => return out,
            Err(report) if report.contains("EADDRINUSE") => continue,
            Err(report) => panic!("{report}"),
        }
    }
    panic!("five fresh ports in a row were taken before node bound them")
}

/// [`finished`], returning what the script printed as the error when it
/// failed.
async fn run_to_end(mut child: Child) -> Result<String, String> {
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(T, async {
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        child.wait().await
    })
    .await;
    match status {
        Ok(Ok(s)) if s.success() => Ok(out),
        other => {
            let _ = child.kill().await;
            Err(format!("node: {other:?}\nstdout: {out}\nstderr: {err}"))
        }
    }
}

/// The standard output of a running node script, line by line.
type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

fn lines(child: &mut Child) -> Lines {
    BufReader::new(child.stdout.take().unwrap()).lines()
}

/// Reads a running node script's output until a line containing `mark`,
/// bounded; returns the lines read.
async fn wait_for_line(lines: &mut Lines, mark: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(T, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let hit = line.contains(mark);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {mark:?} from node: {seen:?}");
    seen
}

/// Whether a running node script printed a line containing `mark` before
/// its output ended (bounded).
async fn listening(lines: &mut Lines, mark: &str) -> bool {
    tokio::time::timeout(T, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(mark) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

fn root(dir: &tempfile::TempDir) -> String {
    format!("{}/", dir.path().display())
}

#[tokio::test]
async fn rust_world_answers_node_ipc_14_hello() {
    if !require_peer(FLAVOR) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ipc = ipc::Ipc::new();
    ipc.configure(|c| c.socket_root = root(&dir).into());
    let server = world::world(&ipc).await.unwrap();
    let out = finished(node("hello.mjs", &[("IPC_SOCKET_ROOT", root(&dir))])).await;
    assert!(
        out.contains("got a message from world :  hello world!"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn node_ipc_14_world_answers_rust_hello() {
    if !require_peer(FLAVOR) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut js = node("world.mjs", &[("IPC_SOCKET_ROOT", root(&dir))]);
    let mut out = lines(&mut js);
    let socket = dir.path().join("app.world");
    tokio::time::timeout(T, async {
        while !socket.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("node-ipc's world did not create its socket");
    let ipc = ipc::Ipc::new();
    ipc.configure(|c| c.socket_root = root(&dir).into());
    let client = hello::hello(&ipc).unwrap();
    let answer = hello::first_answer(&client, T).await.unwrap();
    assert_eq!(answer, "hello world!");
    ipc.disconnect("world").await.unwrap();
    let seen = wait_for_line(&mut out, "has disconnected").await;
    assert!(
        seen.iter().any(|l| l.contains("got a message :  hello")),
        "{seen:?}"
    );
    js.kill().await.unwrap();
}

#[tokio::test]
async fn rust_udp_world_answers_node_ipc_14_udp_hello() {
    if !require_peer(FLAVOR) {
        return;
    }
    let ipc = ipc::Ipc::new();
    ipc.configure(|c| c.network_port = 0);
    let server = udp_world::udp_world(&ipc).await.unwrap();
    let Some(ipc::Endpoint::Udp { port, .. }) = server.local_endpoint() else {
        panic!("not UDP")
    };
    let out = finished_on_fresh_port(|hello_port| {
        node(
            "udp-hello.mjs",
            &[
                ("IPC_NETWORK_PORT", port.to_string()),
                ("IPC_HELLO_PORT", hello_port.to_string()),
            ],
        )
    })
    .await;
    assert!(
        out.contains("got a message from  world  :  Hello world!"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn node_ipc_14_udp_world_answers_rust_udp_hello() {
    if !require_peer(FLAVOR) {
        return;
    }
    // node-ipc cannot bind port 0: a port the OS just handed out, and a
    // fresh one when it was taken before Node bound it.
    let mut started = None;
    for _ in 0..5 {
        let port = free_udp_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        let mut js = node("udp-world.mjs", &[("IPC_NETWORK_PORT", port.to_string())]);
        let mut out = lines(&mut js);
        if listening(&mut out, "123").await {
            started = Some((js, port));
            break;
        }
        let mut err = String::new();
        if let Some(mut e) = js.stderr.take() {
            let _ = tokio::time::timeout(T, e.read_to_string(&mut err)).await;
        }
        let _ = js.kill().await;
        assert!(
            err.contains("EADDRINUSE"),
            "udp-world.mjs did not start: {err}"
        );
    }
    let (mut js, port) = started.expect("five fresh ports in a row were taken");
    let ipc = ipc::Ipc::new();
    ipc.configure(|c| c.network_port = port);
    let me = udp_hello::udp_hello(&ipc, 0).unwrap();
    let events = me.events();
    me.start().await.unwrap();
    let answer = udp_hello::first_answer(events, T).await.unwrap();
    assert_eq!(answer.from, "world");
    assert_eq!(answer.message, "Hello world!");
    me.stop().await;
    js.kill().await.unwrap();
}

#[tokio::test]
async fn node_ipc_14_cluster_serves_rust_cluster_client() {
    if !require_peer(FLAVOR) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipc.sock");
    // The primary forks one worker per CPU; killing it (by its handle, at
    // the end or on drop) closes their channel and node's cluster workers
    // exit with it.
    let mut js = node(
        "cluster-server.mjs",
        &[("IPC_SOCKET_PATH", path.display().to_string())],
    );
    let mut out = lines(&mut js);
    wait_for_line(&mut out, "listening on").await;
    tokio::time::timeout(T, async {
        while !path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the cluster did not create its socket");
    let ipc = ipc::Ipc::new();
    let visits = cluster_client::cluster_client(&ipc, &path, Duration::from_millis(100), 3);
    tokio::time::timeout(T, visits)
        .await
        .expect("three visits in time")
        .unwrap();
    let mut got = 0;
    let mut seen = Vec::new();
    while got < 3 {
        let more = wait_for_line(&mut out, "got:").await;
        got += more.iter().filter(|l| l.contains("got:")).count();
        seen.extend(more);
    }
    assert!(seen.iter().any(|l| l.contains("message:")), "{seen:?}");
    js.kill().await.unwrap();
}
