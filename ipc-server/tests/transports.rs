//! Our server and client over TLS (verified and mutual) and our UDP
//! endpoints talking to each other: one frame per datagram, replies to the
//! sender, broadcast to the known peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ipc-transport/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_server::{Peer, Server, ServerConfig, ServerEvent};
use ipc_transport::{ConnectOptions, Endpoint, ListenOptions, TlsClientConfig, TlsServerConfig};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn no_retry() -> RetryConfig {
    RetryConfig {
        max_retries: MaxRetries::Limited(0),
        ..RetryConfig::default()
    }
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn mutual_tls_round_trip_and_untrusted_client_refused() {
    use common::pki::Ca;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server_leaf = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let client_leaf = ca.leaf(dir.path(), "client", &["client.local"]);
    let rogue = Ca::new(dir.path(), "rogue");
    let rogue_leaf = rogue.leaf(dir.path(), "rogue-client", &["client.local"]);

    let tls = TlsServerConfig::builder()
        .cert_chain_file(&server_leaf.cert)
        .key_file(&server_leaf.key)
        .client_ca_file(&ca.cert)
        .build()
        .unwrap();
    let server = Server::new(
        "tls://127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            listen: ListenOptions {
                tls: Some(tls),
                ..ListenOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.on_message("hello", |m, from| {
        let who: String = m.data().unwrap();
        from.socket()
            .unwrap()
            .try_emit("welcome", &format!("hi {who}"))
            .unwrap();
    });
    let local = server.start().await.unwrap();

    let client_tls = |cert: &common::pki::Leaf| {
        TlsClientConfig::builder()
            .root_file(&ca.cert)
            .client_cert_files(&cert.cert, &cert.key)
            .build()
            .unwrap()
    };
    let config = |tls: TlsClientConfig| ClientConfig {
        connect: ConnectOptions {
            tls: Some(tls),
            ..ConnectOptions::default()
        },
        retry: no_retry(),
        ..ClientConfig::default()
    };
    let client = Client::new(local.clone(), config(client_tls(&client_leaf))).unwrap();
    let mut cev = client.events();
    client.start();
    client.emit("hello", "tls").await.unwrap();
    loop {
        match timeout(T, cev.recv()).await.unwrap().unwrap() {
            ClientEvent::Message(m) => {
                assert_eq!(m.data::<String>().unwrap(), "hi tls");
                break;
            }
            ClientEvent::Connect => {}
            other => panic!("{other:?}"),
        }
    }
    // The server saw the client's certificate.
    loop {
        if let ServerEvent::Connect(s) = timeout(T, sev.recv()).await.unwrap().unwrap() {
            assert!(s
                .peer()
                .tls_peer_certificates
                .as_ref()
                .is_some_and(|c| !c.is_empty()));
            break;
        }
    }
    client.disconnect().await.unwrap();

    // A client certificate from another CA: refused, reported on both sides,
    // and the client does not retry an authentication failure.
    let rogue_client = Client::new(
        local.clone(),
        ClientConfig {
            retry: RetryConfig::default(), // unlimited: must still not retry
            ..config(client_tls(&rogue_leaf))
        },
    )
    .unwrap();
    let mut rev = rogue_client.events();
    rogue_client.start();
    let mut names = Vec::new();
    loop {
        let ev = timeout(T, rev.recv()).await.unwrap().unwrap();
        names.push(ev.name().to_string());
        if matches!(ev, ClientEvent::Destroy) {
            break;
        }
    }
    assert!(names.contains(&"error".to_string()), "{names:?}");
    assert_eq!(names.last().unwrap(), "destroy");
    server.stop().await;
}

#[cfg(feature = "udp")]
#[tokio::test]
async fn udp_endpoints_exchange_reply_and_broadcast() {
    for ep in ["udp4://127.0.0.1:0", "udp6://[::1]:0"] {
        let a = Server::new(ep.parse().unwrap(), ServerConfig::default()).unwrap();
        let b = Server::new(ep.parse().unwrap(), ServerConfig::default()).unwrap();
        let mut aev = a.events();
        let mut bev = b.events();
        let a_local = a.start().await.unwrap();
        let b_local = b.start().await.unwrap();
        let addr = |e: &Endpoint| match e {
            Endpoint::Udp { host, port, .. } => format!(
                "{}:{port}",
                if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                }
            )
            .parse::<std::net::SocketAddr>()
            .unwrap(),
            other => panic!("{other}"),
        };
        let (a_addr, b_addr) = (addr(&a_local), addr(&b_local));
        // A → B: one datagram carrying one whole frame.
        a.emit_to(b_addr, "message", "hello").await.unwrap();
        let from = loop {
            if let ServerEvent::Message { from, message } =
                timeout(T, bev.recv()).await.unwrap().unwrap()
            {
                assert_eq!(message.event(), "message");
                assert_eq!(message.data::<String>().unwrap(), "hello");
                break from;
            }
        };
        let Peer::Udp(sender) = from else {
            panic!("{from:?}")
        };
        assert_eq!(sender.port(), a_addr.port());
        // B replies to the sender; B's broadcast reaches every known peer (A).
        b.emit_to(sender, "reply", &1).await.unwrap();
        assert_eq!(b.udp_peers(), vec![sender]);
        assert_eq!(b.broadcast("all", &2).await.unwrap(), 1);
        let mut got = Vec::new();
        while got.len() < 2 {
            if let ServerEvent::Message { message, .. } =
                timeout(T, aev.recv()).await.unwrap().unwrap()
            {
                got.push((message.event().to_string(), message.data::<i32>().unwrap()));
            }
        }
        assert_eq!(got, [("reply".to_string(), 1), ("all".to_string(), 2)]);
        // An event without data, and a pre-encoded frame.
        a.emit_empty_to(b_addr, "bare").await.unwrap();
        a.send_frame_to(b_addr, b"{\"type\":\"pre\",\"data\":3}\x0c")
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            if let ServerEvent::Message { message, .. } =
                timeout(T, bev.recv()).await.unwrap().unwrap()
            {
                got.push((message.event().to_string(), message.data_value()));
            }
        }
        assert_eq!(got[0], ("bare".to_string(), serde_json::json!({})));
        assert_eq!(got[1], ("pre".to_string(), serde_json::json!(3)));
        // Too large for one datagram: refused before sending.
        let big = "x".repeat(70_000);
        let err = a.emit_to(b_addr, "big", &big).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ipc_proto::ErrorCode::DatagramTooLarge),
            "{err}"
        );
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn tcp_ipv6_round_trip() {
    let server = Server::new("tcp://[::1]:0".parse().unwrap(), ServerConfig::default()).unwrap();
    server.on_message("ping", |_, from| {
        from.socket().unwrap().try_emit("pong", &true).unwrap();
    });
    let local = server.start().await.unwrap();
    let client = Client::new(
        local,
        ClientConfig {
            retry: no_retry(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let mut cev = client.events();
    client.start();
    client.emit_empty("ping").await.unwrap();
    loop {
        if let ClientEvent::Message(m) = timeout(T, cev.recv()).await.unwrap().unwrap() {
            assert_eq!(m.event(), "pong");
            break;
        }
    }
    client.disconnect().await.unwrap();
    server.stop().await;
}
