//! Faults, floods and hostile input against a real server (DESIGN.md's
//! guarantees, `docs/protocol.md` §6): processes killed mid-stream, slowloris partial
//! frames, a 1 GiB frame, malformed and hostile frames per profile (§1.4,
//! §3.4, §7.3), connection floods past `maxConnections`, a reader that never
//! reads, a UDP fragment spray, 10,000 concurrent connections, and the
//! authorization hook.
//!
//! Tests that kill processes or measure memory run in a child process: the
//! test binary re-executes itself with `IPC_FAULTS_ROLE` set, selecting
//! [`child_entry`] (a no-op in a normal run). Every child is stopped through
//! its own `Child` handle. No test sleeps hoping something happened: each
//! waits for an event or a condition, bounded by [`T`].

// Raw Unix sockets, rlimits and file modes throughout; the pipe
// counterparts of what applies on Windows are in pipe.rs.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_proto::{CodecConfig, ErrorCode};
use ipc_server::{Authorizer, Server, ServerConfig, ServerError, ServerEvent};
use ipc_transport::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const T: Duration = Duration::from_secs(30);

const ROLE: &str = "IPC_FAULTS_ROLE";
const ARG: &str = "IPC_FAULTS_ARG";

// ---------------------------------------------------------------- helpers

fn unix_ep(dir: &tempfile::TempDir, name: &str) -> Endpoint {
    Endpoint::Unix(dir.path().join(name))
}

fn sock_path(ep: &Endpoint) -> PathBuf {
    match ep {
        Endpoint::Unix(p) => p.clone(),
        other => panic!("not a unix endpoint: {other}"),
    }
}

fn quick_retry() -> RetryConfig {
    RetryConfig {
        retry: Duration::from_millis(20),
        max_retries: MaxRetries::Unlimited,
        ..RetryConfig::default()
    }
}

fn code_of(ev: &ServerEvent) -> Option<ErrorCode> {
    ev.error().and_then(ServerError::code)
}

/// Waits for the first event matching `pred`; returns it and every event
/// seen before it.
async fn wait_for(
    events: &mut ipc_server::EventStream<ServerEvent>,
    what: &str,
    pred: impl Fn(&ServerEvent) -> bool,
) -> (ServerEvent, Vec<ServerEvent>) {
    let mut seen = Vec::new();
    loop {
        let ev = timeout(T, events.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:?}"))
            .expect("server event stream ended");
        if pred(&ev) {
            return (ev, seen);
        }
        seen.push(ev);
    }
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

/// Polls a condition (every 5 ms) until it holds, failing after [`T`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    timeout(T, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Reads until EOF or error; true when the peer closed the connection.
async fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut buf = vec![0u8; 4096];
    timeout(T, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// The resident set size of this process, in KiB (`VmRSS`, or `VmHWM` for
/// the peak).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// A child process running [`child_entry`] in `role`; stdout lines that
/// start with `@@` are forwarded on a channel.
struct ChildProc {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// How long to wait for a line.
    limit: Duration,
}

impl ChildProc {
    fn spawn(role: &str, arg: &str) -> ChildProc {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(ARG, arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // libtest may have printed `test child_entry ... ` first.
                if let Some((_, l)) = line.split_once("@@") {
                    if tx.send(l.to_string()).is_err() {
                        break;
                    }
                }
            }
        });
        ChildProc {
            child,
            lines,
            limit: T,
        }
    }

    /// The next `@@` line, within `limit` (`None` once the child's stdout ended).
    async fn next_line(&mut self) -> Option<String> {
        let limit = self.limit;
        timeout(limit, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("child produced no line within {limit:?}"))
    }

    async fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let l = self.next_line().await.expect("child ended early");
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    /// Sends one line to the child's stdin.
    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the test `name` alone in a child process (for memory figures that
/// other tests running in parallel would disturb) and returns its `@@`
/// lines; the child must exit successfully.
fn run_isolated(name: &str) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ROLE, "isolated")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.split_once("@@").map(|(_, r)| r.to_string()))
            .collect::<Vec<_>>()
    });
    // Bounded: poll the child for at most 20 × T.
    let deadline = std::time::Instant::now() + 20 * T;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isolated test {name} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lines = reader.join().unwrap();
    for l in lines.iter().filter(|l| *l != "ok") {
        eprintln!("  [{name}] {l}");
    }
    assert!(status.success(), "isolated test {name} failed: {status}");
    assert!(
        lines.iter().any(|l| l == "ok"),
        "isolated test {name} did not run its body: {lines:?}"
    );
    lines
}

fn is_isolated() -> bool {
    std::env::var(ROLE).as_deref() == Ok("isolated")
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@{line}").unwrap();
    out.flush().unwrap();
}

// ------------------------------------------------------- child processes

/// The child side of the process tests; does nothing in a normal run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let arg = std::env::var(ARG).unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    match role.as_str() {
        // A server on `arg` that reports every `seq` message it receives.
        "serve" => rt.block_on(async {
            let server = Server::new(Endpoint::Unix(arg.into()), ServerConfig::default()).unwrap();
            server.on_message("seq", |m, _| {
                let n: u64 = m.data().unwrap();
                report(&format!("RECV {n}"));
            });
            server.start().await.unwrap();
            report("READY");
            std::future::pending::<()>().await;
        }),
        // A client of `arg` that says hello and then keeps emitting.
        "client" => rt.block_on(async {
            let client = Client::new(
                Endpoint::Unix(arg.into()),
                ClientConfig {
                    retry: quick_retry(),
                    ..ClientConfig::default()
                },
            )
            .unwrap();
            client.start();
            client.connected().await.unwrap();
            client.emit("hello", &std::process::id()).await.unwrap();
            report("HELLO");
            let mut n = 0u64;
            loop {
                client.emit("tick", &n).await.unwrap();
                n += 1;
                if n % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }),
        // Opens `ARG` = "<path> <n>" connections and holds them; on the
        // line `READ <frame length>` from stdin reads one frame from every
        // 97th connection and reports it; exits when stdin closes.
        "hold" => {
            let (path, n) = arg.split_once(' ').unwrap();
            let n: usize = n.parse().unwrap();
            let mut conns = Vec::with_capacity(n);
            for _ in 0..n {
                // A blocking connect waits while the listen backlog is full.
                conns.push(std::os::unix::net::UnixStream::connect(path).unwrap());
            }
            report(&format!("HELD {n}"));
            let mut lines = std::io::stdin().lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(len) = line.strip_prefix("READ ") {
                    let len: usize = len.parse().unwrap();
                    let mut first = None;
                    for c in conns.iter_mut().step_by(97) {
                        use std::io::Read;
                        c.set_read_timeout(Some(T)).unwrap();
                        let mut buf = vec![0u8; len];
                        c.read_exact(&mut buf).unwrap();
                        match &first {
                            None => first = Some(buf),
                            Some(f) => assert_eq!(f, &buf),
                        }
                    }
                    report(&format!(
                        "FRAME {}",
                        String::from_utf8_lossy(&first.unwrap_or_default())
                    ));
                }
            }
        }
        // `run_isolated` children run their own test body instead.
        _ => {}
    }
}

// ------------------------------------------------------------- processes

/// A server process is SIGKILLed while a client streams numbered messages;
/// a new server process takes over the socket path and the client
/// reconnects per its retry policy.
///
/// node-ipc has no acknowledgements, so frames already written into the
/// dead server's socket buffers (or read but not yet handled by it) are lost
/// with it. What is guaranteed, and asserted:
/// * no duplicates and order preserved across both servers;
/// * the only missing messages form one contiguous run between the last
///   message the first server handled and the first one the second handled,
///   i.e. exactly the ones the client had handed to the kernel before the
///   kill (bounded by the socket buffers, asserted < 4 MiB);
/// * everything the client still held (queued, or partially written) is
///   delivered after the reconnect: every later message arrives, and the
///   graceful `disconnect` reports nothing undelivered.
#[tokio::test]
async fn server_killed_mid_stream_client_reconnects_no_duplicates_no_silent_drops() {
    const TOTAL: u64 = 20_000;
    const KILL_AFTER: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "killed.sock");
    let path = sock_path(&ep).to_string_lossy().into_owned();

    let mut first = ChildProc::spawn("serve", &path);
    assert_eq!(first.expect_line("READY").await, "");

    let client = Client::new(
        ep.clone(),
        ClientConfig {
            retry: quick_retry(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let mut cev = client.events();
    client.start();
    client.connected().await.unwrap();

    let emitter = {
        let client = client.clone();
        tokio::spawn(async move {
            for n in 0..TOTAL {
                client.emit("seq", &n).await.unwrap();
                if n % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    // Let the first server handle some, then kill it mid-stream.
    let mut got_first = Vec::new();
    while got_first.last().copied().unwrap_or(0) < KILL_AFTER {
        let l = first.next_line().await.expect("first server ended");
        if let Some(n) = l.strip_prefix("RECV ") {
            got_first.push(n.parse::<u64>().unwrap());
        }
    }
    first.kill();
    // Whatever it printed before dying still counts: read to the end of
    // its output.
    while let Some(l) = first.next_line().await {
        if let Some(n) = l.strip_prefix("RECV ") {
            got_first.push(n.parse::<u64>().unwrap());
        }
    }
    let (_, before) = wait_client(&mut cev, "disconnect", |e| {
        matches!(e, ClientEvent::Disconnect)
    })
    .await;
    assert!(
        !before.iter().any(|e| matches!(e, ClientEvent::Destroy)),
        "{before:?}"
    );

    // A new server process on the same path (the stale socket file is
    // reclaimed: nothing answers on it any more).
    let mut second = ChildProc::spawn("serve", &path);
    assert_eq!(second.expect_line("READY").await, "");
    wait_client(&mut cev, "reconnect", |e| matches!(e, ClientEvent::Connect)).await;
    timeout(T, emitter).await.unwrap().unwrap();
    // Graceful: everything still queued is written before it returns.
    client.disconnect().await.unwrap();

    let mut got_second = Vec::new();
    while got_second.last().copied() != Some(TOTAL - 1) {
        let l = second.next_line().await.expect("second server ended");
        if let Some(n) = l.strip_prefix("RECV ") {
            got_second.push(n.parse::<u64>().unwrap());
        }
    }
    second.kill();

    let all: Vec<u64> = got_first.iter().chain(&got_second).copied().collect();
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "duplicates or reordering across the restart"
    );
    // The first server saw a prefix, the second a suffix: one gap at most.
    assert_eq!(got_first[0], 0);
    assert!(got_first.windows(2).all(|w| w[1] == w[0] + 1));
    assert!(got_second.windows(2).all(|w| w[1] == w[0] + 1));
    let last_first = *got_first.last().unwrap();
    let first_second = got_second[0];
    let lost = first_second - last_first - 1;
    let frame_len = br#"{"type":"seq","data":10000}"#.len() as u64 + 1;
    assert!(
        lost * frame_len < 4 * 1024 * 1024,
        "{lost} messages lost: more than the socket buffers can hold"
    );
    println!(
        "server kill: first server handled 0..={last_first}, second {first_second}..={}, \
         {lost} frames lost in the killed server's buffers",
        TOTAL - 1
    );
}

/// A client process is SIGKILLed: the server emits `socket.disconnected`
/// and `close` for it, frees it (`connections()` back to 0), and emits to
/// the dead socket fail instead of queueing forever.
#[tokio::test]
async fn client_killed_server_frees_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "client-killed.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();

    let mut child = ChildProc::spawn("client", &sock_path(&ep).to_string_lossy());
    let (ev, _) = wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;
    let ServerEvent::Connect(socket) = ev else {
        unreachable!()
    };
    let (hello, _) = wait_for(&mut sev, "hello", |e| {
        e.message().is_some_and(|m| m.event() == "hello")
    })
    .await;
    let pid: u32 = hello.message().unwrap().data().unwrap();
    assert_eq!(pid, child.child.id());
    assert_eq!(socket.peer().cred.and_then(|c| c.pid), Some(pid as i32));
    wait_for(&mut sev, "ticks", |e| {
        e.message().is_some_and(|m| m.event() == "tick")
    })
    .await;
    assert_eq!(server.connections(), 1);

    child.kill();
    let (ev, _) = wait_for(&mut sev, "socket.disconnected", |e| {
        matches!(e, ServerEvent::SocketDisconnected { .. })
    })
    .await;
    let ServerEvent::SocketDisconnected { socket: gone, .. } = ev else {
        unreachable!()
    };
    assert_eq!(gone, socket);
    wait_for(
        &mut sev,
        "close",
        |e| matches!(e, ServerEvent::Close(s) if *s == socket),
    )
    .await;
    assert_eq!(server.connections(), 0);
    assert!(server.sockets().is_empty());
    assert!(!socket.is_open());
    let err = socket.emit("late", &1).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotConnected), "{err}");
    server.stop().await;
}

// ------------------------------------------------------- hostile streams

/// Slowloris: a partial frame that never completes is dropped after the
/// guarded `messageTimeout`, the connection closed with
/// `ERR_IPC_MESSAGE_TIMEOUT`; a well-behaved client is unaffected.
#[tokio::test]
async fn slowloris_partial_frame_dropped_after_message_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "slow.sock");
    let config = ServerConfig {
        codec: CodecConfig::guarded().with_message_timeout(Some(Duration::from_millis(200))),
        ..ServerConfig::default()
    };
    let server = Server::new(ep.clone(), config).unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();

    let mut slow = UnixStream::connect(sock_path(&ep)).await.unwrap();
    wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;
    // One byte at a time, never the delimiter; the timer runs from the
    // first buffered byte, so trickling does not extend it.
    let trickle = tokio::spawn(async move {
        for b in br#"{"type":"x","data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"#
            .iter()
            .cycle()
        {
            if slow.write_all(&[*b]).await.is_err() {
                return closed_by_peer(&mut slow).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        unreachable!()
    });
    let (ev, seen) = wait_for(&mut sev, "timeout error", |e| e.error().is_some()).await;
    assert_eq!(code_of(&ev), Some(ErrorCode::MessageTimeout), "{ev:?}");
    assert!(ev.peer().is_some(), "the error names the peer");
    assert!(!seen.iter().any(|e| e.message().is_some()));
    wait_for(&mut sev, "socket.disconnected", |e| {
        matches!(e, ServerEvent::SocketDisconnected { .. })
    })
    .await;
    assert!(timeout(T, trickle).await.unwrap().unwrap());
    assert_eq!(server.connections(), 0);

    // Others are served normally.
    let client = Client::connect(ep, ClientConfig::default()).unwrap();
    client.connected().await.unwrap();
    client.emit("ok", &1).await.unwrap();
    wait_for(&mut sev, "ok", |e| {
        e.message().is_some_and(|m| m.event() == "ok")
    })
    .await;
    client.destroy().await.unwrap();
    server.stop().await;
}

/// Streams up to 1 GiB without a delimiter at a server of `codec` and
/// returns (bytes written before the server cut the connection, the error
/// event, peak RSS in KiB).
async fn one_gib_at(codec: CodecConfig) -> (u64, ServerEvent, u64) {
    const GIB: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "big.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            codec,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let mut s = UnixStream::connect(sock_path(&ep)).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut chunk = vec![b'a'; 256 * 1024];
        chunk[..20].copy_from_slice(br#"{"type":"x","data":""#);
        let mut sent = 0u64;
        while sent < GIB {
            match s.write_all(&chunk).await {
                Ok(()) => sent += chunk.len() as u64,
                Err(_) => break,
            }
            chunk[..20].fill(b'a');
        }
        sent
    });
    let (ev, seen) = wait_for(&mut sev, "error", |e| e.error().is_some()).await;
    assert!(!seen.iter().any(|e| e.message().is_some()));
    let sent = timeout(T, writer).await.unwrap().unwrap();
    wait_for(&mut sev, "socket.disconnected", |e| {
        matches!(e, ServerEvent::SocketDisconnected { .. })
    })
    .await;
    assert_eq!(server.connections(), 0);
    let peak = status_kib("VmHWM:");
    server.stop().await;
    (sent, ev, peak)
}

/// A 1 GiB frame is rejected at `maxMessageSize` (guarded, 1 MiB by
/// default) as soon as the buffered part exceeds it, without buffering it
/// whole: the writer is cut off long before 1 GiB and peak RSS stays far
/// below it. Runs isolated in a child process so the RSS figure is its own.
#[tokio::test]
async fn one_gib_frame_rejected_guarded() {
    if !is_isolated() {
        run_isolated("one_gib_frame_rejected_guarded");
        return;
    }
    let codec = CodecConfig::guarded();
    let limit = codec.max_message_size as u64;
    let (sent, ev, peak_kib) = one_gib_at(codec).await;
    assert_eq!(code_of(&ev), Some(ErrorCode::FrameTooLarge), "{ev:?}");
    assert!(ev.peer().is_some());
    assert!(sent < 64 * limit, "the writer got {sent} bytes in");
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
    report(&format!(
        "guarded: cut off after {sent} bytes written, peak RSS {peak_kib} KiB"
    ));
    report("ok");
}

/// The fast profile has no `maxMessageSize`, but still caps a partial frame
/// at `max_partial_bytes` (64 MiB by default): 1 GiB is never buffered.
#[tokio::test]
async fn one_gib_frame_rejected_fast_at_partial_cap() {
    if !is_isolated() {
        run_isolated("one_gib_frame_rejected_fast_at_partial_cap");
        return;
    }
    let codec = CodecConfig::fast();
    let cap = codec.max_partial_bytes as u64;
    let (sent, ev, peak_kib) = one_gib_at(codec).await;
    assert_eq!(code_of(&ev), Some(ErrorCode::FrameTooLarge), "{ev:?}");
    assert!(
        sent < 2 * cap + (16 << 20),
        "the writer got {sent} bytes in"
    );
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
    report(&format!(
        "fast: cut off after {sent} bytes written, peak RSS {peak_kib} KiB"
    ));
    report("ok");
}

/// What a server of `codec` does with `input` on a fresh connection: the
/// messages it dispatched (name, data) and the error code, if any, then
/// whether it closed the connection.
async fn feed(
    codec: CodecConfig,
    input: &[u8],
) -> (Vec<(String, String)>, Option<ErrorCode>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "d.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            codec,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let mut s = UnixStream::connect(sock_path(&ep)).await.unwrap();
    wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;
    s.write_all(input).await.unwrap();
    // A marker frame after the input: if the connection survives, the
    // marker arrives; if not, `socket.disconnected` does.
    let _ = s.write_all(b"{\"type\":\"marker\",\"data\":0}\x0c").await;
    let mut msgs = Vec::new();
    let mut code = None;
    let closed = loop {
        let ev = timeout(T, sev.recv()).await.unwrap().unwrap();
        match &ev {
            ServerEvent::Message { message, .. } if message.event() == "marker" => break false,
            ServerEvent::Message { message, .. } => {
                assert_eq!(ev.origin(), ipc_server::Origin::Remote);
                msgs.push((
                    message.event().to_string(),
                    message.data_value().to_string(),
                ))
            }
            ServerEvent::Error { .. } => code = code_of(&ev),
            ServerEvent::SocketDisconnected { .. } => break true,
            _ => {}
        }
    };
    if closed {
        assert!(closed_by_peer(&mut s).await);
    }
    // Closing our side first lets the graceful stop finish at once.
    drop(s);
    server.stop().await;
    (msgs, code, closed)
}

/// `docs/protocol.md` §7.3 decode vectors at the server, per profile: malformed JSON,
/// non-object frames, missing/non-string types, reserved and prototype
/// names. A violation closes only that connection, with a typed error.
#[tokio::test]
async fn hostile_frames_per_profile() {
    use ErrorCode::*;
    let fast = CodecConfig::fast;
    let guarded = CodecConfig::guarded;
    type Expect = (Vec<(&'static str, &'static str)>, Option<ErrorCode>);
    let cases: Vec<(&str, &[u8], Expect, Expect)> = vec![
        (
            "D3 no data",
            b"{\"type\":\"t\"}\x0c",
            (vec![("t", "null")], None),
            (vec![("t", "null")], None),
        ),
        (
            "D4 no type",
            b"{\"data\":1}\x0c",
            (vec![], Some(InvalidEvent)),
            (vec![], Some(InvalidEvent)),
        ),
        (
            "numeric type",
            b"{\"type\":5,\"data\":1}\x0c",
            (vec![], Some(InvalidEvent)),
            (vec![], Some(InvalidEvent)),
        ),
        (
            "D5 null",
            b"null\x0c",
            (vec![], Some(InvalidMessage)),
            (vec![], Some(InvalidMessage)),
        ),
        (
            "array root",
            b"[1]\x0c",
            (vec![], Some(InvalidMessage)),
            (vec![], Some(InvalidMessage)),
        ),
        (
            "number root",
            b"42\x0c",
            (vec![], Some(InvalidMessage)),
            (vec![], Some(InvalidMessage)),
        ),
        (
            "D6 not json",
            b"not-json\x0c",
            (vec![], Some(InvalidJson)),
            (vec![], Some(InvalidJson)),
        ),
        (
            "D7 empty frames",
            b"\x0c\x0c",
            (vec![], Some(InvalidJson)),
            (vec![], Some(InvalidJson)),
        ),
        (
            "empty type",
            b"{\"type\":\"\",\"data\":1}\x0c",
            (vec![("", "1")], None),
            (vec![], Some(InvalidEvent)),
        ),
        (
            "D8 reserved name",
            b"{\"type\":\"connect\",\"data\":{}}\x0c",
            (vec![("connect", "{}")], None),
            (vec![], Some(ReservedEvent)),
        ),
        (
            "reserved error",
            b"{\"type\":\"error\",\"data\":\"spoof\"}\x0c",
            (vec![("error", "\"spoof\"")], None),
            (vec![], Some(ReservedEvent)),
        ),
        (
            "D9 constructor",
            b"{\"type\":\"constructor\",\"data\":{}}\x0c",
            (vec![("constructor", "{}")], None),
            (vec![], Some(InvalidEvent)),
        ),
        (
            "__proto__",
            b"{\"type\":\"__proto__\",\"data\":1}\x0c",
            (vec![("__proto__", "1")], None),
            (vec![], Some(InvalidEvent)),
        ),
        (
            "D13 good then bad",
            b"{\"type\":\"a\",\"data\":1}\x0c{bad\x0c",
            (vec![("a", "1")], Some(InvalidJson)),
            (vec![("a", "1")], Some(InvalidJson)),
        ),
        (
            "D14 duplicate keys",
            b"{\"type\":\"t\",\"data\":1,\"data\":2}\x0c",
            (vec![("t", "2")], None),
            (vec![("t", "2")], None),
        ),
        (
            "deep nesting",
            &[
                b"{\"type\":\"t\",\"data\":".as_slice(),
                &[b'['; 300],
                &[b']'; 300],
                b"}\x0c",
            ]
            .concat()
            .leak()[..],
            (vec![], Some(InvalidJson)),
            (vec![], Some(InvalidJson)),
        ),
    ];
    for (name, input, want_fast, want_guarded) in cases {
        for (profile, codec, want) in [
            ("fast", fast(), want_fast.clone()),
            ("guarded", guarded(), want_guarded),
        ] {
            let (msgs, code, closed) = feed(codec, input).await;
            let msgs: Vec<(&str, &str)> =
                msgs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            assert_eq!(msgs, want.0, "{name} ({profile}): messages");
            assert_eq!(code, want.1, "{name} ({profile}): error");
            assert_eq!(closed, want.1.is_some(), "{name} ({profile}): closed");
        }
    }
}

/// 500 raw connections against `maxConnections = 100`: exactly the excess
/// is refused, each refusal reported in an `error` event naming the peer,
/// and the 100 admitted connections keep being served.
#[tokio::test]
async fn connection_flood_past_max_connections() {
    const MAX: usize = 100;
    const FLOOD: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "flood.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            max_connections: MAX,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let connects = Arc::new(AtomicUsize::new(0));
    {
        let refused = refused.clone();
        server.on("error", move |ev| {
            if let Some(ServerError::MaxConnections { peer, limit }) = ev.error() {
                assert_eq!(*limit, MAX);
                assert!(!peer.is_empty());
                refused.fetch_add(1, Ordering::SeqCst);
            }
        });
        let connects = connects.clone();
        server.on("connect", move |_| {
            connects.fetch_add(1, Ordering::SeqCst);
        });
    }
    let echoed = Arc::new(AtomicUsize::new(0));
    {
        let echoed = echoed.clone();
        server.on_message("ping", move |m, from| {
            let n: u64 = m.data().unwrap();
            from.socket().unwrap().try_emit("pong", &n).unwrap();
            echoed.fetch_add(1, Ordering::SeqCst);
        });
    }
    server.start().await.unwrap();
    let path = sock_path(&ep);

    let mut conns = Vec::new();
    for _ in 0..FLOOD {
        // The listen backlog may be momentarily full: retry that connect.
        let s = timeout(T, async {
            loop {
                match UnixStream::connect(&path).await {
                    Ok(s) => return s,
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        })
        .await
        .unwrap();
        conns.push(s);
    }
    wait_until("every connection is admitted or refused", || {
        connects.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst) == FLOOD
    })
    .await;
    assert_eq!(connects.load(Ordering::SeqCst), MAX);
    assert_eq!(refused.load(Ordering::SeqCst), FLOOD - MAX);
    assert_eq!(server.connections(), MAX);

    // Refused connections are closed; the admitted ones are served.
    let mut admitted = Vec::new();
    for mut s in conns {
        s.write_all(b"{\"type\":\"ping\",\"data\":7}\x0c")
            .await
            .ok();
        admitted.push(s);
    }
    wait_until("every admitted ping is answered", || {
        echoed.load(Ordering::SeqCst) == MAX
    })
    .await;
    let mut served = 0;
    let mut closed = 0;
    for s in &mut admitted {
        let mut buf = [0u8; 64];
        match timeout(T, s.read(&mut buf)).await.unwrap() {
            Ok(0) | Err(_) => closed += 1,
            Ok(n) => {
                assert_eq!(&buf[..n], b"{\"type\":\"pong\",\"data\":7}\x0c");
                served += 1;
            }
        }
    }
    assert_eq!((served, closed), (MAX, FLOOD - MAX));
    server.stop().await;
}

/// A peer that never reads: its queue fills up to `queue_bytes`, then a
/// broadcast disconnects it with `ERR_IPC_BACKPRESSURE`, while a reading
/// peer receives every broadcast.
#[tokio::test]
async fn reader_that_never_reads_is_cut_off_others_unaffected() {
    const QUEUE: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "stuck.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            queue_bytes: QUEUE,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();

    let stuck = UnixStream::connect(sock_path(&ep)).await.unwrap();
    let (ev, _) = wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;
    let ServerEvent::Connect(stuck_socket) = ev else {
        unreachable!()
    };
    let good = Client::connect(ep.clone(), ClientConfig::default()).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    {
        let received = received.clone();
        good.on("blob", move |_| {
            received.fetch_add(1, Ordering::SeqCst);
        });
    }
    good.connected().await.unwrap();
    wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;

    let payload = "x".repeat(8 * 1024);
    let mut sent = 0usize;
    let mut cut_off = None;
    // Bounded: the stuck peer's kernel buffers plus QUEUE fill up long
    // before this many broadcasts.
    for _ in 0..20_000 {
        sent += 1;
        let n = server.broadcast("blob", &payload).await.unwrap();
        assert!(stuck_socket.queued_bytes() <= QUEUE + payload.len() + 64);
        if n == 1 {
            cut_off = Some(sent);
            break;
        }
        // Let the good reader keep up.
        let want = sent;
        wait_until("the reading peer keeps up", || {
            received.load(Ordering::SeqCst) >= want
        })
        .await;
    }
    assert!(cut_off.is_some(), "the stuck peer was never cut off");
    let (ev, _) = wait_for(&mut sev, "backpressure", |e| {
        code_of(e) == Some(ErrorCode::Backpressure)
    })
    .await;
    assert_eq!(
        ev.peer().and_then(|p| p.socket().cloned()),
        Some(stuck_socket.clone())
    );
    wait_for(
        &mut sev,
        "socket.disconnected",
        |e| matches!(e, ServerEvent::SocketDisconnected { socket, .. } if *socket == stuck_socket),
    )
    .await;
    assert_eq!(server.connections(), 1);
    // The good peer got every broadcast that was queued for it.
    wait_until("the reading peer has everything", || {
        received.load(Ordering::SeqCst) == sent
    })
    .await;
    drop(stuck);
    good.destroy().await.unwrap();
    server.stop().await;
}

/// 10,000 concurrent connections on one server with bounded memory: the
/// server process's RSS grows by less than 20 KiB per connection, and a
/// broadcast reaches every one of them. The server runs isolated in a child
/// process; the 10,000 client ends are held by another child (file
/// descriptor limits are per process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_bounded_memory() {
    const N: usize = 10_000;
    if !is_isolated() {
        run_isolated("ten_thousand_connections_bounded_memory");
        return;
    }
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let want = (N + 1_000) as u64;
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c < want) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        )
        .expect("raising the RLIMIT_NOFILE soft limit to 11000");
    }
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "many.sock");
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            max_connections: N,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let connects = Arc::new(AtomicUsize::new(0));
    {
        let connects = connects.clone();
        server.on("connect", move |_| {
            connects.fetch_add(1, Ordering::SeqCst);
        });
    }
    server.start().await.unwrap();
    let path = sock_path(&ep);
    // Warm up the allocator and runtime with one connection first.
    let warm = UnixStream::connect(&path).await.unwrap();
    wait_until("warm-up connect", || connects.load(Ordering::SeqCst) == 1).await;
    drop(warm);
    wait_until("warm-up close", || server.connections() == 0).await;
    connects.store(0, Ordering::SeqCst);
    let before = status_kib("VmRSS:");

    let t0 = std::time::Instant::now();
    let mut holder = ChildProc::spawn("hold", &format!("{} {N}", path.display()));
    holder.limit = 10 * T;
    let held = holder.expect_line("HELD").await;
    assert_eq!(held, N.to_string());
    // Admitting 10,000 takes a while in a debug build on a loaded machine
    // (each connect copies the server's socket list): a longer bound here.
    let admitted = timeout(10 * T, async {
        while connects.load(Ordering::SeqCst) < N {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        admitted.is_ok(),
        "{} of {N} connections admitted, {} open",
        connects.load(Ordering::SeqCst),
        server.connections()
    );
    assert_eq!(server.connections(), N);
    let after = status_kib("VmRSS:");
    let per_conn = (after.saturating_sub(before)) * 1024 / N as u64;
    report(&format!(
        "10k connections: admitted in {:?}; server RSS {before} KiB -> {after} KiB, \
         {per_conn} bytes per connection",
        t0.elapsed()
    ));
    // Measured ≈ 11.6 KiB (debug build): a 4 KiB read buffer and the two
    // tasks' state. The benchmark's target is 20 KiB; the bound leaves room
    // for allocator noise.
    assert!(per_conn < 20 * 1024, "{per_conn} bytes per connection");

    // All of them are live: one broadcast reaches each.
    assert_eq!(server.broadcast("hi", &1).await.unwrap(), N);
    let frame = "{\"type\":\"hi\",\"data\":1}\x0c";
    holder.send(&format!("READ {}", frame.len()));
    let got = holder.expect_line("FRAME").await;
    assert_eq!(got, frame.trim_end_matches('\x0c'));
    holder.kill();
    timeout(10 * T, async {
        while server.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("every connection is freed");
    server.stop().await;
    report("ok");
}

// ---------------------------------------------------------------- UDP

/// A sender spraying delimiter-less fragments from 2,000 source ports
/// (spoofed-looking peers): the peer table stays within `max_peers`, the
/// fragment retention limit is reported as `ERR_IPC_BACKPRESSURE`, and a
/// legitimate peer is still served.
#[cfg(feature = "udp")]
#[tokio::test]
async fn udp_fragment_spray_bounded_peer_table() {
    use ipc_proto::UdpLimits;
    use tokio::net::UdpSocket;
    const PORTS: usize = 2_000;
    let limits = UdpLimits {
        max_peers: 64,
        max_retained_bytes: 32 * 1024,
        fragment_timeout: Some(Duration::from_secs(30)),
    };
    let server = Server::new(
        "udp4://127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            udp_limits: limits,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let backpressure = Arc::new(AtomicUsize::new(0));
    let other_errors = Arc::new(Mutex::new(Vec::new()));
    {
        let backpressure = backpressure.clone();
        let other = other_errors.clone();
        server.on("error", move |ev| {
            if ev.error().and_then(ServerError::code) == Some(ErrorCode::Backpressure) {
                assert!(ev.peer().is_some());
                backpressure.fetch_add(1, Ordering::SeqCst);
            } else {
                other.lock().unwrap().push(format!("{:?}", ev.error()));
            }
        });
    }
    let hello = Arc::new(AtomicUsize::new(0));
    {
        let hello = hello.clone();
        server.on_message("hello", move |_, _| {
            hello.fetch_add(1, Ordering::SeqCst);
        });
    }
    let local = server.start().await.unwrap();
    let Endpoint::Udp { port, .. } = local else {
        panic!("{local}")
    };
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let fragment = vec![b'{'; 1000];
    let mut max_seen = 0;
    for batch in 0..PORTS / 200 {
        let mut socks = Vec::new();
        for _ in 0..200 {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.send_to(&fragment, target).await.unwrap();
            socks.push(s);
        }
        // Pace the spray so the kernel does not drop it before the server
        // has looked at it: wait until this batch was processed.
        let want = (batch + 1) * 200;
        let _ = timeout(Duration::from_secs(5), async {
            loop {
                let peers = server.udp_peers().len();
                max_seen = max_seen.max(peers);
                if backpressure.load(Ordering::SeqCst) + limits.max_peers >= want.min(PORTS) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        max_seen = max_seen.max(server.udp_peers().len());
    }
    assert!(
        max_seen <= limits.max_peers,
        "peer table grew to {max_seen}"
    );
    assert!(
        backpressure.load(Ordering::SeqCst) > 0,
        "the retention limit was never reported"
    );
    // A legitimate peer still gets through.
    let legit = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    legit
        .send_to(b"{\"type\":\"hello\",\"data\":1}\x0c", target)
        .await
        .unwrap();
    wait_until("the legitimate datagram is handled", || {
        hello.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(server.udp_peers().len() <= limits.max_peers);
    server.stop().await;
}

// ------------------------------------------------------------ security

/// Unix socket file and directory are owner-only by default at the server
/// level; the peer's credentials reach the server.
#[tokio::test]
async fn unix_socket_owner_only_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node-ipc");
    let path = root.join("app.world");
    let server = Server::new(
        Endpoint::Unix(path.clone()),
        ServerConfig {
            listen: ipc_transport::ListenOptions {
                socket_root: Some(root.clone()),
                ..ipc_transport::ListenOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root), 0o700, "socket root");
    assert_eq!(mode(&path) & 0o077, 0, "socket file mode {:o}", mode(&path));
    let _s = UnixStream::connect(&path).await.unwrap();
    let (ev, _) = wait_for(&mut sev, "connect", |e| {
        matches!(e, ServerEvent::Connect(_))
    })
    .await;
    let ServerEvent::Connect(sock) = ev else {
        unreachable!()
    };
    let cred = sock.peer().cred.expect("peer credentials");
    assert_eq!(cred.pid, Some(std::process::id() as i32));
    assert_eq!(cred.uid, rustix::process::geteuid().as_raw());
    server.stop().await;
    assert!(!path.exists(), "the socket file is removed on stop");
}

/// `unlink` at the server level (ipc-transport's tests/unix.rs covers the
/// listener: live_socket_is_not_unlinked, non_socket_is_not_unlinked,
/// symlink_is_not_followed, stale_socket_is_reclaimed): a second server
/// never steals a live server's socket, never deletes a regular file, and
/// never follows a symlink.
#[tokio::test]
async fn server_unlink_never_steals_follows_or_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "live.sock");
    let live = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    live.start().await.unwrap();
    let thief = Server::new(ep.clone(), ServerConfig::default()).unwrap();
    let err = thief.start().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AddressInUse), "{err}");
    // The live server still serves on its path.
    let c = Client::connect(ep.clone(), ClientConfig::default()).unwrap();
    c.connected().await.unwrap();
    c.destroy().await.unwrap();

    let file = dir.path().join("regular");
    std::fs::write(&file, b"precious").unwrap();
    let err = Server::new(Endpoint::Unix(file.clone()), ServerConfig::default())
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnlinkNotSocket), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    let target = dir.path().join("target-file");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = Server::new(Endpoint::Unix(link.clone()), ServerConfig::default())
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnlinkNotSocket), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    live.stop().await;
}

/// The authorization hook sees the peer's credentials before `connect`; a
/// refusal closes the connection and names the peer and the reason.
#[tokio::test]
async fn authorizer_refuses_by_peer_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "auth.sock");
    let me = std::process::id() as i32;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let allow_pid = Arc::new(Mutex::new(None::<i32>));
    let authorize = {
        let seen = seen.clone();
        let allow_pid = allow_pid.clone();
        Authorizer::new(move |peer| {
            let cred = peer.cred.ok_or("no credentials")?;
            seen.lock().unwrap().push(cred);
            if cred.pid.is_some() && cred.pid == *allow_pid.lock().unwrap() {
                Ok(())
            } else {
                Err(format!("pid {:?} is not allowed", cred.pid))
            }
        })
    };
    let server = Server::new(
        ep.clone(),
        ServerConfig {
            authorize: Some(authorize),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let mut sev = server.events();
    server.start().await.unwrap();

    let mut refused = UnixStream::connect(sock_path(&ep)).await.unwrap();
    let (ev, before) = wait_for(&mut sev, "refusal", |e| e.error().is_some()).await;
    assert!(!before.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
    let Some(ServerError::Unauthorized { peer, reason }) = ev.error() else {
        panic!("{ev:?}")
    };
    assert!(peer.contains(&format!("pid {me}")), "{peer}");
    assert_eq!(reason, &format!("pid Some({me}) is not allowed"));
    assert!(ev.error().unwrap().to_string().contains(reason.as_str()));
    assert!(closed_by_peer(&mut refused).await);
    assert_eq!(server.connections(), 0);

    // Admitted once the hook says so; the same credentials were seen.
    *allow_pid.lock().unwrap() = Some(me);
    let c = Client::connect(ep.clone(), ClientConfig::default()).unwrap();
    c.connected().await.unwrap();
    c.emit("in", &1).await.unwrap();
    let (_, before) = wait_for(&mut sev, "message", |e| e.message().is_some()).await;
    assert!(before.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|c| c.pid == Some(me)));
    c.destroy().await.unwrap();
    server.stop().await;
}

// ----------------------------------------------------------------- TLS

#[cfg(feature = "tls")]
mod tls {
    use super::*;
    use ipc_transport::{ConnectOptions, ListenOptions, TlsClientConfig, TlsServerConfig};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    struct Ca {
        pem: String,
        path: PathBuf,
        params: CertificateParams,
        key: KeyPair,
    }

    struct Leaf {
        cert: PathBuf,
        key: PathBuf,
    }

    fn ca(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = params.self_signed(&key).unwrap().pem();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, &pem).unwrap();
        Ca {
            pem,
            path,
            params,
            key,
        }
    }

    fn leaf(ca: &Ca, dir: &Path, name: &str, sans: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let l = Leaf {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&l.cert, cert.pem()).unwrap();
        std::fs::write(&l.key, key.serialize_pem()).unwrap();
        l
    }

    async fn tls_server(leaf: &Leaf, client_ca: Option<&Path>) -> (Server, u16) {
        let mut b = TlsServerConfig::builder()
            .cert_chain_file(&leaf.cert)
            .key_file(&leaf.key);
        if let Some(ca) = client_ca {
            b = b.client_ca_file(ca);
        }
        let server = Server::new(
            "tls://127.0.0.1:0".parse().unwrap(),
            ServerConfig {
                listen: ListenOptions {
                    tls: Some(b.build().unwrap()),
                    ..ListenOptions::default()
                },
                ..ServerConfig::default()
            },
        )
        .unwrap();
        let Endpoint::Tls { port, .. } = server.start().await.unwrap() else {
            panic!()
        };
        (server, port)
    }

    fn tls_client(port: u16, tls: TlsClientConfig) -> Client {
        Client::new(
            Endpoint::Tls {
                host: "localhost".into(),
                port,
            },
            ClientConfig {
                connect: ConnectOptions {
                    tls: Some(tls),
                    ..ConnectOptions::default()
                },
                retry: quick_retry(),
                ..ClientConfig::default()
            },
        )
        .unwrap()
    }

    /// The client must fail with a non-retryable error and give up
    /// (error → disconnect → destroy) without ever connecting or sending a
    /// byte of application data; the server reports the failed handshake and
    /// never admits the peer.
    async fn assert_refused(server: &Server, client: Client, what: &str) {
        let mut sev = server.events();
        let mut cev = client.events();
        client.start();
        let _ = client.try_emit("secret", &"must not leak");
        let (_, before) =
            wait_client(&mut cev, "destroy", |e| matches!(e, ClientEvent::Destroy)).await;
        assert!(
            !before.iter().any(|e| matches!(e, ClientEvent::Connect)),
            "{what}: {before:?}"
        );
        let err = before
            .iter()
            .find_map(|e| e.error())
            .unwrap_or_else(|| panic!("{what}: no error in {before:?}"));
        assert!(!err.is_retryable(), "{what}: {err}");
        let (ev, seen) = wait_for(&mut sev, "handshake error", |e| e.error().is_some()).await;
        assert!(
            matches!(ev.error(), Some(ServerError::Accept { .. })),
            "{what}: {ev:?}"
        );
        assert!(!seen
            .iter()
            .any(|e| matches!(e, ServerEvent::Connect(_) | ServerEvent::Message { .. })));
        assert_eq!(server.connections(), 0);
        // The undelivered message is reported, not silently dropped.
        let r = client.destroy().await;
        assert!(r.is_ok() || r.as_ref().unwrap_err().code() == Some(ErrorCode::NotConnected));
    }

    #[tokio::test]
    async fn tls_rejects_untrusted_expired_and_wrong_host_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let ca = ca(p, "ca");
        let rogue = ca_rogue(p);
        let trust = || {
            TlsClientConfig::builder()
                .root_file(&ca.path)
                .build()
                .unwrap()
        };
        assert!(ca.pem.contains("BEGIN CERTIFICATE"));

        let untrusted = leaf(&rogue, p, "rogue", &["localhost"], false);
        let (server, port) = tls_server(&untrusted, None).await;
        assert_refused(&server, tls_client(port, trust()), "untrusted").await;
        server.stop().await;

        let expired = leaf(&ca, p, "expired", &["localhost"], true);
        let (server, port) = tls_server(&expired, None).await;
        assert_refused(&server, tls_client(port, trust()), "expired").await;
        server.stop().await;

        let wrong = leaf(&ca, p, "wrong", &["other.example"], false);
        let (server, port) = tls_server(&wrong, None).await;
        assert_refused(&server, tls_client(port, trust()), "wrong host").await;
        server.stop().await;

        // The same client settings work against a proper certificate.
        let good = leaf(&ca, p, "good", &["localhost"], false);
        let (server, port) = tls_server(&good, None).await;
        let mut sev = server.events();
        let c = tls_client(port, trust());
        c.start();
        c.connected().await.unwrap();
        c.emit("over-tls", &1).await.unwrap();
        wait_for(&mut sev, "message", |e| e.message().is_some()).await;
        c.destroy().await.unwrap();
        server.stop().await;
    }

    fn ca_rogue(p: &Path) -> Ca {
        ca(p, "rogue-ca")
    }

    #[tokio::test]
    async fn mutual_tls_refuses_a_client_without_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let ca = ca(p, "ca");
        let server_leaf = leaf(&ca, p, "server", &["localhost"], false);
        let client_leaf = leaf(&ca, p, "client", &["client.local"], false);
        let (server, port) = tls_server(&server_leaf, Some(&ca.path)).await;
        let mut sev = server.events();

        let no_cert = TlsClientConfig::builder()
            .root_file(&ca.path)
            .build()
            .unwrap();
        let c = tls_client(port, no_cert);
        let mut cev = c.events();
        c.start();
        let (ev, seen) = wait_for(&mut sev, "handshake error", |e| e.error().is_some()).await;
        assert!(
            matches!(ev.error(), Some(ServerError::Accept { .. })),
            "{ev:?}"
        );
        assert!(!seen.iter().any(|e| matches!(e, ServerEvent::Connect(_))));
        // TLS 1.3: the client may finish its side first; either way it ends
        // with an error and is never served.
        wait_client(&mut cev, "client error", |e| e.error().is_some()).await;
        c.destroy().await.ok();
        assert_eq!(server.connections(), 0);

        let with_cert = TlsClientConfig::builder()
            .root_file(&ca.path)
            .client_cert_files(&client_leaf.cert, &client_leaf.key)
            .build()
            .unwrap();
        let c = tls_client(port, with_cert);
        c.start();
        c.connected().await.unwrap();
        let (ev, _) = wait_for(&mut sev, "connect", |e| {
            matches!(e, ServerEvent::Connect(_))
        })
        .await;
        let ServerEvent::Connect(sock) = ev else {
            unreachable!()
        };
        assert_eq!(
            sock.peer().tls_peer_certificates.as_ref().map(Vec::len),
            Some(1)
        );
        c.destroy().await.unwrap();
        server.stop().await;
    }

    /// Never a plaintext fallback: a plain client gets nothing from a TLS
    /// server, and a TLS client never talks plain to a plain server.
    #[tokio::test]
    async fn tls_never_falls_back_to_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let ca = ca(p, "ca");
        let server_leaf = leaf(&ca, p, "server", &["localhost"], false);
        let (server, port) = tls_server(&server_leaf, None).await;
        let mut sev = server.events();
        let plain = Client::new(
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            ClientConfig {
                retry: RetryConfig {
                    max_retries: MaxRetries::Limited(0),
                    ..quick_retry()
                },
                ..ClientConfig::default()
            },
        )
        .unwrap();
        let mut cev = plain.events();
        plain.start();
        plain.emit("plain", &"hello").await.unwrap();
        let (ev, seen) = wait_for(&mut sev, "handshake error", |e| e.error().is_some()).await;
        assert!(
            matches!(ev.error(), Some(ServerError::Accept { .. })),
            "{ev:?}"
        );
        assert!(!seen
            .iter()
            .any(|e| e.message().is_some() || matches!(e, ServerEvent::Connect(_))));
        wait_client(&mut cev, "disconnect", |e| {
            matches!(e, ClientEvent::Disconnect)
        })
        .await;
        plain.destroy().await.ok();
        server.stop().await;

        // A TLS client against a plain server (guarded, so the ClientHello's
        // bytes are dropped after the message timeout rather than buffered).
        let plain_server = Server::new(
            "tcp://127.0.0.1:0".parse().unwrap(),
            ServerConfig {
                codec: CodecConfig::guarded()
                    .with_message_timeout(Some(Duration::from_millis(200))),
                ..ServerConfig::default()
            },
        )
        .unwrap();
        let mut sev = plain_server.events();
        let Endpoint::Tcp { port, .. } = plain_server.start().await.unwrap() else {
            panic!()
        };
        let trust = TlsClientConfig::builder()
            .root_file(&ca.path)
            .build()
            .unwrap();
        let c = tls_client(port, trust);
        let mut cev = c.events();
        c.start();
        c.try_emit("secret", &"must not leak").unwrap();
        let (_, before) = wait_client(&mut cev, "client error", |e| e.error().is_some()).await;
        assert!(!before.iter().any(|e| matches!(e, ClientEvent::Connect)));
        let (_, seen) = wait_for(&mut sev, "socket.disconnected", |e| {
            matches!(e, ServerEvent::SocketDisconnected { .. })
        })
        .await;
        assert!(!seen.iter().any(|e| e.message().is_some()), "{seen:?}");
        c.destroy().await.ok();
        plain_server.stop().await;
    }
}

// ---------------------------------------------------------------- soak

/// Mixed traffic for `IPC_SOAK_SECS` seconds (run by `cargo xtask soak`):
/// `CLIENTS` logical clients emit numbered messages; half of them stay
/// connected, the other half disconnect gracefully every few seconds and
/// come back as a new connection, continuing their numbering; the server
/// broadcasts a numbered tick every 10 ms. Asserted: every emitted message
/// arrives exactly once (none lost across the reconnects), every connection
/// sees the ticks in order without duplicates, a client that stays connected
/// sees every tick from its first one on, and memory is flat (the RSS at the
/// end is within 32 MiB of the RSS after the first tenth of the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long-running; `cargo xtask soak`"]
async fn soak_mixed_traffic() {
    use std::sync::atomic::AtomicU64;
    const CLIENTS: usize = 8;
    let secs: u64 = std::env::var("IPC_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let run_for = Duration::from_secs(secs);
    let dir = tempfile::tempdir().unwrap();
    let ep = unix_ep(&dir, "soak.sock");
    let server = Server::new(ep.clone(), ServerConfig::default()).unwrap();

    // Per logical client: a bitmap of the sequence numbers received.
    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;
    let seen: Seen = Arc::new(Mutex::new(vec![Vec::new(); CLIENTS]));
    let dupes = Arc::new(AtomicUsize::new(0));
    let server_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let resets = Arc::new(AtomicUsize::new(0));
    {
        let seen = seen.clone();
        let dupes = dupes.clone();
        server.on_message("seq", move |m, _| {
            let (c, n): (usize, u64) = m.data().unwrap();
            let mut seen = seen.lock().unwrap();
            let bits = &mut seen[c];
            let (byte, bit) = ((n / 8) as usize, 1u8 << (n % 8));
            if bits.len() <= byte {
                bits.resize(byte + 1024, 0);
            }
            if bits[byte] & bit != 0 {
                dupes.fetch_add(1, Ordering::SeqCst);
            }
            bits[byte] |= bit;
        });
        let errors = server_errors.clone();
        let resets = resets.clone();
        server.on("error", move |ev| {
            match ev.error() {
                // Ticks queued to a connection that is closing are reported
                // as undelivered.
                Some(ServerError::Undelivered { .. }) => {}
                // A client that disconnects with broadcast ticks still
                // unread in its receive buffer makes the kernel reset the
                // Unix socket: the server reports ECONNRESET for it.
                Some(ServerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::ConnectionReset =>
                {
                    resets.fetch_add(1, Ordering::SeqCst);
                }
                other => errors.lock().unwrap().push(format!("{other:?}")),
            }
        });
    }
    server.start().await.unwrap();
    let reconnects = Arc::new(AtomicUsize::new(0));
    let tick_faults = Arc::new(Mutex::new(Vec::<String>::new()));
    let ticks_sent = Arc::new(AtomicU64::new(0));
    let stop = tokio_util_stop();

    // Broadcaster.
    let broadcaster = {
        let server = server.clone();
        let ticks_sent = ticks_sent.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut every = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::SeqCst) {
                every.tick().await;
                server.broadcast("tick", &n).await.unwrap();
                n += 1;
                ticks_sent.store(n, Ordering::SeqCst);
            }
        })
    };

    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let ep = ep.clone();
        let stop = stop.clone();
        let reconnects = reconnects.clone();
        let tick_faults = tick_faults.clone();
        let stable = c % 2 == 0;
        tasks.push(tokio::spawn(async move {
            let mut next = 0u64;
            loop {
                let client = Client::new(
                    ep.clone(),
                    ClientConfig {
                        retry: quick_retry(),
                        ..ClientConfig::default()
                    },
                )
                .unwrap();
                // Ticks must arrive in order, without duplicates; a stable
                // client must see every one from its first on.
                let last = Arc::new(Mutex::new(None::<u64>));
                {
                    let last = last.clone();
                    let faults = tick_faults.clone();
                    client.on("tick", move |ev| {
                        let n: u64 = ev.message().unwrap().data().unwrap();
                        let mut last = last.lock().unwrap();
                        match *last {
                            Some(p) if n <= p => faults
                                .lock()
                                .unwrap()
                                .push(format!("client {c}: tick {n} after {p}")),
                            Some(p) if stable && n != p + 1 => faults
                                .lock()
                                .unwrap()
                                .push(format!("client {c}: tick {n} after {p} (gap)")),
                            _ => {}
                        }
                        *last = Some(n);
                    });
                }
                client.start();
                client.connected().await.unwrap();
                let started = tokio::time::Instant::now();
                let life = if stable {
                    Duration::MAX
                } else {
                    Duration::from_millis(2_000 + 500 * c as u64)
                };
                while !stop.load(Ordering::SeqCst) && started.elapsed() < life {
                    for _ in 0..50 {
                        client.emit("seq", &(c, next)).await.unwrap();
                        next += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                // Graceful: everything queued is written first.
                client.disconnect().await.unwrap();
                if stop.load(Ordering::SeqCst) {
                    return next;
                }
                reconnects.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Sample memory; stop after `run_for`.
    let t0 = tokio::time::Instant::now();
    let mut samples = Vec::new();
    let mut baseline = None;
    while t0.elapsed() < run_for {
        tokio::time::sleep(Duration::from_secs(1).min(run_for / 10)).await;
        let rss = status_kib("VmRSS:");
        samples.push(rss);
        if baseline.is_none() && t0.elapsed() >= run_for / 10 {
            baseline = Some(rss);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(timeout(T, t).await.unwrap().unwrap());
    }
    timeout(T, broadcaster).await.unwrap().unwrap();
    // Everything was flushed by `disconnect`; wait until the server has
    // handled it all.
    let complete = |seen: &Seen| {
        let seen = seen.lock().unwrap();
        (0..CLIENTS).all(|c| {
            (0..sent[c]).all(|n| {
                seen[c]
                    .get((n / 8) as usize)
                    .is_some_and(|b| b & (1 << (n % 8)) != 0)
            })
        })
    };
    wait_until("the server has every message", || complete(&seen)).await;
    let total: u64 = sent.iter().sum();
    let end_rss = status_kib("VmRSS:");
    let peak = samples.iter().copied().max().unwrap_or(end_rss);
    let baseline = baseline.unwrap_or(end_rss);
    println!(
        "soak: {secs} s, {CLIENTS} clients, {total} messages ({:.0}/s), {} broadcast ticks, \
         {} reconnects ({} reset by the kernel), 0 lost, {} duplicates; RSS after 10% \
         {baseline} KiB, peak {peak} KiB, end {end_rss} KiB",
        total as f64 / secs as f64,
        ticks_sent.load(Ordering::SeqCst),
        reconnects.load(Ordering::SeqCst),
        resets.load(Ordering::SeqCst),
        dupes.load(Ordering::SeqCst),
    );
    assert_eq!(dupes.load(Ordering::SeqCst), 0);
    assert!(
        tick_faults.lock().unwrap().is_empty(),
        "{:?}",
        tick_faults.lock().unwrap()
    );
    assert!(
        server_errors.lock().unwrap().is_empty(),
        "{:?}",
        server_errors.lock().unwrap()
    );
    assert!(reconnects.load(Ordering::SeqCst) > 0);
    // Only disconnecting clients cause resets (their reconnects, and the
    // final disconnect of each client).
    assert!(resets.load(Ordering::SeqCst) <= reconnects.load(Ordering::SeqCst) + CLIENTS);
    assert!(
        end_rss <= baseline + 32 * 1024,
        "memory grew from {baseline} KiB to {end_rss} KiB"
    );
    server.stop().await;
}

fn tokio_util_stop() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}
