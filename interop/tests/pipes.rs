//! node-ipc 9.2.1 and 14.0.0 on Windows Node against our server and client
//! over named pipes, in both directions: events each way and a 1 MiB frame
//! each way. The Node peer is given a plain path, which node-ipc turns into
//! a pipe name on Windows; our side opens `pipe:<the same path>`, so the
//! cells also prove that both sides map paths to the same pipe.
//!
//! Windows only (run under Wine by `cargo xtask windows`, which points
//! `IPC_INTEROP_NODE` / `IPC_INTEROP_NODE22` at the pinned Windows Node).
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_interop::{Flavor, Matrix, NodePeer, PeerSpec, Transport};
use ipc_server::{Server, ServerConfig, ServerEvent};
use ipc_transport::{pipe_name, Endpoint};
use serde_json::{json, Value};
use tokio::time::timeout;

/// Every wait is bounded by this.
const T: Duration = Duration::from_secs(30);
/// The large frame sent each way.
const BIG: usize = 1 << 20;

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A fresh path for one cell, and our endpoint for the pipe node-ipc makes
/// of it.
fn place(tag: &str) -> (PathBuf, Endpoint) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = format!(
        "/ipcw/{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let endpoint = Endpoint::NamedPipe(pipe_name(&path));
    (PathBuf::from(path), endpoint)
}

/// The peer script's large payload: "0123456789abcdef" repeated to `size`.
fn big_pattern(size: usize) -> String {
    "0123456789abcdef".chars().cycle().take(size).collect()
}

async fn next_client(
    events: &mut ipc_client::EventStream<ClientEvent>,
) -> Result<ClientEvent, String> {
    timeout(T, events.recv())
        .await
        .map_err(|_| "timed out waiting for a client event".to_string())?
        .ok_or_else(|| "client event stream ended".to_string())
}

/// The next message our client receives (lifecycle events skipped).
async fn next_message(
    events: &mut ipc_client::EventStream<ClientEvent>,
) -> Result<ipc_proto::Message, String> {
    loop {
        match next_client(events).await? {
            ClientEvent::Message(m) => return Ok(m),
            ClientEvent::Error(e) => return Err(format!("client error: {e}")),
            _ => {}
        }
    }
}

/// A node-ipc client talks to our server: its events reach us and our
/// answers reach it, a 1 MiB frame each way.
async fn node_client_to_our_server(flavor: Flavor) -> Result<(), String> {
    let (path, endpoint) = place("srv");
    let server = Server::new(endpoint, ServerConfig::default()).map_err(s)?;
    let mut sev = server.events();
    // Echo `message` as `echo`, and send `big` back as it came.
    server.on_message("message", |m, from| {
        if let (Ok(data), Some(socket)) = (m.data::<Value>(), from.socket()) {
            let _ = socket.try_emit("echo", &data);
        }
    });
    server.on_message("big", |m, from| {
        if let (Ok(data), Some(socket)) = (m.data::<String>(), from.socket()) {
            let _ = socket.try_emit("big", &data);
        }
    });
    timeout(T, server.start()).await.map_err(s)?.map_err(s)?;
    let result = async {
        let mut peer = NodePeer::spawn(&PeerSpec::client(flavor, Transport::Unix { path }))
            .await
            .map_err(s)?;
        peer.ready(T).await.map_err(s)?;
        peer.command_ack(
            json!({"cmd":"emit","type":"message","data":{"hello":"from node"}}),
            T,
        )
        .await
        .map_err(s)?;
        let echo = peer.expect(|e| e.is_event("echo"), T).await.map_err(s)?;
        if echo.arg(0) != Some(&json!({"hello":"from node"})) {
            return Err(format!("echo carried {echo}"));
        }
        // Our server saw the message with the data node-ipc sent.
        let got = loop {
            match timeout(T, sev.recv()).await.map_err(s)? {
                Some(ServerEvent::Message { message, .. }) if message.event() == "message" => {
                    break message.data::<Value>().map_err(s)?;
                }
                Some(ServerEvent::Error { error, .. }) => {
                    return Err(format!("server error: {error}"))
                }
                Some(_) => {}
                None => return Err("server event stream ended".into()),
            }
        };
        if got != json!({"hello":"from node"}) {
            return Err(format!("our server got {got}"));
        }
        peer.command_ack(json!({"cmd":"emitBig","size":BIG}), T)
            .await
            .map_err(s)?;
        let big = peer.expect(|e| e.kind() == "big", T).await.map_err(s)?;
        if big.raw["ok"] != json!(true) || big.raw["length"] != json!(BIG) {
            return Err(format!("the 1 MiB frame came back wrong: {big}"));
        }
        peer.kill().await;
        Ok(())
    }
    .await;
    timeout(T, server.stop()).await.map_err(s)?;
    result
}

/// Our client talks to a node-ipc server: events both ways, a 1 MiB frame
/// each way.
async fn our_client_to_node_server(flavor: Flavor) -> Result<(), String> {
    let (path, endpoint) = place("cli");
    let mut peer = NodePeer::spawn(
        &PeerSpec::server(flavor, Transport::Unix { path }).listen(["message", "big"]),
    )
    .await
    .map_err(s)?;
    peer.ready(T).await.map_err(s)?;
    let config = ClientConfig {
        retry: RetryConfig {
            retry: Duration::from_millis(50),
            max_retries: MaxRetries::Limited(0),
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::new(endpoint, config).map_err(s)?;
    let mut cev = client.events();
    client.start();
    let result = async {
        match next_client(&mut cev).await? {
            ClientEvent::Connect => {}
            other => return Err(format!("expected connect, got {other:?}")),
        }
        let connected = peer.expect(|e| e.is_event("connect"), T).await.map_err(s)?;
        let socket = connected
            .socket_arg(0)
            .ok_or_else(|| format!("no socket in {connected}"))?;
        client
            .emit("message", &json!({"hello":"from rust"}))
            .await
            .map_err(s)?;
        let got = peer.expect(|e| e.is_event("message"), T).await.map_err(s)?;
        if got.arg(0) != Some(&json!({"hello":"from rust"})) {
            return Err(format!("node-ipc got {got}"));
        }
        peer.command_ack(
            json!({"cmd":"emit","socket":socket,"type":"echo","data":{"hello":"from node"}}),
            T,
        )
        .await
        .map_err(s)?;
        let m = next_message(&mut cev).await?;
        if m.event() != "echo" || m.data::<Value>().map_err(s)? != json!({"hello":"from node"}) {
            return Err(format!("our client got {m:?}"));
        }
        // 1 MiB each way.
        client.emit("big", &big_pattern(BIG)).await.map_err(s)?;
        let big = peer.expect(|e| e.kind() == "big", T).await.map_err(s)?;
        if big.raw["ok"] != json!(true) || big.raw["length"] != json!(BIG) {
            return Err(format!("node-ipc got a wrong 1 MiB frame: {big}"));
        }
        peer.command_ack(json!({"cmd":"emitBig","size":BIG,"socket":socket}), T)
            .await
            .map_err(s)?;
        let m = next_message(&mut cev).await?;
        let data: String = m.data().map_err(s)?;
        if m.event() != "big" || data != big_pattern(BIG) {
            return Err(format!(
                "our client got a wrong 1 MiB frame ({} bytes)",
                data.len()
            ));
        }
        timeout(T, client.disconnect())
            .await
            .map_err(s)?
            .map_err(s)?;
        peer.expect(|e| e.is_event("socket.disconnected"), T)
            .await
            .map_err(s)?;
        Ok(())
    }
    .await;
    let _ = client.destroy().await;
    peer.kill().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ipc_over_named_pipes_both_ways() {
    let mut m = Matrix::new("pipes");
    for flavor in [Flavor::V14Fast, Flavor::V9] {
        if !m.require(flavor) {
            continue;
        }
        let label = flavor.label();
        let r = timeout(Duration::from_secs(120), node_client_to_our_server(flavor))
            .await
            .unwrap_or_else(|_| Err("cell timed out".into()));
        m.outcome(label, "pipe", "node client -> our server", r);
        let r = timeout(Duration::from_secs(120), our_client_to_node_server(flavor))
            .await
            .unwrap_or_else(|_| Err("cell timed out".into()));
        m.outcome(label, "pipe", "our client -> node server", r);
    }
    m.finish();
}
