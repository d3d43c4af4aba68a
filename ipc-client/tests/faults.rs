//! Faults and hostile servers against a real client (DESIGN.md's
//! guarantees, `docs/protocol.md` §1.4, §3.4, §4, §6): a server that never reads, a server
//! that vanishes while the client holds queued frames, hostile frames per
//! profile, a 1 GiB frame and a slowloris partial frame from the server.
//!
//! The servers here are raw Unix listeners writing exact bytes, so every
//! case is precise. Every wait is bounded by [`T`]; no test sleeps hoping
//! something happened.

// Raw Unix listeners throughout.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ipc_client::{Client, ClientConfig, ClientError, ClientEvent, MaxRetries, Origin, RetryConfig};
use ipc_proto::{CodecConfig, ErrorCode, FrameDecoder, Inbound};
use ipc_transport::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

fn listener(dir: &tempfile::TempDir, name: &str) -> (UnixListener, Endpoint) {
    let path = dir.path().join(name);
    (UnixListener::bind(&path).unwrap(), Endpoint::Unix(path))
}

fn config(codec: CodecConfig, retries: MaxRetries) -> ClientConfig {
    ClientConfig {
        codec,
        retry: RetryConfig {
            retry: Duration::from_millis(20),
            max_retries: retries,
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    }
}

/// A client that retries forever and gives up a connection on which
/// nothing arrives for `idle`.
fn idle_client(ep: Endpoint, idle: Duration) -> Client {
    Client::new(
        ep,
        ClientConfig {
            idle_timeout: Some(idle),
            ..config(CodecConfig::fast(), MaxRetries::Unlimited)
        },
    )
    .unwrap()
}

async fn accept(l: &UnixListener) -> UnixStream {
    timeout(T, l.accept()).await.unwrap().unwrap().0
}

async fn wait_client(
    events: &mut ipc_client::EventStream<ClientEvent>,
    what: &str,
    pred: impl Fn(&ClientEvent) -> bool,
) -> (ClientEvent, Vec<ClientEvent>) {
    let mut seen = Vec::new();
    loop {
        let ev = timeout(T, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:?}"))
            .expect("client event stream ended");
        if pred(&ev) {
            return (ev, seen);
        }
        seen.push(ev);
    }
}

fn code(ev: &ClientEvent) -> Option<ErrorCode> {
    ev.error().and_then(ClientError::code)
}

/// A server that accepts and never reads: the client's queue stays within
/// `queue_bytes`, `try_emit` reports `ERR_IPC_BACKPRESSURE`, `emit` waits
/// (backpressure) instead of buffering, and what is still queued when the
/// client is destroyed is reported as undelivered.
#[tokio::test]
async fn server_that_never_reads_bounded_queue_then_reported() {
    const QUEUE: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "deaf.sock");
    let client = Client::new(
        ep,
        ClientConfig {
            queue_bytes: QUEUE,
            ..config(CodecConfig::fast(), MaxRetries::Unlimited)
        },
    )
    .unwrap();
    client.start();
    let _deaf = accept(&l).await;
    client.connected().await.unwrap();
    let payload = "y".repeat(1024);
    let mut accepted = 0usize;
    let err = timeout(T, async {
        loop {
            match client.try_emit("fill", &payload) {
                Ok(()) => accepted += 1,
                Err(e) => return e,
            }
            assert!(client.queued_bytes() <= QUEUE);
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    assert_eq!(err.code(), Some(ErrorCode::Backpressure), "{err}");
    assert!(client.queued_bytes() <= QUEUE);
    // `emit` waits for room rather than growing the queue.
    assert!(
        timeout(Duration::from_millis(100), client.emit("fill", &payload))
            .await
            .is_err(),
        "emit returned although the queue is full"
    );
    let queued = client.queued_bytes();
    match client.destroy().await {
        Err(ClientError::Undelivered { frames, bytes, .. }) => {
            assert!(frames > 0 && frames <= accepted);
            assert_eq!(bytes, queued);
        }
        other => panic!("{other:?}"),
    }
}

/// The server vanishes while the client holds queued frames; with no retry
/// left the client gives up and reports exactly what it still held. Frames
/// already handed to the kernel are the only ones unaccounted for.
#[tokio::test]
async fn server_vanishing_reports_the_frames_the_client_held() {
    const QUEUE: usize = 256 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "vanish.sock");
    let client = Client::new(
        ep,
        ClientConfig {
            queue_bytes: QUEUE,
            ..config(CodecConfig::fast(), MaxRetries::Limited(0))
        },
    )
    .unwrap();
    let mut cev = client.events();
    client.start();
    let mut srv = accept(&l).await;
    client.connected().await.unwrap();
    let payload = "z".repeat(1000);
    let mut accepted = 0usize;
    while client.try_emit("n", &payload).is_ok() {
        accepted += 1;
        tokio::task::yield_now().await;
    }
    // Read some frames (exactly, with our decoder), then vanish.
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf = BytesMut::new();
    let mut read = 0usize;
    while read < 50 {
        let n = timeout(T, srv.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        while let Some(Inbound::Message(m)) =
            dec.decode(&mut buf, std::time::Instant::now()).unwrap()
        {
            assert_eq!(m.event(), "n");
            read += 1;
        }
    }
    drop(srv);
    drop(l);
    let (ev, seen) = wait_client(&mut cev, "undelivered", |e| {
        matches!(e.error(), Some(ClientError::Undelivered { .. }))
    })
    .await;
    let Some(ClientError::Undelivered { frames, .. }) = ev.error() else {
        unreachable!()
    };
    assert!(seen.iter().any(|e| matches!(e, ClientEvent::Disconnect)));
    assert!(seen.iter().any(|e| matches!(e, ClientEvent::Destroy)));
    assert!(*frames > 0);
    let lost = accepted - read - frames;
    println!("accepted {accepted}, read {read}, reported undelivered {frames}, lost in kernel buffers {lost}");
    assert!(
        lost * 1024 < 4 * 1024 * 1024,
        "{lost} frames unaccounted for"
    );
    assert!(client.destroy().await.is_ok(), "already reported once");
}

/// Runs `input` from a raw server at a client of `codec`; returns the
/// client events up to the first `marker` message (connection survived) or
/// to `destroy` (violation: no reconnect), and how many connections the
/// server saw.
async fn from_server(codec: CodecConfig, input: &[u8]) -> (Vec<ClientEvent>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "hostile.sock");
    let client = Client::new(ep, config(codec, MaxRetries::Unlimited)).unwrap();
    let mut cev = client.events();
    client.start();
    let mut srv = accept(&l).await;
    srv.write_all(input).await.unwrap();
    let _ = srv.write_all(b"{\"type\":\"marker\",\"data\":0}\x0c").await;
    let mut events = Vec::new();
    loop {
        let ev = timeout(T, cev.recv()).await.unwrap().unwrap();
        let done = matches!(&ev, ClientEvent::Message(m) if m.event() == "marker")
            || matches!(ev, ClientEvent::Destroy);
        events.push(ev);
        if done {
            break;
        }
    }
    // A protocol violation must not trigger a reconnect: the client is
    // finished (no retry timer left) once `destroy` was emitted.
    if matches!(events.last(), Some(ClientEvent::Destroy)) {
        assert_eq!(client.state(), ipc_client::ClientState::Destroyed);
    }
    let conns = events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connect))
        .count();
    client.destroy().await.ok();
    (events, conns)
}

/// Hostile frames from a server, per profile (`docs/protocol.md` §1.4, §3.4, §7.3): in
/// fast, reserved and prototype names are delivered as remote messages
/// (never as local lifecycle events); guarded rejects them. Malformed
/// frames end the connection with a typed error and no reconnect.
#[tokio::test]
async fn hostile_server_frames_per_profile() {
    // Fast delivers spoofed lifecycle names as remote messages.
    for name in [
        "error",
        "connect",
        "disconnect",
        "destroy",
        "constructor",
        "__proto__",
    ] {
        let frame = format!("{{\"type\":\"{name}\",\"data\":1}}\x0c");
        let (events, conns) = from_server(CodecConfig::fast(), frame.as_bytes()).await;
        let msgs: Vec<_> = events.iter().filter_map(|e| e.message()).collect();
        assert_eq!(msgs.len(), 2, "{name}: {events:?}");
        assert_eq!(msgs[0].event(), name);
        let remote = events.iter().find(|e| e.message().is_some()).unwrap();
        assert_eq!(remote.origin(), Origin::Remote);
        assert!(
            !events.iter().any(|e| e.error().is_some()),
            "{name}: {events:?}"
        );
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, ClientEvent::Connect))
                .count(),
            1,
            "{name}: a spoofed lifecycle name is not a lifecycle event"
        );
        assert_eq!(conns, 1);
    }
    use ErrorCode::*;
    // (case, input, fast, guarded)
    type Case = (
        &'static str,
        &'static [u8],
        Option<ErrorCode>,
        Option<ErrorCode>,
    );
    let cases: [Case; 8] = [
        (
            "not json",
            b"not-json\x0c",
            Some(InvalidJson),
            Some(InvalidJson),
        ),
        (
            "null",
            b"null\x0c",
            Some(InvalidMessage),
            Some(InvalidMessage),
        ),
        (
            "array",
            b"[1,2]\x0c",
            Some(InvalidMessage),
            Some(InvalidMessage),
        ),
        (
            "no type",
            b"{\"data\":1}\x0c",
            Some(InvalidEvent),
            Some(InvalidEvent),
        ),
        (
            "reserved",
            b"{\"type\":\"error\",\"data\":1}\x0c",
            None,
            Some(ReservedEvent),
        ),
        (
            "prototype",
            b"{\"type\":\"toString\",\"data\":1}\x0c",
            None,
            Some(InvalidEvent),
        ),
        (
            "empty frames",
            b"\x0c\x0c",
            Some(InvalidJson),
            Some(InvalidJson),
        ),
        (
            "empty type",
            b"{\"type\":\"\",\"data\":1}\x0c",
            None,
            Some(InvalidEvent),
        ),
    ];
    for (name, input, fast, guarded) in cases {
        for (profile, codec, want) in [
            ("fast", CodecConfig::fast(), fast),
            ("guarded", CodecConfig::guarded(), guarded),
        ] {
            let (events, conns) = from_server(codec, input).await;
            let got = events.iter().find_map(code);
            assert_eq!(got, want, "{name} ({profile}): {events:?}");
            if want.is_some() {
                let names: Vec<_> = events
                    .iter()
                    .skip_while(|e| e.error().is_none())
                    .map(|e| e.name().to_string())
                    .collect();
                assert_eq!(
                    names,
                    ["error", "disconnect", "destroy"],
                    "{name} ({profile})"
                );
                assert_eq!(
                    conns, 1,
                    "{name} ({profile}): no reconnect after a violation"
                );
            } else {
                assert!(
                    matches!(events.last(), Some(ClientEvent::Message(m)) if m.event() == "marker")
                );
            }
        }
    }
}

/// A server streaming a 1 GiB frame without a delimiter: a guarded client
/// rejects it at `maxMessageSize` (1 MiB) without buffering it, and the
/// server is cut off long before 1 GiB.
#[tokio::test]
async fn one_gib_frame_from_server_rejected_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "big.sock");
    let codec = CodecConfig::guarded();
    let limit = codec.max_message_size;
    let client = Client::new(ep, config(codec, MaxRetries::Unlimited)).unwrap();
    let mut cev = client.events();
    client.start();
    let mut srv = accept(&l).await;
    let writer = tokio::spawn(async move {
        let mut chunk = vec![b'a'; 256 * 1024];
        chunk[..20].copy_from_slice(br#"{"type":"x","data":""#);
        let mut sent = 0usize;
        while sent < 1 << 30 {
            if srv.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            chunk[..20].fill(b'a');
        }
        sent
    });
    let (ev, _) = wait_client(&mut cev, "error", |e| e.error().is_some()).await;
    assert_eq!(code(&ev), Some(ErrorCode::FrameTooLarge), "{ev:?}");
    wait_client(&mut cev, "destroy", |e| matches!(e, ClientEvent::Destroy)).await;
    let sent = timeout(T, writer).await.unwrap().unwrap();
    assert!(sent < 64 * limit, "{sent} bytes written before the cut");
    client.destroy().await.ok();
}

/// A server that starts a frame and stalls: a guarded client drops it after
/// `messageTimeout` with `ERR_IPC_MESSAGE_TIMEOUT`.
#[tokio::test]
async fn slowloris_server_partial_frame_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "slow.sock");
    let codec = CodecConfig::guarded().with_message_timeout(Some(Duration::from_millis(200)));
    let client = Client::new(ep, config(codec, MaxRetries::Unlimited)).unwrap();
    let mut cev = client.events();
    let messages = Arc::new(AtomicUsize::new(0));
    {
        let messages = messages.clone();
        client.on("x", move |_| {
            messages.fetch_add(1, Ordering::SeqCst);
        });
    }
    client.start();
    let mut srv = accept(&l).await;
    srv.write_all(br#"{"type":"x","data":"never finished"#)
        .await
        .unwrap();
    let (ev, _) = wait_client(&mut cev, "timeout", |e| e.error().is_some()).await;
    assert_eq!(code(&ev), Some(ErrorCode::MessageTimeout), "{ev:?}");
    wait_client(&mut cev, "destroy", |e| matches!(e, ClientEvent::Destroy)).await;
    let mut buf = [0u8; 16];
    assert!(matches!(
        timeout(T, srv.read(&mut buf)).await.unwrap(),
        Ok(0) | Err(_)
    ));
    assert_eq!(messages.load(Ordering::SeqCst), 0);
}

/// Reads frames from a raw server-side stream until `n` messages arrived;
/// returns their (event, data) pairs in order.
async fn read_messages(srv: &mut UnixStream, n: usize) -> Vec<(String, serde_json::Value)> {
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(Inbound::Message(m)) =
            dec.decode(&mut buf, std::time::Instant::now()).unwrap()
        {
            out.push((m.event().to_owned(), m.data_value()));
        }
        if out.len() >= n {
            break;
        }
        let got = timeout(T, srv.read_buf(&mut buf)).await.unwrap().unwrap();
        assert!(
            got > 0,
            "connection closed after {} of {n} messages",
            out.len()
        );
    }
    out
}

/// A server that accepts and never writes (a hung or vanished peer behind a
/// connection that looks open): with `idle_timeout` the client reports
/// `ClientError::Idle` (`ERR_IPC_MESSAGE_TIMEOUT`, naming the endpoint),
/// closes the connection, reconnects (a second accept happens), and the
/// messages emitted in between are delivered on the new connection, in
/// order.
#[tokio::test]
async fn silent_server_idle_timeout_reconnects_and_keeps_messages() {
    const IDLE: Duration = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "silent.sock");
    let name = ep.to_string();
    let client = idle_client(ep, IDLE);
    let mut cev = client.events();
    client.start();
    let mut first = accept(&l).await;
    client.connected().await.unwrap();
    let connected_at = tokio::time::Instant::now();
    client.emit("before", &0).await.unwrap();
    // The silent peer reads (it just never answers).
    assert_eq!(read_messages(&mut first, 1).await[0].0, "before");
    let (ev, seen) = wait_client(&mut cev, "the idle error", |e| {
        matches!(e.error(), Some(ClientError::Idle { .. }))
    })
    .await;
    assert!(
        connected_at.elapsed() >= IDLE,
        "idle reported after {:?}",
        connected_at.elapsed()
    );
    assert!(
        !seen.iter().any(|e| e.error().is_some()),
        "no other error first: {seen:?}"
    );
    let err = ev.error().unwrap();
    assert_eq!(err.code(), Some(ErrorCode::MessageTimeout));
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&name), "{err}");
    let Some(ClientError::Idle { endpoint, after }) = ev.error() else {
        unreachable!()
    };
    assert_eq!((endpoint.as_str(), *after), (name.as_str(), IDLE));
    // The client closed the idle connection.
    let mut rest = Vec::new();
    let n = timeout(T, first.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "nothing more on the idle connection");
    // Messages emitted now (disconnected or already reconnecting) are kept
    // and written on the next connection.
    for i in 0..5 {
        client.emit("between", &i).await.unwrap();
    }
    let mut second = accept(&l).await;
    let got = read_messages(&mut second, 5).await;
    let want: Vec<_> = (0..5)
        .map(|i| ("between".to_owned(), serde_json::json!(i)))
        .collect();
    assert_eq!(got, want);
    wait_client(&mut cev, "the reconnect", |e| {
        matches!(e, ClientEvent::Connect)
    })
    .await;
    // Still silent: the second connection times out the same way.
    wait_client(&mut cev, "the second idle error", |e| {
        matches!(e.error(), Some(ClientError::Idle { .. }))
    })
    .await;
    let _third = accept(&l).await;
    assert!(
        client.destroy().await.is_ok(),
        "nothing was left undelivered"
    );
}

/// A server that keeps talking (one message per 100 ms, for three times
/// the idle timeout) is never reported idle: every received message moves
/// the deadline.
#[tokio::test]
async fn talking_server_is_not_idle() {
    const IDLE: Duration = Duration::from_millis(300);
    let dir = tempfile::tempdir().unwrap();
    let (l, ep) = listener(&dir, "talker.sock");
    let client = idle_client(ep, IDLE);
    let mut cev = client.events();
    client.start();
    let mut srv = accept(&l).await;
    let talker = tokio::spawn(async move {
        for i in 0..10 {
            let frame = format!("{{\"type\":\"tick\",\"data\":{i}}}\x0c");
            srv.write_all(frame.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        srv
    });
    let (_, seen) = wait_client(
        &mut cev,
        "the last tick",
        |e| matches!(e, ClientEvent::Message(m) if m.event() == "tick" && m.data_value() == 9),
    )
    .await;
    assert!(
        !seen.iter().any(|e| e.error().is_some()),
        "no error while the server talks: {seen:?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, ClientEvent::Connect))
            .count(),
        1,
        "one connection only"
    );
    let _srv = talker.await.unwrap();
    client.destroy().await.ok();
}
