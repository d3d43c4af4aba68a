//! Windows named-pipe transport: node-ipc's pipe names, round trips,
//! end-of-stream both ways, a missing and a busy pipe, many clients, large
//! frames and a peer that dies. Runs on Windows (in CI under Wine, through
//! `cargo xtask windows`).
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::within;
use ipc_transport::{
    connect, pipe_name, ConnectOptions, Endpoint, ListenOptions, Listener, PeerAddr, Stream,
    TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::windows::named_pipe::ClientOptions;

/// A pipe name no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "/ipct/{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn bind(logical: &str) -> (Listener, Endpoint) {
    let endpoint: Endpoint = format!("pipe:{logical}").parse().unwrap();
    let listener = within(Listener::bind(&endpoint, &ListenOptions::default()))
        .await
        .unwrap();
    (listener, endpoint)
}

/// A connected pair: (client, server).
async fn pair(listener: &Listener, endpoint: &Endpoint) -> (Stream, Stream) {
    let client = within(connect(endpoint, &ConnectOptions::default()))
        .await
        .unwrap();
    let (server, _) = within(listener.accept()).await.unwrap();
    (client, server)
}

/// node-ipc's own rule on Windows (9.2.1 and 14.0.0 alike): drop one
/// leading `/`, turn every other `/` into `-`, prefix `\\.\pipe\`.
fn node_ipc_pipe_path(path: &str) -> String {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    format!(r"\\.\pipe\{}", trimmed.replace('/', "-"))
}

#[test]
fn pipe_names_are_node_ipcs() {
    for path in [
        "/tmp/app.world",
        "/tmp/node-ipc-user/app.world",
        "app.world",
        "//a/b",
        "/a b/c.d-e_f",
        r"C:\Users\x\app.world",
    ] {
        assert_eq!(pipe_name(path), node_ipc_pipe_path(path), "{path}");
    }
    // Already a pipe name: kept as it is.
    assert_eq!(pipe_name(r"\\.\pipe\x-y"), r"\\.\pipe\x-y");
}

#[tokio::test]
async fn a_peer_using_node_ipcs_name_reaches_our_server() {
    let logical = unique("name");
    let (listener, endpoint) = bind(&logical).await;
    assert_eq!(
        endpoint,
        Endpoint::NamedPipe(node_ipc_pipe_path(&logical)),
        "pipe:{logical} maps to node-ipc's name"
    );
    // A plain Windows pipe client opening the name node-ipc computes.
    let mut raw = ClientOptions::new()
        .open(node_ipc_pipe_path(&logical))
        .unwrap();
    let (mut server, peer) = within(listener.accept()).await.unwrap();
    assert_eq!(peer.addr, PeerAddr::Pipe(node_ipc_pipe_path(&logical)));
    raw.write_all(b"{\"type\":\"hi\",\"data\":1}\x0c")
        .await
        .unwrap();
    let mut buf = [0u8; 23];
    within(server.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"{\"type\":\"hi\",\"data\":1}\x0c");
}

#[tokio::test]
async fn round_trips_both_ways_whole_and_split() {
    let (listener, endpoint) = bind(&unique("rt")).await;
    let (mut client, mut server) = pair(&listener, &endpoint).await;
    assert!(matches!(server.peer().addr, PeerAddr::Pipe(_)));
    let mut buf = [0u8; 5];
    for _ in 0..100 {
        client.write_all(b"ping\x0c").await.unwrap();
        within(server.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"ping\x0c");
        server.write_all(b"pong\x0c").await.unwrap();
        within(client.read_exact(&mut buf)).await.unwrap();
        assert_eq!(&buf, b"pong\x0c");
    }
    // The split halves work from different tasks at once.
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 1000 * 5];
        sr.read_exact(&mut buf).await.unwrap();
        sw.write_all(&buf).await.unwrap();
        (sr, sw)
    });
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1000 * 5];
        cr.read_exact(&mut buf).await.unwrap();
        buf
    });
    for i in 0..1000u32 {
        cw.write_all(format!("{:04}\x0c", i % 10_000).as_bytes())
            .await
            .unwrap();
    }
    let got = within(reader).await.unwrap();
    let want: Vec<u8> = (0..1000u32)
        .flat_map(|i| format!("{:04}\x0c", i).into_bytes())
        .collect();
    assert_eq!(got, want);
    within(echo).await.unwrap();
}

#[tokio::test]
async fn a_client_that_closes_is_end_of_stream_for_the_server() {
    let (listener, endpoint) = bind(&unique("eof-c")).await;
    // Dropped without a shutdown.
    let (mut client, mut server) = pair(&listener, &endpoint).await;
    client.write_all(b"last\x0c").await.unwrap();
    drop(client);
    let mut got = Vec::new();
    within(server.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"last\x0c");
    // Shut down: the data still arrives, then the end.
    let (mut client, mut server) = pair(&listener, &endpoint).await;
    client.write_all(b"bye\x0c").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(server.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"bye\x0c");
    // Reads on the client's side of a shut-down pipe end too.
    let mut buf = [0u8; 4];
    assert_eq!(within(client.read(&mut buf)).await.unwrap(), 0);
}

/// A graceful close on the server's side: the server writes its last words
/// and shuts its write half down while its read half is still held (as a
/// server's connection task does). A pipe has no half-close, so unless the
/// shutdown closes the pipe the client never sees the end.
#[tokio::test]
async fn a_server_shutting_its_write_half_is_end_of_stream_for_the_client() {
    let (listener, endpoint) = bind(&unique("eof-s")).await;
    let (mut client, server) = pair(&listener, &endpoint).await;
    let (mut rd, mut wr) = server.into_split();
    // A read is pending on the server's side while it shuts down.
    let pending = tokio::spawn(async move {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.map(|_| got)
    });
    tokio::task::yield_now().await;
    // The client reads everything to the end meanwhile.
    let everything = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.map(|_| got)
    });
    let last = vec![b'z'; 200_000];
    within(wr.write_all(&last)).await.unwrap();
    within(wr.write_all(b"\x0c")).await.unwrap();
    within(wr.shutdown()).await.unwrap();
    let got = within(everything).await.unwrap().unwrap();
    assert_eq!(
        got.len(),
        last.len() + 1,
        "everything written arrives first"
    );
    assert!(got[..last.len()].iter().all(|&b| b == b'z'));
    // The server's own read half ends as well.
    let theirs = within(pending).await.unwrap().unwrap();
    assert!(theirs.is_empty());
    // Writing after the shutdown is an error, not a silent drop.
    assert!(wr.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn a_missing_pipe_is_a_connect_error_naming_it() {
    let endpoint: Endpoint = format!("pipe:{}", unique("missing")).parse().unwrap();
    let err = within(connect(&endpoint, &ConnectOptions::default()))
        .await
        .unwrap_err();
    match &err {
        TransportError::Connect {
            endpoint: e,
            source,
        } => {
            assert_eq!(e, &endpoint.to_string());
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(err.is_retryable(), "a server that is not up yet may come");
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Every instance of the pipe is taken: a connect waits (retrying) until
/// the server offers the next one, or gives up after its timeout.
#[tokio::test]
async fn a_busy_pipe_is_retried_until_an_instance_is_free() {
    let (listener, endpoint) = bind(&unique("busy")).await;
    // The first client takes the only instance (not accepted yet).
    let mut first = within(connect(&endpoint, &ConnectOptions::default()))
        .await
        .unwrap();
    // A second one with a short timeout gives up, with a timeout error.
    let short = ConnectOptions {
        connect_timeout: Some(Duration::from_millis(300)),
        ..ConnectOptions::default()
    };
    let err = within(connect(&endpoint, &short)).await.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Timeout {
                operation: "connect",
                ..
            }
        ),
        "{err:?}"
    );
    // Another waits; accepting the first offers the next instance, and the
    // waiting client gets it.
    let ep = endpoint.clone();
    let second = tokio::spawn(async move { connect(&ep, &ConnectOptions::default()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!second.is_finished(), "no instance is free yet");
    let (mut s1, _) = within(listener.accept()).await.unwrap();
    let mut second = within(second).await.unwrap().unwrap();
    let (mut s2, _) = within(listener.accept()).await.unwrap();
    first.write_all(b"1\x0c").await.unwrap();
    second.write_all(b"2\x0c").await.unwrap();
    let mut buf = [0u8; 2];
    within(s1.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"1\x0c");
    within(s2.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"2\x0c");
}

#[tokio::test]
async fn many_concurrent_clients_each_get_their_own_answers() {
    const CLIENTS: usize = 200;
    let (listener, endpoint) = bind(&unique("many")).await;
    let listener = std::sync::Arc::new(listener);
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..CLIENTS {
                let (mut s, _) = listener.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    // Echo until the client closes.
                    let mut buf = [0u8; 256];
                    loop {
                        let n = s.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let endpoint = endpoint.clone();
        clients.push(tokio::spawn(async move {
            let mut c = connect(&endpoint, &ConnectOptions::default())
                .await
                .unwrap();
            let msg = format!("client {i}\x0c");
            for _ in 0..5 {
                c.write_all(msg.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; msg.len()];
                c.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, msg.as_bytes());
            }
        }));
    }
    for c in clients {
        within(c).await.unwrap();
    }
    within(server).await.unwrap();
}

#[tokio::test]
async fn large_frames_cross_both_ways_at_once() {
    const SIZE: usize = 16 << 20;
    let (listener, endpoint) = bind(&unique("large")).await;
    let (client, server) = pair(&listener, &endpoint).await;
    let frame = |seed: u8| -> Vec<u8> {
        let mut v: Vec<u8> = (0..SIZE)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect();
        v.push(0x0c);
        v
    };
    let (up, down) = (frame(1), frame(7));
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (up2, down2) = (up.clone(), down.clone());
    // Both sides write their frame while reading the other's.
    let tasks = [
        tokio::spawn(async move { cw.write_all(&up2).await.unwrap() }),
        tokio::spawn(async move { sw.write_all(&down2).await.unwrap() }),
    ];
    let got_up = tokio::spawn(async move {
        let mut b = vec![0u8; SIZE + 1];
        sr.read_exact(&mut b).await.unwrap();
        b
    });
    let mut got_down = vec![0u8; SIZE + 1];
    within(cr.read_exact(&mut got_down)).await.unwrap();
    assert!(got_down == down, "the server's frame arrives intact");
    assert!(
        within(got_up).await.unwrap() == up,
        "the client's frame arrives intact"
    );
    for t in tasks {
        within(t).await.unwrap();
    }
}

/// A client that goes away without a word while the server still has much
/// to send: the server's writes fail (with an error, not silence) and its
/// reads end.
#[tokio::test]
async fn a_client_dying_mid_stream_fails_the_servers_writes() {
    let (listener, endpoint) = bind(&unique("death")).await;
    let (mut client, server) = pair(&listener, &endpoint).await;
    client.write_all(b"half a fra").await.unwrap();
    let (mut sr, mut sw) = server.into_split();
    let mut buf = [0u8; 10];
    within(sr.read_exact(&mut buf)).await.unwrap();
    drop(client);
    let mut rest = Vec::new();
    within(sr.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    let chunk = vec![0u8; 1 << 16];
    let failed = within(async {
        for _ in 0..1024 {
            if let Err(e) = sw.write_all(&chunk).await {
                return Some(e);
            }
        }
        None
    })
    .await;
    let e = failed.expect("writing 64 MiB to a dead client must fail");
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::NotConnected
        ),
        "{e:?}"
    );
}
