//! The node-ipc-shaped facade over real sockets: independent instances,
//! default paths, the `of` registry, callback and async styles, live retry
//! settings, `disconnect`, `serve_net` overloads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipc::{
    ClientEvent, ClientExt, ClientState, Config, Endpoint, Ipc, MaxRetries, ServeNet, ServerEvent,
    ServerExt,
};
use serde::{Deserialize, Serialize};

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out")
}

fn instance(root: &std::path::Path, id: &str) -> Ipc {
    let ipc = Ipc::new();
    ipc.configure(|c| {
        c.id = id.into();
        c.socket_root = format!("{}/", root.display()).into();
        c.retry = Duration::from_millis(50);
        c.silent = true;
    });
    ipc
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
struct Point {
    x: i32,
    y: i32,
}

#[tokio::test]
async fn instances_are_independent_and_use_default_paths() {
    let dir = tempfile::tempdir().unwrap();
    let a = instance(dir.path(), "alpha");
    let b = instance(dir.path(), "beta");
    b.configure(|c| c.appspace = "other.".into());
    assert_eq!(a.config().appspace, "app.");
    assert_eq!(b.config().appspace, "other.");

    let sa = a.serve(None).unwrap();
    let sb = b.serve(None).unwrap();
    let ea = within(sa.start()).await.unwrap();
    let eb = within(sb.start()).await.unwrap();
    assert_eq!(ea, Endpoint::Unix(dir.path().join("app.alpha")));
    assert_eq!(eb, Endpoint::Unix(dir.path().join("other.beta")));
    assert!(a.server().is_some() && b.server().is_some());

    // A client of instance `a` finds alpha by id alone; `b` has no clients.
    let client = a.connect_to("alpha", None).unwrap();
    within(client.connected()).await.unwrap();
    assert_eq!(a.of_ids(), ["alpha"]);
    assert!(b.of("alpha").is_none());
    // connectTo with a live id returns the same client...
    let again = a.connect_to("alpha", None).unwrap();
    assert_eq!(again.endpoint(), client.endpoint());
    // ...unless it names another endpoint: that needs another id.
    let e = a
        .connect_to("alpha", Some(std::path::Path::new("/elsewhere")))
        .unwrap_err();
    assert!(matches!(e, ipc::IpcError::IdInUse { .. }), "{e}");

    assert!(a.disconnect("alpha").await.unwrap());
    assert!(!a.disconnect("alpha").await.unwrap());
    assert!(a.of("alpha").is_none());
    sa.stop().await;
    sb.stop().await;
}

#[tokio::test]
async fn callback_style_with_typed_data_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let world = instance(dir.path(), "world");
    let server = world.serve(None).unwrap();
    server.on_typed("point", |p: Point, peer| {
        let socket = peer.socket().unwrap();
        socket.try_emit("point", &Point { x: p.y, y: p.x }).unwrap();
    });
    within(server.start()).await.unwrap();

    let hello = instance(dir.path(), "hello");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let connects = Arc::new(AtomicUsize::new(0));
    let c2 = connects.clone();
    let client = hello
        .connect_to_with("world", None, |c| {
            c.on("connect", move |_| {
                c2.fetch_add(1, Ordering::SeqCst);
            });
            c.on_typed("point", move |p: Point| tx.send(p).unwrap());
        })
        .unwrap();
    client.emit("point", &Point { x: 1, y: 2 }).await.unwrap();
    let back = within(rx.recv()).await.unwrap();
    assert_eq!(back, Point { x: 2, y: 1 });
    // The setup callback ran before the first attempt: `connect` was seen.
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    hello.disconnect("world").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn async_style_event_streams() {
    let dir = tempfile::tempdir().unwrap();
    let world = instance(dir.path(), "world");
    let server = world.serve(None).unwrap();
    let mut sev = server.events();
    within(server.start()).await.unwrap();
    assert!(matches!(
        within(sev.recv()).await,
        Some(ServerEvent::Start(_))
    ));

    let hello = instance(dir.path(), "hello");
    let mut cev = None;
    let client = hello
        .connect_to_with("world", None, |c| cev = Some(c.events()))
        .unwrap();
    let mut cev = cev.unwrap();
    assert!(matches!(
        within(cev.recv()).await,
        Some(ClientEvent::Connect)
    ));
    let socket = match within(sev.recv()).await {
        Some(ServerEvent::Connect(s)) => s,
        other => panic!("expected connect, got {other:?}"),
    };
    client.emit("message", "hi").await.unwrap();
    match within(sev.recv()).await {
        Some(ServerEvent::Message { message, .. }) => {
            assert_eq!(message.event(), "message");
            assert_eq!(message.data::<String>().unwrap(), "hi");
        }
        other => panic!("expected a message, got {other:?}"),
    }
    socket.emit("reply", &[1, 2, 3]).await.unwrap();
    match within(cev.recv()).await {
        Some(ClientEvent::Message(m)) => assert_eq!(m.data::<Vec<u8>>().unwrap(), [1, 2, 3]),
        other => panic!("expected a message, got {other:?}"),
    }
    hello.disconnect("world").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn serve_net_tcp_port_zero_and_connect_to_net() {
    let world = Ipc::new();
    world.configure(|c| c.silent = true);
    let server = world
        .serve_net(ServeNet::tcp().host("127.0.0.1").port(0))
        .unwrap();
    server.on_message("message", |m, peer| {
        let s = peer.socket().unwrap();
        s.try_emit("message", &m.data_value()).unwrap();
    });
    let Endpoint::Tcp { host, port } = within(server.start()).await.unwrap() else {
        panic!("expected TCP")
    };
    assert_ne!(port, 0);

    // Defaults come from networkHost / networkPort.
    let hello = Ipc::new();
    hello.configure(|c| {
        c.network_host = host.clone();
        c.network_port = port;
    });
    let mut events = None;
    let client = hello
        .connect_to_net_with("world", None, None, |c| events = Some(c.events()))
        .unwrap();
    assert_eq!(client.endpoint(), &Endpoint::Tcp { host, port });
    let mut events = events.unwrap();
    client.emit("message", &42).await.unwrap();
    loop {
        if let Some(ClientEvent::Message(m)) = within(events.recv()).await {
            assert_eq!(m.data::<i32>().unwrap(), 42);
            break;
        }
    }
    hello.disconnect("world").await.unwrap();
    server.stop().await;
}

#[cfg(feature = "udp")]
#[tokio::test]
async fn serve_net_udp4_rebinds_ipv6_loopback_to_ipv4() {
    let ipc = Ipc::new();
    let server = ipc.serve_net(ServeNet::udp4().host("::1").port(0)).unwrap();
    match server.endpoint() {
        Endpoint::Udp { host, .. } => assert_eq!(host, "127.0.0.1"),
        other => panic!("expected UDP, got {other}"),
    }
}

#[tokio::test]
async fn retry_settings_are_live_and_reach_existing_clients() {
    let dir = tempfile::tempdir().unwrap();
    let hello = instance(dir.path(), "hello");
    hello.configure(|c| c.max_retries = MaxRetries::Unlimited);
    let mut events = None;
    let client = hello
        .connect_to_with("nobody", None, |c| events = Some(c.events()))
        .unwrap();
    let mut events = events.unwrap();
    // Nothing listens: error → disconnect, retried forever…
    let mut disconnects = 0;
    while disconnects < 2 {
        if let Some(ClientEvent::Disconnect) = within(events.recv()).await {
            disconnects += 1;
        }
    }
    // …until stopRetrying is set on the instance's config.
    hello.configure(|c| c.stop_retrying = true);
    loop {
        if let Some(ClientEvent::Destroy) = within(events.recv()).await {
            break;
        }
    }
    assert_eq!(client.state(), ClientState::Destroyed);
    // A destroyed id is replaced by a new client on the next connect_to.
    let fresh = hello.connect_to("nobody", None).unwrap();
    assert_ne!(fresh.state(), ClientState::Destroyed);
    hello.disconnect("nobody").await.unwrap();
}

#[tokio::test]
async fn config_from_json_drives_an_instance() {
    let dir = tempfile::tempdir().unwrap();
    let json = format!(
        r#"{{"id":"jsonworld","socketRoot":"{}/","appspace":"j.","silent":true,"maxConnections":1}}"#,
        dir.path().display()
    );
    let ipc = Ipc::with_config(Config::from_json(&json).unwrap());
    let server = ipc.serve(None).unwrap();
    let ep = within(server.start()).await.unwrap();
    assert_eq!(ep, Endpoint::Unix(dir.path().join("j.jsonworld")));
    server.stop().await;
    assert!(Config::from_json(r#"{"socketroot":"/tmp/"}"#).is_err());
}

#[tokio::test]
async fn missing_id_is_an_error() {
    let ipc = Ipc::new();
    let err = ipc.connect_to("", None).unwrap_err();
    assert!(err.to_string().contains("id is required"), "{err}");
}

// ---- node-ipc users' patterns -------------------------------------------

/// The README's canonical pattern: inside `connectTo`'s callback the
/// client is already `ipc.of.world`, and a `connect` handler that emits
/// through `ipc.of.world` always finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_holds_the_client_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let world = instance(dir.path(), "world");
    let server = world.serve(None).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    server.on_typed("message", move |text: String, _| {
        let _ = tx.send(text);
    });
    within(server.start()).await.unwrap();
    for round in 0..20 {
        let hello = instance(dir.path(), "hello");
        let ipc = hello.clone();
        hello
            .connect_to_with("world", None, |_| {
                let world = ipc.of("world").expect("ipc.of.world inside the callback");
                let ipc = ipc.clone();
                world.on("connect", move |_| {
                    let me = ipc.of("world").expect("ipc.of.world in `connect`");
                    me.try_emit("message", &format!("hello {round}")).unwrap();
                });
            })
            .unwrap();
        assert_eq!(within(rx.recv()).await.unwrap(), format!("hello {round}"));
        hello.disconnect("world").await.unwrap();
    }
    server.stop().await;
}

/// Handlers get the data, the sender and their own server or client, and
/// answer synchronously; nothing they capture keeps the server alive.
#[tokio::test]
async fn handlers_answer_through_the_handle_they_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let world = instance(dir.path(), "world");
    let server = world.serve(None).unwrap();
    server.handle("point", |p: Point, socket, server| {
        server.send(socket, "point", &Point { x: p.y, y: p.x })
    });
    let connected = Arc::new(AtomicUsize::new(0));
    let c = connected.clone();
    server.on_connect(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel();
    server.on_socket_disconnected(move |socket, id| {
        let _ = gone_tx.send((socket.id(), id.map(str::to_owned)));
    });
    within(server.start()).await.unwrap();

    let hello = instance(dir.path(), "hello");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to("world", None).unwrap();
    client.handle("point", move |p: Point, me| {
        tx.send(p.clone()).unwrap();
        if p.x < 10 {
            me.try_emit(
                "point",
                &Point {
                    x: p.x + 10,
                    y: p.y,
                },
            )?;
        }
        Ok::<(), ipc::ClientError>(())
    });
    client.emit("point", &Point { x: 1, y: 2 }).await.unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), Point { x: 2, y: 1 });
    // The client's handler answered by itself; the server swapped again.
    assert_eq!(within(rx.recv()).await.unwrap(), Point { x: 1, y: 12 });
    assert_eq!(connected.load(Ordering::SeqCst), 1);

    hello.disconnect("world").await.unwrap();
    let (_, id) = within(gone_rx.recv()).await.unwrap();
    assert_eq!(id, None);
    // No cycle: handlers hold only weak handles, so dropping every strong
    // handle frees the server and the client.
    let weak_server = server.downgrade();
    let weak_client = client.downgrade();
    server.stop().await;
    drop((server, world, client, hello));
    assert!(weak_server.upgrade().is_none(), "the server is kept alive");
    assert!(weak_client.upgrade().is_none(), "the client is kept alive");
}

/// UDP: the same synchronous answer path as for stream sockets.
#[cfg(feature = "udp")]
#[tokio::test]
async fn udp_handlers_answer_synchronously() {
    let world = Ipc::new();
    world.configure(|c| c.silent = true);
    let server = world
        .serve_net(ServeNet::udp4().host("127.0.0.1").port(0))
        .unwrap();
    server.handle("message", |text: String, peer, server| {
        assert!(matches!(peer, ipc::Peer::Udp(_)));
        server.send(peer, "message", &format!("{text} world!"))
    });
    let Endpoint::Udp { port, .. } = within(server.start()).await.unwrap() else {
        panic!("not UDP")
    };
    let hello = Ipc::new();
    let me = hello
        .serve_net(ServeNet::udp4().host("127.0.0.1").port(0))
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    me.handle("message", move |text: String, _, _| {
        let _ = tx.send(text);
    });
    within(me.start()).await.unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    me.send(&ipc::Peer::Udp(to), "message", "hello").unwrap();
    assert_eq!(within(rx.recv()).await.unwrap(), "hello world!");
    me.stop().await;
    server.stop().await;
}

fn expect_cause(e: &ipc::ClientError, kind: std::io::ErrorKind, words: &str) {
    let text = e.to_string();
    assert!(text.contains(words), "{text}");
    assert_eq!(e.io_kind(), Some(kind), "{text}");
}

/// An awaitable connect: the first connection, or the last real cause.
#[tokio::test]
async fn connect_is_awaitable_with_the_last_cause() {
    let dir = tempfile::tempdir().unwrap();
    // ENOENT, once the retry policy gives up.
    let hello = instance(dir.path(), "hello");
    hello.configure(|c| c.max_retries = MaxRetries::Limited(2));
    let client = hello.connect_to("nobody", None).unwrap();
    let e = within(client.connected()).await.unwrap_err();
    expect_cause(&e, std::io::ErrorKind::NotFound, "No such file");

    // ECONNREFUSED under the default policy (retry forever), bounded.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let forever = instance(dir.path(), "forever");
    let client = forever
        .connect_to_net("world", Some("127.0.0.1"), Some(port))
        .unwrap();
    let e = within(client.connected_within(Some(Duration::from_millis(300))))
        .await
        .unwrap_err();
    expect_cause(&e, std::io::ErrorKind::ConnectionRefused, "within 300ms");
    // The client keeps its policy: it is still trying.
    assert_ne!(client.state(), ClientState::Destroyed);
    forever.disconnect("world").await.unwrap();

    // And it resolves as soon as the server is there.
    let world = instance(dir.path(), "late");
    let server = world.serve(None).unwrap();
    let waiting = instance(dir.path(), "waiting");
    let client = waiting.connect_to("late", None).unwrap();
    within(server.start()).await.unwrap();
    within(client.connected_within(Some(Duration::from_secs(10))))
        .await
        .unwrap();
    waiting.disconnect("late").await.unwrap();
    server.stop().await;
}

#[cfg(feature = "tls")]
#[path = "../examples/support/pki.rs"]
mod pki;

/// A TLS server whose certificate the client does not trust: the wait
/// fails with the TLS cause at once (no retry makes it better).
#[cfg(feature = "tls")]
#[tokio::test]
async fn connect_reports_a_tls_rejection() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (ours, theirs) = (pki::generate(&a).unwrap(), pki::generate(&b).unwrap());
    let world = Ipc::new();
    world.configure(|c| {
        c.silent = true;
        c.tls = Some(ipc::TlsOptions {
            public: Some(ours.server.cert.clone()),
            private: Some(ours.server.key.clone()),
            ..Default::default()
        });
    });
    let server = world
        .serve_net(ServeNet::tcp().host("127.0.0.1").port(0))
        .unwrap();
    let Endpoint::Tls { port, .. } = within(server.start()).await.unwrap() else {
        panic!("not TLS")
    };
    let hello = Ipc::new();
    hello.configure(|c| {
        c.tls = Some(ipc::TlsOptions {
            trusted_connections: vec![theirs.ca.clone()],
            ..Default::default()
        });
    });
    let client = hello
        .connect_to_net("world", Some("localhost"), Some(port))
        .unwrap();
    let e = within(client.connected()).await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(
        matches!(e, ipc::ClientError::NotConnected { last: Some(_), .. }),
        "{text}"
    );
    server.stop().await;
}

/// @isdk parity: a handshake payload from the configuration, the default
/// request timeout, typed answers, a server-level `closed` event.
#[tokio::test]
async fn isdk_payload_request_timeout_typed_answers_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let world = instance(dir.path(), "world");
    let server = world.serve(None).unwrap();
    let (hello_tx, mut hello_rx) = tokio::sync::mpsc::unbounded_channel();
    server.on("hello", move |ev| {
        if let ServerEvent::Hello { hello, .. } = ev {
            let _ = hello_tx.send(hello.extras.clone());
        }
    });
    server.on_request(|req| {
        let q: String = req.data().unwrap_or_default();
        match q.as_str() {
            "hang" => {} // never answered
            _ => req.respond(&serde_json::json!({"x": 4, "y": 2})).unwrap(),
        }
        Ok(ipc::Flow::Stop)
    });
    let (reason_tx, mut reasons) = tokio::sync::mpsc::unbounded_channel();
    server.on_disconnect(move |_, reason| {
        let _ = reason_tx.send(reason.map(str::to_owned));
    });
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    server.on_closed(move || {
        let _ = closed_tx.send(());
    });
    within(server.start()).await.unwrap();

    // From JSON, as isdk's options would be written.
    let hello = Ipc::with_config(
        Config::from_json(r#"{"ext": {"payload": {"token": "s3cret"}, "requestTimeout": 200}}"#)
            .unwrap(),
    );
    hello.configure(|c| {
        c.socket_root = format!("{}/", dir.path().display()).into();
        c.silent = true;
    });
    let client = hello.connect_to("world", None).unwrap();
    within(client.connected()).await.unwrap();
    let extras = within(hello_rx.recv()).await.unwrap();
    assert_eq!(extras, serde_json::json!({"token": "s3cret"}));

    let p: Point = within(client.request_as("where?")).await.unwrap();
    assert_eq!(p, Point { x: 4, y: 2 });
    let e = within(client.request_default("hang")).await.unwrap_err();
    assert!(e.to_string().contains("200ms"), "{e}");
    within(client.ping_default()).await.unwrap();

    // Close reasons, both ways: the client's reaches the server...
    client.destroy_with_reason("shutting down").await.unwrap();
    let reason = within(reasons.recv()).await.unwrap();
    assert_eq!(reason.as_deref(), Some("shutting down"));
    // ...and the server's reaches its clients.
    let again = instance(dir.path(), "again");
    let client = again.connect_to("world", None).unwrap();
    let (why_tx, mut why) = tokio::sync::mpsc::unbounded_channel();
    client.on_disconnect(move |c| {
        let _ = why_tx.send(c.close_reason());
    });
    within(client.connected()).await.unwrap();
    server.close(false).await;
    within(closed_rx.recv()).await.unwrap();
    let reason = within(why.recv()).await.unwrap();
    assert_eq!(reason.as_deref(), Some("Server was shut down"));
    again.disconnect("world").await.unwrap();
}

/// A clean shutdown reports nothing false: the server's own `ipcx.end` is
/// never reported as undelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_server_reports_no_false_errors() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let world = instance(dir.path(), "world");
        let server = world.serve(None).unwrap();
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = errors.clone();
        server.on("error", move |ev| {
            if let Some(e) = ev.error() {
                seen.lock().unwrap().push(e.to_string());
            }
        });
        within(server.start()).await.unwrap();
        let hello = instance(dir.path(), "hello");
        let client = hello.connect_to("world", None).unwrap();
        within(client.connected()).await.unwrap();
        let other = Ipc::new();
        other.configure(|c| {
            c.socket_root = format!("{}/", dir.path().display()).into();
            c.silent = true;
        });
        let second = other.connect_to("world", None).unwrap();
        within(second.connected()).await.unwrap();
        // isdk's example: clients close or are destroyed, then the server
        // closes at once.
        within(client.close("shutting down")).await.unwrap();
        within(second.destroy()).await.unwrap();
        within(server.close(false)).await;
        let errors = errors.lock().unwrap().clone();
        assert!(errors.is_empty(), "{errors:?}");
        hello.disconnect("world").await.ok();
    }
}

/// Raw mode and configuration keys: `encoding` applied to emitted text, a
/// `lookup` function, keys that cannot be applied refused with a reason,
/// a server on a listener bound elsewhere.
#[tokio::test]
async fn raw_encoding_lookup_and_refused_keys() {
    // hints and dhparam are refused, saying why.
    let e = Config::from_json(r#"{"interface": {"hints": 1024}}"#).unwrap_err();
    assert!(e.to_string().contains("interface.family"), "{e}");
    let e = Config::from_json(r#"{"tls": {"dhparam": "dh.pem"}}"#).unwrap_err();
    assert!(e.to_string().contains("ECDHE"), "{e}");

    // A lookup function resolves the host; `encoding: hex` turns the
    // emitted text into bytes in raw mode.
    let world = Ipc::new();
    world.configure(|c| {
        c.raw_buffer = true;
        c.encoding = ipc::RawEncoding::Base64;
        c.silent = true;
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let listener =
        ipc::transport::Listener::from_std_tcp(listener).expect("a listener from a std socket");
    let server = world.serve_listener(listener).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let answered = std::sync::atomic::AtomicBool::new(false);
    server.on_data(move |bytes, socket, server| {
        let _ = tx.send(bytes.to_vec());
        // The server's text is encoded with its own `encoding` (once: a
        // stream may deliver the five bytes in more than one chunk).
        if !answered.swap(true, Ordering::SeqCst) {
            server.send_str(socket, "b2s=").unwrap();
        }
    });
    within(server.start()).await.unwrap();

    let hello = Ipc::new();
    hello.configure(|c| {
        c.raw_buffer = true;
        c.encoding = ipc::RawEncoding::Hex;
        c.silent = true;
        c.lookup = Some(Arc::new(|host: &str| {
            assert_eq!(host, "world.example");
            Ok(std::net::IpAddr::from([127, 0, 0, 1]))
        }));
    });
    let client = hello
        .connect_to_net("world", Some("world.example"), Some(port))
        .unwrap();
    let (back_tx, mut back) = tokio::sync::mpsc::unbounded_channel();
    client.on_data(move |bytes, _| {
        let _ = back_tx.send(bytes.to_vec());
    });
    client.emit_str("68656c6c6f").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(within(rx.recv()).await.unwrap());
    }
    assert_eq!(got, b"hello");
    let mut answer = Vec::new();
    while answer.len() < 2 {
        answer.extend(within(back.recv()).await.unwrap());
    }
    assert_eq!(answer, b"ok");
    hello.disconnect("world").await.unwrap();
    server.stop().await;
}

/// A graceful TLS disconnect ends with `close_notify`: the server reports
/// nothing.
#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_disconnect_sends_close_notify() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path()).unwrap();
    let world = Ipc::new();
    world.configure(|c| {
        c.silent = true;
        c.tls = Some(ipc::TlsOptions {
            public: Some(pki.server.cert.clone()),
            private: Some(pki.server.key.clone()),
            ..Default::default()
        });
    });
    let server = world
        .serve_net(ServeNet::tcp().host("127.0.0.1").port(0))
        .unwrap();
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = errors.clone();
    server.on("error", move |ev| {
        if let Some(e) = ev.error() {
            seen.lock().unwrap().push(e.to_string());
        }
    });
    server.handle("message", |text: String, socket, server| {
        server.send(socket, "message", &text)
    });
    let Endpoint::Tls { port, .. } = within(server.start()).await.unwrap() else {
        panic!("not TLS")
    };
    for _ in 0..3 {
        let hello = Ipc::new();
        hello.configure(|c| {
            c.silent = true;
            c.tls = Some(ipc::TlsOptions {
                trusted_connections: vec![pki.ca.clone()],
                ..Default::default()
            });
        });
        let client = hello
            .connect_to_net("world", Some("localhost"), Some(port))
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        client.handle("message", move |text: String, _| {
            let _ = tx.send(text);
        });
        client.emit("message", "hello").await.unwrap();
        assert_eq!(within(rx.recv()).await.unwrap(), "hello");
        hello.disconnect("world").await.unwrap();
    }
    server.stop().await;
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
}
