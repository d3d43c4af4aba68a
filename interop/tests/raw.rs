//! `docs/protocol.md` §7.2 rawBuffer vectors on stream transports: the bytes a Node peer
//! writes for each payload kind and `encoding` (R1–R7, read on a raw Rust
//! socket), and what a Node raw server hands its `data` listener for binary
//! input (R8: lossless in v14, a lossy string round trip in v9/v12).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ipc_interop::{hex_decode, Flavor, Matrix, NodePeer, PeerSpec};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (id, encoding, emitRaw command fields, expected bytes hex).
fn outbound() -> Vec<(&'static str, &'static str, Value, &'static str)> {
    vec![
        ("R1", "utf8", json!({"hex": "056d5c"}), "056d5c"),
        ("R2", "utf8", json!({"string": "hello"}), "68656c6c6f"),
        ("R6", "utf8", json!({"array": [10, 20, 30]}), "0a141e"),
        (
            "R6-mask",
            "utf8",
            json!({"array": [10, 20, 300, -1]}),
            "0a142cff",
        ),
        ("R3", "utf16le", json!({"string": "hi"}), "68006900"),
        ("R4", "hex", json!({"string": "0a0b"}), "0a0b"),
        ("R4-lenient", "hex", json!({"string": "0a0bzz"}), "0a0b"),
        ("R5", "base64", json!({"string": "aGVsbG8="}), "68656c6c6f"),
        (
            "R5-unpadded",
            "base64",
            json!({"string": "aGVsbG8"}),
            "68656c6c6f",
        ),
        ("R7", "ascii", json!({"string": "é€"}), "e9ac"),
        ("R7-latin1", "latin1", json!({"string": "é€"}), "e9ac"),
    ]
}

async fn read_exact_bounded(st: &mut RawStream, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; n];
    match tokio::time::timeout(T, st.read_exact(&mut buf)).await {
        Ok(Ok(_)) => Ok(buf),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!("fewer than {n} bytes arrived")),
    }
}

/// Node raw client → Rust raw server, one client per encoding.
async fn outbound_cells(flavor: Flavor, net: Net, m: &mut Matrix) {
    let vectors = outbound();
    let mut encodings: Vec<&str> = vectors.iter().map(|v| v.1).collect();
    encodings.dedup();
    for enc in encodings {
        let dir = tempfile::tempdir().unwrap();
        let (listener, transport) = RawListener::bind(net, dir.path()).await;
        let spec = PeerSpec::client(flavor, transport)
            .config("rawBuffer", json!(true))
            .config("encoding", json!(enc));
        let setup = async {
            let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
            let st = listener.accept().await?;
            peer.ready(T).await.map_err(s)?;
            Ok::<_, String>((peer, st))
        };
        let (mut peer, mut st) = match bounded_setup(setup).await {
            Ok(v) => v,
            Err(e) => {
                m.outcome(
                    flavor.label(),
                    net.label(),
                    &format!("connect-{enc}"),
                    Err(e),
                );
                continue;
            }
        };
        for (id, _, fields, want) in vectors.iter().filter(|v| v.1 == enc) {
            let res = bounded(async {
                let mut cmd = fields.clone();
                cmd["cmd"] = json!("emitRaw");
                peer.command(cmd, T).await.map_err(s)?;
                let want = hex_decode(want).unwrap();
                let got = read_exact_bounded(&mut st, want.len()).await?;
                check_bytes(id, &got, &want)
            })
            .await;
            m.outcome(flavor.label(), net.label(), id, res);
        }
        peer.kill().await;
    }
}

/// Rust raw client → Node raw server: binary bytes in, `data` event out, and
/// `server.emit(socket, buffer)` back.
async fn inbound_cell(flavor: Flavor, net: Net, enc: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let transport = net.server_transport(dir.path());
    let spec = PeerSpec::server(flavor, transport.clone())
        .config("rawBuffer", json!(true))
        .config("encoding", json!(enc));
    let (mut peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
    let mut st = connect(&transport).await?;
    let ev = peer
        .expect(|e| e.is_event("connect") && e.socket_arg(0).is_some(), T)
        .await
        .map_err(s)?;
    let sock = ev.socket_arg(0).ok_or("connect without a socket")?;
    st.write_all(&[0xff, 0xfe, 0x00, 0x80]).await.map_err(s)?;
    st.flush().await.map_err(s)?;
    let want: &[u8] = match (flavor.is_legacy(), enc) {
        (false, _) => &[0xff, 0xfe, 0x00, 0x80],
        (true, "utf8") => &[0xef, 0xbf, 0xbd, 0xef, 0xbf, 0xbd, 0x00, 0xef, 0xbf, 0xbd],
        (true, "ascii") => &[0x7f, 0x7e, 0x00, 0x00],
        (true, _) => &[0xff, 0xfe, 0x00, 0x80],
    };
    let ev = peer.expect(|e| e.is_event("data"), T).await.map_err(s)?;
    let got = ev
        .buffer_arg(0)
        .ok_or_else(|| format!("data event without a buffer: {ev}"))?;
    check_bytes("data event", &got, want)?;
    if ev.socket_arg(1) != Some(sock) {
        return Err(format!("data event does not name socket {sock}: {ev}"));
    }
    peer.command(json!({"cmd":"emitRaw","socket":sock,"hex":"056d5c"}), T)
        .await
        .map_err(s)?;
    let back = read_exact_bounded(&mut st, 3).await?;
    check_bytes("server.emit raw", &back, &[0x05, 0x6d, 0x5c])?;
    peer.kill().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_payloads_from_node_clients() {
    let mut m = Matrix::new("raw-out");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            outbound_cells(flavor, net, &mut m).await;
        }
    }
    m.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_into_node_servers() {
    let mut m = Matrix::new("raw-in");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            for enc in ["utf8", "ascii", "latin1"] {
                let res = bounded(inbound_cell(flavor, net, enc)).await;
                m.outcome(flavor.label(), net.label(), &format!("R8-{enc}"), res);
            }
        }
    }
    m.finish();
}
