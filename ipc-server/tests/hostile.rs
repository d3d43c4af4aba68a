//! Hostile peers against a real server, one test per attack: each asserts
//! that a well-behaved client is still served, that memory stays under the
//! documented bound (SECURITY.md), that the expected typed error appears,
//! and that `stop` completes.
//!
//! The tests run one at a time (they share [`SERIAL`]): two of them measure
//! this process's resident memory. Every wait is bounded by [`T`], a
//! liveness bound, never a speed assertion.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_client::{Client, ClientConfig, MaxRetries, RetryConfig};
use ipc_proto::ErrorCode;
use ipc_server::{Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const T: Duration = Duration::from_secs(30);

/// One test at a time: memory is measured per process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn endpoint(dir: &tempfile::TempDir) -> (Endpoint, std::path::PathBuf) {
    let path = dir.path().join("hostile.sock");
    (Endpoint::Unix(path.clone()), path)
}

/// The error events a server raised: code and text (with the peer).
type Errors = Arc<std::sync::Mutex<Vec<(Option<ErrorCode>, String)>>>;

/// Collects the server's error events from a handler.
fn record_errors(server: &Server) -> Errors {
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let e = errors.clone();
    server.on("error", move |ev| {
        if let Some(err) = ev.error() {
            let text = match ev.peer() {
                Some(p) => format!("{p}: {err}"),
                None => err.to_string(),
            };
            e.lock().unwrap().push((err.code(), text));
        }
    });
    errors
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    timeout(T, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Reads one frame (up to the form feed) from `s`.
async fn read_frame(s: &mut UnixStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(_) if b[0] == 0x0c => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(_) => out.push(b[0]),
        }
    }
}

/// A well-behaved client: one echo round trip on a fresh connection.
async fn good_round_trip(path: &std::path::Path, n: u64) {
    let mut s = timeout(T, UnixStream::connect(path))
        .await
        .expect("good client: connect timed out")
        .expect("good client: connect failed");
    s.write_all(format!("{{\"type\":\"echo\",\"data\":{n}}}\x0c").as_bytes())
        .await
        .unwrap();
    let frame = timeout(T, read_frame(&mut s))
        .await
        .expect("good client: not served")
        .expect("good client: connection closed");
    assert_eq!(frame, format!("{{\"type\":\"echo\",\"data\":{n}}}"));
}

/// Echoes every `echo` message from its handler, without waiting.
fn echo_in_handler(server: &Server) {
    server.on_message("echo", |m, from| {
        if let Some(s) = from.socket() {
            let _ = s.try_emit("echo", &m.data_value());
        }
    });
}

/// The application of `nipc serve --echo` as it was first written: one
/// task takes every event from the stream and echoes each message with an
/// `emit` that waits for room in the sender's queue.
fn waiting_echo(server: &Server) -> tokio::task::JoinHandle<()> {
    let mut events = server.events();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if let ServerEvent::Message { from, message } = &ev {
                if let Some(s) = from.socket() {
                    // Fails once the peer is gone; the loop goes on.
                    let _ = s.emit(message.event(), &message.data_value()).await;
                }
            }
        }
    })
}

/// This process's resident set size in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples the resident set size until dropped; `peak()` is the largest.
struct RssSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let peak = Arc::new(AtomicU64::new(rss_kib()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        RssSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `frame` to `s` until `total` bytes are written or a write makes
/// no progress for `stall` (the server stopped reading); returns the bytes
/// written.
async fn flood(s: &mut UnixStream, frame: &[u8], total: usize, stall: Duration) -> usize {
    let mut sent = 0;
    while sent < total {
        match timeout(stall, s.write_all(frame)).await {
            Ok(Ok(())) => sent += frame.len(),
            _ => break,
        }
    }
    sent
}

/// Attack 1: a client sends more than its queue can take back, never
/// reads, then disconnects, while the application echoes with a waiting
/// `emit`. Before, this deadlocked the whole server for good. Now the
/// failed writer closes that socket's queue (the echo's `emit` fails at
/// once), the peer's reader stops at its budget instead of blocking a
/// shared stream, and the good client is served again.
#[tokio::test]
async fn silent_peer_that_leaves_does_not_deadlock_the_server() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(ep, ServerConfig::default()).unwrap();
    let echo = waiting_echo(&server);
    server.start().await.unwrap();
    good_round_trip(&path, 1).await;

    let mut attacker = UnixStream::connect(&path).await.unwrap();
    let frame = format!(
        "{{\"type\":\"echo\",\"data\":\"{}\"}}\x0c",
        "x".repeat(1000)
    );
    let sent = flood(
        &mut attacker,
        frame.as_bytes(),
        64 << 20,
        Duration::from_secs(2),
    )
    .await;
    // More than its 8 MiB queue can hold: the echo is now waiting on it.
    assert!(sent > 9_000_000, "only {sent} bytes went out");
    drop(attacker);

    good_round_trip(&path, 2).await;
    timeout(T, server.stop()).await.expect("stop hung");
    assert!(!path.exists(), "the socket file is removed on stop");
    echo.abort();
}

/// Attack 2: a peer floods 1 MiB messages at a server whose application
/// takes one event every 20 ms. What the peer has waiting is bounded by
/// its budget (4 MiB by default), so memory stays flat — before, the
/// stream took 1,024 events of any size (about 1 GiB). A good client is
/// served meanwhile.
#[tokio::test]
async fn inbound_memory_is_bounded_per_peer() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(ep, ServerConfig::default()).unwrap();
    let mut events = server.events();
    let consumed = Arc::new(AtomicUsize::new(0));
    let slow = {
        let consumed = consumed.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let ServerEvent::Message { from, message } = &ev {
                    if message.event() == "echo" {
                        if let Some(s) = from.socket() {
                            let _ = s.try_emit("echo", &message.data_value());
                        }
                    } else {
                        consumed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
    };
    server.start().await.unwrap();

    let frame = {
        let mut f = b"{\"type\":\"bulk\",\"data\":\"".to_vec();
        f.resize(f.len() + (1 << 20), b'x');
        f.extend_from_slice(b"\"}\x0c");
        f
    };
    let baseline = rss_kib();
    let sampler = RssSampler::start();
    let mut attacker = UnixStream::connect(&path).await.unwrap();
    let started = Instant::now();
    let flooding = tokio::spawn(async move {
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(3) {
            sent += flood(&mut attacker, &frame, frame.len(), Duration::from_secs(1)).await;
        }
        (sent, attacker)
    });
    good_round_trip(&path, 3).await;
    let (sent, attacker) = flooding.await.unwrap();
    let grown_mib = sampler.peak().saturating_sub(baseline) / 1024;
    drop(sampler);
    eprintln!(
        "peak RSS grew by {grown_mib} MiB while a peer sent {} MiB",
        sent >> 20
    );
    // Budget (4 MiB) + the frame being read (1 MiB) + read buffer, twice
    // over for the allocator: far below what the flood sent.
    assert!(
        grown_mib < 32,
        "peak RSS grew by {grown_mib} MiB while a peer sent {} MiB",
        sent >> 20
    );
    assert!(consumed.load(Ordering::SeqCst) > 0);
    drop(attacker);
    timeout(T, server.stop()).await.expect("stop hung");
    slow.abort();
}

/// Attack 3: a malformed `ipcx.hello` (`"v":"x"`, or `data:null`) is
/// refused at once: `ipcx.end` without reconnect, the connection closed, an
/// `ERR_IPC_INVALID_MESSAGE` error naming the peer. Before, the connection
/// stayed open and silently discarded everything after it.
#[tokio::test]
async fn malformed_hello_is_refused_at_once() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(ep, ServerConfig::default()).unwrap();
    let errors = record_errors(&server);
    echo_in_handler(&server);
    server.start().await.unwrap();
    for hello in [
        r#"{"type":"ipcx.hello","data":{"v":"x"}}"#,
        r#"{"type":"ipcx.hello","data":null}"#,
    ] {
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(
            format!("{hello}\x0c{{\"type\":\"ipcx.ping\",\"data\":{{\"n\":\"p1\"}}}}\x0c")
                .as_bytes(),
        )
        .await
        .unwrap();
        let end = timeout(T, read_frame(&mut s)).await.unwrap().unwrap();
        assert!(end.starts_with(r#"{"type":"ipcx.end""#), "{end}");
        assert!(end.contains(r#""reconnect":false"#), "{end}");
        // Nothing after the refusal is answered: the next thing is EOF.
        assert_eq!(timeout(T, read_frame(&mut s)).await.unwrap(), None);
    }
    wait_until("both refusals are reported", || {
        errors.lock().unwrap().len() >= 2
    })
    .await;
    for (code, text) in errors.lock().unwrap().iter() {
        assert_eq!(*code, Some(ErrorCode::InvalidMessage), "{text}");
        assert!(text.contains("ipcx.hello"), "{text}");
        assert!(text.contains("pid"), "the Unix peer is named: {text}");
    }
    good_round_trip(&path, 4).await;
    timeout(T, server.stop()).await.expect("stop hung");
}

/// Answers that cannot be queued (the requester never reads, its queue is
/// small) are reported with their count and `ERR_IPC_BACKPRESSURE`; every
/// request is either answered on the wire or counted.
#[tokio::test]
async fn unqueued_answers_are_reported_with_their_count() {
    let _serial = SERIAL.lock().await;
    const N: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(
        ep,
        ServerConfig {
            queue_bytes: 4096,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let unsent = Arc::new(AtomicU64::new(0));
    {
        let unsent = unsent.clone();
        server.on("error", move |ev| {
            if let Some(ServerError::AnswersUnsent { count, peer }) = ev.error() {
                assert!(peer.contains("pid"), "{peer}");
                assert_eq!(
                    ev.error().and_then(ServerError::code),
                    Some(ErrorCode::Backpressure)
                );
                unsent.fetch_add(*count, Ordering::SeqCst);
            }
        });
    }
    server.on_request(|req| {
        req.respond(&"x".repeat(200)).ok();
        Ok(ipc_server::Flow::Stop)
    });
    server.start().await.unwrap();
    let mut s = UnixStream::connect(&path).await.unwrap();
    let mut burst = String::new();
    for i in 0..N {
        burst.push_str(&format!(
            "{{\"type\":\"ipcx.request\",\"data\":{{\"n\":\"r{i}\",\"d\":1}}}}\x0c"
        ));
    }
    s.write_all(burst.as_bytes()).await.unwrap();
    wait_until("some answers are reported unsent", || {
        unsent.load(Ordering::SeqCst) > 0
    })
    .await;
    // Read what was queued, then close: every request is accounted for.
    let mut answered = 0u64;
    while let Ok(Some(f)) = timeout(Duration::from_millis(500), read_frame(&mut s)).await {
        assert!(f.starts_with(r#"{"type":"ipcx.response""#), "{f}");
        answered += 1;
    }
    drop(s);
    wait_until("every request is answered or counted", || {
        answered + unsent.load(Ordering::SeqCst) == N
    })
    .await;
    timeout(T, server.stop()).await.expect("stop hung");
}

/// Malformed extension frames: answered with `ERR_IPC_INVALID_MESSAGE`
/// where the call id can be read, otherwise reported as an error event.
#[tokio::test]
async fn malformed_extension_frames_are_answered_or_reported() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(ep, ServerConfig::default()).unwrap();
    let errors = record_errors(&server);
    server.start().await.unwrap();
    let mut s = UnixStream::connect(&path).await.unwrap();
    s.write_all(
        concat!(
            r#"{"type":"ipcx.sub","data":{"n":"s1","topics":"not-a-list"}}"#,
            "\x0c",
            r#"{"type":"ipcx.pub","data":{"n":"p1"}}"#,
            "\x0c",
            r#"{"type":"ipcx.request","data":"no id here"}"#,
            "\x0c",
            r#"{"type":"ipcx.sub","data":{"n":7}}"#,
            "\x0c",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for n in ["s1", "p1"] {
        let f = timeout(T, read_frame(&mut s)).await.unwrap().unwrap();
        assert!(f.contains(&format!(r#""n":"{n}""#)), "{f}");
        assert!(f.contains("ERR_IPC_INVALID_MESSAGE"), "{f}");
    }
    wait_until("the two anonymous frames are reported", || {
        errors.lock().unwrap().len() >= 2
    })
    .await;
    for (code, text) in errors.lock().unwrap().iter() {
        assert_eq!(*code, Some(ErrorCode::InvalidMessage), "{text}");
    }
    // The connection is still served.
    s.write_all(b"{\"type\":\"ipcx.ping\",\"data\":{\"n\":\"k\"}}\x0c")
        .await
        .unwrap();
    let pong = timeout(T, read_frame(&mut s)).await.unwrap().unwrap();
    assert!(pong.starts_with(r#"{"type":"ipcx.pong""#), "{pong}");
    drop(s);
    timeout(T, server.stop()).await.expect("stop hung");
}

/// Idle and slowloris connections cannot lock new clients out when
/// `idle_timeout` is set: the squatters are cut off and their places given
/// back at once; refusals meanwhile carry `ERR_IPC_MAX_CONNECTIONS`.
#[tokio::test]
async fn squatters_are_cut_off_and_their_places_given_back() {
    let _serial = SERIAL.lock().await;
    const MAX: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(
        ep,
        ServerConfig {
            max_connections: MAX,
            idle_timeout: Some(Duration::from_millis(300)),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let errors = record_errors(&server);
    echo_in_handler(&server);
    server.start().await.unwrap();
    let mut squatters = Vec::new();
    for i in 0..MAX {
        let mut s = UnixStream::connect(&path).await.unwrap();
        if i % 2 == 0 {
            // Slowloris: half a frame, never finished.
            s.write_all(b"{\"type\":\"echo\",\"da").await.unwrap();
        }
        squatters.push(s);
    }
    wait_until("every squatter is admitted", || server.connections() == MAX).await;
    // One more is refused, with a code.
    let mut extra = UnixStream::connect(&path).await.unwrap();
    assert_eq!(timeout(T, read_frame(&mut extra)).await.unwrap(), None);
    wait_until("the refusal is reported", || {
        errors
            .lock()
            .unwrap()
            .iter()
            .any(|(c, _)| *c == Some(ErrorCode::MaxConnections))
    })
    .await;
    // The squatters are cut off; a good client gets in.
    wait_until("the squatters are cut off", || server.connections() == 0).await;
    good_round_trip(&path, 5).await;
    drop(squatters);
    timeout(T, server.stop()).await.expect("stop hung");
}

/// A burst of connects and closes never refuses the next client: a
/// connection's place is given back as soon as its transport is gone.
#[tokio::test]
async fn close_bursts_do_not_refuse_the_next_client() {
    let _serial = SERIAL.lock().await;
    const MAX: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (ep, path) = endpoint(&dir);
    let server = Server::new(
        ep,
        ServerConfig {
            max_connections: MAX,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let errors = record_errors(&server);
    echo_in_handler(&server);
    server.start().await.unwrap();
    for round in 0..20u64 {
        let mut burst = Vec::new();
        for _ in 0..MAX {
            burst.push(UnixStream::connect(&path).await.unwrap());
        }
        wait_until("the burst is admitted", || server.connections() == MAX).await;
        drop(burst);
        wait_until("the burst is gone", || server.connections() == 0).await;
        good_round_trip(&path, round).await;
    }
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    timeout(T, server.stop()).await.expect("stop hung");
}

/// A client destroyed by its retry policy refuses `emit` with an error
/// instead of accepting a message nobody will write.
#[tokio::test]
async fn emit_on_a_destroyed_client_is_an_error() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, _path) = endpoint(&dir);
    for _ in 0..8 {
        let client = Client::new(
            ep.clone(),
            ClientConfig {
                retry: RetryConfig {
                    retry: Duration::from_millis(1),
                    max_retries: MaxRetries::Limited(0),
                    ..RetryConfig::default()
                },
                ..ClientConfig::default()
            },
        )
        .unwrap();
        client.start();
        assert!(timeout(T, client.connected()).await.unwrap().is_err());
        let e = client.emit("lost", &1).await;
        assert!(e.is_err(), "emit after destroy returned {e:?}");
    }
}
