//! The harness's own guarantees: a peer exits on stdin EOF, a dropped handle
//! kills its process, bounded waits fail with the peer's context, and a bad
//! setup is reported instead of hanging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use ipc_interop::{Flavor, HarnessError, NodePeer, PeerSpec, Transport};
use serde_json::json;

fn alive(pid: u32) -> bool {
    // Gone, or a zombie waiting to be reaped, both count as stopped.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn server(flavor: Flavor) -> (NodePeer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let spec = PeerSpec::server(
        flavor,
        Transport::Unix {
            path: dir.path().join("s.sock"),
        },
    );
    let mut peer = NodePeer::spawn(&spec).await.unwrap();
    peer.ready(T).await.unwrap();
    (peer, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_exit_on_stdin_eof() {
    for flavor in [Flavor::V9, Flavor::V12, Flavor::V14Fast] {
        if !ipc_interop::require_peer(flavor) {
            continue;
        }
        let (mut peer, _dir) = server(flavor).await;
        assert_eq!(
            peer.command(json!({"cmd":"ping","tag":7}), T)
                .await
                .unwrap(),
            json!(7)
        );
        peer.close_stdin();
        let status = peer.wait_exit(T).await.unwrap();
        assert!(status.success(), "{flavor}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_process() {
    if !ipc_interop::require_peer(Flavor::V14Fast) {
        return;
    }
    let (peer, _dir) = server(Flavor::V14Fast).await;
    let pid = peer.pid().unwrap();
    assert!(alive(pid));
    drop(peer);
    let deadline = tokio::time::Instant::now() + T;
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pid {pid} still alive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_are_bounded_and_failed_commands_are_errors() {
    if !ipc_interop::require_peer(Flavor::V12) {
        return;
    }
    let (mut peer, _dir) = server(Flavor::V12).await;
    let err = peer
        .expect(|e| e.is_event("never-sent"), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
    let err = peer
        .command(json!({"cmd":"emit","socket":999,"type":"x","data":1}), T)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown socket 999"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_setup_is_reported() {
    if !ipc_interop::require_peer(Flavor::V9) {
        return;
    }
    // node-ipc cannot bind port 0; the script refuses instead of listening on
    // a stray local socket named after the host.
    let spec = PeerSpec::server(Flavor::V9, Transport::Tcp { host: V4, port: 0 });
    let mut peer = NodePeer::spawn(&spec).await.unwrap();
    let ev = peer.expect(|e| e.kind() == "fatal", T).await.unwrap();
    assert!(
        ev.raw["message"]
            .as_str()
            .unwrap()
            .contains("non-zero port"),
        "{ev}"
    );
    let status = peer.wait_exit(T).await.unwrap();
    assert_eq!(status.code(), Some(2));
}
