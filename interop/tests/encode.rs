//! `docs/protocol.md` §7.1 framed encode vectors, produced by real node-ipc peers and
//! compared byte for byte on a raw Rust socket.
//!
//! * `node_client_to_rust_server`: `client.emit(type, data)` from a Node
//!   client connected to a raw Rust listener.
//! * `node_server_to_rust_client`: `server.emit(socket, …)` and
//!   `server.broadcast(…)` from a Node server to a raw Rust client.
//!
//! Each runs for v9, v12, v14-fast and v14-guarded over Unix, TCP/IPv4 and
//! TCP/IPv6.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ipc_interop::{Flavor, Matrix, NodePeer, PeerSpec};
use serde_json::json;
use tokio::io::BufReader;

async fn client_cell(flavor: Flavor, net: Net, m: &mut Matrix) {
    let dir = tempfile::tempdir().unwrap();
    let (listener, transport) = RawListener::bind(net, dir.path()).await;
    let spec = PeerSpec::client(flavor, transport);
    let setup = async {
        let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
        let stream = listener.accept().await?;
        peer.ready(T).await.map_err(s)?;
        Ok::<_, String>((peer, BufReader::new(stream)))
    };
    let (mut peer, mut stream) = match bounded_setup(setup).await {
        Ok(v) => v,
        Err(e) => {
            m.record(
                flavor.label(),
                net.label(),
                "connect",
                ipc_interop::CellStatus::Failed(e),
            );
            return;
        }
    };
    for v in encode_vectors() {
        let res = bounded(async {
            peer.command(v.command(), T).await.map_err(s)?;
            let got = read_frame(&mut stream, 0x0c).await?;
            check_bytes(v.id, &got, &v.expected(flavor.is_legacy()))
        })
        .await;
        m.outcome(flavor.label(), net.label(), v.id, res);
    }
    peer.kill().await;

    // F15: the same client with delimiter "\n" (a single code unit, so v9/v12
    // support it too).
    let dir = tempfile::tempdir().unwrap();
    let (listener, transport) = RawListener::bind(net, dir.path()).await;
    let spec = PeerSpec::client(flavor, transport).config("delimiter", json!("\n"));
    let res = bounded(async {
        let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
        let stream = listener.accept().await?;
        peer.ready(T).await.map_err(s)?;
        let mut stream = BufReader::new(stream);
        peer.command(json!({"cmd":"emit","type":"message","data":"hi"}), T)
            .await
            .map_err(s)?;
        let got = read_frame(&mut stream, b'\n').await?;
        check_bytes("F15", &got, &ipc_interop::hex_decode(F15_HEX).unwrap())
    })
    .await;
    m.outcome(flavor.label(), net.label(), "F15", res);
}

async fn server_cell(flavor: Flavor, net: Net, m: &mut Matrix) {
    let dir = tempfile::tempdir().unwrap();
    let transport = net.server_transport(dir.path());
    let spec = PeerSpec::server(flavor, transport.clone());
    let setup = async {
        let (mut peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
        let stream = connect(&transport).await?;
        let ev = peer
            .expect(|e| e.is_event("connect") && e.socket_arg(0).is_some(), T)
            .await
            .map_err(s)?;
        let sock = ev.socket_arg(0).ok_or("connect without socket")?;
        Ok::<_, String>((peer, BufReader::new(stream), sock))
    };
    let (mut peer, mut stream, sock) = match bounded_setup(setup).await {
        Ok(v) => v,
        Err(e) => {
            m.record(
                flavor.label(),
                net.label(),
                "connect",
                ipc_interop::CellStatus::Failed(e),
            );
            return;
        }
    };
    for v in encode_vectors() {
        let res = bounded(async {
            let mut cmd = v.command();
            cmd["socket"] = json!(sock);
            peer.command(cmd, T).await.map_err(s)?;
            let got = read_frame(&mut stream, 0x0c).await?;
            check_bytes(v.id, &got, &v.expected(flavor.is_legacy()))
        })
        .await;
        m.outcome(flavor.label(), net.label(), &format!("emit-{}", v.id), res);
    }
    let res = bounded(async {
        peer.command(
            json!({"cmd":"broadcast","type":"message","data":"hello"}),
            T,
        )
        .await
        .map_err(s)?;
        let got = read_frame(&mut stream, 0x0c).await?;
        let v = &encode_vectors()[0];
        check_bytes("broadcast F1", &got, &v.expected(flavor.is_legacy()))
    })
    .await;
    m.outcome(flavor.label(), net.label(), "broadcast-F1", res);
    peer.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_to_rust_server() {
    let mut m = Matrix::new("encode-client");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            client_cell(flavor, net, &mut m).await;
        }
    }
    m.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_server_to_rust_client() {
    let mut m = Matrix::new("encode-server");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            server_cell(flavor, net, &mut m).await;
        }
    }
    m.finish();
}
