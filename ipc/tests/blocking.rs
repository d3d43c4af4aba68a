//! The blocking client and server over real Unix sockets and TCP: round
//! trips, request/ping, broadcast, sync mode, reconnect, retry budget,
//! backpressure, bad input and stop.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ipc::blocking::{BlockingClient, BlockingServer};
use ipc::{
    Authorizer, ClientConfig, ClientError, ClientEvent, Endpoint, ErrorCode, HandshakeMode,
    MaxRetries, ServerConfig, ServerError,
};

/// Generous liveness bound for anything that should happen at once.
const LIVE: Duration = Duration::from_secs(10);

fn unix_endpoint(dir: &tempfile::TempDir) -> Endpoint {
    Endpoint::Unix(dir.path().join("app.world"))
}

fn echo_server(endpoint: Endpoint, config: ServerConfig) -> BlockingServer {
    let server = BlockingServer::bind(endpoint, config).unwrap();
    server.on("message", |msg, socket| {
        socket.emit("message", &msg.data_value()).unwrap();
    });
    server.start().unwrap();
    server
}

fn fast_retry() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.retry.retry = Duration::from_millis(20);
    c
}

/// The next message event, skipping lifecycle events.
fn next_message(client: &mut BlockingClient) -> ipc::Message {
    let t0 = Instant::now();
    while t0.elapsed() < LIVE {
        if let Some(ClientEvent::Message(m)) = client.recv_timeout(LIVE).unwrap() {
            return m;
        }
    }
    panic!("no message within {LIVE:?}");
}

/// Events until (and including) the first one `pred` accepts.
fn events_until(
    client: &mut BlockingClient,
    pred: impl Fn(&ClientEvent) -> bool,
) -> Vec<ClientEvent> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    while t0.elapsed() < LIVE {
        match client.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(e)) => {
                let done = pred(&e);
                seen.push(e);
                if done {
                    return seen;
                }
            }
            Ok(None) => {}
            Err(e) => panic!("recv failed after {seen:?}: {e}"),
        }
    }
    panic!("no matching event within {LIVE:?}; saw {seen:?}");
}

#[test]
fn unix_echo_request_ping_and_burst() {
    let dir = tempfile::tempdir().unwrap();
    let server = echo_server(unix_endpoint(&dir), ServerConfig::default());
    server.on_request(|data, _| {
        let n: f64 = serde_json::from_str(data.map(|d| d.get()).unwrap_or("0")).unwrap();
        Ok(serde_json::json!(n * 2.0))
    });
    let mut client = BlockingClient::connect(server.endpoint().clone(), fast_retry()).unwrap();
    assert!(matches!(
        client.recv_timeout(LIVE).unwrap(),
        Some(ClientEvent::Connect)
    ));
    client.emit("message", "hello").unwrap();
    let m = next_message(&mut client);
    assert_eq!(m.event(), "message");
    assert_eq!(m.data::<String>().unwrap(), "hello");

    let answer = client.request(&21, LIVE).unwrap();
    assert_eq!(answer.data::<f64>().unwrap(), Some(42.0));
    let rtt = client.ping(LIVE).unwrap();
    assert!(rtt < LIVE);

    // A burst larger than the write batch, delivered whole and in order.
    for i in 0..5000u32 {
        client.emit("message", &i).unwrap();
    }
    client.flush().unwrap();
    assert_eq!(client.queued_bytes(), 0);
    for i in 0..5000u32 {
        assert_eq!(next_message(&mut client).data::<u32>().unwrap(), i);
    }
    client.disconnect().unwrap();
    assert!(matches!(
        client.emit("message", "late"),
        Err(ClientError::Destroyed { .. })
    ));
    server.stop();
    assert!(!dir.path().join("app.world").exists());
}

#[test]
fn tcp_broadcast_reaches_every_client() {
    let server = BlockingServer::bind(
        "tcp://127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
    )
    .unwrap();
    let (hello_tx, hello_rx) = mpsc::channel();
    let hello_tx = Mutex::new(hello_tx);
    server.on("hello", move |_, _| {
        hello_tx.lock().unwrap().send(()).unwrap();
    });
    server.start().unwrap();
    let mut clients: Vec<BlockingClient> = (0..3)
        .map(|_| {
            let mut c = BlockingClient::connect(server.endpoint().clone(), ClientConfig::default())
                .unwrap();
            c.emit_empty("hello").unwrap();
            c.flush().unwrap();
            c
        })
        .collect();
    for _ in 0..3 {
        hello_rx.recv_timeout(LIVE).unwrap();
    }
    for i in 0..1000u32 {
        assert_eq!(server.broadcast("news", &i).unwrap(), 3);
    }
    for c in &mut clients {
        for i in 0..1000u32 {
            let m = next_message(c);
            assert_eq!(m.event(), "news");
            assert_eq!(m.data::<u32>().unwrap(), i);
        }
    }
    server.stop();
    for c in &mut clients {
        events_until(c, |e| matches!(e, ClientEvent::Disconnect));
    }
}

#[test]
fn sync_mode_waits_for_each_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = echo_server(unix_endpoint(&dir), ServerConfig::default());
    let config = ClientConfig {
        sync: true,
        ..ClientConfig::default()
    };
    let mut client = BlockingClient::connect(server.endpoint().clone(), config).unwrap();
    for i in 0..20u32 {
        client.emit("message", &i).unwrap();
        // The answer arrived before emit returned.
        assert_eq!(client.queued_bytes(), 0);
        assert_eq!(next_message(&mut client).data::<u32>().unwrap(), i);
    }
    server.stop();
}

#[test]
fn reconnects_and_delivers_what_was_queued_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = unix_endpoint(&dir);
    let server = echo_server(endpoint.clone(), ServerConfig::default());
    let mut client = BlockingClient::connect(endpoint.clone(), fast_retry()).unwrap();
    client.emit("message", "before").unwrap();
    assert_eq!(
        next_message(&mut client).data::<String>().unwrap(),
        "before"
    );
    server.stop();
    events_until(&mut client, |e| matches!(e, ClientEvent::Disconnect));
    // Queued while nobody listens.
    client.emit("message", "meanwhile").unwrap();
    let server = echo_server(endpoint, ServerConfig::default());
    let seen = events_until(&mut client, |e| matches!(e, ClientEvent::Message(_)));
    assert!(seen.iter().any(|e| matches!(e, ClientEvent::Connect)));
    let Some(ClientEvent::Message(m)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(m.data::<String>().unwrap(), "meanwhile");
    server.stop();
}

#[test]
fn retry_budget_is_spent_then_destroyed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_retry();
    config.retry.max_retries = MaxRetries::Limited(2);
    let mut client = BlockingClient::new(unix_endpoint(&dir), config).unwrap();
    let err = client.connected().unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Destroyed));
    let mut events = Vec::new();
    while let Ok(Some(e)) = client.recv_timeout(Duration::ZERO) {
        events.push(e);
    }
    let connect_errors = events
        .iter()
        .filter(|e| matches!(e.error(), Some(ClientError::Connect { .. })))
        .count();
    // The first attempt and two retries.
    assert_eq!(connect_errors, 3, "{events:?}");
    assert!(matches!(events.last(), Some(ClientEvent::Destroy)));
}

#[test]
fn server_rejects_bad_input_naming_the_peer() {
    let dir = tempfile::tempdir().unwrap();
    let server = BlockingServer::bind(unix_endpoint(&dir), ServerConfig::default()).unwrap();
    let errors = Arc::new(Mutex::new(Vec::<ServerError>::new()));
    let e2 = errors.clone();
    server.on_error(move |e| {
        e2.lock().unwrap().push(match e {
            ServerError::Protocol { peer, source } => ServerError::Protocol {
                peer: peer.clone(),
                source: source.clone(),
            },
            other => ServerError::NotConnected {
                peer: other.to_string(),
            },
        })
    });
    let delivered = Arc::new(AtomicUsize::new(0));
    let d2 = delivered.clone();
    server.on("message", move |_, _| {
        d2.fetch_add(1, Ordering::SeqCst);
    });
    server.start().unwrap();
    let mut raw = std::os::unix::net::UnixStream::connect(dir.path().join("app.world")).unwrap();
    raw.set_read_timeout(Some(LIVE)).unwrap();
    raw.write_all(b"{\"type\":\"message\",\"data\":1}\x0c{\"type\":7}\x0c")
        .unwrap();
    // The server closes the connection.
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).unwrap();
    let t0 = Instant::now();
    while errors.lock().unwrap().is_empty() && t0.elapsed() < LIVE {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(delivered.load(Ordering::SeqCst), 1);
    let errors = errors.lock().unwrap();
    match &errors[0] {
        ServerError::Protocol { peer, source } => {
            assert!(peer.contains("unix"), "{peer}");
            assert_eq!(source.code(), ErrorCode::InvalidEvent);
        }
        other => panic!("{other}"),
    }
    drop(errors);
    server.stop();
}

#[test]
fn client_stops_on_bad_input_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"[1,2,3]\x0c").unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    let mut client = BlockingClient::connect(Endpoint::Unix(path), fast_retry()).unwrap();
    let seen = events_until(&mut client, |e| matches!(e, ClientEvent::Destroy));
    let protocol = seen.iter().find_map(|e| e.error()).expect("an error event");
    assert!(
        matches!(protocol, ClientError::Protocol { .. }),
        "{protocol}"
    );
    assert!(protocol.to_string().contains("bad.sock"), "{protocol}");
    assert!(!seen
        .iter()
        .skip(1)
        .any(|e| matches!(e, ClientEvent::Connect)));
    drop(client);
    peer.join().unwrap();
}

#[test]
fn backpressure_on_a_peer_that_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        queue_bytes: 64 * 1024,
        ..ServerConfig::default()
    };
    let server = BlockingServer::bind(unix_endpoint(&dir), config).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    server.on_connect(move |s| tx.lock().unwrap().send(s.clone()).unwrap());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e2 = errors.clone();
    server.on_error(move |e| e2.lock().unwrap().push(e.code()));
    server.start().unwrap();
    // A peer that connects and never reads.
    let _silent = std::os::unix::net::UnixStream::connect(dir.path().join("app.world")).unwrap();
    let socket = rx.recv_timeout(LIVE).unwrap();
    let payload = "x".repeat(1000);
    let mut refused = None;
    for i in 0..100_000 {
        if let Err(e) = socket.try_emit("message", &payload) {
            refused = Some((i, e));
            break;
        }
    }
    let (count, e) = refused.expect("try_emit never refused");
    assert!(matches!(e, ServerError::Backpressure { .. }), "{e}");
    assert!(count > 10, "refused after {count}");
    // broadcast drops the stuck peer instead of waiting.
    let mut reached = 1;
    let t0 = Instant::now();
    while reached > 0 && t0.elapsed() < LIVE {
        reached = server.broadcast("message", &payload).unwrap();
    }
    assert_eq!(reached, 0);
    let t0 = Instant::now();
    while !server.sockets().is_empty() && t0.elapsed() < LIVE {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(server.sockets().is_empty());
    let codes = errors.lock().unwrap().clone();
    assert!(codes.contains(&Some(ErrorCode::Backpressure)), "{codes:?}");
    assert!(codes.contains(&Some(ErrorCode::NotConnected)), "{codes:?}");
    server.stop();
}

#[test]
fn client_try_emit_is_bounded_while_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fast_retry();
    config.queue_bytes = 1000;
    let mut client = BlockingClient::new(unix_endpoint(&dir), config).unwrap();
    let mut accepted = 0;
    let err = loop {
        match client.try_emit("message", "0123456789012345678901234567890123456789") {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
    };
    assert!(accepted > 5);
    assert_eq!(err.code(), Some(ErrorCode::Backpressure));
    // Destroying reports what was never written.
    let undelivered = client.destroy().unwrap_err();
    match undelivered {
        ClientError::Undelivered { frames, .. } => assert_eq!(frames, accepted),
        other => panic!("{other}"),
    }
}

#[test]
fn stop_closes_every_connection_and_runs_disconnect_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let server = echo_server(unix_endpoint(&dir), ServerConfig::default());
    let gone = Arc::new(AtomicUsize::new(0));
    let g2 = gone.clone();
    server.on_disconnect(move |_| {
        g2.fetch_add(1, Ordering::SeqCst);
    });
    let mut clients: Vec<_> = (0..4)
        .map(|_| BlockingClient::connect(server.endpoint().clone(), fast_retry()).unwrap())
        .collect();
    for c in &mut clients {
        c.emit("message", "hi").unwrap();
        next_message(c);
    }
    server.stop();
    assert_eq!(gone.load(Ordering::SeqCst), 4);
    assert!(server.sockets().is_empty());
    for c in &mut clients {
        events_until(c, |e| matches!(e, ClientEvent::Disconnect));
    }
}

/// TLS: the blocking client (rustls' blocking stream) against the async TLS
/// server and against the blocking TLS listener; an untrusted certificate is
/// refused without retrying.
#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use ipc::transport::blocking::{self as bt, BlockingListener};
    use ipc::transport::{
        ConnectOptions, ListenOptions, PemSource, TlsClientConfig, TlsServerConfig,
    };
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    /// A CA's PEM and a `localhost` certificate (PEM chain, PEM key) it signed.
    fn material(ca_name: &str) -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = leaf
            .signed_by(&key, &Issuer::from_params(&ca, &ca_key))
            .unwrap();
        (ca_pem, cert.pem(), key.serialize_pem())
    }

    fn server_tls(cert: &str, key: &str) -> TlsServerConfig {
        TlsServerConfig::builder()
            .cert_chain(PemSource::Inline(cert.to_owned()))
            .key(PemSource::Inline(key.to_owned()))
            .build()
            .unwrap()
    }

    fn client_config(ca: &str) -> ClientConfig {
        let mut c = fast_retry();
        c.connect = ConnectOptions {
            tls: Some(
                TlsClientConfig::builder()
                    .root(PemSource::Inline(ca.to_owned()))
                    .build()
                    .unwrap(),
            ),
            ..ConnectOptions::default()
        };
        c
    }

    #[test]
    fn blocking_client_against_the_async_tls_server() {
        let (ca, cert, key) = material("test ca");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = ipc::Server::new(
            "tls://127.0.0.1:0".parse().unwrap(),
            ServerConfig {
                listen: ListenOptions {
                    tls: Some(server_tls(&cert, &key)),
                    ..ListenOptions::default()
                },
                ..ServerConfig::default()
            },
        )
        .unwrap();
        let Endpoint::Tls { port, .. } = rt.block_on(server.start()).unwrap() else {
            panic!("not a TLS endpoint")
        };
        server.on_message("message", |m, peer| {
            if let Some(s) = peer.socket() {
                let _ = s.try_emit("message", &m.data_value());
            }
        });
        let endpoint = Endpoint::Tls {
            host: "localhost".into(),
            port,
        };
        let mut client = BlockingClient::connect(endpoint.clone(), client_config(&ca)).unwrap();
        client.emit("message", "over tls").unwrap();
        assert_eq!(
            next_message(&mut client).data::<String>().unwrap(),
            "over tls"
        );
        assert!(client.ping(LIVE).is_ok());
        client.disconnect().unwrap();

        // A client that trusts another CA is refused and does not retry.
        let (other_ca, _, _) = material("other ca");
        let mut refused = BlockingClient::new(endpoint, client_config(&other_ca)).unwrap();
        assert!(refused.connected().is_err());
        let events = events_until(&mut refused, |e| matches!(e, ClientEvent::Destroy));
        let err = events.iter().find_map(|e| e.error()).expect("an error");
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("localhost"), "{err}");
        rt.block_on(server.stop());
    }

    #[test]
    fn blocking_tls_listener_and_connect() {
        let (ca, cert, key) = material("test ca");
        let opts = ListenOptions {
            tls: Some(server_tls(&cert, &key)),
            ..ListenOptions::default()
        };
        let listener =
            BlockingListener::bind(&"tls://127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let Endpoint::Tls { port, .. } = listener.local_endpoint() else {
            panic!("not a TLS endpoint")
        };
        let echo = std::thread::spawn(move || {
            let (mut s, _peer) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
            s.flush().unwrap();
        });
        let endpoint = Endpoint::Tls {
            host: "localhost".into(),
            port,
        };
        let (mut s, peer) = bt::connect(&endpoint, &client_config(&ca).connect).unwrap();
        assert!(s.is_tls());
        assert!(peer.tls_peer_certificates.is_some());
        s.write_all(b"hello").unwrap();
        s.flush().unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        echo.join().unwrap();
    }
}

#[cfg(feature = "tls")]
#[test]
fn blocking_client_and_server_over_tls() {
    use ipc::transport::{
        ConnectOptions, ListenOptions, PemSource, TlsClientConfig, TlsServerConfig,
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_pem = ca.self_signed(&key).unwrap().pem();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca, &key))
        .unwrap();
    let config = ServerConfig {
        listen: ListenOptions {
            tls: Some(
                TlsServerConfig::builder()
                    .cert_chain(PemSource::Inline(leaf.pem()))
                    .key(PemSource::Inline(leaf_key.serialize_pem()))
                    .build()
                    .unwrap(),
            ),
            ..ListenOptions::default()
        },
        ..ServerConfig::default()
    };
    let server = echo_server("tls://127.0.0.1:0".parse().unwrap(), config);
    let Endpoint::Tls { port, .. } = server.endpoint().clone() else {
        panic!("not a TLS endpoint")
    };
    let mut cc = fast_retry();
    cc.connect = ConnectOptions {
        tls: Some(
            TlsClientConfig::builder()
                .root(PemSource::Inline(ca_pem))
                .build()
                .unwrap(),
        ),
        ..ConnectOptions::default()
    };
    let endpoint = Endpoint::Tls {
        host: "localhost".into(),
        port,
    };
    let mut client = BlockingClient::connect(endpoint, cc).unwrap();
    // Both directions at once: bursts out while the echoes come back. A
    // burst stays well inside the socket buffers: a one-thread blocking
    // client does not read while it writes, so a burst larger than what
    // the kernel buffers on both sides would block both peers' writes.
    for round in 0..6u32 {
        let first = round * 500;
        for i in first..first + 500 {
            client.emit("message", &i).unwrap();
        }
        client.flush().unwrap();
        for i in first..first + 500 {
            assert_eq!(next_message(&mut client).data::<u32>().unwrap(), i);
        }
    }
    assert!(client.ping(LIVE).is_ok());
    client.disconnect().unwrap();
    server.stop();
}

#[test]
fn stop_from_a_handler_does_not_wait_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Arc::new(BlockingServer::bind(unix_endpoint(&dir), ServerConfig::default()).unwrap());
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let weak = Arc::downgrade(&server);
    server.on("quit", move |_, _| {
        if let Some(s) = weak.upgrade() {
            s.stop();
        }
        tx.lock().unwrap().send(()).unwrap();
    });
    server.start().unwrap();
    let mut client = BlockingClient::connect(server.endpoint().clone(), fast_retry()).unwrap();
    client.emit_empty("quit").unwrap();
    client.flush().unwrap();
    rx.recv_timeout(LIVE)
        .expect("stop returned inside the handler");
    events_until(&mut client, |e| matches!(e, ClientEvent::Disconnect));
    assert!(!dir.path().join("app.world").exists());
}

/// `authorize` is checked before a connection is served: a refused peer is
/// closed at once, reaches no handler, and is reported with its reason.
/// Settings the blocking server cannot honour are refused at `bind`.
#[test]
fn authorizer_refuses_before_any_handler() {
    let dir = tempfile::tempdir().unwrap();
    let saw_cred = Arc::new(AtomicUsize::new(0));
    let s2 = saw_cred.clone();
    let config = ServerConfig {
        authorize: Some(Authorizer::new(move |peer| {
            if peer.cred.is_some() {
                s2.fetch_add(1, Ordering::SeqCst);
            }
            Err("no one today".into())
        })),
        ..ServerConfig::default()
    };
    let server = BlockingServer::bind(unix_endpoint(&dir), config).unwrap();
    let (tx, rx) = mpsc::channel::<(Option<ErrorCode>, String)>();
    let tx = Mutex::new(tx);
    server.on_error(move |e| {
        // The receiver is gone only once the test has finished reading.
        let _ = tx.lock().unwrap().send((e.code(), e.to_string()));
    });
    let reached = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (reached.clone(), reached.clone());
    server.on_connect(move |_| {
        r1.fetch_add(1, Ordering::SeqCst);
    });
    server.on("message", move |_, _| {
        r2.fetch_add(1, Ordering::SeqCst);
    });
    server.start().unwrap();
    let mut raw = std::os::unix::net::UnixStream::connect(dir.path().join("app.world")).unwrap();
    raw.set_read_timeout(Some(LIVE)).unwrap();
    // The write may fail once the server has closed: either way nothing
    // reaches a handler.
    let _ = raw.write_all(b"{\"type\":\"message\",\"data\":1}\x0c");
    let mut rest = Vec::new();
    let _ = raw.read_to_end(&mut rest);
    let (code, text) = rx.recv_timeout(LIVE).unwrap();
    assert_eq!(code, Some(ErrorCode::Unauthorized));
    assert!(text.contains("no one today"), "{text}");
    assert_eq!(saw_cred.load(Ordering::SeqCst), 1);
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    assert!(server.sockets().is_empty());
    server.stop();

    for config in [
        ServerConfig {
            identify_peer: true,
            ..ServerConfig::default()
        },
        ServerConfig {
            handshake: HandshakeMode::Required,
            ..ServerConfig::default()
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        match BlockingServer::bind(unix_endpoint(&dir), config) {
            Err(e @ ServerError::Config(_)) => {
                assert_eq!(e.code(), Some(ErrorCode::InvalidConfiguration));
                assert!(e.to_string().contains("blocking server"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
