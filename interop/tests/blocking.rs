//! The blocking client and server (`ipc_client::blocking`,
//! `ipc_server::blocking`) against node-ipc 14 over Unix sockets and
//! TCP/IPv4:
//!
//! * blocking client ↔ node-ipc server: an emit arrives with its data, the
//!   server's emit and a burst of 10,000 `seq` messages arrive whole and in
//!   order, and `server.stop()` is seen as a disconnect;
//! * node-ipc client ↔ blocking server: a message is echoed back from a
//!   handler, a burst of 10,000 arrives in order, and a broadcast reaches
//!   the Node client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ipc_client::blocking::BlockingClient;
use ipc_client::{ClientConfig, ClientEvent, MaxRetries};
use ipc_interop::{spawn_server_ready, Flavor, Matrix, NodePeer, PeerSpec, Transport};
use ipc_server::blocking::BlockingServer;
use ipc_server::ServerConfig;
use ipc_transport::Endpoint;
use serde_json::json;

const BURST: u64 = 10_000;

fn endpoint_of(t: &Transport) -> Endpoint {
    match t {
        Transport::Unix { path } => Endpoint::Unix(path.clone()),
        Transport::Tcp { host, port } => Endpoint::Tcp {
            host: host.to_string(),
            port: *port,
        },
        other => panic!("no blocking cell for {other:?}"),
    }
}

/// Runs blocking client code off the runtime's threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(s)?
}

/// Blocking client ↔ node-ipc server.
async fn client_cell(flavor: Flavor, net: Net) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    // Node cannot bind port 0: the harness picks a free port (and a fresh
    // one if it was taken first) and says which it used.
    let (mut peer, transport) = spawn_server_ready(
        &PeerSpec::server(flavor, net.server_transport(dir.path())),
        T,
    )
    .await
    .map_err(s)?;
    let endpoint = endpoint_of(&transport);
    let mut client = blocking(move || {
        let config = ClientConfig {
            retry: ipc_client::RetryConfig {
                max_retries: MaxRetries::Limited(0),
                ..Default::default()
            },
            ..ClientConfig::default()
        };
        let mut c = BlockingClient::connect(endpoint, config).map_err(s)?;
        c.emit("message", "from a blocking client").map_err(s)?;
        c.flush().map_err(s)?;
        Ok(c)
    })
    .await?;
    let ev = peer
        .expect(|e| e.is_event("connect") && e.socket_arg(0).is_some(), T)
        .await
        .map_err(s)?;
    let sock = ev.socket_arg(0).ok_or("connect without a socket")?;
    peer.expect(
        |e| is_msg(e, "message", &json!("from a blocking client")),
        T,
    )
    .await
    .map_err(s)?;
    peer.command(
        json!({"cmd":"emit","socket":sock,"type":"message","data":{"n":1}}),
        T,
    )
    .await
    .map_err(s)?;
    peer.command(json!({"cmd":"burst","n":BURST,"socket":sock}), T)
        .await
        .map_err(s)?;
    client = blocking(move || {
        let deadline = Instant::now() + T;
        let mut next = 0u64;
        let mut greeting = false;
        while next < BURST {
            if Instant::now() > deadline {
                return Err(format!("{next} of {BURST} seq messages in {T:?}"));
            }
            match client.recv_timeout(Duration::from_millis(200)).map_err(s)? {
                Some(ClientEvent::Message(m)) if m.event() == "message" => {
                    if m.data_value() != json!({"n":1}) {
                        return Err(format!("message data {}", m.data_value()));
                    }
                    greeting = true;
                }
                Some(ClientEvent::Message(m)) if m.event() == "seq" => {
                    let v = m.data_value();
                    if v["i"] != json!(next) || v["n"] != json!(BURST) {
                        return Err(format!("seq {v} where i = {next} was due"));
                    }
                    next += 1;
                }
                Some(ClientEvent::Connect) => {}
                Some(other) => return Err(format!("unexpected {other:?}")),
                None => {}
            }
        }
        if !greeting {
            return Err("the server's emit did not arrive before the burst".into());
        }
        Ok(client)
    })
    .await?;
    peer.command(json!({"cmd":"stop"}), T).await.map_err(s)?;
    blocking(move || {
        let deadline = Instant::now() + T;
        while Instant::now() < deadline {
            match client.recv_timeout(Duration::from_millis(200)) {
                Ok(Some(ClientEvent::Disconnect)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(s(e)),
            }
        }
        Err("no disconnect after server.stop()".into())
    })
    .await
}

/// node-ipc client ↔ blocking server.
async fn server_cell(flavor: Flavor, net: Net) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let endpoint = match net {
        Net::Unix => Endpoint::Unix(dir.path().join("blocking.sock")),
        _ => "tcp://127.0.0.1:0".parse().map_err(s)?,
    };
    let server = BlockingServer::bind(endpoint, ServerConfig::default()).map_err(s)?;
    server.on("message", |m, socket| {
        let _ = socket.emit("message", &m.data_value());
    });
    let seen = Arc::new(AtomicU64::new(0));
    let in_order = Arc::new(AtomicU64::new(1));
    {
        let (seen, in_order) = (seen.clone(), in_order.clone());
        server.on("seq", move |m, _| {
            let i = m.data_value()["i"].as_u64();
            if i != Some(seen.fetch_add(1, Ordering::SeqCst)) {
                in_order.store(0, Ordering::SeqCst);
            }
        });
    }
    server.start().map_err(s)?;
    let transport = match server.endpoint() {
        Endpoint::Unix(path) => Transport::Unix { path: path.clone() },
        Endpoint::Tcp { port, .. } => Transport::Tcp {
            host: V4,
            port: *port,
        },
        other => return Err(format!("unexpected endpoint {other}")),
    };
    let mut peer = NodePeer::spawn(&PeerSpec::client(flavor, transport))
        .await
        .map_err(s)?;
    peer.ready(T).await.map_err(s)?;
    peer.command(json!({"cmd":"emit","type":"message","data":"echo me"}), T)
        .await
        .map_err(s)?;
    peer.expect(|e| is_msg(e, "message", &json!("echo me")), T)
        .await
        .map_err(s)?;
    peer.command(json!({"cmd":"burst","n":BURST}), T)
        .await
        .map_err(s)?;
    let t0 = Instant::now();
    while seen.load(Ordering::SeqCst) < BURST && t0.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if seen.load(Ordering::SeqCst) != BURST || in_order.load(Ordering::SeqCst) != 1 {
        return Err(format!(
            "server got {} of {BURST} seq messages (in order: {})",
            seen.load(Ordering::SeqCst),
            in_order.load(Ordering::SeqCst) == 1
        ));
    }
    let reached = server.broadcast("message", "to all").map_err(s)?;
    if reached != 1 {
        return Err(format!("broadcast reached {reached} clients"));
    }
    peer.expect(|e| is_msg(e, "message", &json!("to all")), T)
        .await
        .map_err(s)?;
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .map_err(s)?;
    peer.expect(|e| e.is_event("disconnect"), T)
        .await
        .map_err(s)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_endpoints_with_node_ipc_14() {
    let mut m = Matrix::new("blocking");
    for flavor in [Flavor::V14Fast, Flavor::V14Guarded] {
        if !m.require(flavor) {
            continue;
        }
        for net in [Net::Unix, Net::Tcp4] {
            let (f, n) = (flavor.label(), net.label());
            m.outcome(
                f,
                n,
                "blocking-client",
                bounded(client_cell(flavor, net)).await,
            );
            m.outcome(
                f,
                n,
                "blocking-server",
                bounded(server_cell(flavor, net)).await,
            );
        }
    }
    m.finish();
}
