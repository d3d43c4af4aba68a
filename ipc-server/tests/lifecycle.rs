//! Server and client together over real Unix sockets and TCP: lifecycle
//! sequences (`docs/protocol.md` §3.3), retry (§3.6), broadcast and backpressure, graceful
//! stop, maxConnections, sync mode (§3.5).

// Unix-socket endpoints throughout; the same lifecycle over Windows named
// pipes is in pipe.rs.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_server::{Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::Endpoint;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn unix_endpoint(dir: &tempfile::TempDir, name: &str) -> Endpoint {
    Endpoint::Unix(dir.path().join(name))
}

fn quick_retry(max: MaxRetries) -> RetryConfig {
    RetryConfig {
        retry: Duration::from_millis(20),
        max_retries: max,
        ..RetryConfig::default()
    }
}

fn client_config(max: MaxRetries) -> ClientConfig {
    ClientConfig {
        retry: quick_retry(max),
        ..ClientConfig::default()
    }
}

/// Short names of server events, for asserting sequences.
fn server_names(ev: &ServerEvent) -> String {
    match ev {
        ServerEvent::Message { message, .. } => format!("msg:{}", message.event()),
        ServerEvent::Error { error, .. } => {
            format!("error:{}", error.code().map(|c| c.as_str()).unwrap_or("-"))
        }
        other => other.name().to_string(),
    }
}

fn client_names(ev: &ClientEvent) -> String {
    match ev {
        ClientEvent::Message(m) => format!("msg:{}", m.event()),
        ClientEvent::Error(e) => format!("error:{}", e.code().map(|c| c.as_str()).unwrap_or("-")),
        other => other.name().to_string(),
    }
}

async fn next_server(events: &mut ipc_server::EventStream<ServerEvent>) -> ServerEvent {
    timeout(T, events.recv())
        .await
        .expect("timed out waiting for a server event")
        .expect("server event stream ended")
}

async fn next_client(events: &mut ipc_client::EventStream<ClientEvent>) -> ClientEvent {
    timeout(T, events.recv())
        .await
        .expect("timed out waiting for a client event")
        .expect("client event stream ended")
}

#[tokio::test]
async fn unix_round_trip_and_event_order() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "world.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    // Echo every `message` back with the node-ipc idiom.
    server.on_message("message", |m, from| {
        let data: String = m.data().unwrap();
        from.socket()
            .unwrap()
            .try_emit("message", &format!("echo:{data}"))
            .unwrap();
    });
    server.start().await.unwrap();
    assert_eq!(server_names(&next_server(&mut sev).await), "start");

    let client = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    let mut cev = client.events();
    client.start();
    assert_eq!(client_names(&next_client(&mut cev).await), "connect");
    client.emit("message", "hello").await.unwrap();
    let ev = next_client(&mut cev).await;
    assert_eq!(
        ev.message().unwrap().data::<String>().unwrap(),
        "echo:hello"
    );

    let c = next_server(&mut sev).await;
    let ServerEvent::Connect(sock) = &c else {
        panic!("expected connect, got {c:?}")
    };
    assert!(sock.peer().cred.is_some(), "unix peers carry credentials");
    assert_eq!(server_names(&next_server(&mut sev).await), "msg:message");

    // The server stops: the client sees disconnect then destroy (no retries).
    server.stop().await;
    let names: Vec<String> = vec![
        server_names(&next_server(&mut sev).await),
        server_names(&next_server(&mut sev).await),
    ];
    assert_eq!(names, ["socket.disconnected", "close"]);
    assert_eq!(client_names(&next_client(&mut cev).await), "disconnect");
    assert_eq!(client_names(&next_client(&mut cev).await), "destroy");
    assert!(!ep.to_string().is_empty());
    assert!(
        !dir.path().join("world.sock").exists(),
        "stop removes the socket file"
    );
}

/// Nothing listening, maxRetries = 2: error → disconnect three times, then
/// destroy (`docs/protocol.md` §3.3 / §3.6).
#[tokio::test]
async fn nothing_listening_spends_the_budget_then_destroys() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        unix_endpoint(&dir, "nobody.sock"),
        client_config(MaxRetries::Limited(2)),
    )
    .unwrap();
    let mut cev = client.events();
    client.start();
    let mut seq = Vec::new();
    loop {
        let n = client_names(&next_client(&mut cev).await);
        let done = n == "destroy";
        seq.push(n);
        if done {
            break;
        }
    }
    assert_eq!(
        seq,
        [
            "error:-",
            "disconnect",
            "error:-",
            "disconnect",
            "error:-",
            "disconnect",
            "destroy"
        ]
    );
    assert!(
        client.emit("message", "x").await.is_err(),
        "a destroyed client refuses emits"
    );
}

/// A client emitting while the server is stopped and started again gets every
/// accepted message to one of the servers, exactly once and in order.
#[tokio::test]
async fn emits_survive_a_server_restart_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "restart.sock");
    let got = Arc::new(Mutex::new(Vec::<u64>::new()));
    let start_server = |got: Arc<Mutex<Vec<u64>>>| {
        let ep = ep.clone();
        async move {
            let s = Server::new(ep, ServerConfig::default()).unwrap();
            s.on_message("n", move |m, _| got.lock().unwrap().push(m.data().unwrap()));
            s.start().await.unwrap();
            s
        }
    };
    let server = start_server(got.clone()).await;
    let client = Client::connect(ep.clone(), client_config(MaxRetries::Unlimited)).unwrap();
    timeout(T, client.connected()).await.unwrap().unwrap();
    const N: u64 = 20_000;
    let sender = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..N {
                client.emit("n", &i).await.unwrap();
                if i % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Let some traffic through, then restart the server mid-stream.
    timeout(T, async {
        while got.lock().unwrap().len() < 2000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    server.stop().await;
    let server = start_server(got.clone()).await;
    timeout(T, sender).await.unwrap().unwrap();
    timeout(T, async {
        while (got.lock().unwrap().len() as u64) < N {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {N} arrived", got.lock().unwrap().len()));
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "every message exactly once, in order"
    );
    client.disconnect().await.unwrap();
    server.stop().await;
}

/// Broadcast to 100 clients: all get everything in order. One more client
/// that never reads fills its queue and is disconnected with
/// ERR_IPC_BACKPRESSURE while the others keep receiving.
#[tokio::test]
async fn broadcast_to_100_clients_and_a_stuck_reader_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "bcast.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            queue_bytes: 256 * 1024,
            max_connections: 200,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e2 = errors.clone();
    server.on("error", move |ev| {
        e2.lock().unwrap().push(ev.error().unwrap().code())
    });
    server.start().await.unwrap();

    const CLIENTS: usize = 100;
    const MSGS: u64 = 2_000;
    let progress: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..CLIENTS)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let mut readers = Vec::new();
    for k in 0..CLIENTS {
        let c = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
        let mut ev = c.events();
        c.start();
        timeout(T, c.connected()).await.unwrap().unwrap();
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            let mut next = 0u64;
            while next < MSGS {
                match timeout(T, ev.recv())
                    .await
                    .expect("reader timed out")
                    .expect("stream ended")
                {
                    ClientEvent::Message(m) if m.event() == "tick" => {
                        assert_eq!(m.data::<u64>().unwrap(), next, "out of order");
                        next += 1;
                        progress[k].store(next, std::sync::atomic::Ordering::Relaxed);
                    }
                    ClientEvent::Message(m) => assert_eq!(m.event(), "pad"),
                    ClientEvent::Connect => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            c
        }));
    }
    // The stuck peer: a raw socket that connects and never reads.
    let stuck = tokio::net::UnixStream::connect(dir.path().join("bcast.sock"))
        .await
        .unwrap();
    timeout(T, async {
        while server.connections() < CLIENTS + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    // 4 KiB of padding every 4 ticks: ~2 MiB per peer, far more than the
    // stuck peer's queue (256 KiB) plus its kernel socket buffer.
    let payload = "x".repeat(4096);
    for i in 0..MSGS {
        server.broadcast("tick", &i).await.unwrap();
        if i % 4 == 0 {
            server.broadcast("pad", &payload).await.unwrap();
        }
        if i % 100 == 99 {
            // Like any producer with flow control, wait for the readers that
            // are alive to catch up (the stuck one is never waited for).
            timeout(T, async {
                while progress
                    .iter()
                    .any(|p| p.load(std::sync::atomic::Ordering::Relaxed) + 100 < i)
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("live readers fell behind");
        }
    }
    for r in readers {
        timeout(T, r).await.unwrap().unwrap();
    }
    let codes = errors.lock().unwrap().clone();
    assert!(
        codes.contains(&Some(ipc_proto::ErrorCode::Backpressure)),
        "the stuck reader is reported: {codes:?}"
    );
    assert_eq!(
        server.connections(),
        CLIENTS,
        "only the stuck reader was dropped"
    );
    drop(stuck);
    server.stop().await;
}

/// Graceful stop with 10,000 queued messages loses none.
#[tokio::test]
async fn graceful_stop_flushes_10000_queued_messages() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "flush.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    let mut cev = client.events();
    client.start();
    assert_eq!(client_names(&next_client(&mut cev).await), "connect");
    let sock = loop {
        if let ServerEvent::Connect(s) = next_server(&mut sev).await {
            break s;
        }
    };
    drop(sev);
    for i in 0..10_000u32 {
        sock.try_emit("m", &i).unwrap();
    }
    let stopping = tokio::spawn({
        let server = server.clone();
        async move { server.stop().await }
    });
    let mut n = 0u32;
    loop {
        match next_client(&mut cev).await {
            ClientEvent::Message(m) => {
                assert_eq!(m.data::<u32>().unwrap(), n);
                n += 1;
            }
            ClientEvent::Disconnect => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(n, 10_000);
    timeout(T, stopping).await.unwrap().unwrap();
}

/// maxConnections: the connection beyond the limit is closed and an error
/// event says why; the others keep working.
#[tokio::test]
async fn max_connections_refusal_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "max.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let a = Client::connect(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    let b = Client::connect(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    timeout(T, a.connected()).await.unwrap().unwrap();
    timeout(T, b.connected()).await.unwrap().unwrap();
    let c = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    let mut cev = c.events();
    c.start();
    let refused = loop {
        match next_server(&mut sev).await {
            ServerEvent::Error { error, .. } => break error,
            _ => continue,
        }
    };
    assert!(
        refused.to_string().contains("maxConnections (2)"),
        "{refused}"
    );
    // The refused client sees connect → disconnect → destroy (no retries).
    let seq: Vec<String> = [
        next_client(&mut cev).await,
        next_client(&mut cev).await,
        next_client(&mut cev).await,
    ]
    .iter()
    .map(client_names)
    .collect();
    assert_eq!(seq, ["connect", "disconnect", "destroy"]);
    a.emit("still", "ok").await.unwrap();
    loop {
        if let ServerEvent::Message { message, .. } = next_server(&mut sev).await {
            assert_eq!(message.event(), "still");
            break;
        }
    }
    server.stop().await;
}

/// Sync mode: one message in flight; the next is written only after the
/// server answers.
#[tokio::test]
async fn sync_mode_holds_one_message_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "sync.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = Client::new(
        ep.clone(),
        ClientConfig {
            sync: true,
            ..client_config(MaxRetries::Limited(0))
        },
    )
    .unwrap();
    client.start();
    timeout(T, client.connected()).await.unwrap().unwrap();
    for i in 0..3u32 {
        client.emit("q", &i).await.unwrap();
    }
    let mut sock = None;
    let mut first = None;
    while first.is_none() {
        match next_server(&mut sev).await {
            ServerEvent::Connect(s) => sock = Some(s),
            ServerEvent::Message { message, .. } => first = Some(message.data::<u32>().unwrap()),
            _ => {}
        }
    }
    assert_eq!(first, Some(0));
    // Nothing else arrives while the server stays silent.
    assert!(
        timeout(Duration::from_millis(300), sev.recv())
            .await
            .is_err(),
        "a second message was written before any answer"
    );
    // Each answer releases exactly one more.
    let sock = sock.unwrap();
    for expected in 1..3u32 {
        sock.emit("answer", &expected).await.unwrap();
        loop {
            if let ServerEvent::Message { message, .. } = next_server(&mut sev).await {
                assert_eq!(message.data::<u32>().unwrap(), expected);
                break;
            }
        }
    }
    client.disconnect().await.unwrap();
    server.stop().await;
}

/// TCP on an ephemeral port: the bound port is reported and usable.
#[tokio::test]
async fn tcp_port_zero_round_trip() {
    let server = Server::new(
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ServerConfig::default(),
    )
    .unwrap();
    server.on_message("ping", |m, from| {
        let v: serde_json::Value = m.data_value();
        from.socket().unwrap().try_emit("pong", &v).unwrap();
    });
    let local = server.start().await.unwrap();
    let Endpoint::Tcp { port, .. } = local else {
        panic!("{local}")
    };
    assert_ne!(port, 0);
    let client = Client::new(local.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    let mut cev = client.events();
    client.start();
    client
        .emit("ping", &serde_json::json!({"a": [1, 2.5, null]}))
        .await
        .unwrap();
    loop {
        if let ClientEvent::Message(m) = next_client(&mut cev).await {
            assert_eq!(m.event(), "pong");
            assert_eq!(m.data_json().unwrap(), br#"{"a":[1,2.5,null]}"#);
            break;
        }
    }
    client.disconnect().await.unwrap();
    server.stop().await;
}

/// A peer that sends invalid JSON gets ERR_IPC_INVALID_JSON and is closed;
/// the client does not reconnect after a protocol violation.
#[tokio::test]
async fn protocol_violation_closes_and_client_does_not_retry() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "bad.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = Client::new(ep.clone(), client_config(MaxRetries::Unlimited)).unwrap();
    let mut cev = client.events();
    client.start();
    assert_eq!(client_names(&next_client(&mut cev).await), "connect");
    let sock = loop {
        if let ServerEvent::Connect(s) = next_server(&mut sev).await {
            break s;
        }
    };
    sock.send_frame(bytes::Bytes::from_static(b"not-json\x0c"))
        .await
        .unwrap();
    let seq: Vec<String> = [
        next_client(&mut cev).await,
        next_client(&mut cev).await,
        next_client(&mut cev).await,
    ]
    .iter()
    .map(client_names)
    .collect();
    assert_eq!(seq, ["error:ERR_IPC_INVALID_JSON", "disconnect", "destroy"]);
    server.stop().await;
}

/// A panicking handler becomes an error event; the server keeps serving.
#[tokio::test]
async fn handler_panic_is_reported_and_serving_continues() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "panic.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    server.on("boom", |_| panic!("handler failure"));
    server.start().await.unwrap();
    let client = Client::connect(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    client.emit_empty("boom").await.unwrap();
    client.emit("after", &1).await.unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"msg:after".to_string()) {
        seen.push(server_names(&next_server(&mut sev).await));
    }
    assert!(
        seen.contains(&"error:ERR_IPC_HANDLER".to_string()),
        "{seen:?}"
    );
    client.disconnect().await.unwrap();
    server.stop().await;
}

/// identifyPeer: a truthy `data.id` names the socket, and
/// `socket.disconnected` carries it.
#[tokio::test]
async fn identify_peer_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "ident.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            identify_peer: true,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = Client::connect(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    client
        .emit("message", &serde_json::json!({"id": ""}))
        .await
        .unwrap();
    client
        .emit("message", &serde_json::json!({"id": "worker-7", "x": 1}))
        .await
        .unwrap();
    let mut seen = 0;
    while seen < 2 {
        if let ServerEvent::Message { .. } = next_server(&mut sev).await {
            seen += 1;
        }
    }
    assert_eq!(server.sockets()[0].peer_id().as_deref(), Some("worker-7"));
    client.disconnect().await.unwrap();
    loop {
        if let ServerEvent::SocketDisconnected { id, .. } = next_server(&mut sev).await {
            assert_eq!(id.as_deref(), Some("worker-7"));
            break;
        }
    }
    server.stop().await;
}

/// idle_timeout: a peer that goes silent (as a half-open one does) is closed
/// with an error; a peer that keeps talking is not.
#[tokio::test]
async fn idle_peers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_endpoint(&dir, "idle.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            idle_timeout: Some(Duration::from_millis(300)),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let mut silent = tokio::net::UnixStream::connect(dir.path().join("idle.sock"))
        .await
        .unwrap();
    let chatty = Client::connect(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
    timeout(T, chatty.connected()).await.unwrap().unwrap();
    let chat = {
        let chatty = chatty.clone();
        tokio::spawn(async move {
            for i in 0..20u32 {
                chatty.emit("tick", &i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let err = loop {
        if let ServerEvent::Error { error, .. } = next_server(&mut sev).await {
            break error;
        }
    };
    assert!(matches!(*err, ServerError::Idle { .. }), "{err}");
    assert_eq!(err.code(), Some(ipc_proto::ErrorCode::MessageTimeout));
    // The silent peer sees its connection closed.
    let mut buf = [0u8; 16];
    let n = timeout(T, tokio::io::AsyncReadExt::read(&mut silent, &mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
    timeout(T, chat).await.unwrap().unwrap();
    assert!(
        chatty.is_connected(),
        "a peer that keeps talking stays connected"
    );
    assert_eq!(server.connections(), 1);
    chatty.disconnect().await.unwrap();
    server.stop().await;
}
