//! The request/response, ping, pub/sub, handshake and close extension
//! (`docs/protocol.md` §5) between our server and client over real Unix sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc_client::{
    CallError, Client, ClientConfig, ClientError, ClientEvent, Flow, HandshakeMode, MaxRetries,
    RetryConfig,
};
use ipc_proto::ErrorCode;
use ipc_server::{Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::Endpoint;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);
const CALL: Duration = Duration::from_secs(10);

fn cfg(max: MaxRetries) -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            retry: Duration::from_millis(20),
            max_retries: max,
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    }
}

async fn setup(server_cfg: ServerConfig) -> (tempfile::TempDir, Endpoint, Server) {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint::Unix(dir.path().join("ext.sock"));
    let server = Server::new(ep.clone(), server_cfg).unwrap();
    (dir, ep, server)
}

async fn connected(ep: &Endpoint, c: ClientConfig) -> Client {
    let client = Client::connect(ep.clone(), c).unwrap();
    timeout(T, client.connected()).await.unwrap().unwrap();
    client
}

fn call_code(e: &ClientError) -> Option<ErrorCode> {
    e.code()
}

#[tokio::test]
async fn requests_answers_errors_and_no_handler() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    server.start().await.unwrap();
    let client = connected(&ep, cfg(MaxRetries::Limited(0))).await;

    // No handler: an empty answer at once.
    let r = client.request("anyone?", CALL).await.unwrap();
    assert!(r.is_empty());

    server.on_request(|req| {
        let q: String = req.data().map_err(|e| e.to_string())?;
        match q.as_str() {
            "fail" => Err("refused on purpose".into()),
            "pass" => Ok(Flow::Continue),
            _ => {
                req.respond(&format!("answer to {q}")).unwrap();
                Ok(Flow::Stop)
            }
        }
    });
    let later = Arc::new(AtomicUsize::new(0));
    let l2 = later.clone();
    server.on_request(move |req| {
        l2.fetch_add(1, Ordering::SeqCst);
        req.respond("second handler").unwrap();
        Ok(Flow::Stop)
    });
    let r = client.request("time", CALL).await.unwrap();
    assert_eq!(r.data::<String>().unwrap().unwrap(), "answer to time");
    assert_eq!(
        later.load(Ordering::SeqCst),
        0,
        "Flow::Stop keeps later handlers out"
    );
    let r = client.request("pass", CALL).await.unwrap();
    assert_eq!(r.data::<String>().unwrap().unwrap(), "second handler");
    let e = client.request("fail", CALL).await.unwrap_err();
    match &e {
        ClientError::Call {
            source: CallError::Remote { code, message },
            ..
        } => {
            assert_eq!(code, "ERR_IPC_HANDLER");
            assert_eq!(message, "refused on purpose");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(call_code(&e), Some(ErrorCode::Handler));
    client.disconnect().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn timeouts_cancellation_and_a_thousand_concurrent_requests() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    // Answers `n * 2`, except for 0 which is never answered; answers come
    // back in reverse order of arrival within each batch to prove
    // correlation does not rely on order.
    let held: Arc<Mutex<Vec<(u64, ipc_client::Responder)>>> = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    server.on_request(move |req| {
        let n: u64 = req.data().map_err(|e| e.to_string())?;
        if n != 0 {
            let mut h = h2.lock().unwrap();
            h.push((n, req.responder()));
            if h.len() >= 100 {
                for (n, r) in h.drain(..).rev() {
                    r.send(&(n * 2)).unwrap();
                }
            }
        }
        Ok(Flow::Stop)
    });
    server.start().await.unwrap();
    let client = connected(&ep, cfg(MaxRetries::Limited(0))).await;

    let e = client
        .request(&0u64, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RequestTimeout));

    // Cancellation: drop the future; the client forgets the call.
    let fut = client.request(&0u64, Duration::ZERO);
    assert!(timeout(Duration::from_millis(50), fut).await.is_err());

    let mut tasks = Vec::new();
    for n in 1..=1000u64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { (n, c.request(&n, CALL).await) }));
    }
    for t in tasks {
        let (n, r) = timeout(T, t).await.unwrap().unwrap();
        assert_eq!(
            r.unwrap().data::<u64>().unwrap(),
            Some(n * 2),
            "request {n}"
        );
    }
    client.disconnect().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn pending_calls_fail_fast_on_disconnect_and_destroy() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    server.on_request(|_| Ok(Flow::Stop)); // never answers
    server.start().await.unwrap();
    let client = connected(&ep, cfg(MaxRetries::Limited(0))).await;
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.request("hang", Duration::ZERO).await })
    };
    // Wait until the request reached the server, then stop it.
    let mut sev = server.events();
    let _ = timeout(Duration::from_millis(200), sev.recv()).await;
    server.abort().await;
    let e = timeout(T, pending).await.unwrap().unwrap().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotConnected), "{e}");
    // Calls while disconnected fail at once.
    let e = client.request("x", CALL).await.unwrap_err();
    assert!(
        matches!(
            e.code(),
            Some(ErrorCode::NotConnected) | Some(ErrorCode::Destroyed)
        ),
        "{e}"
    );

    // destroy fails calls in flight with ERR_IPC_DESTROYED.
    let (_d2, ep2, server2) = setup(ServerConfig::default()).await;
    server2.on_request(|_| Ok(Flow::Stop));
    server2.start().await.unwrap();
    let c2 = connected(&ep2, cfg(MaxRetries::Limited(0))).await;
    let pending = {
        let c = c2.clone();
        tokio::spawn(async move { c.request("hang", Duration::ZERO).await })
    };
    tokio::task::yield_now().await;
    timeout(T, async {
        while server2.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let _ = c2.destroy().await;
    let e = timeout(T, pending).await.unwrap().unwrap().unwrap_err();
    assert!(
        matches!(
            e.code(),
            Some(ErrorCode::Destroyed) | Some(ErrorCode::NotConnected)
        ),
        "{e}"
    );
    server2.stop().await;
}

#[tokio::test]
async fn graceful_close_lets_requests_in_flight_finish() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    server.on_request(|req| {
        let r = req.responder();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            r.send("slow answer").unwrap();
        });
        Ok(Flow::Stop)
    });
    server.start().await.unwrap();
    let client = connected(&ep, cfg(MaxRetries::Unlimited)).await;
    let pending: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.request("q", CALL).await })
        })
        .collect();
    // Let the requests go out, then close gracefully.
    tokio::task::yield_now().await;
    timeout(T, async {
        while server.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    timeout(T, client.close("done")).await.unwrap().unwrap();
    for p in pending {
        let r = timeout(T, p).await.unwrap().unwrap();
        assert_eq!(r.unwrap().data::<String>().unwrap().unwrap(), "slow answer");
    }
    // New calls are refused after close.
    assert_eq!(
        client.request("late", CALL).await.unwrap_err().code(),
        Some(ErrorCode::Destroyed)
    );
    server.stop().await;
}

#[tokio::test]
async fn server_to_client_requests_and_ping() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    let mut sev = server.events();
    server.start().await.unwrap();
    let client = Client::new(ep.clone(), cfg(MaxRetries::Limited(0))).unwrap();
    client.on_request(|req| {
        let v: i64 = req.data().map_err(|e| e.to_string())?;
        req.respond(&(v + 1)).unwrap();
        Ok(Flow::Stop)
    });
    client.start();
    let sock = loop {
        if let ServerEvent::Connect(s) = timeout(T, sev.recv()).await.unwrap().unwrap() {
            break s;
        }
    };
    let r = sock.request(&41, CALL).await.unwrap();
    assert_eq!(r.data::<i64>().unwrap(), Some(42));
    let rtt = sock.ping(CALL).await.unwrap();
    assert!(rtt < CALL);
    timeout(T, client.connected()).await.unwrap().unwrap();
    let rtt = client.ping(CALL).await.unwrap();
    assert!(rtt < CALL);
    client.disconnect().await.unwrap();
    // The socket is gone: its calls fail.
    timeout(T, async {
        while server.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let e = sock.request(&1, CALL).await.unwrap_err();
    assert!(
        matches!(
            e,
            ServerError::Call { .. } | ServerError::NotConnected { .. }
        ),
        "{e}"
    );
    server.stop().await;
}

/// Collects the topics a client receives.
fn topic_log(c: &Client) -> Arc<Mutex<Vec<(String, String)>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    c.on("*", move |ev| {
        if let ClientEvent::Message(m) = ev {
            l2.lock().unwrap().push((
                m.event().to_string(),
                m.data::<String>().unwrap_or_default(),
            ));
        }
    });
    log
}

#[tokio::test]
async fn pubsub_delivers_exactly_the_subscribed_topics_and_resubscribes() {
    let (_d, ep, server) = setup(ServerConfig::default()).await;
    server.start().await.unwrap();
    let news = Client::new(ep.clone(), cfg(MaxRetries::Unlimited)).unwrap();
    let news_log = topic_log(&news);
    news.start();
    let both = Client::new(ep.clone(), cfg(MaxRetries::Unlimited)).unwrap();
    let both_log = topic_log(&both);
    both.start();
    let none = Client::new(ep.clone(), cfg(MaxRetries::Unlimited)).unwrap();
    let none_log = topic_log(&none);
    none.start();
    for c in [&news, &both, &none] {
        timeout(T, c.connected()).await.unwrap().unwrap();
    }
    assert_eq!(news.subscribe(&["news"]).await.unwrap(), vec!["news"]);
    assert_eq!(
        both.subscribe(&["news", "sport"]).await.unwrap(),
        vec!["news", "sport"]
    );
    assert_eq!(
        both.subscribe(&["connect"]).await.unwrap_err().code(),
        Some(ErrorCode::ReservedEvent)
    );
    assert_eq!(server.publish("news", "n1").await.unwrap(), 2);
    assert_eq!(server.publish("sport", "s1").await.unwrap(), 1);
    assert_eq!(server.publish("weather", "w1").await.unwrap(), 0);
    // A client publication through the server (the publisher is subscribed
    // to `news` and gets it too unless no_local).
    news.publish("news", "n2").await.unwrap();
    both.unsubscribe(&["news"]).await.unwrap();
    server.publish("news", "n3").await.unwrap();
    // A ping round trip after the last publication orders everything before it.
    news.ping(CALL).await.unwrap();
    both.ping(CALL).await.unwrap();
    let want_news = vec![
        ("news".to_string(), "n1".to_string()),
        ("news".to_string(), "n2".to_string()),
        ("news".to_string(), "n3".to_string()),
    ];
    assert_eq!(*news_log.lock().unwrap(), want_news);
    assert_eq!(
        *both_log.lock().unwrap(),
        vec![
            ("news".to_string(), "n1".to_string()),
            ("sport".to_string(), "s1".to_string()),
            ("news".to_string(), "n2".to_string()),
        ]
    );
    assert!(
        none_log.lock().unwrap().is_empty(),
        "never-subscribed clients get nothing"
    );

    // Restart the server: the clients reconnect and renew their subscriptions.
    server.stop().await;
    server.start().await.unwrap();
    timeout(T, news.connected()).await.unwrap().unwrap();
    timeout(T, async {
        loop {
            if server.publish("news", "after-restart").await.unwrap() >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("subscriptions renewed after the reconnect");
    news.ping(CALL).await.unwrap();
    assert_eq!(
        news_log.lock().unwrap().last().unwrap(),
        &("news".to_string(), "after-restart".to_string())
    );
    for c in [news, both, none] {
        c.disconnect().await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn required_handshake_with_auth_token() {
    let (_d, ep, server) = setup(ServerConfig {
        handshake: HandshakeMode::Required,
        handshake_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    server.on_hello(|_, hello| {
        if hello.extras["token"] == "s3cret" {
            Ok(())
        } else {
            Err("bad token".into())
        }
    });
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e2 = errors.clone();
    server.on("error", move |ev| {
        e2.lock().unwrap().push(ev.error().unwrap().code())
    });
    let hellos = Arc::new(AtomicUsize::new(0));
    let h2 = hellos.clone();
    server.on("hello", move |_| {
        h2.fetch_add(1, Ordering::SeqCst);
    });
    let messages = Arc::new(AtomicUsize::new(0));
    let m2 = messages.clone();
    server.on("message", move |_| {
        m2.fetch_add(1, Ordering::SeqCst);
    });
    server.start().await.unwrap();

    // A good token: ready after the welcome, with a server-assigned id.
    let good = ClientConfig {
        handshake: HandshakeMode::Required,
        hello: serde_json::json!({"token": "s3cret"}),
        ..cfg(MaxRetries::Limited(0))
    };
    let ok = connected(&ep, good).await;
    assert!(ok.session_id().is_some());
    ok.emit("message", "hi").await.unwrap();
    ok.ping(CALL).await.unwrap();
    assert_eq!(messages.load(Ordering::SeqCst), 1);
    assert_eq!(hellos.load(Ordering::SeqCst), 1);

    // A bad token: refused with a clear error, no reconnect even with an
    // unlimited budget, nothing delivered.
    let bad = Client::new(
        ep.clone(),
        ClientConfig {
            handshake: HandshakeMode::Required,
            hello: serde_json::json!({"token": "guess"}),
            ..cfg(MaxRetries::Unlimited)
        },
    )
    .unwrap();
    let mut bev = bad.events();
    bad.start();
    let mut seq = Vec::new();
    loop {
        let ev = timeout(T, bev.recv()).await.unwrap().unwrap();
        let done = matches!(ev, ClientEvent::Destroy);
        seq.push(ev);
        if done {
            break;
        }
    }
    let err = seq.iter().find_map(|e| e.error()).expect("an error event");
    assert_eq!(err.code(), Some(ErrorCode::HandshakeRequired));
    assert!(err.to_string().contains("bad token"), "{err}");
    assert!(!seq.iter().any(|e| matches!(e, ClientEvent::Connect)));
    assert!(bad.emit("message", "x").await.is_err());
    assert_eq!(messages.load(Ordering::SeqCst), 1);

    // A plain client that talks first is refused by the server.
    let plain = Client::connect(ep.clone(), cfg(MaxRetries::Limited(0))).unwrap();
    plain.emit("message", "no hello").await.unwrap();
    timeout(T, async {
        while !errors
            .lock()
            .unwrap()
            .contains(&Some(ErrorCode::HandshakeRequired))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(
        messages.load(Ordering::SeqCst),
        1,
        "nothing before the hello is delivered"
    );
    ok.disconnect().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn server_close_with_and_without_reconnect() {
    for allow in [false, true] {
        let (_d, ep, server) = setup(ServerConfig::default()).await;
        server.start().await.unwrap();
        let client = Client::new(ep.clone(), cfg(MaxRetries::Unlimited)).unwrap();
        let mut cev = client.events();
        client.start();
        timeout(T, client.connected()).await.unwrap().unwrap();
        server.close(allow).await;
        let mut names = Vec::new();
        loop {
            let ev = timeout(T, cev.recv()).await.unwrap().unwrap();
            names.push(ev.name().to_string());
            if names.len() >= 2 {
                break;
            }
        }
        if allow {
            // The normal retry policy: disconnect, then attempts continue.
            assert_eq!(names[..2], ["connect", "disconnect"]);
            server.start().await.unwrap();
            timeout(T, client.connected()).await.unwrap().unwrap();
            client.disconnect().await.unwrap();
            server.stop().await;
        } else {
            assert_eq!(names[..2], ["connect", "disconnect"]);
            let ev = timeout(T, cev.recv()).await.unwrap().unwrap();
            assert_eq!(ev.name(), "destroy", "reconnect:false ends the client");
        }
    }
}
