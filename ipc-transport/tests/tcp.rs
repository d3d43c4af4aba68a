//! TCP transport: IPv4/IPv6 round trips, port 0, interface options, failures.
#![cfg(feature = "tcp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::within;
use ipc_transport::{
    connect, AddressFamily, ConnectOptions, Endpoint, ErrorCode, ListenOptions, Listener, PeerAddr,
    StreamKind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn round_trip(host: &str) {
    let endpoint = Endpoint::Tcp {
        host: host.into(),
        port: 0,
    };
    let listener = within(Listener::bind(&endpoint, &ListenOptions::default()))
        .await
        .unwrap();
    let bound = listener.local_endpoint();
    let Endpoint::Tcp { port, .. } = bound else {
        panic!("{bound:?}")
    };
    assert_ne!(port, 0, "port 0 reports the real port");
    assert_eq!(listener.local_addr().unwrap().port(), port);

    let mut client = within(connect(&bound, &ConnectOptions::default()))
        .await
        .unwrap();
    let (mut server, peer) = within(listener.accept()).await.unwrap();
    let PeerAddr::Net(client_addr) = peer.addr else {
        panic!("{peer:?}")
    };
    assert_eq!(client_addr.ip(), host.parse::<IpAddr>().unwrap());
    for s in [&client, &server] {
        let StreamKind::Tcp(tcp) = s.kind() else {
            panic!("not tcp")
        };
        assert!(tcp.nodelay().unwrap(), "TCP_NODELAY on both sides");
    }
    client.write_all(b"hello\x0c").await.unwrap();
    let mut buf = [0u8; 6];
    within(server.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hello\x0c");
    server.write_all(b"world\x0c").await.unwrap();
    within(client.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"world\x0c");
    drop(client);
    assert_eq!(within(server.read(&mut buf)).await.unwrap(), 0);
    within(listener.close()).await;
}

#[tokio::test]
async fn ipv4_round_trip() {
    round_trip("127.0.0.1").await;
}

#[tokio::test]
async fn ipv6_round_trip() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    round_trip("::1").await;
}

#[tokio::test]
async fn split_halves_work_across_tasks() {
    let listener = within(Listener::bind(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        &ListenOptions::default(),
    ))
    .await
    .unwrap();
    let client = within(connect(
        &listener.local_endpoint(),
        &ConnectOptions::default(),
    ))
    .await
    .unwrap();
    let (server, _) = within(listener.accept()).await.unwrap();
    let (mut sr, mut sw) = server.into_split();
    // Echo server on split halves.
    let echo = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut sw).await });
    let (mut cr, mut cw) = client.into_split();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        cw.write_all(&payload).await.unwrap();
        cw.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    within(cr.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, expected);
    within(writer).await.unwrap();
    assert_eq!(within(echo).await.unwrap().unwrap(), expected.len() as u64);
}

#[tokio::test]
async fn client_interface_options() {
    let listener = within(Listener::bind(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        &ListenOptions::default(),
    ))
    .await
    .unwrap();
    let endpoint = Endpoint::Tcp {
        host: "localhost".into(),
        port: listener.local_addr().unwrap().port(),
    };
    // A free local port.
    let local_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = ConnectOptions {
        local_address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        local_port: Some(local_port),
        family: Some(AddressFamily::V4),
        ..ConnectOptions::default()
    };
    let _client = within(connect(&endpoint, &opts)).await.unwrap();
    let (_server, peer) = within(listener.accept()).await.unwrap();
    assert_eq!(
        peer.addr,
        PeerAddr::Net(SocketAddr::from((Ipv4Addr::LOCALHOST, local_port)))
    );
}

#[tokio::test]
async fn port_in_use_is_address_in_use() {
    let first = within(Listener::bind(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        &ListenOptions::default(),
    ))
    .await
    .unwrap();
    let taken = first.local_endpoint();
    let err = within(Listener::bind(&taken, &ListenOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AddressInUse));
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse));
    assert!(err.to_string().contains(&taken.to_string()), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_refused_and_retryable() {
    // Reserve a port, then free it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port,
    };
    let err = within(connect(&endpoint, &ConnectOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn family_without_addresses_is_a_resolve_error() {
    let endpoint: Endpoint = "tcp://127.0.0.1:9".parse().unwrap();
    let opts = ConnectOptions {
        family: Some(AddressFamily::V6),
        ..ConnectOptions::default()
    };
    let err = within(connect(&endpoint, &opts)).await.unwrap_err();
    assert!(
        matches!(err, ipc_transport::TransportError::Resolve { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn udp_endpoints_are_refused_by_stream_apis() {
    let endpoint: Endpoint = "udp4://127.0.0.1:0".parse().unwrap();
    let err = Listener::bind(&endpoint, &ListenOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidConfiguration));
    let err = connect(&endpoint, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("connectionless"), "{err}");
}
