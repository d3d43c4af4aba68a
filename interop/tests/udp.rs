//! `docs/protocol.md` §7.4 UDP vectors over udp4 and udp6, both directions, between a raw
//! Rust `UdpSocket` and real node-ipc UDP servers (framed and rawBuffer).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use ipc_interop::{hex_decode, Flavor, Matrix, NodePeer, PeerSpec, Transport};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

#[derive(Clone, Copy)]
enum Fam {
    Udp4,
    Udp6,
}

impl Fam {
    fn label(self) -> &'static str {
        match self {
            Fam::Udp4 => "udp4",
            Fam::Udp6 => "udp6",
        }
    }
    fn host(self) -> IpAddr {
        match self {
            Fam::Udp4 => V4,
            Fam::Udp6 => V6,
        }
    }
}

struct Udp {
    peer: NodePeer,
    node: SocketAddr,
    sock: UdpSocket,
}

async fn start(flavor: Flavor, fam: Fam, raw: bool) -> Result<Udp, String> {
    let host = fam.host();
    let transport = match fam {
        Fam::Udp4 => Transport::Udp4 { host, port: 0 },
        Fam::Udp6 => Transport::Udp6 { host, port: 0 },
    };
    let mut spec = PeerSpec::server(flavor, transport);
    if raw {
        spec = spec.config("rawBuffer", json!(true));
    }
    let (peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
    let (Transport::Udp4 { port, .. } | Transport::Udp6 { port, .. }) = transport else {
        return Err(format!("not a UDP transport: {transport:?}"));
    };
    let sock = UdpSocket::bind((host, 0)).await.map_err(s)?;
    Ok(Udp {
        peer,
        node: SocketAddr::new(host, port),
        sock,
    })
}

impl Udp {
    async fn send(&self, bytes: &[u8]) -> Result<(), String> {
        let n = self.sock.send_to(bytes, self.node).await.map_err(s)?;
        if n == bytes.len() {
            Ok(())
        } else {
            Err(format!("short send {n}"))
        }
    }

    async fn recv(&self) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(T, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                if from != self.node {
                    return Err(format!("datagram from {from}, want {}", self.node));
                }
                buf.truncate(n);
                Ok(buf)
            }
            Ok(Err(e)) => Err(format!("recv failed: {e}")),
            Err(_) => Err("no datagram".into()),
        }
    }

    fn target(&self) -> Value {
        let a = self.sock.local_addr().unwrap();
        json!({"address": a.ip().to_string(), "port": a.port()})
    }

    /// Sends a marker frame and returns every event up to its dispatch.
    async fn through_marker(&mut self, n: &str) -> Result<Vec<ipc_interop::Event>, String> {
        let frame = format!("{{\"type\":\"x\",\"data\":\"marker-{n}\"}}\u{c}");
        self.send(frame.as_bytes()).await?;
        let want = json!(format!("marker-{n}"));
        self.peer
            .collect_until(|e| is_msg(e, "x", &want), T)
            .await
            .map_err(s)
    }
}

const F1: &str = "7b2274797065223a226d657373616765222c2264617461223a2268656c6c6f227d0c";
const F3: &str = "7b2274797065223a226e222c2264617461223a34327d0c";
const F4: &str = "7b2274797065223a226e222c2264617461223a307d0c";

async fn framed_case(flavor: Flavor, id: &str, u: &mut Udp) -> Result<(), String> {
    let legacy = flavor.is_legacy();
    match id {
        "send-F1" => {
            let target = u.target();
            u.peer
                .command(
                    json!({"cmd":"emit","target":target,"type":"message","data":"hello"}),
                    T,
                )
                .await
                .map_err(s)?;
            let got = u.recv().await?;
            check_bytes("datagram", &got, &hex_decode(F1).unwrap())?;
        }
        "recv-F1" => {
            u.send(&hex_decode(F1).unwrap()).await?;
            let ev = u
                .peer
                .expect(|e| is_msg(e, "message", &json!("hello")), T)
                .await
                .map_err(s)?;
            let port = u.sock.local_addr().unwrap().port();
            if ev.arg(1).and_then(|p| p.get("port")) != Some(&json!(port)) {
                return Err(format!("peer argument does not name port {port}: {ev}"));
            }
        }
        "recv-F3F4" => {
            let mut d = hex_decode(F3).unwrap();
            d.extend(hex_decode(F4).unwrap());
            u.send(&d).await?;
            let evs = u
                .peer
                .collect_until(|e| is_msg(e, "n", &json!(0)), T)
                .await
                .map_err(s)?;
            if !evs.iter().any(|e| is_msg(e, "n", &json!(42))) {
                return Err("n(0) arrived without n(42) before it".into());
            }
        }
        "recv-split" => {
            let f1 = hex_decode(F1).unwrap();
            u.send(&f1[..10]).await?;
            u.send(&f1[10..]).await?;
            let evs = u.through_marker("split").await?;
            let hellos = evs
                .iter()
                .filter(|e| is_msg(e, "message", &json!("hello")))
                .count();
            let errors: Vec<_> = evs.iter().filter(|e| e.is_event("error")).collect();
            if legacy {
                // Datagram 1 dropped, datagram 2 is invalid JSON on its own.
                if hellos != 0 {
                    return Err(format!("v9/v12 dispatched {hellos} message(s)"));
                }
                let rest = String::from_utf8_lossy(&f1[10..f1.len() - 1]).to_string();
                if errors.len() != 1 || errors[0].legacy_error_response() != Some(rest.as_str()) {
                    return Err(format!(
                        "want one error event with response {rest:?}, got {errors:?}"
                    ));
                }
            } else if hellos != 1 || !errors.is_empty() {
                return Err(format!(
                    "want message(\"hello\") once and no error, got {hellos} and {errors:?}"
                ));
            }
        }
        "recv-stray" => {
            u.send(b"{\"type\":\"x\",\"data\":1}").await?;
            u.send(b"{\"type\":\"x\",\"data\":2}\x0c").await?;
            let evs = u.through_marker("stray").await?;
            let x1 = evs.iter().any(|e| is_msg(e, "x", &json!(1)));
            let x2 = evs.iter().any(|e| is_msg(e, "x", &json!(2)));
            let errors: Vec<_> = evs.iter().filter(|e| e.is_event("error")).collect();
            if legacy {
                if x1 || !x2 || !errors.is_empty() {
                    return Err(format!("want only x(2): x1={x1} x2={x2} errors={errors:?}"));
                }
            } else {
                let ok = errors.len() == 1
                    && errors[0].error_code() == Some("ERR_IPC_INVALID_JSON")
                    && !x1
                    && !x2;
                if !ok {
                    return Err(format!(
                        "want one ERR_IPC_INVALID_JSON and no dispatch: x1={x1} x2={x2} errors={errors:?}"
                    ));
                }
            }
        }
        other => return Err(format!("unknown case {other}")),
    }
    Ok(())
}

async fn raw_case(flavor: Flavor, id: &str, u: &mut Udp) -> Result<(), String> {
    match id {
        "raw-send" => {
            let target = u.target();
            u.peer
                .command(json!({"cmd":"emitRaw","target":target,"hex":"056d5c"}), T)
                .await
                .map_err(s)?;
            let got = u.recv().await?;
            check_bytes("raw datagram", &got, &[0x05, 0x6d, 0x5c])?;
        }
        "raw-recv" | "raw-empty" | "raw-binary" => {
            let (input, want): (&[u8], &[u8]) = match id {
                "raw-recv" => (&[0x05, 0x6d, 0x5c], &[0x05, 0x6d, 0x5c]),
                "raw-empty" => (&[], &[]),
                // `docs/protocol.md` §7.2 R8 / §1.7: v9/v12 UDP raw receive decodes UTF-8.
                _ if flavor.is_legacy() => (
                    &[0xff, 0xfe, 0x00, 0x80],
                    &[0xef, 0xbf, 0xbd, 0xef, 0xbf, 0xbd, 0x00, 0xef, 0xbf, 0xbd],
                ),
                _ => (&[0xff, 0xfe, 0x00, 0x80], &[0xff, 0xfe, 0x00, 0x80]),
            };
            u.send(input).await?;
            let ev = u.peer.expect(|e| e.is_event("data"), T).await.map_err(s)?;
            let got = ev
                .buffer_arg(0)
                .ok_or_else(|| format!("data event without a buffer: {ev}"))?;
            check_bytes(id, &got, want)?;
        }
        other => return Err(format!("unknown case {other}")),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagrams_both_ways() {
    let mut m = Matrix::new("udp");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for fam in [Fam::Udp4, Fam::Udp6] {
            match bounded_setup(start(flavor, fam, false)).await {
                Ok(mut u) => {
                    for id in [
                        "send-F1",
                        "recv-F1",
                        "recv-F3F4",
                        "recv-split",
                        "recv-stray",
                    ] {
                        let res = bounded(framed_case(flavor, id, &mut u)).await;
                        m.outcome(flavor.label(), fam.label(), id, res);
                    }
                    u.peer.kill().await;
                }
                Err(e) => m.outcome(flavor.label(), fam.label(), "start", Err(e)),
            }
            match bounded_setup(start(flavor, fam, true)).await {
                Ok(mut u) => {
                    for id in ["raw-send", "raw-recv", "raw-empty", "raw-binary"] {
                        let res = bounded(raw_case(flavor, id, &mut u)).await;
                        m.outcome(flavor.label(), fam.label(), id, res);
                    }
                    u.peer.kill().await;
                }
                Err(e) => m.outcome(flavor.label(), fam.label(), "start-raw", Err(e)),
            }
        }
    }
    m.finish();
}
