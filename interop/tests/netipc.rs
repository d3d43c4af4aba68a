//! net-ipc 2.2.2 clients (`interop/js/netipc-peer.mjs`) on our server, over
//! Unix sockets and TCP: the handshake with a connect payload, messages both
//! ways, requests both ways, ping both ways, broadcast, survey, a 1 MiB
//! message, END with and without reconnect (a reconnect keeps its id),
//! MessagePack bodies, the HTTP-style upgrade, refused compression, and a
//! node-ipc client beside a net-ipc client on one endpoint. Raw sockets
//! check what net-ipc's rules say about bad preambles and premature packets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ours;

use std::time::Duration;

use common::{bounded, s, T, V4};
use ipc_client::Flow;
use ipc_interop::{
    in_ci, netipc_availability, notice, CellStatus, Flavor, Matrix, NodePeer, PeerSpec, Transport,
};
use ipc_server::{EventStream, Server, ServerConfig, ServerEvent, Socket};
use ipc_transport::Endpoint;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PEER: &str = "net-ipc-2.2.2";

#[derive(Clone, Copy)]
enum Net {
    Unix,
    Tcp4,
}

impl Net {
    fn label(self) -> &'static str {
        match self {
            Net::Unix => "unix",
            Net::Tcp4 => "tcp4",
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Json,
    Msgpack,
    Upgrade,
    Compress,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Json => "json",
            Mode::Msgpack => "msgpack",
            Mode::Upgrade => "upgrade",
            Mode::Compress => "compress-refused",
        }
    }
}

/// `Some(node)` when net-ipc can run; records a skipped cell otherwise (a
/// failure under `CI=true`).
fn require(m: &mut Matrix) -> bool {
    match netipc_availability() {
        Ok(_) => true,
        Err(e) if in_ci() => panic!("CI=true and net-ipc is unavailable: {e}"),
        Err(e) => {
            notice(&format!("skipping net-ipc interop: {e}"));
            m.record(PEER, "*", "*", CellStatus::Skipped(e.to_string()));
            false
        }
    }
}

async fn spawn_js(opts: Value, label: &str) -> Result<NodePeer, String> {
    let node = netipc_availability().map_err(s)?;
    let script = ipc_interop::interop_dir()
        .join("js")
        .join("netipc-peer.mjs");
    NodePeer::spawn_with(node, &script, &[opts.to_string()], label.to_owned())
        .await
        .map_err(s)
}

/// Starts a net-ipc JS server and waits for its `ready`. net-ipc cannot
/// bind port 0 (it reads 0 as "no port"), so a TCP server gets a port the OS
/// just handed out, and a fresh one when something took it before Node
/// bound it (at most 5 tries). `opts` gets the `port` it really serves;
/// returns the peer and that port (0 for a Unix socket).
async fn spawn_js_server(opts: &mut Value, label: &str) -> Result<(NodePeer, u16), String> {
    let tcp = opts.get("path").is_none();
    for _ in 0..5 {
        let port = if tcp {
            ipc_interop::free_tcp_port(V4).map_err(s)?
        } else {
            0
        };
        if tcp {
            opts["port"] = json!(port);
        }
        let mut node = spawn_js(opts.clone(), label).await?;
        let ev = node
            .expect(
                |e| {
                    e.kind() == "ready"
                        || (e.kind() == "error" && e.raw.to_string().contains("EADDRINUSE"))
                },
                T,
            )
            .await
            .map_err(s)?;
        if ev.kind() == "ready" {
            return Ok((node, port));
        }
        node.kill().await;
    }
    Err("five fresh ports in a row were taken before net-ipc bound them".into())
}

fn endpoint(net: Net, dir: &std::path::Path) -> Endpoint {
    match net {
        Net::Unix => Endpoint::Unix(dir.join("netipc.sock")),
        Net::Tcp4 => Endpoint::Tcp {
            host: V4.to_string(),
            port: 0,
        },
    }
}

fn js_target(local: &Endpoint) -> Result<Value, String> {
    match local {
        Endpoint::Unix(p) => Ok(json!({"path": p})),
        Endpoint::Tcp { host, port } => Ok(json!({"host": host, "port": port})),
        other => Err(format!("unexpected endpoint {other}")),
    }
}

/// A server answering requests with `{"echo": data, "from": "rust"}`.
async fn rust_server(ep: Endpoint) -> Result<(Server, EventStream<ServerEvent>, Endpoint), String> {
    let server = Server::new(ep, ServerConfig::default()).map_err(s)?;
    server.on_request(|req| {
        let data: Value = req.data().map_err(|e| e.to_string())?;
        req.respond(&json!({"echo": data, "from": "rust"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    let events = server.events();
    let local = server.start().await.map_err(s)?;
    Ok((server, events, local))
}

/// The next server event matching `pred`, within [`T`].
async fn next_event<F>(
    events: &mut EventStream<ServerEvent>,
    what: &str,
    pred: F,
) -> Result<ServerEvent, String>
where
    F: Fn(&ServerEvent) -> bool,
{
    let wait = async {
        while let Some(ev) = events.recv().await {
            if pred(&ev) {
                return Ok(ev);
            }
        }
        Err(format!("event stream ended before {what}"))
    };
    tokio::time::timeout(T, wait)
        .await
        .map_err(|_| format!("no {what} within {T:?}"))?
}

async fn js_event(node: &mut NodePeer, kind: &str) -> Result<Value, String> {
    node.expect(|e| e.kind() == kind, T)
        .await
        .map(|e| e.raw)
        .map_err(s)
}

async fn js_tagged(node: &mut NodePeer, tag: &str) -> Result<Value, String> {
    node.expect(|e| e.raw.get("tag").and_then(Value::as_str) == Some(tag), T)
        .await
        .map(|e| e.raw)
        .map_err(s)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// Connects a net-ipc client with a payload; returns its id, our socket and
/// the handshake reply as the client saw it.
async fn connect(
    node: &mut NodePeer,
    events: &mut EventStream<ServerEvent>,
    payload: &Value,
) -> Result<(String, Socket, Value), String> {
    js_event(node, "ready-to-connect").await?;
    node.send(&json!({"op": "connect", "payload": payload}))
        .await
        .map_err(s)?;
    let ev = next_event(events, "hello", |e| matches!(e, ServerEvent::Hello { .. })).await?;
    let ServerEvent::Hello { socket, hello } = ev else {
        unreachable!()
    };
    check(hello.extras == *payload, || {
        format!("connect payload arrived as {}", hello.extras)
    })?;
    let info = js_event(node, "ready").await?["info"].clone();
    let ready = js_event(node, "connected").await?;
    let id = ready["id"].as_str().unwrap_or_default().to_owned();
    check(
        !id.is_empty() && socket.peer_id().as_deref() == Some(id.as_str()),
        || format!("client id {ready} vs server id {:?}", socket.peer_id()),
    )?;
    Ok((id, socket, info))
}

async fn message_from_js(
    node: &mut NodePeer,
    events: &mut EventStream<ServerEvent>,
    data: Value,
) -> Result<(), String> {
    node.send(&json!({"op": "send", "data": data}))
        .await
        .map_err(s)?;
    let ev = next_event(
        events,
        "message",
        |e| matches!(e, ServerEvent::Message { message, .. } if message.event() == "message"),
    )
    .await?;
    let ServerEvent::Message { message, .. } = ev else {
        unreachable!()
    };
    let got = message.data_value();
    check(got == data, || {
        format!("server got {}", truncate(&got.to_string()))
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Everything a connected client can do, one cell each.
async fn session(m: &mut Matrix, net: Net, mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let cell = |c: &str| format!("{}/{c}", mode.label());
    let setup = async {
        let (server, events, local) = rust_server(endpoint(net, dir.path())).await?;
        let mut opts = js_target(&local)?;
        opts["role"] = json!("client");
        opts["messagepack"] = json!(mode == Mode::Msgpack);
        opts["handshake"] = json!(mode == Mode::Upgrade);
        opts["compress"] = json!(mode == Mode::Compress);
        let node = spawn_js(opts, &format!("net-ipc client {}", net.label())).await?;
        Ok::<_, String>((server, events, local, node))
    };
    let (server, mut events, local, mut node) =
        match tokio::time::timeout(common::CELL, setup).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return m.outcome(PEER, net.label(), &cell("setup"), Err(e)),
            Err(_) => return m.outcome(PEER, net.label(), &cell("setup"), Err("timed out")),
        };
    let payload = json!({"token": "t-1", "n": [1, 2.5, null]});
    let (id, socket, info) = match bounded_ret(connect(&mut node, &mut events, &payload)).await {
        Ok(x) => x,
        Err(e) => {
            m.outcome(PEER, net.label(), &cell("handshake"), Err(e));
            node.kill().await;
            server.abort().await;
            return;
        }
    };
    // What the server granted, as the client saw it.
    let res = bounded(async {
        check(info["messagepack"] == json!(mode == Mode::Msgpack), || {
            format!("handshake reply {info}")
        })?;
        // Compression is never granted (asked for in `compress-refused`).
        check(
            info["compress"] == json!(false) && info["id"] == json!(id),
            || format!("handshake reply {info}"),
        )
    })
    .await;
    m.outcome(PEER, net.label(), &cell("handshake"), res);

    let res = bounded(async {
        message_from_js(
            &mut node,
            &mut events,
            json!({"hello": "rust", "list": [true, null, -1.5]}),
        )
        .await?;
        message_from_js(&mut node, &mut events, json!("plain string")).await
    })
    .await;
    m.outcome(PEER, net.label(), &cell("message js->rust"), res);

    let res = bounded(async {
        let data = json!({"hello": "js", "big": 1e21, "neg": -7});
        socket.emit("message", &data).await.map_err(s)?;
        let ev = js_event(&mut node, "message").await?;
        check(ev["data"] == data, || format!("client got {ev}"))
    })
    .await;
    m.outcome(PEER, net.label(), &cell("message rust->js"), res);

    let res = bounded(async {
        node.send(&json!({"op": "request", "tag": "r1", "data": {"q": 1}}))
            .await
            .map_err(s)?;
        let ev = js_tagged(&mut node, "r1").await?;
        let want = json!({"echo": {"q": 1}, "from": "rust"});
        check(ev["ev"] == "response" && ev["data"] == want, || {
            format!("request answered with {ev}")
        })
    })
    .await;
    m.outcome(PEER, net.label(), &cell("request js->rust"), res);

    let res = bounded(async {
        let r = socket
            .request(&json!({"q": "js?"}), Duration::from_secs(10))
            .await
            .map_err(s)?;
        let want = json!({"echo": {"q": "js?"}, "from": "js"});
        check(r.value() == want, || format!("answered {}", r.value()))
    })
    .await;
    m.outcome(PEER, net.label(), &cell("request rust->js"), res);

    let res = bounded(async {
        node.send(&json!({"op": "ping", "tag": "p1"}))
            .await
            .map_err(s)?;
        let ev = js_tagged(&mut node, "p1").await?;
        check(ev["ev"] == "pong" && ev["ms"].is_number(), || {
            format!("ping ended with {ev}")
        })?;
        socket.ping(Duration::from_secs(10)).await.map_err(s)?;
        Ok(())
    })
    .await;
    m.outcome(PEER, net.label(), &cell("ping both ways"), res);

    let res = bounded(async {
        let n = server
            .broadcast("message", "to everyone")
            .await
            .map_err(s)?;
        check(n == 1, || format!("broadcast reached {n}"))?;
        let ev = js_event(&mut node, "message").await?;
        check(ev["data"] == "to everyone", || format!("client got {ev}"))?;
        // An event net-ipc has no packet for arrives as its envelope.
        server
            .broadcast("news", &json!({"a": 1}))
            .await
            .map_err(s)?;
        let ev = js_event(&mut node, "message").await?;
        let want = json!({"type": "news", "data": {"a": 1}});
        check(ev["data"] == want, || format!("client got {ev}"))
    })
    .await;
    m.outcome(PEER, net.label(), &cell("broadcast"), res);

    let res = bounded(async {
        let answers = server
            .survey(&json!({"survey": 1}), Duration::from_secs(10))
            .await
            .map_err(s)?;
        check(answers.len() == 1, || format!("{} answers", answers.len()))?;
        let r = answers[0].1.as_ref().map_err(|e| e.to_string())?;
        let want = json!({"echo": {"survey": 1}, "from": "js"});
        check(r.value() == want, || format!("survey answer {}", r.value()))
    })
    .await;
    m.outcome(PEER, net.label(), &cell("survey"), res);

    let res = bounded(async {
        let big = "x".repeat(1 << 20);
        message_from_js(&mut node, &mut events, json!(big)).await?;
        socket.emit("message", &big).await.map_err(s)?;
        let ev = js_event(&mut node, "message").await?;
        let len = ev["data"].as_str().map_or(0, str::len);
        check(len == 1 << 20, || format!("client got {len} bytes"))
    })
    .await;
    m.outcome(PEER, net.label(), &cell("1 MiB both ways"), res);

    // END with reconnect: the server goes away telling clients they may
    // come back; a new server on the same endpoint sees the same id.
    let res = bounded(async {
        server.close(true).await;
        let server2 = Server::new(local.clone(), ServerConfig::default()).map_err(s)?;
        let mut events2 = server2.events();
        server2.start().await.map_err(s)?;
        let ev = next_event(&mut events2, "hello after reconnect", |e| {
            matches!(e, ServerEvent::Hello { .. })
        })
        .await?;
        let ServerEvent::Hello { hello, socket } = ev else {
            unreachable!()
        };
        let out = check(
            hello.id.as_deref() == Some(id.as_str())
                && socket.peer_id().as_deref() == Some(id.as_str())
                && hello.extras == payload,
            || {
                format!(
                    "reconnected as {:?} with {}, want {id}",
                    hello.id, hello.extras
                )
            },
        );
        // END without reconnect: the client reports the reason and stays away.
        server2.close(false).await;
        out?;
        let ev = js_event(&mut node, "close").await?;
        check(ev["reason"] == "Server was shut down", || {
            format!("client closed with {ev}")
        })
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("END reconnect keeps id, END final"),
        res,
    );

    node.kill().await;
    server.abort().await;
}

async fn bounded_ret<T, F>(fut: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    tokio::time::timeout(common::CELL, fut)
        .await
        .map_err(|_| "cell timed out".to_owned())?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netipc_clients_on_our_server() {
    let mut m = Matrix::new("net-ipc-client");
    if !require(&mut m) {
        return;
    }
    for net in [Net::Unix, Net::Tcp4] {
        for mode in [Mode::Json, Mode::Msgpack] {
            session(&mut m, net, mode).await;
        }
    }
    session(&mut m, Net::Unix, Mode::Upgrade).await;
    session(&mut m, Net::Tcp4, Mode::Compress).await;
    m.finish();
}

/// A client closing with a reason: the server sees the connection end.
async fn client_close(net: Net) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let (server, mut events, local) = rust_server(endpoint(net, dir.path())).await?;
    let mut opts = js_target(&local)?;
    opts["role"] = json!("client");
    let mut node = spawn_js(opts, "net-ipc client").await?;
    let (_, socket, _) = connect(&mut node, &mut events, &json!(null)).await?;
    node.send(&json!({"op": "close", "reason": "bye"}))
        .await
        .map_err(s)?;
    next_event(
        &mut events,
        "disconnect",
        |e| matches!(e, ServerEvent::SocketDisconnected { socket: s2, .. } if *s2 == socket),
    )
    .await?;
    let ev = js_event(&mut node, "close").await?;
    check(ev["reason"] == "bye" || ev["reason"].is_null(), || {
        format!("client closed with {ev}")
    })?;
    check(server.connections() == 0, || {
        format!("{} connections left", server.connections())
    })?;
    node.kill().await;
    server.abort().await;
    Ok(())
}

/// node-ipc and net-ipc clients on one endpoint at the same time.
async fn mixed(net: Net, flavor: Flavor) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let (server, mut events, local) = rust_server(endpoint(net, dir.path())).await?;
    let mut opts = js_target(&local)?;
    opts["role"] = json!("client");
    let mut js = spawn_js(opts, "net-ipc client").await?;
    connect(&mut js, &mut events, &json!({"who": "net-ipc"})).await?;

    let transport = match &local {
        Endpoint::Unix(p) => Transport::Unix { path: p.clone() },
        Endpoint::Tcp { port, .. } => Transport::Tcp {
            host: V4,
            port: *port,
        },
        other => return Err(format!("unexpected endpoint {other}")),
    };
    let spec = PeerSpec::client(flavor, transport).listen(["message"]);
    let mut nodeipc = NodePeer::spawn(&spec).await.map_err(s)?;
    nodeipc.ready(T).await.map_err(s)?;
    next_event(&mut events, "node-ipc connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await?;

    nodeipc
        .command(
            json!({"cmd": "emit", "type": "message", "data": "from node-ipc"}),
            T,
        )
        .await
        .map_err(s)?;
    let ev = next_event(
        &mut events,
        "node-ipc message",
        |e| matches!(e, ServerEvent::Message { message, .. } if message.event() == "message"),
    )
    .await?;
    let ServerEvent::Message { message, .. } = ev else {
        unreachable!()
    };
    check(message.data_value() == "from node-ipc", || {
        format!("got {}", message.data_value())
    })?;
    message_from_js(&mut js, &mut events, json!("from net-ipc")).await?;

    let n = server.broadcast("message", "to both").await.map_err(s)?;
    check(n == 2, || format!("broadcast reached {n}"))?;
    let ev = js_event(&mut js, "message").await?;
    check(ev["data"] == "to both", || format!("net-ipc got {ev}"))?;
    let ev = nodeipc
        .expect(|e| e.is_event("message"), T)
        .await
        .map_err(s)?;
    check(ev.raw["args"][0] == "to both", || {
        format!("node-ipc got {ev}")
    })?;
    js.kill().await;
    nodeipc.kill().await;
    server.abort().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netipc_and_nodeipc_together() {
    let mut m = Matrix::new("net-ipc-client");
    if !require(&mut m) {
        return;
    }
    for net in [Net::Unix, Net::Tcp4] {
        m.outcome(
            PEER,
            net.label(),
            "client close",
            bounded(client_close(net)).await,
        );
        for flavor in [Flavor::V9, Flavor::V12, Flavor::V14Fast] {
            if m.require(flavor) {
                m.outcome(
                    &format!("net-ipc-2.2.2+{}", flavor.label()),
                    net.label(),
                    "one endpoint, both protocols",
                    bounded(mixed(net, flavor)).await,
                );
            }
        }
    }
    m.finish();
}

/// What net-ipc's rules say about bad openings, with a raw socket: an unknown
/// upgrade is answered `418` and closed; a packet before CONNECTION is
/// answered with END "closing orphaned connection"; both are reported.
async fn raw_refusals() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let (server, mut events, local) =
        rust_server(Endpoint::Unix(dir.path().join("r.sock"))).await?;
    let Endpoint::Unix(path) = local else {
        return Err("unix endpoint expected".into());
    };
    let mut c = tokio::net::UnixStream::connect(&path).await.map_err(s)?;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
        .await
        .map_err(s)?;
    let mut got = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut got))
        .await
        .map_err(s)?
        .map_err(s)?;
    check(got == b"HTTP/1.1 418 I'm a Teapot", || {
        format!("answered {:?}", String::from_utf8_lossy(&got))
    })?;
    next_event(&mut events, "error for the bad upgrade", |e| {
        matches!(e, ServerEvent::Error { peer: Some(_), .. })
    })
    .await?;

    let mut c = tokio::net::UnixStream::connect(&path).await.map_err(s)?;
    c.write_all(b"IPC\x93{\"t\":1,\"d\":\"hello\"}")
        .await
        .map_err(s)?;
    let mut got = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut got))
        .await
        .map_err(s)?
        .map_err(s)?;
    let body = br#"{"t":6,"d":{"m":"closing orphaned connection","a":false}}"#;
    check(got.len() == body.len() + 1 && got[1..] == body[..], || {
        format!("answered {:?}", String::from_utf8_lossy(&got))
    })?;
    let ev = next_event(&mut events, "error for the premature packet", |e| {
        matches!(e, ServerEvent::Error { peer: Some(_), .. })
    })
    .await?;
    let ServerEvent::Error { error, .. } = ev else {
        unreachable!()
    };
    check(
        error.to_string().contains("before connection finished"),
        || format!("reported {error}"),
    )?;
    server.abort().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netipc_raw_refusals() {
    let mut m = Matrix::new("net-ipc-client");
    m.outcome(
        "raw",
        "unix",
        "418 and orphan END",
        bounded(raw_refusals()).await,
    );
    m.finish();
}

/// Our client with `protocol: net-ipc` on a real net-ipc 2.2.2 server.
async fn our_client_session(m: &mut Matrix, net: Net, messagepack: bool) {
    use ipc_client::{Client, ClientConfig, ClientEvent, Protocol, RetryConfig};
    let label = if messagepack { "msgpack" } else { "json" };
    let cell = |c: &str| format!("{label}/{c}");
    let dir = tempfile::tempdir().unwrap();
    let mut opts = match net {
        Net::Unix => json!({"path": dir.path().join("js.sock")}),
        Net::Tcp4 => json!({"host": V4.to_string()}),
    };
    opts["role"] = json!("server");
    let label = format!("net-ipc server {}", net.label());
    let started = bounded_ret(spawn_js_server(&mut opts, &label)).await;
    let (node, port) = match started {
        Ok(x) => x,
        Err(e) => return m.outcome(PEER, net.label(), &cell("setup"), Err(e)),
    };
    let ep = match net {
        Net::Unix => Endpoint::Unix(dir.path().join("js.sock")),
        Net::Tcp4 => Endpoint::Tcp {
            host: V4.to_string(),
            port,
        },
    };
    // A restart serves the same address (the client reconnects to it).
    let again = opts.clone();
    let setup = async {
        let client = Client::new(
            ep,
            ClientConfig {
                protocol: Protocol::NetIpc { messagepack },
                hello: json!({"token": "rs"}),
                retry: RetryConfig::net_ipc(),
                ..ClientConfig::default()
            },
        )
        .map_err(s)?;
        client.on_request(|req| {
            let data: Value = req.data().map_err(|e| e.to_string())?;
            req.respond(&json!({"echo": data, "from": "rust"}))
                .map_err(|e| e.to_string())?;
            Ok(Flow::Stop)
        });
        let events = client.events();
        client.start();
        tokio::time::timeout(T, client.connected())
            .await
            .map_err(|_| "no connect in time".to_owned())?
            .map_err(s)?;
        Ok::<_, String>((node, client, events))
    };
    let (mut node, client, mut events) = match bounded_ret(setup).await {
        Ok(x) => x,
        Err(e) => return m.outcome(PEER, net.label(), &cell("setup"), Err(e)),
    };
    let res = bounded(async {
        let ev = js_event(&mut node, "connect").await?;
        check(ev["extras"] == json!({"token": "rs"}), || {
            format!("server saw {ev}")
        })?;
        // The id the server gave is ours once the handshake went through.
        client
            .request(&json!("sync"), Duration::from_secs(10))
            .await
            .map_err(s)?;
        check(client.session_id().as_deref() == ev["id"].as_str(), || {
            format!(
                "session id {:?}, server id {}",
                client.session_id(),
                ev["id"]
            )
        })
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("our client: connect payload, id"),
        res,
    );

    let res = bounded(async {
        let data = json!({"from": "rust", "n": [1, 2.5, null]});
        client.emit("message", &data).await.map_err(s)?;
        let ev = js_event(&mut node, "message").await?;
        check(ev["data"] == data, || format!("server got {ev}"))?;
        node.send(&json!({"op": "send", "data": {"from": "js"}}))
            .await
            .map_err(s)?;
        let msg = next_client_message(&mut events).await?;
        check(
            msg.event() == "message" && msg.data_value() == json!({"from": "js"}),
            || format!("client got {} {}", msg.event(), msg.data_value()),
        )
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("our client: messages both ways"),
        res,
    );

    let res = bounded(async {
        let r = client
            .request(&json!({"q": 1}), Duration::from_secs(10))
            .await
            .map_err(s)?;
        let want = json!({"echo": {"q": 1}, "from": "js"});
        check(r.value() == want, || format!("answered {}", r.value()))?;
        node.send(&json!({"op": "request", "tag": "sr", "data": {"q": 2}}))
            .await
            .map_err(s)?;
        let ev = js_tagged(&mut node, "sr").await?;
        let want = json!({"echo": {"q": 2}, "from": "rust"});
        check(ev["ev"] == "response" && ev["data"] == want, || {
            format!("server's request ended with {ev}")
        })
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("our client: requests both ways"),
        res,
    );

    let res = bounded(async {
        client.ping(Duration::from_secs(10)).await.map_err(s)?;
        node.send(&json!({"op": "ping", "tag": "sp"}))
            .await
            .map_err(s)?;
        let ev = js_tagged(&mut node, "sp").await?;
        check(ev["ev"] == "pong", || {
            format!("server's ping ended with {ev}")
        })
    })
    .await;
    m.outcome(PEER, net.label(), &cell("our client: ping both ways"), res);

    let res = bounded(async {
        node.send(&json!({"op": "survey", "tag": "sv", "data": "vote"}))
            .await
            .map_err(s)?;
        let ev = js_tagged(&mut node, "sv").await?;
        let want = json!([{"ok": {"echo": "vote", "from": "rust"}}]);
        check(ev["results"] == want, || format!("survey {ev}"))?;
        node.send(&json!({"op": "broadcast", "data": "all"}))
            .await
            .map_err(s)?;
        let msg = next_client_message(&mut events).await?;
        check(msg.data_value() == "all", || {
            format!("broadcast arrived as {}", msg.data_value())
        })
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("our client: survey, broadcast"),
        res,
    );

    // END with reconnect: the server goes away, a new one comes up on the
    // same endpoint, and our client returns with the id it was given (net-ipc
    // servers keep a truthy id). The delays are net-ipc's; the number of
    // attempts is not limited here, as starting Node may take a while.
    let res = bounded(async {
        let id = client.session_id().unwrap_or_default();
        client.set_retry(RetryConfig {
            max_retries: ipc_client::MaxRetries::Unlimited,
            ..RetryConfig::net_ipc()
        });
        node.send(&json!({"op": "close", "allowReconnect": true}))
            .await
            .map_err(s)?;
        js_event(&mut node, "close").await?;
        node.kill().await;
        node = spawn_js(
            again.clone(),
            &format!("net-ipc server {} again", net.label()),
        )
        .await?;
        js_event(&mut node, "ready").await?;
        let ev = js_event(&mut node, "connect").await?;
        check(
            !id.is_empty() && ev["id"] == json!(id) && ev["extras"] == json!({"token": "rs"}),
            || format!("reconnected as {ev}, want id {id}"),
        )
    })
    .await;
    m.outcome(
        PEER,
        net.label(),
        &cell("our client: END with reconnect keeps id"),
        res,
    );

    // END without reconnect: our client stops for good.
    let res = bounded(async {
        node.send(&json!({"op": "close", "allowReconnect": false}))
            .await
            .map_err(s)?;
        let wait = async {
            while let Some(ev) = events.recv().await {
                if matches!(ev, ClientEvent::Destroy) {
                    return Ok(());
                }
            }
            Err("client event stream ended".to_owned())
        };
        tokio::time::timeout(T, wait)
            .await
            .map_err(|_| "the client did not stop after END".to_owned())?
    })
    .await;
    m.outcome(PEER, net.label(), &cell("our client: END stops it"), res);

    let _ = client.destroy().await;
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_netipc_client_on_netipc_server() {
    let mut m = Matrix::new("net-ipc-server");
    if !require(&mut m) {
        return;
    }
    for net in [Net::Unix, Net::Tcp4] {
        for messagepack in [false, true] {
            our_client_session(&mut m, net, messagepack).await;
        }
    }
    m.finish();
}

async fn next_client_message(
    events: &mut ipc_client::EventStream<ipc_client::ClientEvent>,
) -> Result<ipc_proto::Message, String> {
    let fut = async {
        while let Some(ev) = events.recv().await {
            if let ipc_client::ClientEvent::Message(msg) = ev {
                return Ok(msg);
            }
        }
        Err("client event stream ended".to_owned())
    };
    tokio::time::timeout(T, fut)
        .await
        .map_err(|_| "no message in time".to_owned())?
}

/// TLS (server authentication with a run-time CA) both ways: a net-ipc
/// client on our TLS endpoint, and our net-ipc client on a net-ipc TLS
/// server. net-ipc's PSK mode is not offered: rustls has no TLS-PSK.
async fn tls_netipc_client_on_our_server(pki: &ours::Pki) -> Result<(), String> {
    let cfg = ours::our_server_config(
        Flavor::V14Fast,
        ours::Via::Tls,
        pki,
        ipc_proto::CodecConfig::fast(),
    );
    let server = Server::new(
        Endpoint::Tls {
            host: V4.to_string(),
            port: 0,
        },
        cfg,
    )
    .map_err(s)?;
    server.on_request(|req| {
        let data: Value = req.data().map_err(|e| e.to_string())?;
        req.respond(&json!({"echo": data, "from": "rust"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    let mut events = server.events();
    let local = server.start().await.map_err(s)?;
    let Endpoint::Tls { port, .. } = local else {
        return Err(format!("unexpected endpoint {local}"));
    };
    let ca = std::fs::read_to_string(&pki.ca).map_err(s)?;
    let opts = json!({"role": "client", "host": "127.0.0.1", "port": port, "tls": true, "ca": ca});
    let mut node = spawn_js(opts, "net-ipc tls client").await?;
    let (_, socket, _) = connect(&mut node, &mut events, &json!({"over": "tls"})).await?;
    node.send(&json!({"op": "request", "tag": "t1", "data": "secure?"}))
        .await
        .map_err(s)?;
    let ev = js_tagged(&mut node, "t1").await?;
    check(
        ev["data"] == json!({"echo": "secure?", "from": "rust"}),
        || format!("request over TLS ended with {ev}"),
    )?;
    let r = socket
        .request(&json!("and back"), Duration::from_secs(10))
        .await
        .map_err(s)?;
    check(
        r.value() == json!({"echo": "and back", "from": "js"}),
        || format!("answered {}", r.value()),
    )?;
    node.kill().await;
    server.abort().await;
    Ok(())
}

async fn tls_our_client_on_netipc_server(pki: &ours::Pki) -> Result<(), String> {
    use ipc_client::{Client, Protocol};
    let read = |p: &std::path::Path| std::fs::read_to_string(p).map_err(s);
    let mut opts = json!({
        "role": "server", "host": V4.to_string(), "tls": true,
        "cert": read(&pki.server_cert)?, "key": read(&pki.server_key)?,
    });
    let (mut node, port) = spawn_js_server(&mut opts, "net-ipc tls server").await?;
    let mut cfg =
        ours::our_client_config(ours::Via::Tls, pki, ipc_proto::CodecConfig::fast(), false);
    cfg.protocol = Protocol::NetIpc { messagepack: true };
    cfg.hello = json!("tls payload");
    let client = Client::new(
        Endpoint::Tls {
            host: V4.to_string(),
            port,
        },
        cfg,
    )
    .map_err(s)?;
    client.start();
    tokio::time::timeout(T, client.connected())
        .await
        .map_err(|_| "no TLS connection in time".to_owned())?
        .map_err(s)?;
    let ev = js_event(&mut node, "connect").await?;
    check(ev["extras"] == "tls payload", || format!("server saw {ev}"))?;
    let r = client
        .request(&json!({"q": "tls"}), Duration::from_secs(10))
        .await
        .map_err(s)?;
    check(
        r.value() == json!({"echo": {"q": "tls"}, "from": "js"}),
        || format!("answered {}", r.value()),
    )?;
    let _ = client.destroy().await;
    node.kill().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netipc_over_tls() {
    let mut m = Matrix::new("net-ipc-client");
    if !require(&mut m) {
        return;
    }
    let pki = ours::pki();
    m.outcome(
        PEER,
        "tls",
        "json/handshake, requests both ways",
        bounded(tls_netipc_client_on_our_server(&pki)).await,
    );
    m.record(
        PEER,
        "tls-psk",
        "*",
        CellStatus::NotApplicable("net-ipc's PSK mode: rustls offers no TLS-PSK".into()),
    );
    let mut m2 = Matrix::new("net-ipc-server");
    m2.outcome(
        PEER,
        "tls",
        "our client (msgpack): connect payload, request",
        bounded(tls_our_client_on_netipc_server(&pki)).await,
    );
    m.finish();
    m2.finish();
}
