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
    // connectTo with a live id returns the same client.
    let again = a
        .connect_to("alpha", Some(std::path::Path::new("/elsewhere")))
        .unwrap();
    assert_eq!(again.endpoint(), client.endpoint());

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
