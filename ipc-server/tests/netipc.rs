//! net-ipc clients on our server, over real Unix sockets, without Node: our
//! own client with `protocol: net-ipc` (the interop suite runs the real
//! net-ipc package), raw sockets for net-ipc's handshake rules, and the
//! node-ipc side of the shared endpoint (a silent node-ipc client is still
//! served after the detection window).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, Flow, Protocol, RetryConfig};
use ipc_proto::ErrorCode;
use ipc_server::{EventStream, Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::Endpoint;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);
const CALL: Duration = Duration::from_secs(10);

fn echo_server(ep: &Endpoint) -> Server {
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    server.on_request(|req| {
        let d: Value = req.data().map_err(|e| e.to_string())?;
        req.respond(&json!({"echo": d, "by": "server"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    server
}

fn net_ipc_client(ep: &Endpoint, messagepack: bool, hello: Value) -> Client {
    let client = Client::new(
        ep.clone(),
        ClientConfig {
            protocol: Protocol::NetIpc { messagepack },
            hello,
            retry: RetryConfig::net_ipc(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    client.on_request(|req| {
        let d: Value = req.data().map_err(|e| e.to_string())?;
        req.respond(&json!({"echo": d, "by": "client"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    client
}

async fn wait<F: Fn(&ServerEvent) -> bool>(ev: &mut EventStream<ServerEvent>, f: F) -> ServerEvent {
    timeout(T, async {
        loop {
            let e = ev.recv().await.expect("event stream ended");
            if f(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

async fn client_message(ev: &mut ipc_client::EventStream<ClientEvent>) -> (String, Value) {
    timeout(T, async {
        loop {
            if let ClientEvent::Message(m) = ev.recv().await.expect("client events") {
                return (m.event().to_owned(), m.data_value());
            }
        }
    })
    .await
    .expect("message in time")
}

#[tokio::test]
async fn net_ipc_client_does_everything_in_both_body_formats() {
    for messagepack in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ep = Endpoint::Unix(dir.path().join("n.sock"));
        let server = echo_server(&ep);
        let mut sev = server.events();
        server.start().await.unwrap();
        let client = net_ipc_client(&ep, messagepack, json!({"token": "abc"}));
        let mut cev = client.events();
        client.start();
        timeout(T, client.connected()).await.unwrap().unwrap();

        let ServerEvent::Hello { socket, hello } =
            wait(&mut sev, |e| matches!(e, ServerEvent::Hello { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(hello.extras, json!({"token": "abc"}));
        assert_eq!(hello.id, None, "a first connection has no id");

        let r = client.request(&json!([1, "two"]), CALL).await.unwrap();
        assert_eq!(r.value(), json!({"echo": [1, "two"], "by": "server"}));
        assert_eq!(client.session_id(), socket.peer_id());

        let r = socket.request(&json!({"q": true}), CALL).await.unwrap();
        assert_eq!(r.value(), json!({"echo": {"q": true}, "by": "client"}));
        client.ping(CALL).await.unwrap();
        socket.ping(CALL).await.unwrap();

        client.emit("message", &json!({"x": 1.5})).await.unwrap();
        let ServerEvent::Message { message, .. } = wait(
            &mut sev,
            |e| matches!(e, ServerEvent::Message { message, .. } if message.event() == "message"),
        )
        .await
        else {
            unreachable!()
        };
        assert_eq!(message.data_value(), json!({"x": 1.5}));

        socket.emit("message", "down").await.unwrap();
        assert_eq!(
            client_message(&mut cev).await,
            ("message".into(), json!("down"))
        );
        // No net-ipc packet for other events: the envelope travels as a message.
        server.broadcast("tick", &7).await.unwrap();
        assert_eq!(
            client_message(&mut cev).await,
            ("message".into(), json!({"type": "tick", "data": 7}))
        );
        // Nor for publish/subscribe: refused at once.
        let e = timeout(T, client.subscribe(&["news"])).await.unwrap();
        assert!(
            matches!(e, Err(ipc_client::ClientError::Encode { .. })),
            "{e:?}"
        );

        let answers = server.survey(&"all?", CALL).await.unwrap();
        assert_eq!(answers.len(), 1);
        assert_eq!(
            answers[0].1.as_ref().unwrap().value(),
            json!({"echo": "all?", "by": "client"})
        );
        client.destroy().await.unwrap();
        server.stop().await;
    }
}

#[tokio::test]
async fn reconnect_keeps_the_id_and_a_final_end_stops_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("r.sock"));
    let server = echo_server(&ep);
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = net_ipc_client(&ep, false, json!("payload"));
    let mut cev = client.events();
    client.start();
    let ServerEvent::Hello { socket, .. } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Hello { .. })).await
    else {
        unreachable!()
    };
    let id = socket.peer_id().unwrap();

    server.close(true).await;
    let server = echo_server(&ep);
    let mut sev = server.events();
    server.start().await.unwrap();
    let ServerEvent::Hello { hello, socket } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Hello { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(hello.id.as_deref(), Some(id.as_str()));
    assert_eq!(socket.peer_id().as_deref(), Some(id.as_str()));
    assert_eq!(hello.extras, json!("payload"));

    server.close(false).await;
    timeout(T, async {
        while let Some(e) = cev.recv().await {
            if matches!(e, ClientEvent::Destroy) {
                return;
            }
        }
        panic!("client events ended without destroy");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn net_ipc_handshake_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("h.sock"));
    let path = dir.path().join("h.sock");
    let server = echo_server(&ep);
    let mut sev = server.events();
    server.start().await.unwrap();

    // A direct preamble and then silence: END {a:false} after 10 s.
    let mut c = UnixStream::connect(&path).await.unwrap();
    c.write_all(b"IPC").await.unwrap();
    let mut got = Vec::new();
    timeout(T, c.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got[1..], br#"{"t":6,"d":{"a":false}}"#);
    let ServerEvent::Error { error, .. } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Error { .. })).await
    else {
        unreachable!()
    };
    assert!(matches!(
        &*error,
        ServerError::Handshake {
            code: ErrorCode::HandshakeTimeout,
            ..
        }
    ));

    // An upgrade request is answered 101, then the handshake goes on.
    let mut c = UnixStream::connect(&path).await.unwrap();
    c.write_all(&ipc_proto::netipc::upgrade_request("net-ipc"))
        .await
        .unwrap();
    let mut head = vec![0u8; ipc_proto::netipc::UPGRADE_RESPONSE.len()];
    timeout(T, c.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(head, ipc_proto::netipc::UPGRADE_RESPONSE);
    let body = br#"{"t":0,"d":{"extras":1,"id":"kept"}}"#;
    let mut pkt = Vec::new();
    ipc_proto::netipc::encode_len(body.len(), &mut pkt);
    pkt.extend_from_slice(body);
    c.write_all(&pkt).await.unwrap();
    let mut reply = vec![0u8; 1 + br#"{"t":0,"d":{"id":"kept"}}"#.len()];
    timeout(T, c.read_exact(&mut reply)).await.unwrap().unwrap();
    assert_eq!(&reply[1..], br#"{"t":0,"d":{"id":"kept"}}"#);

    // A body that is not JSON after the handshake: reported, skipped.
    c.write_all(b"\x83{x}").await.unwrap();
    let ServerEvent::Error { error, .. } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Error { .. })).await
    else {
        unreachable!()
    };
    assert!(
        matches!(&*error, ServerError::Protocol { source, .. } if source.code() == ErrorCode::InvalidJson)
    );
    let body = br#"{"t":1,"d":"still here"}"#;
    let mut pkt = Vec::new();
    ipc_proto::netipc::encode_len(body.len(), &mut pkt);
    pkt.extend_from_slice(body);
    c.write_all(&pkt).await.unwrap();
    let ServerEvent::Message { message, .. } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Message { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(message.data_value(), json!("still here"));

    // A length beyond the limit ends the connection.
    c.write_all(&[0x7f, 0x7f, 0x7f, 0x7f, 0x7f]).await.unwrap();
    let ServerEvent::Error { error, .. } =
        wait(&mut sev, |e| matches!(e, ServerEvent::Error { .. })).await
    else {
        unreachable!()
    };
    assert!(
        matches!(&*error, ServerError::Protocol { source, .. } if source.code() == ErrorCode::FrameTooLarge)
    );
    let mut rest = Vec::new();
    timeout(T, c.read_to_end(&mut rest)).await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn silent_node_ipc_client_is_served_after_the_detection_window() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("s.sock"));
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    server.on("connect", |ev| {
        if let ServerEvent::Connect(s) = ev {
            s.try_emit("hello", &"you").unwrap();
        }
    });
    server.start().await.unwrap();
    let mut c = UnixStream::connect(dir.path().join("s.sock"))
        .await
        .unwrap();
    let want = b"{\"type\":\"hello\",\"data\":\"you\"}\x0c";
    let mut got = vec![0u8; want.len()];
    timeout(T, c.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, want);
    server.stop().await;
}

#[tokio::test]
async fn survey_and_broadcast_reach_node_ipc_and_net_ipc_clients_alike() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("m.sock"));
    let server = echo_server(&ep);
    let mut sev = server.events();
    server.start().await.unwrap();
    let net = net_ipc_client(&ep, true, Value::Null);
    let mut net_ev = net.events();
    net.start();
    timeout(T, net.connected()).await.unwrap().unwrap();
    wait(&mut sev, |e| matches!(e, ServerEvent::Hello { .. })).await;
    // A node-ipc client with the extension (our default client).
    let node = Client::new(ep.clone(), ClientConfig::default()).unwrap();
    node.on_request(|req| {
        let d: Value = req.data().map_err(|e| e.to_string())?;
        req.respond(&json!({"echo": d, "by": "node-ipc client"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    let mut node_ev = node.events();
    node.start();
    timeout(T, node.connected()).await.unwrap().unwrap();
    timeout(T, async {
        while server.connections() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();

    let mut answers: Vec<Value> = server
        .survey(&"who?", CALL)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap().value())
        .collect();
    answers.sort_by_key(|v| v.to_string());
    assert_eq!(
        answers,
        [
            json!({"echo": "who?", "by": "client"}),
            json!({"echo": "who?", "by": "node-ipc client"}),
        ]
    );
    assert_eq!(server.broadcast("message", "both").await.unwrap(), 2);
    assert_eq!(
        client_message(&mut net_ev).await,
        ("message".into(), json!("both"))
    );
    assert_eq!(
        client_message(&mut node_ev).await,
        ("message".into(), json!("both"))
    );
    net.destroy().await.unwrap();
    node.destroy().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_hello_check_sees_the_connect_payload_and_can_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("a.sock"));
    let server = echo_server(&ep);
    let refusals = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = refusals.clone();
    server.on_hello(move |_, hello| {
        if hello.extras == json!({"token": "good"}) {
            Ok(())
        } else {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err("bad token".into())
        }
    });
    server.start().await.unwrap();

    let good = net_ipc_client(&ep, false, json!({"token": "good"}));
    good.start();
    timeout(T, good.connected()).await.unwrap().unwrap();
    let r = good.request(&1, CALL).await.unwrap();
    assert_eq!(r.value(), json!({"echo": 1, "by": "server"}));

    let bad = net_ipc_client(&ep, false, json!({"token": "bad"}));
    let mut ev = bad.events();
    bad.start();
    // The END carrying the reason ends the client for good.
    timeout(T, async {
        while let Some(e) = ev.recv().await {
            if matches!(e, ClientEvent::Destroy) {
                return;
            }
        }
        panic!("client events ended without destroy");
    })
    .await
    .unwrap();
    // END {"a":false}: no second attempt.
    assert_eq!(refusals.load(std::sync::atomic::Ordering::SeqCst), 1);
    good.destroy().await.unwrap();
    server.stop().await;
}
