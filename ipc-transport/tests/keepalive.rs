//! TCP keepalive: the configured probes are set on accepted and connected
//! sockets, plain TCP and TLS, and nothing is set when none is configured.
#![cfg(feature = "tcp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::within;
use ipc_transport::{
    connect, ConnectOptions, Endpoint, Keepalive, ListenOptions, Listener, Stream, StreamKind,
};

const SERVER_KA: Keepalive = Keepalive {
    time: Duration::from_secs(7),
    interval: Duration::from_secs(3),
    retries: 4,
};

const CLIENT_KA: Keepalive = Keepalive {
    time: Duration::from_secs(11),
    interval: Duration::from_secs(2),
    retries: 5,
};

fn tcp_of(stream: &Stream) -> &tokio::net::TcpStream {
    match stream.kind() {
        StreamKind::Tcp(s) => s,
        #[cfg(feature = "tls")]
        StreamKind::TlsClient(s) => s.get_ref().0,
        #[cfg(feature = "tls")]
        StreamKind::TlsServer(s) => s.get_ref().0,
        other => panic!("not a TCP stream: {other:?}"),
    }
}

/// Reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT back from
/// the kernel and compares them with `expected`.
fn assert_keepalive(stream: &Stream, expected: Option<Keepalive>, side: &str) {
    let sock = socket2::SockRef::from(tcp_of(stream));
    let on = sock.keepalive().unwrap();
    match expected {
        None => assert!(
            !on,
            "{side}: SO_KEEPALIVE must stay off when not configured"
        ),
        Some(k) => {
            assert!(on, "{side}: SO_KEEPALIVE");
            // Windows sets the idle time and interval but cannot read them
            // back.
            #[cfg(not(windows))]
            assert_eq!(
                sock.tcp_keepalive_time().unwrap(),
                k.time,
                "{side}: TCP_KEEPIDLE"
            );
            #[cfg(not(windows))]
            assert_eq!(
                sock.tcp_keepalive_interval().unwrap(),
                k.interval,
                "{side}: TCP_KEEPINTVL"
            );
            assert_eq!(
                sock.tcp_keepalive_retries().unwrap(),
                k.retries,
                "{side}: TCP_KEEPCNT"
            );
        }
    }
}

async fn pair(
    endpoint: Endpoint,
    listen: ListenOptions,
    connect_opts: ConnectOptions,
) -> (Stream, Stream) {
    let listener = within(Listener::bind(&endpoint, &listen)).await.unwrap();
    let ep = listener.local_endpoint();
    let (client, accepted) =
        within(async { tokio::join!(connect(&ep, &connect_opts), listener.accept()) }).await;
    (client.unwrap(), accepted.unwrap().0)
}

fn tcp_endpoint() -> Endpoint {
    Endpoint::Tcp {
        host: "127.0.0.1".into(),
        port: 0,
    }
}

#[tokio::test]
async fn tcp_keepalive_is_set_on_accepted_and_connected_sockets() {
    let (client, accepted) = pair(
        tcp_endpoint(),
        ListenOptions {
            keepalive: Some(SERVER_KA),
            ..ListenOptions::default()
        },
        ConnectOptions {
            keepalive: Some(CLIENT_KA),
            ..ConnectOptions::default()
        },
    )
    .await;
    assert_keepalive(&accepted, Some(SERVER_KA), "accepted");
    assert_keepalive(&client, Some(CLIENT_KA), "connected");
}

#[tokio::test]
async fn no_keepalive_unless_configured() {
    let (client, accepted) = pair(
        tcp_endpoint(),
        ListenOptions::default(),
        ConnectOptions::default(),
    )
    .await;
    assert_keepalive(&accepted, None, "accepted");
    assert_keepalive(&client, None, "connected");
    // One side only: the other keeps the kernel default (off).
    let (client, accepted) = pair(
        tcp_endpoint(),
        ListenOptions::default(),
        ConnectOptions {
            keepalive: Some(CLIENT_KA),
            ..ConnectOptions::default()
        },
    )
    .await;
    assert_keepalive(&accepted, None, "accepted");
    assert_keepalive(&client, Some(CLIENT_KA), "connected");
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_keepalive_is_set_on_accepted_and_connected_sockets() {
    use common::pki::Ca;
    use ipc_transport::{TlsClientConfig, TlsServerConfig};

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let server = ca.leaf(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let tls_server = TlsServerConfig::builder()
        .cert_chain_file(&server.cert)
        .key_file(&server.key)
        .build()
        .unwrap();
    let tls_client = TlsClientConfig::builder()
        .root_file(&ca.cert)
        .build()
        .unwrap();
    let (client, accepted) = pair(
        Endpoint::Tls {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ListenOptions {
            tls: Some(tls_server),
            keepalive: Some(SERVER_KA),
            ..ListenOptions::default()
        },
        ConnectOptions {
            tls: Some(tls_client),
            keepalive: Some(CLIENT_KA),
            ..ConnectOptions::default()
        },
    )
    .await;
    assert!(matches!(accepted.kind(), StreamKind::TlsServer(_)));
    assert!(matches!(client.kind(), StreamKind::TlsClient(_)));
    assert_keepalive(&accepted, Some(SERVER_KA), "accepted TLS");
    assert_keepalive(&client, Some(CLIENT_KA), "connected TLS");
}

/// A listener bound elsewhere gets keepalive through `set_keepalive`.
#[tokio::test]
async fn keepalive_on_a_listener_from_std() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut listener = Listener::from_std_tcp(std_listener).unwrap();
    assert_eq!(listener.keepalive(), None);
    listener.set_keepalive(Some(SERVER_KA));
    let ep = listener.local_endpoint();
    let opts = ConnectOptions::default();
    let (client, accepted) =
        within(async { tokio::join!(connect(&ep, &opts), listener.accept()) }).await;
    let (client, accepted) = (client.unwrap(), accepted.unwrap().0);
    assert_keepalive(&accepted, Some(SERVER_KA), "accepted");
    assert_keepalive(&client, None, "connected");
}
