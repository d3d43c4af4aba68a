//! Runs every example to completion. Each example file is compiled into
//! this test as a module (so no separately built binary has to be found)
//! and its `main` runs on its own thread, bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Examples that share a support file each include it, exactly as they are
// built on their own.
#![allow(clippy::duplicate_mod)]

use std::error::Error;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

#[path = "../examples/broadcast.rs"]
mod broadcast;
// Shares one Unix listening socket between workers.
#[cfg(unix)]
#[path = "../examples/cluster.rs"]
mod cluster;
#[path = "../examples/cluster_client.rs"]
#[allow(dead_code)] // `main` visits a socket named on the command line
mod cluster_client;
#[path = "../examples/hello.rs"]
#[allow(dead_code)] // `main` waits for Ctrl-C or runs standalone
mod hello;
// Serves on Unix socket paths.
#[cfg(unix)]
#[path = "../examples/instances.rs"]
mod instances;
#[path = "../examples/isdk.rs"]
#[allow(dead_code)] // `main` waits for Ctrl-C or runs standalone
mod isdk;
#[path = "../examples/raw_buffer.rs"]
mod raw_buffer;
#[path = "../examples/sync_mode.rs"]
mod sync_mode;
#[path = "../examples/tcp_world_hello.rs"]
mod tcp_world_hello;
#[cfg(feature = "tls")]
#[path = "../examples/tls_local_only.rs"]
mod tls_local_only;
#[cfg(feature = "tls")]
#[path = "../examples/tls_more_secure.rs"]
mod tls_more_secure;
#[cfg(feature = "tls")]
#[path = "../examples/tls_most_secure.rs"]
mod tls_most_secure;
#[cfg(feature = "udp")]
#[path = "../examples/udp6.rs"]
mod udp6;
#[cfg(feature = "udp")]
#[path = "../examples/udp_hello.rs"]
#[allow(dead_code)] // `main` waits for Ctrl-C or runs standalone
mod udp_hello;
#[cfg(feature = "udp")]
#[path = "../examples/udp_world.rs"]
#[allow(dead_code)] // `main` waits for Ctrl-C or runs standalone
mod udp_world;
#[path = "../examples/world.rs"]
#[allow(dead_code)] // `main` waits for Ctrl-C or runs standalone
mod world;

fn run(name: &str, main: fn() -> Result<(), Box<dyn Error>>) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = main().map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("example {name} failed: {e}"),
        Err(RecvTimeoutError::Disconnected) => panic!("example {name} panicked"),
        Err(RecvTimeoutError::Timeout) => panic!("example {name} did not finish within 60 s"),
    }
}

/// node-ipc's README server and client, against each other.
#[tokio::test]
async fn example_world_and_hello() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{}/", dir.path().display());
    let world_ipc = ipc::Ipc::new();
    world_ipc.configure(|c| c.socket_root = root.clone().into());
    let server = world::world(&world_ipc).await.unwrap();
    let hello_ipc = ipc::Ipc::new();
    hello_ipc.configure(|c| c.socket_root = root.into());
    let client = hello::hello(&hello_ipc).unwrap();
    let answer = hello::first_answer(&client, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answer, "hello world!");
    hello_ipc.disconnect("world").await.unwrap();
    server.stop().await;
}

/// node-ipc's README UDP world and hello, against each other.
#[cfg(feature = "udp")]
#[tokio::test]
async fn example_udp_world_and_udp_hello() {
    let world_ipc = ipc::Ipc::new();
    world_ipc.configure(|c| c.network_port = 0);
    let server = udp_world::udp_world(&world_ipc).await.unwrap();
    let Some(ipc::Endpoint::Udp { port, .. }) = server.local_endpoint() else {
        panic!("world is not bound to UDP")
    };
    let hello_ipc = ipc::Ipc::new();
    hello_ipc.configure(|c| c.network_port = port);
    let me = udp_hello::udp_hello(&hello_ipc, 0).unwrap();
    let events = me.events();
    me.start().await.unwrap();
    let answer = udp_hello::first_answer(events, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answer.from, "world");
    assert_eq!(answer.message, "Hello world!");
    me.stop().await;
    server.stop().await;
}

/// @isdk/ipc-server's README example.
#[tokio::test]
async fn example_isdk() {
    let dir = tempfile::tempdir().unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        isdk::isdk(&dir.path().join("myapp")),
    )
    .await
    .expect("the isdk example did not finish within 60 s")
    .unwrap();
}

#[test]
fn example_tcp_world_hello() {
    run("tcp_world_hello", tcp_world_hello::main);
}

#[cfg(feature = "tls")]
#[test]
fn example_tls_local_only() {
    run("tls_local_only", tls_local_only::main);
}

#[cfg(feature = "tls")]
#[test]
fn example_tls_more_secure() {
    run("tls_more_secure", tls_more_secure::main);
}

#[cfg(feature = "tls")]
#[test]
fn example_tls_most_secure() {
    run("tls_most_secure", tls_most_secure::main);
}

#[cfg(feature = "udp")]
#[test]
fn example_udp6() {
    run("udp6", udp6::main);
}

#[test]
fn example_raw_buffer() {
    run("raw_buffer", raw_buffer::main);
}

#[test]
fn example_sync_mode() {
    run("sync_mode", sync_mode::main);
}

#[cfg(unix)]
/// node-ipc's README cluster client, visiting a server that counts its
/// `currentDate` messages.
#[tokio::test]
async fn example_cluster_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ipc.sock");
    let world = ipc::Ipc::new();
    let server = world.serve(Some(&path)).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    ipc::ServerExt::handle(
        &server,
        "currentDate",
        move |data: serde_json::Value, _, _| {
            let _ = tx.send(data);
        },
    );
    server.start().await.unwrap();
    let hello = ipc::Ipc::new();
    let visits = cluster_client::cluster_client(&hello, &path, Duration::from_millis(50), 3);
    tokio::time::timeout(Duration::from_secs(30), visits)
        .await
        .expect("three visits within 30 s")
        .unwrap();
    for _ in 0..3 {
        let data = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let date = data["message"].as_str().unwrap();
        assert_eq!(date.len(), 24, "{date}");
        assert!(date.ends_with('Z'), "{date}");
    }
    server.stop().await;
    assert_eq!(cluster_client::iso(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        cluster_client::iso(951_782_400, 5),
        "2000-02-29T00:00:00.005Z"
    );
    assert_eq!(
        cluster_client::iso(1_764_633_600, 0),
        "2025-12-02T00:00:00.000Z"
    );
}

#[cfg(unix)]
#[test]
fn example_instances() {
    instances::main().unwrap();
}

#[cfg(unix)]
#[test]
fn example_cluster() {
    run("cluster", cluster::main);
}

#[test]
fn example_broadcast() {
    run("broadcast", broadcast::main);
}

/// Every example in `examples/` is run above (a new one must be added).
#[test]
fn every_example_is_covered() {
    let covered = [
        "broadcast",
        "cluster",
        "cluster_client",
        "hello",
        "instances",
        "isdk",
        "raw_buffer",
        "sync_mode",
        "tcp_world_hello",
        "tls_local_only",
        "tls_more_secure",
        "tls_most_secure",
        "udp6",
        "udp_hello",
        "udp_world",
        "world",
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "rs").then_some(stem)
        })
        .collect();
    found.sort();
    assert_eq!(found, covered);
}
