//! Raw Rust client → real node-ipc server: `docs/protocol.md` §7.1 frames must be
//! dispatched as the right (type, data), and the §7.3 decode-behaviour
//! vectors must do what the JS columns of `docs/protocol.md` §1.4 say for v9, v12, v14
//! `fast` and v14 `guarded`, over Unix, TCP/IPv4 and TCP/IPv6.
//!
//! Absence checks ("nothing else was dispatched", "the connection stayed
//! open") use a marker frame written after the input on the same connection:
//! the peer dispatches in wire order, so once the marker arrives everything
//! before it has been processed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use ipc_interop::{CellStatus, Event, Flavor, Matrix, NodePeer, PeerSpec, Transport};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

struct Server {
    peer: NodePeer,
    transport: Transport,
    _dir: tempfile::TempDir,
}

fn listen_types() -> Vec<&'static str> {
    vec![
        "message",
        "n",
        "z",
        "u",
        "c",
        "e",
        "b",
        "s",
        "a",
        "t",
        "x",
        "",
        "constructor",
    ]
}

async fn start_server(flavor: Flavor, net: Net) -> Result<Server, String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let transport = net.server_transport(dir.path());
    let spec = PeerSpec::server(flavor, transport.clone()).listen(listen_types());
    let (peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
    Ok(Server {
        peer,
        transport,
        _dir: dir,
    })
}

/// Opens a fresh raw connection and returns it with the peer's socket number.
async fn open(srv: &mut Server) -> Result<(RawStream, u64), String> {
    let stream = connect(&srv.transport).await?;
    let ev = srv
        .peer
        .expect(|e| e.is_event("connect") && e.socket_arg(0).is_some(), T)
        .await
        .map_err(s)?;
    Ok((stream, ev.socket_arg(0).ok_or("connect without a socket")?))
}

async fn write(stream: &mut RawStream, bytes: &[u8]) -> Result<(), String> {
    stream.write_all(bytes).await.map_err(s)?;
    stream.flush().await.map_err(s)
}

fn marker_frame(n: &str) -> Vec<u8> {
    format!("{{\"type\":\"x\",\"data\":\"marker-{n}\"}}\u{c}").into_bytes()
}

/// Writes a marker frame and returns every event up to its dispatch.
async fn through_marker(
    srv: &mut Server,
    stream: &mut RawStream,
    n: &str,
) -> Result<Vec<Event>, String> {
    write(stream, &marker_frame(n)).await?;
    let want = json!(format!("marker-{n}"));
    srv.peer
        .collect_until(|e| is_msg(e, "x", &want), T)
        .await
        .map_err(|e| format!("connection not kept / marker lost: {e}"))
}

fn none_of(events: &[Event], bad: impl Fn(&Event) -> bool, what: &str) -> Result<(), String> {
    match events.iter().find(|e| bad(e)) {
        Some(e) => Err(format!("unexpected {what}: {e}")),
        None => Ok(()),
    }
}

fn is_exception(e: &Event) -> bool {
    e.kind() == "exception"
}

/// v14 protocol error: `error(code)` and the stream closed.
async fn expect_protocol_error(
    srv: &mut Server,
    stream: &mut RawStream,
    code: &str,
) -> Result<(), String> {
    srv.peer
        .expect(|e| e.is_event("error") && e.error_code() == Some(code), T)
        .await
        .map_err(s)?;
    expect_closed(stream).await
}

/// v9/v12 `error` event for a frame that failed to parse, connection kept.
async fn expect_legacy_error(
    srv: &mut Server,
    response: &Value,
    err_name: &str,
) -> Result<(), String> {
    let ev = srv
        .peer
        .expect(|e| e.is_event("error"), T)
        .await
        .map_err(s)?;
    let data = ev.arg(0).cloned().unwrap_or(Value::Null);
    if data.get("message") != Some(&json!("Invalid JSON response format")) {
        return Err(format!("unexpected legacy error payload: {ev}"));
    }
    if data.get("response") != Some(response) {
        return Err(format!("legacy error response is not {response}: {ev}"));
    }
    let name = data
        .pointer("/err/$error/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != err_name {
        return Err(format!(
            "legacy error err.name is {name:?}, want {err_name}: {ev}"
        ));
    }
    Ok(())
}

/// A vector that makes the Node process crash (`docs/protocol.md` §1.4 "crash" cells): run
/// on its own server; the process must print the exception and exit non-zero.
async fn crash_case(flavor: Flavor, net: Net, input: &[u8]) -> Result<(), String> {
    let mut srv = start_server(flavor, net).await?;
    let (mut stream, _) = open(&mut srv).await?;
    write(&mut stream, input).await?;
    let events = srv
        .peer
        .collect_until(|e| e.kind() == "eof", T)
        .await
        .map_err(s)?;
    // The exception is either seen by the script's dispatch wrapper (v12)
    // or thrown before the dispatch (v14 reads `.type` first): stderr has it.
    let stderr = srv.peer.stderr();
    if !events.iter().any(is_exception) && !stderr.contains("TypeError") {
        return Err(format!(
            "no TypeError reported before exit; stderr: {stderr}"
        ));
    }
    let status = srv.peer.wait_exit(T).await.map_err(s)?;
    if status.code() != Some(1) {
        return Err(format!("process exit status {status}, want code 1"));
    }
    Ok(())
}

async fn decode_case(flavor: Flavor, net: Net, id: &str, srv: &mut Server) -> Result<(), String> {
    let legacy = flavor.is_legacy();
    let guarded = flavor == Flavor::V14Guarded;
    let (mut st, sock) = open(srv).await?;
    match id {
        "D1" => {
            write(
                &mut st,
                b"{\"type\":\"a\",\"data\":1}\x0c{\"type\":\"b\",\"data\":2}\x0c",
            )
            .await?;
            let evs = srv
                .peer
                .collect_until(|e| is_msg(e, "b", &json!(2)), T)
                .await
                .map_err(s)?;
            if !evs.iter().any(|e| is_msg(e, "a", &json!(1))) {
                return Err("b(2) arrived without a(1) before it".into());
            }
        }
        "D2" => {
            write(&mut st, b"{\"type\":\"a\",\"da").await?;
            write(&mut st, b"ta\":1}\x0c{\"ty").await?;
            if !legacy {
                // v14 dispatches a(1) as soon as its delimiter arrives.
                srv.peer
                    .expect(|e| is_msg(e, "a", &json!(1)), T)
                    .await
                    .map_err(s)?;
                write(&mut st, b"pe\":\"b\",\"data\":2}\x0c").await?;
                srv.peer
                    .expect(|e| is_msg(e, "b", &json!(2)), T)
                    .await
                    .map_err(s)?;
            } else {
                // v9/v12 only process the buffer when a chunk ends on the
                // delimiter: both arrive after the third chunk, in order.
                write(&mut st, b"pe\":\"b\",\"data\":2}\x0c").await?;
                let evs = srv
                    .peer
                    .collect_until(|e| is_msg(e, "b", &json!(2)), T)
                    .await
                    .map_err(s)?;
                if !evs.iter().any(|e| is_msg(e, "a", &json!(1))) {
                    return Err("b(2) arrived without a(1) before it".into());
                }
            }
        }
        "D3" => {
            write(&mut st, b"{\"type\":\"t\"}\x0c").await?;
            let ev = srv.peer.expect(|e| e.is_event("t"), T).await.map_err(s)?;
            if !ev.arg_is_undefined(0) {
                return Err(format!("t dispatched with data, want undefined: {ev}"));
            }
        }
        "D4" => {
            // v12 and v14-fast crash: handled by crash_case.
            write(&mut st, b"{\"data\":1}\x0c").await?;
            if guarded {
                expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_EVENT").await?;
            } else {
                // v9: dispatched under the name `undefined`; nobody listens.
                let evs = through_marker(srv, &mut st, "D4").await?;
                none_of(&evs, is_exception, "exception")?;
                none_of(&evs, |e| e.is_event("error"), "error event")?;
            }
        }
        "D5" => {
            write(&mut st, b"null\x0c").await?;
            if guarded {
                expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_MESSAGE").await?;
            } else {
                expect_legacy_error(srv, &Value::Null, "TypeError").await?;
                through_marker(srv, &mut st, "D5").await?;
            }
        }
        "D6" => {
            write(&mut st, b"not-json\x0c").await?;
            if legacy {
                expect_legacy_error(srv, &json!("not-json"), "SyntaxError").await?;
                through_marker(srv, &mut st, "D6").await?;
            } else {
                expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_JSON").await?;
            }
        }
        "D7" => {
            write(&mut st, b"\x0c\x0c").await?;
            if legacy {
                expect_legacy_error(srv, &json!(""), "SyntaxError").await?;
                expect_legacy_error(srv, &json!(""), "SyntaxError").await?;
                let evs = through_marker(srv, &mut st, "D7").await?;
                none_of(&evs, |e| e.is_event("error"), "third error event")?;
            } else {
                expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_JSON").await?;
            }
        }
        "D8" => {
            write(&mut st, b"{\"type\":\"connect\",\"data\":{}}\x0c").await?;
            if guarded {
                expect_protocol_error(srv, &mut st, "ERR_IPC_RESERVED_EVENT").await?;
            } else {
                // Spoofed lifecycle event: the local `connect` listeners run
                // with the wire data instead of a socket.
                srv.peer
                    .expect(|e| e.is_event("connect") && e.arg(0) == Some(&json!({})), T)
                    .await
                    .map_err(s)?;
            }
        }
        "D9" => {
            write(&mut st, b"{\"type\":\"constructor\",\"data\":{}}\x0c").await?;
            match flavor {
                Flavor::V9 => {
                    // Silently dropped (no listener can even be registered).
                    let evs = through_marker(srv, &mut st, "D9").await?;
                    none_of(&evs, is_exception, "exception")?;
                    none_of(&evs, |e| e.is_event("constructor"), "constructor dispatch")?;
                }
                Flavor::V14Fast => {
                    srv.peer
                        .expect(|e| is_msg(e, "constructor", &json!({})), T)
                        .await
                        .map_err(s)?;
                }
                Flavor::V14Guarded => {
                    expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_EVENT").await?;
                }
                Flavor::V12 => unreachable!("crash case"),
            }
        }
        "D10" => {
            // 1 048 600 bytes of string content and no delimiter.
            let mut big = b"{\"type\":\"x\",\"data\":\"".to_vec();
            big.resize(big.len() + D10_LEN, b'a');
            let written = write(&mut st, &big).await;
            if guarded {
                // The server may close while the tail is still being
                // written, so a write error is expected here.
                let _ = written;
                expect_protocol_error(srv, &mut st, "ERR_IPC_FRAME_TOO_LARGE").await?;
            } else {
                written?;
                // Buffered: completing the frame dispatches it whole.
                write(&mut st, b"\"}\x0c").await?;
                srv.peer
                    .expect(
                        |e| {
                            e.is_event("x")
                                && e.arg(0).and_then(Value::as_str).map(str::len) == Some(D10_LEN)
                        },
                        T,
                    )
                    .await
                    .map_err(s)?;
            }
        }
        "D12" => {
            write(&mut st, b"{\"type\":\"x\",\"data\":1}").await?;
            st.shutdown().await.map_err(s)?;
            let evs = srv
                .peer
                .collect_until(
                    |e| e.is_event("socket.disconnected") && e.socket_arg(0) == Some(sock),
                    T,
                )
                .await
                .map_err(s)?;
            none_of(&evs, |e| e.is_event("x"), "dispatch of the partial frame")?;
            none_of(&evs, |e| e.is_event("error"), "error event")?;
        }
        "D13" => {
            write(&mut st, b"{\"type\":\"a\",\"data\":1}\x0c{bad\x0c").await?;
            srv.peer
                .expect(|e| is_msg(e, "a", &json!(1)), T)
                .await
                .map_err(s)?;
            if legacy {
                expect_legacy_error(srv, &json!("{bad"), "SyntaxError").await?;
                through_marker(srv, &mut st, "D13").await?;
            } else {
                expect_protocol_error(srv, &mut st, "ERR_IPC_INVALID_JSON").await?;
            }
        }
        "D14" => {
            write(&mut st, b"{\"type\":\"t\",\"data\":1,\"data\":2}\x0c").await?;
            srv.peer
                .expect(|e| is_msg(e, "t", &json!(2)), T)
                .await
                .map_err(s)?;
        }
        other => return Err(format!("unknown case {other} ({net:?})")),
    }
    Ok(())
}

const D10_LEN: usize = 1_048_600;

/// D11 with a short `messageTimeout` (the default is 30 s): an incomplete
/// frame followed by silence is a protocol error in v14 `guarded`.
async fn d11_guarded(net: Net) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let transport = net.server_transport(dir.path());
    let spec = PeerSpec::server(Flavor::V14Guarded, transport.clone())
        .config("messageTimeout", json!(300));
    let (peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
    let mut srv = Server {
        peer,
        transport,
        _dir: dir,
    };
    let (mut st, _) = open(&mut srv).await?;
    write(&mut st, b"{\"type\":\"x\"").await?;
    expect_protocol_error(&mut srv, &mut st, "ERR_IPC_MESSAGE_TIMEOUT").await
}

/// Crash cells per `docs/protocol.md` §1.4 (valid JSON, bad envelope, non-guarded v12/v14).
fn crash_input(flavor: Flavor, id: &str) -> Option<&'static [u8]> {
    match (flavor, id) {
        (Flavor::V12 | Flavor::V14Fast, "D4") => Some(b"{\"data\":1}\x0c"),
        (Flavor::V14Fast, "D5") => Some(b"null\x0c"),
        (Flavor::V12, "D9") => Some(b"{\"type\":\"constructor\",\"data\":{}}\x0c"),
        _ => None,
    }
}

const CASES: [&str; 13] = [
    "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9", "D10", "D12", "D13", "D14",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_frames_to_node_server() {
    let mut m = Matrix::new("decode-frames");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            let mut srv = match bounded_setup(start_server(flavor, net)).await {
                Ok(s) => s,
                Err(e) => {
                    m.outcome(flavor.label(), net.label(), "start", Err(e));
                    continue;
                }
            };
            let opened = bounded_setup(open(&mut srv)).await;
            let (mut st, _) = match opened {
                Ok(v) => v,
                Err(e) => {
                    m.outcome(flavor.label(), net.label(), "connect", Err(e));
                    continue;
                }
            };
            for v in encode_vectors() {
                let res = bounded(async {
                    let bytes = ipc_interop::hex_decode(v.hex).unwrap();
                    write(&mut st, &bytes).await?;
                    srv.peer
                        .expect(|e| is_msg(e, v.ty, &v.decoded), T)
                        .await
                        .map(|_| ())
                        .map_err(s)
                })
                .await;
                m.outcome(flavor.label(), net.label(), v.id, res);
            }
            srv.peer.kill().await;
        }
    }
    m.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_decode_vectors_to_node_server() {
    let mut m = Matrix::new("decode-behaviour");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for net in Net::ALL {
            let mut srv = match bounded_setup(start_server(flavor, net)).await {
                Ok(s) => s,
                Err(e) => {
                    m.outcome(flavor.label(), net.label(), "start", Err(e));
                    continue;
                }
            };
            let d11 = if flavor == Flavor::V14Guarded {
                CellStatus::from(bounded(d11_guarded(net)).await)
            } else {
                CellStatus::NotApplicable(
                    "no incomplete-frame timer outside v14 guarded/assured".into(),
                )
            };
            m.record(flavor.label(), net.label(), "D11", d11);
            for id in CASES {
                let res = if let Some(input) = crash_input(flavor, id) {
                    bounded(crash_case(flavor, net, input)).await
                } else {
                    bounded(decode_case(flavor, net, id, &mut srv)).await
                };
                m.outcome(flavor.label(), net.label(), id, res);
            }
            srv.peer.kill().await;
        }
    }
    m.finish();
}
