//! TCP keepalive against a server that vanishes without a FIN or RST.
//!
//! The test needs a network it can cut: it re-runs itself inside a private
//! network namespace (`unshare --net`, root only) where a blackhole routing
//! rule silently drops every packet to 127.0.0.1, so the server's host
//! looks powered off. Without root, `unshare` (util-linux) or `ip`
//! (iproute2) it prints `skipped: <reason>` and passes, unless
//! `CI=true` or `NIPC_REQUIRE_NETNS=1` is set, in which case a missing
//! precondition fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ipc-transport/tests/common/netns.rs"]
mod netns;

use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientError, ClientEvent, MaxRetries, RetryConfig};
use ipc_transport::{ConnectOptions, Endpoint, Keepalive};
use tokio::net::TcpListener;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);
const TEST: &str = "keepalive_detects_a_vanished_server_and_the_client_retries";

#[tokio::test]
async fn keepalive_detects_a_vanished_server_and_the_client_retries() {
    if netns::in_child() {
        in_namespace().await;
        return;
    }
    netns::rerun_in_namespace(TEST).await;
}

/// Runs inside the private network namespace.
async fn in_namespace() {
    netns::loopback_up();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let keepalive = Keepalive {
        time: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        retries: 2,
    };
    let client = Client::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        ClientConfig {
            keepalive: Some(keepalive),
            connect: ConnectOptions {
                connect_timeout: Some(Duration::from_secs(2)),
                ..ConnectOptions::default()
            },
            retry: RetryConfig {
                retry: Duration::from_millis(50),
                max_retries: MaxRetries::Unlimited,
                ..RetryConfig::default()
            },
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let mut events = client.events();
    client.start();
    // The server accepts and then says nothing: only keepalive can tell
    // that its host is gone.
    let (_first, _) = timeout(T, listener.accept()).await.unwrap().unwrap();
    timeout(T, client.connected()).await.unwrap().unwrap();

    // The server's host "loses power" (see `netns::cut_loopback`).
    netns::cut_loopback();
    let cut = tokio::time::Instant::now();
    let err = timeout(T, async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Error(e)) => return e,
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
    .expect("keepalive never reported the dead server");
    let detected = cut.elapsed();
    println!("keepalive error after {detected:?}: {err}");
    let ClientError::Io { source, .. } = &*err else {
        panic!("expected the connection's I/O error, got {err:?}")
    };
    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}");
    assert!(err.is_retryable());
    assert!(
        detected < keepalive.detection_time() + Duration::from_secs(5),
        "took {detected:?}"
    );

    // The host comes back: the client's retry reaches it.
    netns::restore_loopback();
    let (_second, _) = timeout(T, listener.accept())
        .await
        .expect("the client did not retry")
        .unwrap();
    timeout(T, async {
        loop {
            if let Some(ClientEvent::Connect) = events.recv().await {
                break;
            }
        }
    })
    .await
    .expect("no connect after the retry");
    client.destroy().await.ok();
}
