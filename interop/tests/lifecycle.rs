//! `docs/protocol.md` §3.3 lifecycle sequences that a raw Rust endpoint can drive, for
//! every peer over Unix, TCP/IPv4 and TCP/IPv6:
//!
//! * the Rust server closes the connection: a Node client with
//!   `maxRetries = 0` reports `disconnect` then `destroy`, with no `error`;
//! * with `maxRetries = 1` it reconnects once (a second `connect`);
//! * `ipc.disconnect(id)` closes the client's socket;
//! * `server.stop()`: v14 closes existing connections, v9/v12 keep serving
//!   them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ipc_interop::{Flavor, Matrix, NodePeer, PeerSpec};
use serde_json::json;
use tokio::io::AsyncWriteExt;

async fn client_peer(
    flavor: Flavor,
    net: Net,
    retries: u32,
) -> Result<(NodePeer, RawListener, RawStream, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let (listener, transport) = RawListener::bind(net, dir.path()).await;
    let spec = PeerSpec::client(flavor, transport)
        .config("maxRetries", json!(retries))
        .config("retry", json!(50));
    let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
    let st = listener.accept().await?;
    peer.ready(T).await.map_err(s)?;
    Ok((peer, listener, st, dir))
}

async fn server_closes(flavor: Flavor, net: Net) -> Result<(), String> {
    let (mut peer, _l, st, _d) = client_peer(flavor, net, 0).await?;
    drop(st);
    let evs = peer
        .collect_until(|e| e.is_event("destroy"), T)
        .await
        .map_err(s)?;
    let names: Vec<_> = evs
        .iter()
        .filter(|e| e.kind() == "event")
        .filter_map(|e| e.type_name())
        .collect();
    if names != ["disconnect", "destroy"] {
        return Err(format!("want [disconnect, destroy], got {names:?}"));
    }
    Ok(())
}

async fn reconnects_once(flavor: Flavor, net: Net) -> Result<(), String> {
    let (mut peer, listener, st, _d) = client_peer(flavor, net, 1).await?;
    drop(st);
    peer.expect(|e| e.is_event("disconnect"), T)
        .await
        .map_err(s)?;
    let st2 = listener.accept().await?;
    peer.expect(|e| e.is_event("connect"), T).await.map_err(s)?;
    // The reconnected socket carries frames like the first one.
    peer.command(json!({"cmd":"emit","type":"message","data":"hello"}), T)
        .await
        .map_err(s)?;
    let mut r = tokio::io::BufReader::new(st2);
    let got = read_frame(&mut r, 0x0c).await?;
    check_bytes(
        "F1 after reconnect",
        &got,
        &encode_vectors()[0].expected(false),
    )
}

async fn client_disconnect(flavor: Flavor, net: Net) -> Result<(), String> {
    let (mut peer, _l, mut st, _d) = client_peer(flavor, net, 5).await?;
    peer.command(json!({"cmd":"disconnect"}), T)
        .await
        .map_err(s)?;
    expect_closed(&mut st).await
}

async fn server_stop(flavor: Flavor, net: Net) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let transport = net.server_transport(dir.path());
    let (mut peer, transport) =
        ipc_interop::spawn_server_ready(&PeerSpec::server(flavor, transport), T)
            .await
            .map_err(s)?;
    let mut st = connect(&transport).await?;
    peer.expect(|e| e.is_event("connect"), T).await.map_err(s)?;
    peer.command(json!({"cmd":"stop"}), T).await.map_err(s)?;
    if flavor.is_legacy() {
        // v9/v12: stop() only stops listening; this connection still works.
        st.write_all(b"{\"type\":\"a\",\"data\":\"after-stop\"}\x0c")
            .await
            .map_err(s)?;
        peer.expect(|e| is_msg(e, "a", &json!("after-stop")), T)
            .await
            .map_err(s)?;
    } else {
        expect_closed(&mut st).await?;
    }
    // In every version the listener is gone.
    match connect(&transport).await {
        Ok(_) => Err("a new connection was accepted after stop()".into()),
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_sequences() {
    let mut m = Matrix::new("lifecycle");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            let (f, n) = (flavor.label(), net.label());
            m.outcome(
                f,
                n,
                "server-closes",
                bounded(server_closes(flavor, net)).await,
            );
            m.outcome(
                f,
                n,
                "reconnect-once",
                bounded(reconnects_once(flavor, net)).await,
            );
            m.outcome(
                f,
                n,
                "ipc.disconnect",
                bounded(client_disconnect(flavor, net)).await,
            );
            m.outcome(f, n, "server.stop", bounded(server_stop(flavor, net)).await);
        }
    }
    m.finish();
}
