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

#[path = "../../ipc-transport/tests/common/netns.rs"]
mod netns;

use std::time::Duration;

use ipc_server::{Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::{Endpoint, Keepalive};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);
const TEST: &str = "keepalive_detects_a_vanished_client";

#[tokio::test]
async fn keepalive_detects_a_vanished_client() {
    if netns::in_child() {
        in_namespace().await;
        return;
    }
    netns::rerun_in_namespace(TEST).await;
}

/// Runs inside the private network namespace.
async fn in_namespace() {
    netns::loopback_up();
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
    next_connect(&mut events).await;
    assert_eq!(server.connections(), 1);

    // The client's host "loses power": every packet is dropped silently.
    netns::cut_loopback();
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
    netns::restore_loopback();
    let next = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    next_connect(&mut events).await;
    drop((silent, next));
    let stopped = tokio::time::Instant::now();
    server.stop().await;
    println!("stopped in {:?}", stopped.elapsed());
}

/// Waits (bounded) for the server's next `Connect` event.
async fn next_connect(events: &mut ipc_server::EventStream<ServerEvent>) {
    timeout(T, async {
        loop {
            if let Some(ServerEvent::Connect(_)) = events.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap();
}
