//! TLS transport: verified and mutual TLS, and every certificate failure.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::pki::{Ca, Leaf};
use common::within;
use ipc_transport::{
    connect, ConnectOptions, Endpoint, ErrorCode, ListenOptions, Listener, NodeTlsOptions,
    PemSource, Stream, TlsClientConfig, TlsServerConfig, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Pki {
    _dir: tempfile::TempDir,
    ca: Ca,
    server: Leaf,
    client: Leaf,
    rogue_ca: Ca,
    rogue_server: Leaf,
    rogue_client: Leaf,
    wrong_name: Leaf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let ca = Ca::new(p, "ca");
    let server = ca.leaf(p, "server", &["localhost", "127.0.0.1", "::1"]);
    let client = ca.leaf(p, "client", &["client.local"]);
    let wrong_name = ca.leaf(p, "wrong", &["other.example"]);
    let rogue_ca = Ca::new(p, "rogue-ca");
    let rogue_server = rogue_ca.leaf(p, "rogue-server", &["localhost", "127.0.0.1"]);
    let rogue_client = rogue_ca.leaf(p, "rogue-client", &["client.local"]);
    Pki {
        _dir: dir,
        ca,
        server,
        client,
        rogue_ca,
        rogue_server,
        rogue_client,
        wrong_name,
    }
}

fn server_config(leaf: &Leaf, client_ca: Option<&Path>) -> TlsServerConfig {
    let mut b = TlsServerConfig::builder()
        .cert_chain_file(&leaf.cert)
        .key_file(&leaf.key);
    if let Some(ca) = client_ca {
        b = b.client_ca_file(ca);
    }
    b.build().unwrap()
}

async fn tls_listener(config: TlsServerConfig) -> (Listener, u16) {
    let opts = ListenOptions {
        tls: Some(config),
        ..ListenOptions::default()
    };
    let l = within(Listener::bind(&"tls://127.0.0.1:0".parse().unwrap(), &opts))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(
        l.local_endpoint(),
        Endpoint::Tls {
            host: "127.0.0.1".into(),
            port
        }
    );
    (l, port)
}

fn client_opts(config: TlsClientConfig) -> ConnectOptions {
    ConnectOptions {
        tls: Some(config),
        ..ConnectOptions::default()
    }
}

async fn ping_pong(client: &mut Stream, server: &mut Stream) {
    client.write_all(b"over tls\x0c").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 9];
    within(server.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"over tls\x0c");
    server.write_all(b"and back\x0c").await.unwrap();
    server.flush().await.unwrap();
    within(client.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"and back\x0c");
}

/// Connects and accepts concurrently.
async fn pair(
    listener: &Listener,
    endpoint: &Endpoint,
    opts: &ConnectOptions,
) -> (
    Result<Stream, TransportError>,
    Result<(Stream, ipc_transport::PeerInfo), TransportError>,
) {
    within(async { tokio::join!(connect(endpoint, opts), listener.accept()) }).await
}

#[tokio::test]
async fn verified_round_trip_by_name_and_by_ip() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.server, None)).await;
    let client = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .build()
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let endpoint = Endpoint::Tls {
            host: host.into(),
            port,
        };
        let (c, s) = pair(&listener, &endpoint, &client_opts(client.clone())).await;
        let mut c = c.unwrap();
        let (mut s, peer) = s.unwrap();
        assert_eq!(peer.tls_peer_certificates, None, "no client cert requested");
        let server_chain = c.peer().tls_peer_certificates.clone().unwrap();
        assert_eq!(server_chain.len(), 1);
        ping_pong(&mut c, &mut s).await;
        drop(c);
        let mut buf = [0u8; 1];
        let n = within(s.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0);
    }
}

#[tokio::test]
async fn mutual_tls_reports_the_client_certificate() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.server, Some(&pki.ca.cert))).await;
    let client = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .client_cert_files(&pki.client.cert, &pki.client.key)
        .build()
        .unwrap();
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let (c, s) = pair(&listener, &endpoint, &client_opts(client)).await;
    let mut c = c.unwrap();
    let (mut s, peer) = s.unwrap();
    let chain = peer.tls_peer_certificates.expect("client certificate");
    assert_eq!(chain.len(), 1);
    let (mut cr, mut cw) = c.into_split();
    let (mut sr, mut sw) = s.into_split();
    cw.write_all(b"split\x0c").await.unwrap();
    cw.flush().await.unwrap();
    let mut buf = [0u8; 6];
    within(sr.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"split\x0c");
    sw.write_all(b"halves").await.unwrap();
    sw.flush().await.unwrap();
    within(cr.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"halves");
    c = {
        drop((cr, cw));
        // Reconnect once more to show the listener is reusable.
        let client = TlsClientConfig::builder()
            .root_file(&pki.ca.cert)
            .client_cert_files(&pki.client.cert, &pki.client.key)
            .build()
            .unwrap();
        let (c2, s2) = pair(&listener, &endpoint, &client_opts(client)).await;
        s = s2.unwrap().0;
        c2.unwrap()
    };
    ping_pong(&mut c, &mut s).await;
}

#[tokio::test]
async fn missing_client_certificate_is_refused_and_listener_keeps_going() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.server, Some(&pki.ca.cert))).await;
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let no_cert = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .build()
        .unwrap();
    let (c, s) = pair(&listener, &endpoint, &client_opts(no_cert)).await;
    let err = s.unwrap_err();
    let TransportError::TlsHandshake {
        authentication,
        ref peer,
        ..
    } = err
    else {
        panic!("{err}")
    };
    assert!(authentication, "{err}");
    assert!(peer.starts_with("127.0.0.1:"), "names the peer: {err}");
    assert!(!err.is_retryable());
    // With TLS 1.3 the client may finish first; it then fails on first read.
    if let Ok(mut c) = c {
        let mut buf = [0u8; 1];
        let r = within(c.read(&mut buf)).await;
        assert!(matches!(r, Err(_) | Ok(0)), "{r:?}");
    }

    // An untrusted client certificate is refused too.
    let rogue = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .client_cert_files(&pki.rogue_client.cert, &pki.rogue_client.key)
        .build()
        .unwrap();
    let (_c, s) = pair(&listener, &endpoint, &client_opts(rogue)).await;
    assert!(matches!(
        s.unwrap_err(),
        TransportError::TlsHandshake {
            authentication: true,
            ..
        }
    ));

    // The same listener still serves a proper client.
    let good = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .client_cert_files(&pki.client.cert, &pki.client.key)
        .build()
        .unwrap();
    let (c, s) = pair(&listener, &endpoint, &client_opts(good)).await;
    ping_pong(&mut c.unwrap(), &mut s.unwrap().0).await;
}

#[tokio::test]
async fn untrusted_server_certificate_is_rejected() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.rogue_server, None)).await;
    let client = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .build()
        .unwrap();
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let (c, s) = pair(&listener, &endpoint, &client_opts(client)).await;
    let err = c.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::TlsHandshake {
                authentication: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&endpoint.to_string()), "{err}");
    assert!(s.is_err(), "the server sees the failed handshake too");

    // Trusting the rogue CA makes it work: the failure was about trust.
    let trusting = TlsClientConfig::builder()
        .root_file(&pki.rogue_ca.cert)
        .build()
        .unwrap();
    let (c, s) = pair(&listener, &endpoint, &client_opts(trusting)).await;
    ping_pong(&mut c.unwrap(), &mut s.unwrap().0).await;
}

#[tokio::test]
async fn wrong_hostname_is_rejected_and_server_name_overrides() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.wrong_name, None)).await;
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let client = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .build()
        .unwrap();
    let (c, _s) = pair(&listener, &endpoint, &client_opts(client)).await;
    let err = c.unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::TlsHandshake {
                authentication: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().to_lowercase().contains("name"), "{err}");

    let named = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .server_name("other.example")
        .build()
        .unwrap();
    let (c, s) = pair(&listener, &endpoint, &client_opts(named)).await;
    ping_pong(&mut c.unwrap(), &mut s.unwrap().0).await;
}

#[tokio::test]
async fn verification_can_be_turned_off_explicitly() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.rogue_server, None)).await;
    let insecure = TlsClientConfig::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    assert!(insecure.is_insecure());
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let (c, s) = pair(&listener, &endpoint, &client_opts(insecure)).await;
    ping_pong(&mut c.unwrap(), &mut s.unwrap().0).await;
}

#[tokio::test]
async fn bad_missing_and_mismatched_files() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"this is not PEM\n").unwrap();

    let check = |r: Result<TlsServerConfig, TransportError>, needle: &str, path: &Path| {
        let err = r.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::TlsConfiguration), "{err}");
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(!err.is_retryable());
    };
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&missing)
            .key_file(&pki.server.key)
            .build(),
        "cannot read",
        &missing,
    );
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&pki.server.cert)
            .key_file(&missing)
            .build(),
        "cannot read",
        &missing,
    );
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&garbage)
            .key_file(&pki.server.key)
            .build(),
        "no PEM certificate",
        &garbage,
    );
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&pki.server.cert)
            .key_file(&garbage)
            .build(),
        "no usable PEM private key",
        &garbage,
    );
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&pki.server.cert)
            .key_file(&pki.client.key)
            .build(),
        "does not match",
        &pki.client.key,
    );
    // A private key where a certificate belongs.
    check(
        TlsServerConfig::builder()
            .cert_chain_file(&pki.server.key)
            .key_file(&pki.server.key)
            .build(),
        "no PEM certificate",
        &pki.server.key,
    );
    // Client side: a mismatched client certificate and a missing CA file.
    let err = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .client_cert_files(&pki.client.cert, &pki.server.key)
        .build()
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TlsConfiguration));
    assert!(err.to_string().contains("does not match"), "{err}");
    let err = TlsClientConfig::builder()
        .root_file(&missing)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = TlsClientConfig::builder().build().unwrap_err();
    assert!(err.to_string().contains("no trusted certificates"), "{err}");
}

#[tokio::test]
async fn node_options_follow_v14_defaults() {
    let pki = pki();
    // A server without key/cert is a configuration error.
    let err = TlsServerConfig::from_node_options(&NodeTlsOptions::default()).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TlsConfiguration));

    // public/private + trustedConnections: requestCert defaults to true.
    let server = TlsServerConfig::from_node_options(&NodeTlsOptions {
        public: Some(pki.server.cert.clone()),
        private: Some(pki.server.key.clone()),
        trusted_connections: vec![pki.ca.cert.clone()],
        dhparam: Some("/nonexistent/dhparam.pem".into()),
        ..NodeTlsOptions::default()
    })
    .unwrap();
    let (listener, port) = tls_listener(server).await;
    let endpoint = Endpoint::Tls {
        host: "127.0.0.1".into(),
        port,
    };
    let no_cert = TlsClientConfig::from_node_options(&NodeTlsOptions {
        trusted_connections: vec![pki.ca.cert.clone()],
        ..NodeTlsOptions::default()
    })
    .unwrap();
    let (_c, s) = pair(&listener, &endpoint, &client_opts(no_cert)).await;
    assert!(
        s.is_err(),
        "client certificate required by default with a CA"
    );

    // Inline key/cert/ca on the client, servername override.
    let with_cert = TlsClientConfig::from_node_options(&NodeTlsOptions {
        key: Some(pki.client.key_pem.clone()),
        cert: Some(pki.client.cert_pem.clone()),
        ca: vec![pki.ca.cert_pem.clone()],
        servername: Some("localhost".into()),
        ..NodeTlsOptions::default()
    })
    .unwrap();
    assert_eq!(with_cert.server_name(), Some("localhost"));
    let (c, s) = pair(&listener, &endpoint, &client_opts(with_cert)).await;
    let (mut s, peer) = s.unwrap();
    assert!(peer.tls_peer_certificates.is_some());
    ping_pong(&mut c.unwrap(), &mut s).await;

    // requestCert without rejectUnauthorized: any client certificate goes.
    let lax = TlsServerConfig::from_node_options(&NodeTlsOptions {
        key: Some(pki.server.key_pem.clone()),
        cert: Some(pki.server.cert_pem.clone()),
        request_cert: Some(true),
        reject_unauthorized: Some(false),
        ..NodeTlsOptions::default()
    })
    .unwrap();
    let (lax_listener, lax_port) = tls_listener(lax).await;
    let rogue_client = TlsClientConfig::from_node_options(&NodeTlsOptions {
        public: Some(pki.rogue_client.cert.clone()),
        private: Some(pki.rogue_client.key.clone()),
        trusted_connections: vec![pki.ca.cert.clone()],
        ..NodeTlsOptions::default()
    })
    .unwrap();
    let lax_endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port: lax_port,
    };
    let (c, s) = pair(&lax_listener, &lax_endpoint, &client_opts(rogue_client)).await;
    let (mut s, peer) = s.unwrap();
    assert!(peer.tls_peer_certificates.is_some());
    ping_pong(&mut c.unwrap(), &mut s).await;

    // rejectUnauthorized: false on the client accepts an untrusted server.
    let client = TlsClientConfig::from_node_options(&NodeTlsOptions {
        reject_unauthorized: Some(false),
        ..NodeTlsOptions::default()
    })
    .unwrap();
    assert!(client.is_insecure());

    // A certificate without its key is refused.
    let err = TlsClientConfig::from_node_options(&NodeTlsOptions {
        public: Some(pki.client.cert.clone()),
        ca: vec![pki.ca.cert_pem.clone()],
        ..NodeTlsOptions::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("without its private key"), "{err}");
}

#[tokio::test]
async fn tls_endpoints_need_tls_options_and_only_tls_endpoints_take_them() {
    let pki = pki();
    let err = Listener::bind(
        &"tls://127.0.0.1:0".parse().unwrap(),
        &ListenOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TlsConfiguration));
    let opts = ListenOptions {
        tls: Some(server_config(&pki.server, None)),
        ..ListenOptions::default()
    };
    let err = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap(), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidConfiguration));
    let err = connect(
        &"tls://127.0.0.1:1".parse().unwrap(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TlsConfiguration));
    let _ = PemSource::Inline(String::new());
}

#[tokio::test]
async fn slow_handshakes_do_not_block_other_clients_with_accept_raw() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.server, None)).await;
    let listener = std::sync::Arc::new(listener);
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let server = {
        let listener = listener.clone();
        tokio::spawn(async move {
            loop {
                let Ok(incoming) = listener.accept_raw().await else {
                    break;
                };
                assert!(incoming.needs_handshake());
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok((mut s, _)) = incoming.handshake().await {
                        s.write_all(b"hi").await.ok();
                        s.flush().await.ok();
                        tx.send(()).await.ok();
                    }
                });
            }
        })
    };
    // A client that connects over TCP and never starts its handshake.
    let _silent = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    let client = TlsClientConfig::builder()
        .root_file(&pki.ca.cert)
        .build()
        .unwrap();
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let mut c = within(connect(&endpoint, &client_opts(client)))
        .await
        .unwrap();
    let mut buf = [0u8; 2];
    within(c.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hi");
    within(rx.recv()).await.unwrap();
    server.abort();
}

#[tokio::test]
async fn plain_tcp_client_against_tls_server_fails_the_handshake() {
    let pki = pki();
    let (listener, port) = tls_listener(server_config(&pki.server, None)).await;
    let mut plain = within(tokio::net::TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    plain
        .write_all(b"{\"type\":\"hello\",\"data\":1}\x0c")
        .await
        .unwrap();
    let err = within(listener.accept()).await.unwrap_err();
    assert!(matches!(err, TransportError::TlsHandshake { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}
