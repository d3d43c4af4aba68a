//! The interop matrix with this project's crates on the Rust side:
//! {our server ↔ Node client, Node server ↔ our client} × {v9, v12,
//! v14-fast, v14-guarded} × {unix, tcp4, tcp6, tls, mtls, udp4, udp6} ×
//! {`docs/protocol.md` §7.1 data kinds byte-compared, raw buffers in each encoding,
//! broadcast to Rust and Node receivers, sync mode, reconnect after a server
//! restart, a 1 MiB message, a burst of 10,000 messages in order}.
//!
//! Suites: `ours-server` (our `ipc_server::Server`, Node clients; on UDP a
//! Node UDP server sending to ours) and `node-server` (a Node server, our
//! `ipc_client::Client`; on UDP our UDP server sending to the Node one).
//! Cells a version cannot do are recorded as not applicable with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ours;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{check_bytes, encode_vectors, is_msg, s, T, V4, V6};
use ipc_client::{Client, ClientEvent, MaxRetries};
use ipc_interop::{hex_decode, Flavor, Matrix, NodePeer, PeerSpec, Transport};
use ipc_proto::{CodecConfig, RawEncoding};
use ipc_server::{Peer, Server, ServerConfig, ServerEvent};
use ipc_transport::{Endpoint, UdpFamily};
use ours::*;
use serde_json::{json, Value};

const SUITES: [&str; 2] = ["ours-server", "node-server"];

fn data_case_ids() -> Vec<&'static str> {
    encode_vectors().iter().map(|v| v.id).collect()
}

fn raw_case(enc: RawEncoding) -> String {
    format!("raw-{}", enc.as_str())
}

const NA_RAW_GUARDED: &str = "with rawBuffer=true node-ipc 14 always uses its raw parser, whatever `parser` says (`docs/protocol.md` §1.6): the v14-fast raw cells cover v14-guarded";

const NA_CRLF_LEGACY: &str = "v9/v12 match the delimiter against the last character of their buffer, so a delimiter longer than one UTF-16 code unit never matches and nothing is dispatched (`docs/protocol.md` §1.4); use a single-character delimiter with these versions";

/// Bounded cell body.
async fn cell<F>(fut: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    common::bounded(fut).await
}

fn spec_with_tls(spec: PeerSpec, tls: Option<Value>) -> PeerSpec {
    match tls {
        Some(t) => spec.config("tls", t),
        None => spec,
    }
}

/// Starts a Node server on a port the OS chose (a fresh one if it was
/// taken before Node bound it) and returns the transport it serves.
async fn spawn_server(spec: &PeerSpec) -> Result<(NodePeer, Transport), String> {
    ipc_interop::spawn_server_ready(spec, T).await.map_err(s)
}

async fn spawn_ready(spec: &PeerSpec) -> Result<NodePeer, String> {
    let mut node = NodePeer::spawn(spec).await.map_err(s)?;
    node.ready(T).await.map_err(s)?;
    Ok(node)
}

/// Waits for a Node server's `connect` and returns the socket number.
async fn node_connect(node: &mut NodePeer) -> Result<u64, String> {
    let ev = node
        .expect(|e| e.is_event("connect") && e.socket_arg(0).is_some(), T)
        .await
        .map_err(s)?;
    ev.socket_arg(0)
        .ok_or_else(|| "connect without a socket".into())
}

/// Waits for the Node peer's `seq` summary of the last message and checks
/// count and order.
async fn node_seq_done(node: &mut NodePeer, n: u64) -> Result<(), String> {
    let ev = node
        .expect(
            |e| e.kind() == "seq" && e.raw["count"].as_u64() == Some(n),
            Duration::from_secs(50),
        )
        .await
        .map_err(s)?;
    if ev.raw["inOrder"] == json!(true) && ev.raw["last"].as_u64() == Some(n - 1) {
        Ok(())
    } else {
        Err(format!("Node peer received the burst out of order: {ev}"))
    }
}

/// Waits for the Node peer's `big` report.
async fn node_big_ok(node: &mut NodePeer) -> Result<(), String> {
    let ev = node
        .expect(|e| e.kind() == "big", Duration::from_secs(40))
        .await
        .map_err(s)?;
    let want = big_data_len() as u64;
    if ev.raw["ok"] == json!(true) && ev.raw["length"].as_u64() == Some(want) {
        Ok(())
    } else {
        Err(format!("Node peer's 1 MiB message is wrong: {ev}"))
    }
}

/// Checks a received 1 MiB message.
fn check_big(m: &ipc_proto::Message) -> Result<(), String> {
    if m.frame().len() != BIG_FRAME {
        return Err(format!(
            "frame of {} bytes, want {BIG_FRAME}",
            m.frame().len()
        ));
    }
    let data: String = m.data().map_err(s)?;
    if data == big_pattern(big_data_len()) {
        Ok(())
    } else {
        Err("1 MiB message content differs".into())
    }
}

/// Checks that a burst message is number `i`.
fn check_seq(m: &ipc_proto::Message, i: u64) -> Result<(), String> {
    let v = m.data_value();
    if v["i"].as_u64() == Some(i) && v["n"].as_u64() == Some(BURST) {
        Ok(())
    } else {
        Err(format!("message {i} of the burst is {v}"))
    }
}

// ===========================================================================
// Stream transports: our server ↔ Node clients
// ===========================================================================

fn ours_server_cases(flavor: Flavor, via: Via) -> Vec<String> {
    let mut c: Vec<String> = data_case_ids().into_iter().map(String::from).collect();
    if via == Via::Mtls {
        c.push("refused-without-cert".into());
        return c;
    }
    c.push("F15".into());
    if !flavor.is_legacy() {
        c.push("delimiter-crlf".into());
    }
    for (enc, _, _) in raw_vectors() {
        c.push(raw_case(enc));
    }
    for x in ["broadcast", "sync", "1MiB", "burst-10000", "reconnect"] {
        c.push(x.into());
    }
    c
}

async fn ours_server_group(flavor: Flavor, via: Via, pki: Arc<Pki>) -> Group {
    let mut g = Group::new("ours-server", flavor, via.label());
    let cases = ours_server_cases(flavor, via);
    let dir = tempfile::tempdir().unwrap();
    let codec = codec(flavor);
    let server = match Server::new(
        via.our_endpoint(dir.path()),
        our_server_config(flavor, via, &pki, codec.clone()),
    ) {
        Ok(s) => s,
        Err(e) => {
            let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
            g.fail_all(&refs, &e.to_string());
            return g;
        }
    };
    let mut rx = tap_server(&server);
    let setup = async {
        let ep = server.start().await.map_err(s)?;
        let spec = spec_with_tls(
            PeerSpec::client(flavor, transport_of(&ep))
                .config("maxRetries", json!(40))
                .config("retry", json!(50)),
            node_client_tls(via, &pki, true),
        );
        let node = spawn_ready(&spec).await?;
        let sock = wait_for(&mut rx, "connect", srv_connect).await?;
        Ok::<_, String>((ep, spec, node, sock))
    };
    let (ep, spec, mut node, sock) = match common::bounded_setup(setup).await {
        Ok(v) => v,
        Err(e) => {
            let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
            g.fail_all(&refs, &e);
            return g;
        }
    };
    let legacy = flavor.is_legacy();

    // `docs/protocol.md` §7.1, both ways on one connection.
    for v in encode_vectors() {
        let res = cell(async {
            node.command(v.command(), T).await.map_err(s)?;
            let (m, _) = wait_for(&mut rx, v.id, srv_msg(v.ty)).await?;
            check_bytes(
                &format!("{} from the Node client", v.id),
                &wire(&m, b"\x0c"),
                &v.expected(legacy),
            )?;
            check_our_encoder(&v, &codec)?;
            match our_data(&v) {
                Some(d) => sock.emit(v.ty, &d).await.map_err(s)?,
                None => sock.emit_empty(v.ty).await.map_err(s)?,
            }
            node_got(&mut node, &v).await
        })
        .await;
        g.put(v.id, res);
    }

    if via == Via::Mtls {
        let res = cell(async {
            let spec = spec_with_tls(
                PeerSpec::client(flavor, transport_of(&ep)),
                node_client_tls(via, &pki, false),
            );
            let mut bad = NodePeer::spawn(&spec).await.map_err(s)?;
            // v9/v12 report `connect` before the handshake, v14 after its
            // half of a TLS 1.3 handshake: either way an `error` follows.
            bad.expect(|e| e.is_event("error"), T).await.map_err(s)?;
            if server.connections() != 1 {
                return Err(format!(
                    "{} connections after a client without certificate",
                    server.connections()
                ));
            }
            Ok(())
        })
        .await;
        g.put("refused-without-cert", res);
        node.kill().await;
        server.abort().await;
        return g;
    }

    // F15: delimiter "\n" on both sides; v14 also "\r\n".
    let delimiters: Vec<(&str, &str)> = if legacy {
        vec![("F15", "\n")]
    } else {
        vec![("F15", "\n"), ("delimiter-crlf", "\r\n")]
    };
    for (case, delim) in delimiters {
        let res = cell(async {
            let d2 = tempfile::tempdir().map_err(s)?;
            let c = codec.clone().with_delimiter(delim.as_bytes().to_vec());
            let srv = Server::new(
                via.our_endpoint(d2.path()),
                our_server_config(flavor, via, &pki, c.clone()),
            )
            .map_err(s)?;
            let mut rx2 = tap_server(&srv);
            let ep2 = srv.start().await.map_err(s)?;
            let spec = spec_with_tls(
                PeerSpec::client(flavor, transport_of(&ep2)).config("delimiter", json!(delim)),
                node_client_tls(via, &pki, true),
            );
            let mut n2 = spawn_ready(&spec).await?;
            let so = wait_for(&mut rx2, "connect", srv_connect).await?;
            n2.command(json!({"cmd":"emit","type":"message","data":"hi"}), T)
                .await
                .map_err(s)?;
            let (m, _) = wait_for(&mut rx2, "message", srv_msg("message")).await?;
            let mut want = hex_decode(common::F15_HEX).unwrap();
            want.pop();
            want.extend_from_slice(delim.as_bytes());
            check_bytes("from the Node client", &wire(&m, delim.as_bytes()), &want)?;
            so.emit("message", "hi").await.map_err(s)?;
            n2.expect(|e| is_msg(e, "message", &json!("hi")), T)
                .await
                .map_err(s)?;
            n2.kill().await;
            srv.abort().await;
            Ok(())
        })
        .await;
        g.put(case, res);
    }
    if legacy {
        g.na("delimiter-crlf", NA_CRLF_LEGACY);
    }

    // Raw buffers, one Node client per encoding.
    raw_ours_server(flavor, via, &pki, &mut g).await;

    // Broadcast to the first Node client, a second one and one of ours.
    let res = cell(async {
        let mut n2 = spawn_ready(&spec).await?;
        wait_for(&mut rx, "second connect", srv_connect).await?;
        let rc = Client::new(
            ep.clone(),
            our_client_config(via, &pki, codec.clone(), true),
        )
        .map_err(s)?;
        let mut crx = tap_client(&rc);
        rc.start();
        wait_for(&mut crx, "our client's connect", cli_connect).await?;
        wait_for(&mut rx, "third connect", srv_connect).await?;
        let n = server.broadcast("message", "hello").await.map_err(s)?;
        if n != 3 {
            return Err(format!("broadcast reached {n} peers, want 3"));
        }
        let m = wait_for(&mut crx, "broadcast at our client", cli_msg("message")).await?;
        check_bytes(
            "broadcast at our client",
            &wire(&m, b"\x0c"),
            &encode_vectors()[0].expected(false),
        )?;
        for peer in [&mut node, &mut n2] {
            peer.expect(|e| is_msg(e, "message", &json!("hello")), T)
                .await
                .map_err(s)?;
        }
        rc.destroy().await.map_err(s)?;
        n2.kill().await;
        Ok(())
    })
    .await;
    g.put("broadcast", res);

    // Sync mode: a Node client with sync=true sends 1, 2, 3; each is
    // answered before the next one may come.
    let res = cell(async {
        let sspec = spec
            .clone()
            .config("sync", json!(true))
            .config("maxRetries", json!(0));
        let mut sn = spawn_ready(&sspec).await?;
        let so = wait_for(&mut rx, "sync client's connect", srv_connect).await?;
        for k in 1..=3 {
            sn.command(json!({"cmd":"emit","type":"sync","data":k}), T)
                .await
                .map_err(s)?;
        }
        for k in 1..=3 {
            let (m, from) = wait_for(&mut rx, "sync message", srv_msg("sync")).await?;
            if m.data_value() != json!(k) {
                return Err(format!("sync message {} arrived as #{k}", m.data_value()));
            }
            if from.socket().map(|x| x.id()) != Some(so.id()) {
                return Err("sync message from another socket".into());
            }
            so.emit("sync", &json!(k * 10)).await.map_err(s)?;
            sn.expect(|e| is_msg(e, "sync", &json!(k * 10)), T)
                .await
                .map_err(s)?;
        }
        sn.kill().await;
        Ok(())
    })
    .await;
    g.put("sync", res);

    // 1 MiB both ways.
    let res = cell(async {
        node.command(json!({"cmd":"emitBig","size":big_data_len()}), T)
            .await
            .map_err(s)?;
        let (m, _) = wait_for(&mut rx, "1 MiB message", srv_msg("big")).await?;
        check_big(&m)?;
        sock.emit("big", &big_pattern(big_data_len()))
            .await
            .map_err(s)?;
        node_big_ok(&mut node).await
    })
    .await;
    g.put("1MiB", res);

    // 10,000 messages each way, order checked.
    let res = cell(async {
        node.command(json!({"cmd":"burst","n":BURST}), T)
            .await
            .map_err(s)?;
        for i in 0..BURST {
            let (m, _) = wait_for(&mut rx, "burst message", srv_msg("seq")).await?;
            check_seq(&m, i)?;
        }
        for i in 0..BURST {
            sock.emit("seq", &json!({"i": i, "n": BURST}))
                .await
                .map_err(s)?;
        }
        node_seq_done(&mut node, BURST).await
    })
    .await;
    g.put("burst-10000", res);

    // The server restarts on the same endpoint; the Node client reconnects.
    let res = cell(async {
        server.stop().await;
        node.expect(|e| e.is_event("disconnect"), T)
            .await
            .map_err(s)?;
        let again = Server::new(
            ep.clone(),
            our_server_config(flavor, via, &pki, codec.clone()),
        )
        .map_err(s)?;
        let mut rx2 = tap_server(&again);
        again.start().await.map_err(s)?;
        let so = wait_for(&mut rx2, "connect after restart", srv_connect).await?;
        node.expect(|e| e.is_event("connect"), T).await.map_err(s)?;
        node.command(
            json!({"cmd":"emit","type":"message","data":"after-restart"}),
            T,
        )
        .await
        .map_err(s)?;
        let (m, _) = wait_for(&mut rx2, "message after restart", srv_msg("message")).await?;
        if m.data_value() != json!("after-restart") {
            return Err(format!("got {}", m.data_value()));
        }
        so.emit("message", "hello").await.map_err(s)?;
        node.expect(|e| is_msg(e, "message", &json!("hello")), T)
            .await
            .map_err(s)?;
        again.abort().await;
        Ok(())
    })
    .await;
    g.put("reconnect", res);
    node.kill().await;
    server.abort().await;
    g
}

/// Raw mode, our server: per encoding a Node raw client
/// writes the string of `docs/protocol.md` §7.2 (our server must see those bytes, which
/// our `RawEncoding` also produces) and our server writes [`RAW_IN`] back.
async fn raw_ours_server(flavor: Flavor, via: Via, pki: &Pki, g: &mut Group) {
    for (enc, text, hex) in raw_vectors() {
        if flavor == Flavor::V14Guarded {
            g.na(&raw_case(enc), NA_RAW_GUARDED);
            continue;
        }
        let res = cell(raw_ours_cell(flavor, via, pki, enc, text, hex)).await;
        g.put(&raw_case(enc), res);
    }
}

async fn raw_ours_cell(
    flavor: Flavor,
    via: Via,
    pki: &Pki,
    enc: RawEncoding,
    text: &str,
    hex: &str,
) -> Result<(), String> {
    let want = hex_decode(hex).unwrap();
    check_bytes("our RawEncoding", &enc.encode_str(text), &want)?;
    let dir = tempfile::tempdir().map_err(s)?;
    let server = Server::new(
        via.our_endpoint(dir.path()),
        our_server_config(flavor, via, pki, CodecConfig::raw()),
    )
    .map_err(s)?;
    let mut rx = tap_server(&server);
    let ep = server.start().await.map_err(s)?;
    let spec = spec_with_tls(
        PeerSpec::client(flavor, transport_of(&ep))
            .config("rawBuffer", json!(true))
            .config("encoding", json!(enc.as_str())),
        node_client_tls(via, pki, true),
    );
    let mut node = spawn_ready(&spec).await?;
    let sock = wait_for(&mut rx, "raw connect", srv_connect).await?;
    node.command(json!({"cmd":"emitRaw","string":text}), T)
        .await
        .map_err(s)?;
    raw_bytes(&mut rx, &want, |e| srv_data(e).map(|d| d.0)).await?;
    if enc == RawEncoding::Utf8 {
        // R1 (a Buffer) and R6 (an array, masked) in the same mode.
        node.command(json!({"cmd":"emitRaw","hex":"056d5c"}), T)
            .await
            .map_err(s)?;
        raw_bytes(&mut rx, &[0x05, 0x6d, 0x5c], |e| srv_data(e).map(|d| d.0)).await?;
        node.command(json!({"cmd":"emitRaw","array":[10, 20, 300, -1]}), T)
            .await
            .map_err(s)?;
        raw_bytes(&mut rx, &[0x0a, 0x14, 0x2c, 0xff], |e| {
            srv_data(e).map(|d| d.0)
        })
        .await?;
    }
    sock.emit_raw(RAW_IN).await.map_err(s)?;
    let ev = node.expect(|e| e.is_event("data"), T).await.map_err(s)?;
    let got = ev.buffer_arg(0).ok_or("data event without a buffer")?;
    check_bytes(
        "Node raw client received",
        &got,
        &raw_stream_expect(flavor, enc, &RAW_IN),
    )?;
    node.kill().await;
    server.abort().await;
    Ok(())
}

// ===========================================================================
// Stream transports: Node server ↔ our client
// ===========================================================================

fn node_server_cases(flavor: Flavor, via: Via) -> Vec<String> {
    ours_server_cases(flavor, via)
}

async fn node_server_group(flavor: Flavor, via: Via, pki: Arc<Pki>) -> Group {
    let mut g = Group::new("node-server", flavor, via.label());
    let cases = node_server_cases(flavor, via);
    let dir = tempfile::tempdir().unwrap();
    let codec = codec(flavor);
    let mut sspec = spec_with_tls(
        PeerSpec::server(flavor, via.node_transport(dir.path(), "node.sock")),
        node_server_tls(via, &pki),
    );
    let (mut node, transport) = match common::bounded_setup(spawn_server(&sspec)).await {
        Ok(v) => v,
        Err(e) => {
            let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
            g.fail_all(&refs, &e);
            return g;
        }
    };
    // A restart serves the same port again.
    sspec.transport = transport.clone();
    let client = Client::new(
        endpoint_of(&transport),
        our_client_config(via, &pki, codec.clone(), true),
    )
    .unwrap();
    let mut rx = tap_client(&client);
    let setup = async {
        client.start();
        wait_for(&mut rx, "connect", cli_connect).await?;
        let sock = node_connect(&mut node).await?;
        Ok::<_, String>(sock)
    };
    let mut sock = match common::bounded_setup(setup).await {
        Ok(v) => v,
        Err(e) => {
            let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
            g.fail_all(&refs, &e);
            let _ = client.destroy().await;
            node.kill().await;
            return g;
        }
    };
    let legacy = flavor.is_legacy();

    for v in encode_vectors() {
        let res = cell(async {
            let mut cmd = v.command();
            cmd["socket"] = json!(sock);
            node.command(cmd, T).await.map_err(s)?;
            let m = wait_for(&mut rx, v.id, cli_msg(v.ty)).await?;
            check_bytes(
                &format!("{} from the Node server", v.id),
                &wire(&m, b"\x0c"),
                &v.expected(legacy),
            )?;
            check_our_encoder(&v, &codec)?;
            match our_data(&v) {
                Some(d) => client.emit(v.ty, &d).await.map_err(s)?,
                None => client.emit_empty(v.ty).await.map_err(s)?,
            }
            node_got(&mut node, &v).await
        })
        .await;
        g.put(v.id, res);
    }

    if via == Via::Mtls {
        let res = cell(async {
            let mut cfg = our_client_config(via, &pki, codec.clone(), false);
            cfg.retry.max_retries = MaxRetries::Limited(0);
            let bad = Client::new(endpoint_of(&transport), cfg).map_err(s)?;
            let mut brx = tap_client(&bad);
            bad.start();
            let _ = bad.emit("message", "unauthenticated").await;
            let mut saw_error = false;
            loop {
                let ev = wait_for(&mut brx, "destroy", |e| Some(e.clone())).await?;
                match ev {
                    ClientEvent::Error(_) => saw_error = true,
                    ClientEvent::Destroy => break,
                    _ => {}
                }
            }
            if !saw_error {
                return Err("no error before destroy".into());
            }
            // The authenticated connection still works and nothing from the
            // refused one was dispatched before this marker.
            client.emit("message", "marker").await.map_err(s)?;
            let evs = node
                .collect_until(|e| is_msg(e, "message", &json!("marker")), T)
                .await
                .map_err(s)?;
            if evs
                .iter()
                .any(|e| is_msg(e, "message", &json!("unauthenticated")))
            {
                return Err("a message of the refused client was dispatched".into());
            }
            Ok(())
        })
        .await;
        g.put("refused-without-cert", res);
        let _ = client.destroy().await;
        node.kill().await;
        return g;
    }

    let delimiters: Vec<(&str, &str)> = if legacy {
        vec![("F15", "\n")]
    } else {
        vec![("F15", "\n"), ("delimiter-crlf", "\r\n")]
    };
    for (case, delim) in delimiters {
        let res = cell(async {
            let d2 = tempfile::tempdir().map_err(s)?;
            let spec = spec_with_tls(
                PeerSpec::server(flavor, via.node_transport(d2.path(), "node-delim.sock"))
                    .config("delimiter", json!(delim)),
                node_server_tls(via, &pki),
            );
            let (mut n2, t2) = spawn_server(&spec).await?;
            let c = codec.clone().with_delimiter(delim.as_bytes().to_vec());
            let cl =
                Client::new(endpoint_of(&t2), our_client_config(via, &pki, c, true)).map_err(s)?;
            let mut crx = tap_client(&cl);
            cl.start();
            wait_for(&mut crx, "connect", cli_connect).await?;
            let so = node_connect(&mut n2).await?;
            n2.command(
                json!({"cmd":"emit","socket":so,"type":"message","data":"hi"}),
                T,
            )
            .await
            .map_err(s)?;
            let m = wait_for(&mut crx, "message", cli_msg("message")).await?;
            let mut want = hex_decode(common::F15_HEX).unwrap();
            want.pop();
            want.extend_from_slice(delim.as_bytes());
            check_bytes("from the Node server", &wire(&m, delim.as_bytes()), &want)?;
            cl.emit("message", "hi").await.map_err(s)?;
            n2.expect(|e| is_msg(e, "message", &json!("hi")), T)
                .await
                .map_err(s)?;
            cl.destroy().await.map_err(s)?;
            n2.kill().await;
            Ok(())
        })
        .await;
        g.put(case, res);
    }
    if legacy {
        g.na("delimiter-crlf", NA_CRLF_LEGACY);
    }

    raw_node_server(flavor, via, &pki, &mut g).await;

    // Broadcast from the Node server to our client and a Node client.
    let res = cell(async {
        let cspec = spec_with_tls(
            PeerSpec::client(flavor, transport.clone()),
            node_client_tls(via, &pki, true),
        );
        let mut nc = spawn_ready(&cspec).await?;
        node_connect(&mut node).await?;
        node.command(
            json!({"cmd":"broadcast","type":"message","data":"hello"}),
            T,
        )
        .await
        .map_err(s)?;
        let m = wait_for(&mut rx, "broadcast", cli_msg("message")).await?;
        check_bytes(
            "broadcast at our client",
            &wire(&m, b"\x0c"),
            &encode_vectors()[0].expected(false),
        )?;
        nc.expect(|e| is_msg(e, "message", &json!("hello")), T)
            .await
            .map_err(s)?;
        nc.kill().await;
        Ok(())
    })
    .await;
    g.put("broadcast", res);

    // Sync mode: our client with sync=true queues 1, 2, 3; only the first
    // is written until the Node server answers.
    let res = cell(async {
        let mut cfg = our_client_config(via, &pki, codec.clone(), true);
        cfg.sync = true;
        let sc = Client::new(endpoint_of(&transport), cfg).map_err(s)?;
        let mut srx = tap_client(&sc);
        sc.start();
        wait_for(&mut srx, "sync client's connect", cli_connect).await?;
        let so = node_connect(&mut node).await?;
        for k in 1..=3 {
            sc.emit("sync", &json!(k)).await.map_err(s)?;
        }
        for k in 1..=3 {
            let ev = node.expect(|e| e.is_event("sync"), T).await.map_err(s)?;
            if ev.arg(0) != Some(&json!(k)) || ev.socket_arg(1) != Some(so) {
                return Err(format!("sync message #{k} is {ev}"));
            }
            if k < 3 && sc.queued_bytes() == 0 {
                return Err(format!(
                    "after message {k} nothing is held back: sync mode did not wait for the answer"
                ));
            }
            node.command(
                json!({"cmd":"emit","socket":so,"type":"sync","data":k * 10}),
                T,
            )
            .await
            .map_err(s)?;
            let m = wait_for(&mut srx, "answer", cli_msg("sync")).await?;
            if m.data_value() != json!(k * 10) {
                return Err(format!("answer {}", m.data_value()));
            }
        }
        sc.destroy().await.map_err(s)?;
        Ok(())
    })
    .await;
    g.put("sync", res);

    let res = cell(async {
        node.command(
            json!({"cmd":"emitBig","socket":sock,"size":big_data_len()}),
            T,
        )
        .await
        .map_err(s)?;
        let m = wait_for(&mut rx, "1 MiB message", cli_msg("big")).await?;
        check_big(&m)?;
        client
            .emit("big", &big_pattern(big_data_len()))
            .await
            .map_err(s)?;
        node_big_ok(&mut node).await
    })
    .await;
    g.put("1MiB", res);

    let res = cell(async {
        node.command(json!({"cmd":"burst","socket":sock,"n":BURST}), T)
            .await
            .map_err(s)?;
        for i in 0..BURST {
            let m = wait_for(&mut rx, "burst message", cli_msg("seq")).await?;
            check_seq(&m, i)?;
        }
        for i in 0..BURST {
            client
                .emit("seq", &json!({"i": i, "n": BURST}))
                .await
                .map_err(s)?;
        }
        node_seq_done(&mut node, BURST).await
    })
    .await;
    g.put("burst-10000", res);

    // The Node server is killed and started again on the same endpoint; our
    // client reconnects and delivers what it queued meanwhile.
    let res = cell(async {
        node.kill().await;
        wait_for(&mut rx, "disconnect", |e| {
            matches!(e, ClientEvent::Disconnect).then_some(())
        })
        .await?;
        client.emit("message", "after-restart").await.map_err(s)?;
        // Not `spawn_ready`: our client may reconnect before the peer prints
        // `ready`, and waiting for `ready` would skip the `connect` below.
        node = NodePeer::spawn(&sspec).await.map_err(s)?;
        wait_for(&mut rx, "connect after restart", cli_connect).await?;
        sock = node_connect(&mut node).await?;
        node.expect(|e| is_msg(e, "message", &json!("after-restart")), T)
            .await
            .map_err(s)?;
        node.command(
            json!({"cmd":"emit","socket":sock,"type":"message","data":"hello"}),
            T,
        )
        .await
        .map_err(s)?;
        let m = wait_for(&mut rx, "message after restart", cli_msg("message")).await?;
        check_bytes(
            "F1 after restart",
            &wire(&m, b"\x0c"),
            &encode_vectors()[0].expected(false),
        )
    })
    .await;
    g.put("reconnect", res);
    let _ = client.destroy().await;
    node.kill().await;
    g
}

/// Raw mode, Node server: per encoding our raw client writes [`RAW_IN`]
/// (the Node server reports what it decoded) and the Node server writes the
/// `docs/protocol.md` §7.2 string (our client must see those bytes).
async fn raw_node_server(flavor: Flavor, via: Via, pki: &Pki, g: &mut Group) {
    for (enc, text, hex) in raw_vectors() {
        if flavor == Flavor::V14Guarded {
            g.na(&raw_case(enc), NA_RAW_GUARDED);
            continue;
        }
        let res = cell(raw_node_cell(flavor, via, pki, enc, text, hex)).await;
        g.put(&raw_case(enc), res);
    }
}

async fn raw_node_cell(
    flavor: Flavor,
    via: Via,
    pki: &Pki,
    enc: RawEncoding,
    text: &str,
    hex: &str,
) -> Result<(), String> {
    let want = hex_decode(hex).unwrap();
    // node-ipc 14 reads `encoding` once, when the server is built.
    let dir = tempfile::tempdir().map_err(s)?;
    let spec = spec_with_tls(
        PeerSpec::server(flavor, via.node_transport(dir.path(), "node-raw.sock"))
            .config("rawBuffer", json!(true))
            .config("encoding", json!(enc.as_str())),
        node_server_tls(via, pki),
    );
    let (mut node, transport) = spawn_server(&spec).await?;
    let cl = Client::new(
        endpoint_of(&transport),
        our_client_config(via, pki, CodecConfig::raw(), true),
    )
    .map_err(s)?;
    let mut crx = tap_client(&cl);
    cl.start();
    wait_for(&mut crx, "connect", cli_connect).await?;
    let so = node_connect(&mut node).await?;
    cl.emit_raw(RAW_IN).await.map_err(s)?;
    let ev = node.expect(|e| e.is_event("data"), T).await.map_err(s)?;
    let got = ev.buffer_arg(0).ok_or("data event without a buffer")?;
    check_bytes(
        "Node raw server received",
        &got,
        &raw_stream_expect(flavor, enc, &RAW_IN),
    )?;
    node.command(json!({"cmd":"emitRaw","socket":so,"string":text}), T)
        .await
        .map_err(s)?;
    raw_bytes(&mut crx, &want, |e| match e {
        ClientEvent::Data(b) => Some(b.to_vec()),
        _ => None,
    })
    .await?;
    cl.destroy().await.map_err(s)?;
    node.kill().await;
    Ok(())
}

// ===========================================================================
// UDP: our UDP server ↔ Node UDP servers
// ===========================================================================

#[derive(Clone, Copy)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn label(self) -> &'static str {
        match self {
            Fam::V4 => "udp4",
            Fam::V6 => "udp6",
        }
    }
    fn host(self) -> std::net::IpAddr {
        match self {
            Fam::V4 => V4,
            Fam::V6 => V6,
        }
    }
    fn ours(self, port: u16) -> Endpoint {
        Endpoint::Udp {
            family: match self {
                Fam::V4 => UdpFamily::V4,
                Fam::V6 => UdpFamily::V6,
            },
            host: self.host().to_string(),
            port,
        }
    }
    /// A Node UDP server's transport; the port is chosen when it starts
    /// (`spawn_server`).
    fn node(self) -> Transport {
        let host = self.host();
        let port = 0;
        match self {
            Fam::V4 => Transport::Udp4 { host, port },
            Fam::V6 => Transport::Udp6 { host, port },
        }
    }
}

fn addr_of(t: &Transport) -> SocketAddr {
    match t {
        Transport::Udp4 { host, port } | Transport::Udp6 { host, port } => {
            SocketAddr::new(*host, *port)
        }
        other => panic!("not UDP: {other:?}"),
    }
}

fn target(a: SocketAddr) -> Value {
    json!({"address": a.ip().to_string(), "port": a.port()})
}

fn udp_port(ep: &Endpoint) -> u16 {
    match ep {
        Endpoint::Udp { port, .. } => *port,
        _ => 0,
    }
}

async fn our_udp(
    fam: Fam,
    port: u16,
    codec: CodecConfig,
) -> Result<(Server, Rx<ServerEvent>, SocketAddr), String> {
    let srv = Server::new(
        fam.ours(port),
        ServerConfig {
            codec,
            ..ServerConfig::default()
        },
    )
    .map_err(s)?;
    let rx = tap_server(&srv);
    let ep = srv.start().await.map_err(s)?;
    let addr = SocketAddr::new(fam.host(), udp_port(&ep));
    Ok((srv, rx, addr))
}

/// Datagrams sent before waiting for the receiver to catch up.
const UDP_WINDOW: u64 = 250;

const NA_UDP_SYNC: &str = "sync is an option of stream clients; node-ipc has no UDP clients and UDP servers never wait for answers (`docs/protocol.md` §2.5, §3.5)";
const NA_UDP_BIG: &str = "one frame travels in one datagram and node-ipc never splits a frame on send; a datagram carries at most 65,507 (IPv4) / 65,527 (IPv6) bytes (`docs/protocol.md` §2.5)";
const NA_UDP_LEGACY_BROADCAST: &str = "server.broadcast on a v9/v12 UDP server is a no-op: it never records peers, so nothing is sent (`docs/protocol.md` §2.5)";

fn udp_cases() -> Vec<String> {
    let mut c: Vec<String> = data_case_ids().into_iter().map(String::from).collect();
    c.push("F15".into());
    for (enc, _, _) in raw_vectors() {
        c.push(raw_case(enc));
    }
    for x in ["broadcast", "reconnect", "burst-10000"] {
        c.push(x.into());
    }
    c
}

/// Both UDP suites for one flavor and family.
async fn udp_group(flavor: Flavor, fam: Fam) -> Vec<Group> {
    let mut ours_g = Group::new("ours-server", flavor, fam.label());
    let mut node_g = Group::new("node-server", flavor, fam.label());
    let legacy = flavor.is_legacy();
    let codec = codec(flavor);
    let nspec = PeerSpec::server(flavor, fam.node());
    let setup = async {
        let (srv, rx, oaddr) = our_udp(fam, 0, codec.clone()).await?;
        // Our frames for F7 (no data) go out through a raw-profile socket:
        // `Server::emit_to` always carries data.
        let (rawsrv, _rawrx, _) = our_udp(fam, 0, CodecConfig::raw()).await?;
        let (node, nt) = spawn_server(&nspec).await?;
        Ok::<_, String>((srv, rx, oaddr, rawsrv, node, nt))
    };
    let (srv, mut rx, oaddr, rawsrv, mut node, nt) = match common::bounded_setup(setup).await {
        Ok(v) => v,
        Err(e) => {
            let cases = udp_cases();
            let refs: Vec<&str> = cases.iter().map(String::as_str).collect();
            ours_g.fail_all(&refs, &e);
            node_g.fail_all(&refs, &e);
            return vec![ours_g, node_g];
        }
    };
    let naddr = addr_of(&nt);

    for v in encode_vectors() {
        // Node → ours.
        let res = cell(async {
            let mut cmd = v.command();
            cmd["target"] = target(oaddr);
            node.command(cmd, T).await.map_err(s)?;
            let (m, from) = wait_for(&mut rx, v.id, srv_msg(v.ty)).await?;
            if !matches!(from, Peer::Udp(a) if a == naddr) {
                return Err(format!("datagram from {from:?}, want {naddr}"));
            }
            check_bytes(
                &format!("{} from the Node UDP server", v.id),
                &wire(&m, b"\x0c"),
                &v.expected(legacy),
            )
        })
        .await;
        ours_g.put(v.id, res);
        // Ours → Node.
        let res = cell(async {
            check_our_encoder(&v, &codec)?;
            match our_data(&v) {
                Some(d) => srv.emit_to(naddr, v.ty, &d).await.map_err(s)?,
                None => {
                    let f = our_frame(&v, &codec)?;
                    rawsrv.emit_raw_to(naddr, &f).await.map_err(s)?
                }
            }
            node_got(&mut node, &v).await
        })
        .await;
        node_g.put(v.id, res);
    }

    // F15 over UDP: both ends with delimiter "\n".
    {
        let res = cell(async {
            let c = codec.clone().with_delimiter(b"\n".to_vec());
            let (s2, mut rx2, a2) = our_udp(fam, 0, c).await?;
            let (mut n2, t2) = spawn_server(
                &PeerSpec::server(flavor, fam.node()).config("delimiter", json!("\n")),
            )
            .await?;
            let n2addr = addr_of(&t2);
            n2.command(
                json!({"cmd":"emit","target":target(a2),"type":"message","data":"hi"}),
                T,
            )
            .await
            .map_err(s)?;
            let (m, _) = wait_for(&mut rx2, "F15", srv_msg("message")).await?;
            check_bytes(
                "F15 from the Node UDP server",
                &wire(&m, b"\n"),
                &hex_decode(common::F15_HEX).unwrap(),
            )?;
            s2.emit_to(n2addr, "message", "hi").await.map_err(s)?;
            n2.expect(|e| is_msg(e, "message", &json!("hi")), T)
                .await
                .map_err(s)?;
            n2.kill().await;
            s2.abort().await;
            Ok::<_, String>(())
        })
        .await;
        ours_g.put("F15", res.clone());
        node_g.put("F15", res);
    }

    udp_raw(flavor, fam, &mut ours_g, &mut node_g).await;

    // Broadcast from our UDP server to every known peer: the Node UDP server
    // (it sent to us above) and another UDP server of ours.
    let res = cell(async {
        let (peer2, mut prx, p2addr) = our_udp(fam, 0, codec.clone()).await?;
        peer2.emit_to(oaddr, "message", "hello").await.map_err(s)?;
        wait_for(&mut rx, "hello from the second server", srv_msg("message")).await?;
        let known = srv.udp_peers();
        if !known.contains(&naddr) || !known.contains(&p2addr) {
            return Err(format!("known peers {known:?} lack {naddr} or {p2addr}"));
        }
        srv.broadcast("message", "hello").await.map_err(s)?;
        let (m, _) = wait_for(&mut prx, "broadcast", srv_msg("message")).await?;
        check_bytes(
            "broadcast datagram",
            &wire(&m, b"\x0c"),
            &encode_vectors()[0].expected(false),
        )?;
        node.expect(|e| is_msg(e, "message", &json!("hello")), T)
            .await
            .map_err(s)?;
        peer2.abort().await;
        Ok(())
    })
    .await;
    ours_g.put("broadcast", res);

    // Broadcast from the Node UDP server: v14 sends to every peer it has
    // seen (our server, a second one of ours and a second Node server).
    if legacy {
        node_g.na("broadcast", NA_UDP_LEGACY_BROADCAST);
    } else {
        let res = cell(async {
            let (peer2, mut prx, p2addr) = our_udp(fam, 0, codec.clone()).await?;
            let (mut n3, _) = spawn_server(&PeerSpec::server(flavor, fam.node())).await?;
            peer2
                .emit_to(naddr, "message", "from-rust-2")
                .await
                .map_err(s)?;
            n3.command(
                json!({"cmd":"emit","target":target(naddr),"type":"message","data":"from-node-3"}),
                T,
            )
            .await
            .map_err(s)?;
            node.expect(|e| is_msg(e, "message", &json!("from-rust-2")), T)
                .await
                .map_err(s)?;
            node.expect(|e| is_msg(e, "message", &json!("from-node-3")), T)
                .await
                .map_err(s)?;
            node.command(
                json!({"cmd":"broadcast","type":"message","data":"hello"}),
                T,
            )
            .await
            .map_err(s)?;
            for (what, rxx) in [("our server", &mut rx), ("our second server", &mut prx)] {
                let (m, _) = wait_for(rxx, what, srv_msg("message")).await?;
                check_bytes(
                    what,
                    &wire(&m, b"\x0c"),
                    &encode_vectors()[0].expected(false),
                )?;
            }
            n3.expect(|e| is_msg(e, "message", &json!("hello")), T)
                .await
                .map_err(s)?;
            let _ = p2addr;
            n3.kill().await;
            peer2.abort().await;
            Ok(())
        })
        .await;
        node_g.put("broadcast", res);
    }

    for g in [&mut ours_g, &mut node_g] {
        g.na("sync", NA_UDP_SYNC);
        g.na("1MiB", NA_UDP_BIG);
    }

    // 10,000 datagrams each way, in windows of UDP_WINDOW (UDP has no flow
    // control: the windows keep the receive buffers from overflowing).
    let res = cell(async {
        let rx = &mut rx;
        for w in 0..BURST / UDP_WINDOW {
            node.command(
                json!({"cmd":"burst","target":target(oaddr),"n":BURST,"from":w * UDP_WINDOW,"count":UDP_WINDOW}),
                T,
            )
            .await
            .map_err(s)?;
            for i in w * UDP_WINDOW..(w + 1) * UDP_WINDOW {
                let (m, _) = wait_for(rx, "burst datagram", srv_msg("seq")).await?;
                if m.data_value()["i"].as_u64() != Some(i) {
                    return Err(format!("datagram {i} of the burst is {}", m.data_value()));
                }
            }
        }
        Ok(())
    })
    .await;
    ours_g.put("burst-10000", res);
    let res = cell(async {
        for w in 0..BURST / UDP_WINDOW {
            for i in w * UDP_WINDOW..(w + 1) * UDP_WINDOW {
                srv.emit_to(naddr, "seq", &json!({"i": i, "n": BURST}))
                    .await
                    .map_err(s)?;
            }
            let want = (w + 1) * UDP_WINDOW;
            let ev = node
                .expect(
                    |e| e.kind() == "seq" && e.raw["count"].as_u64() == Some(want),
                    T,
                )
                .await
                .map_err(s)?;
            if ev.raw["inOrder"] != json!(true) {
                return Err(format!("out of order: {ev}"));
            }
        }
        Ok(())
    })
    .await;
    node_g.put("burst-10000", res);

    // Restarts: UDP has no connection, so "reconnect" means datagrams flow
    // again once the restarted server is bound — to the same port when it
    // is still free, else (another socket of this busy test process took it
    // meanwhile) to a fresh one the Node peer is told about.
    let res = cell(async {
        srv.stop().await;
        let (again, mut rx2, oaddr) = match our_udp(fam, oaddr.port(), codec.clone()).await {
            Ok(v) => v,
            Err(_) => our_udp(fam, 0, codec.clone()).await?,
        };
        node.command(
            json!({"cmd":"emit","target":target(oaddr),"type":"message","data":"after-restart"}),
            T,
        )
        .await
        .map_err(s)?;
        let (m, _) = wait_for(&mut rx2, "after restart", srv_msg("message")).await?;
        if m.data_value() != json!("after-restart") {
            return Err(format!("got {}", m.data_value()));
        }
        again.emit_to(naddr, "message", "hello").await.map_err(s)?;
        node.expect(|e| is_msg(e, "message", &json!("hello")), T)
            .await
            .map_err(s)?;
        again.abort().await;
        Ok(())
    })
    .await;
    ours_g.put("reconnect", res);
    // The Node UDP server restarts, on a fresh port (`spawn_server`).
    let res = cell(async {
        node.kill().await;
        let (n, nt) = spawn_server(&nspec).await?;
        node = n;
        let naddr = addr_of(&nt);
        let (s3, _r3, _) = our_udp(fam, 0, codec.clone()).await?;
        s3.emit_to(naddr, "message", "after-restart")
            .await
            .map_err(s)?;
        node.expect(|e| is_msg(e, "message", &json!("after-restart")), T)
            .await
            .map_err(s)?;
        s3.abort().await;
        Ok(())
    })
    .await;
    node_g.put("reconnect", res);
    node.kill().await;
    srv.abort().await;
    rawsrv.abort().await;
    vec![ours_g, node_g]
}

/// Raw datagrams in each encoding: the Node raw UDP server writes the
/// `docs/protocol.md` §7.2 string to ours; ours writes [`RAW_IN`] to it.
async fn udp_raw(flavor: Flavor, fam: Fam, ours_g: &mut Group, node_g: &mut Group) {
    if flavor == Flavor::V14Guarded {
        for (enc, _, _) in raw_vectors() {
            ours_g.na(&raw_case(enc), NA_RAW_GUARDED);
            node_g.na(&raw_case(enc), NA_RAW_GUARDED);
        }
        return;
    }
    let (srv, mut rx, oaddr) = match our_udp(fam, 0, CodecConfig::raw()).await {
        Ok(v) => v,
        Err(e) => {
            for (enc, _, _) in raw_vectors() {
                ours_g.put(&raw_case(enc), Err(e.clone()));
                node_g.put(&raw_case(enc), Err(e.clone()));
            }
            return;
        }
    };
    for (enc, text, hex) in raw_vectors() {
        // node-ipc 14 reads `encoding` once, when the server is built.
        let spec = PeerSpec::server(flavor, fam.node())
            .config("rawBuffer", json!(true))
            .config("encoding", json!(enc.as_str()));
        let (mut node, naddr) = match common::bounded_setup(spawn_server(&spec)).await {
            Ok((n, t)) => (n, addr_of(&t)),
            Err(e) => {
                ours_g.put(&raw_case(enc), Err(e.clone()));
                node_g.put(&raw_case(enc), Err(e));
                continue;
            }
        };
        let res = cell(async {
            node.command(
                json!({"cmd":"emitRaw","target":target(oaddr),"string":text}),
                T,
            )
            .await
            .map_err(s)?;
            let (got, _) = wait_for(&mut rx, "datagram", srv_data).await?;
            check_bytes("raw datagram", &got, &hex_decode(hex).unwrap())
        })
        .await;
        ours_g.put(&raw_case(enc), res);
        let res = cell(async {
            srv.emit_raw_to(naddr, &RAW_IN).await.map_err(s)?;
            let ev = node.expect(|e| e.is_event("data"), T).await.map_err(s)?;
            let got = ev.buffer_arg(0).ok_or("data event without a buffer")?;
            check_bytes(
                "Node raw UDP server received",
                &got,
                &raw_udp_expect(flavor, enc, &RAW_IN),
            )
        })
        .await;
        node_g.put(&raw_case(enc), res);
        node.kill().await;
    }
    srv.abort().await;
}

// ===========================================================================
// Tests
// ===========================================================================

fn matrices() -> Vec<Matrix> {
    SUITES.iter().map(|s| Matrix::new(s)).collect()
}

fn available(m: &mut Matrix) -> Vec<Flavor> {
    Flavor::ALL.into_iter().filter(|f| m.require(*f)).collect()
}

fn finish(ms: Vec<Matrix>) {
    let mut failures = Vec::new();
    for m in ms {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.finish())) {
            failures.push(
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a matrix failed".into()),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_transports_our_server_and_node_clients() {
    let mut ms = matrices();
    let flavors = available(&mut ms[0]);
    let pki = pki();
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for f in flavors {
        for via in Via::ALL {
            let pki = pki.clone();
            jobs.push((
                format!("ours-server {f} {}", via.label()),
                Box::pin(async move { vec![ours_server_group(f, via, pki).await] }),
            ));
        }
    }
    run_jobs(&mut ms, &SUITES, jobs).await;
    finish(ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_transports_node_server_and_our_clients() {
    let mut ms = matrices();
    let flavors = available(&mut ms[1]);
    let pki = pki();
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for f in flavors {
        for via in Via::ALL {
            let pki = pki.clone();
            jobs.push((
                format!("node-server {f} {}", via.label()),
                Box::pin(async move { vec![node_server_group(f, via, pki).await] }),
            ));
        }
    }
    run_jobs(&mut ms, &SUITES, jobs).await;
    finish(ms);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_our_server_and_node_servers() {
    let mut ms = matrices();
    let flavors = available(&mut ms[0]);
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for f in flavors {
        for fam in [Fam::V4, Fam::V6] {
            jobs.push((
                format!("udp {f} {}", fam.label()),
                Box::pin(udp_group(f, fam)),
            ));
        }
    }
    run_jobs(&mut ms, &SUITES, jobs).await;
    finish(ms);
}
