//! The connection driver over `tokio::io::duplex`, without sockets: routing,
//! deadlines, the role's hooks, errors, and two drivers talking to each
//! other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ipc_conn::{
    drive, spawn_writer, Admit, Budget, Dispatcher, Event, Flow, FrameReader, HandlerPanic, Link,
    OnWriteFailure, RequestHandlers, Role, Step, WriterExit,
};
use ipc_proto::ext::{self, names};
use ipc_proto::{
    CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, Inbound, Message, ProtocolError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
enum Ev {
    Message(Message),
    Data(Bytes),
    Error(String),
}

impl Event for Ev {
    fn name(&self) -> &str {
        match self {
            Ev::Message(m) => m.event(),
            Ev::Data(_) => "data",
            Ev::Error(_) => "error",
        }
    }

    fn error_text(&self) -> Option<String> {
        match self {
            Ev::Error(e) => Some(e.clone()),
            _ => None,
        }
    }

    fn handler_panicked(&self, panic: HandlerPanic) -> Self {
        Ev::Error(format!("panic in {}: {}", panic.event, panic.message))
    }
}

#[derive(Debug, PartialEq)]
enum Failure {
    Idle,
    Deadline,
    Refused(String),
    Protocol(ErrorCode),
    Io,
    Unsent(u64),
}

/// A role that records what the driver asked of it.
struct TestRole {
    link: Link,
    events: Arc<Dispatcher<Ev>>,
    requests: Arc<RequestHandlers<&'static str>>,
    idle: Option<Duration>,
    deadline: Option<Instant>,
    end_on_deadline: bool,
    deadlines: usize,
    refuse: Option<&'static str>,
    ignore: Option<&'static str>,
    extensions: Vec<String>,
    eof: bool,
    budget: Budget,
}

impl TestRole {
    fn new() -> TestRole {
        TestRole {
            link: Link::new(encoder(), 1 << 20),
            events: Arc::new(Dispatcher::new(64)),
            requests: Arc::new(RequestHandlers::default()),
            idle: None,
            deadline: None,
            end_on_deadline: false,
            deadlines: 0,
            refuse: None,
            ignore: None,
            extensions: Vec::new(),
            eof: false,
            budget: Budget::new(1 << 20),
        }
    }
}

impl Role for TestRole {
    type Event = Ev;
    type Peer = &'static str;
    type Error = Failure;

    fn link(&self) -> &Link {
        &self.link
    }
    fn events(&self) -> &Dispatcher<Ev> {
        &self.events
    }
    fn label(&self) -> &str {
        "test"
    }
    fn extension(&self) -> bool {
        true
    }
    fn requests(&self) -> (&RequestHandlers<&'static str>, &'static str) {
        (&self.requests, "the peer")
    }
    fn request_panicked(&self, message: String) -> Ev {
        Ev::Error(format!("request handler: {message}"))
    }
    fn budget(&self) -> &Budget {
        &self.budget
    }
    fn error_event(&self, error: Failure) -> Ev {
        Ev::Error(format!("{error:?}"))
    }
    fn answers_unsent(&self, count: u64) -> Failure {
        Failure::Unsent(count)
    }
    fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }
    fn idle_error(&self) -> Failure {
        Failure::Idle
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    async fn timed_out(&mut self) -> Step<Failure> {
        self.deadlines += 1;
        self.deadline = None;
        if self.end_on_deadline {
            Step::End(Some(Failure::Deadline))
        } else {
            Step::Continue
        }
    }
    fn admit(&mut self, item: &Inbound) -> Admit<Failure> {
        let name = item.as_message().map(Message::event).unwrap_or("data");
        if Some(name) == self.refuse {
            Admit::End(Failure::Refused(name.to_owned()))
        } else if Some(name) == self.ignore {
            Admit::Ignore
        } else {
            Admit::Route
        }
    }
    async fn extension_message(&mut self, m: &Message) -> Step<Failure> {
        self.extensions.push(m.event().to_owned());
        Step::Continue
    }
    fn event(&mut self, item: Inbound) -> Ev {
        match item {
            Inbound::Message(m) => Ev::Message(m),
            Inbound::Raw(b) => Ev::Data(b),
        }
    }
    fn eof(&mut self) {
        self.eof = true;
    }
    fn protocol_error(&self, e: ProtocolError) -> Failure {
        Failure::Protocol(e.code())
    }
    fn io_error(&self, _: std::io::Error) -> Failure {
        Failure::Io
    }
}

fn encoder() -> FrameEncoder {
    FrameEncoder::new(CodecConfig::fast()).unwrap()
}

fn frame<T: serde::Serialize>(event: &str, data: &T) -> Bytes {
    encoder().encode_to_bytes(event, Some(data)).unwrap()
}

/// The role's side of a duplex pipe (a reader over one end) and the other
/// end, for the test to play the peer.
fn pipe(cancel: &CancellationToken) -> (FrameReader<DuplexStream>, DuplexStream) {
    let (ours, peer) = tokio::io::duplex(1 << 16);
    let dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    (FrameReader::new(ours, dec, cancel.clone()), peer)
}

/// Collects the names (and data) of delivered events.
fn record(role: &TestRole) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    role.events.on("*", false, move |ev: &Ev| {
        let text = match ev {
            Ev::Message(m) => format!("{}={}", m.event(), m.data_value()),
            Ev::Data(b) => format!("data={}", b.len()),
            Ev::Error(e) => format!("error={e}"),
        };
        s.lock().unwrap().push(text);
    });
    seen
}

/// Reads `n` frames.
async fn read_frames(rd: &mut DuplexStream, n: usize) -> Vec<Message> {
    let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        match dec.decode(&mut buf, std::time::Instant::now()).unwrap() {
            Some(Inbound::Message(m)) => out.push(m),
            Some(other) => panic!("{other:?}"),
            None => {
                let read = rd.read_buf(&mut buf).await.unwrap();
                assert!(read > 0, "the stream ended before {n} frames");
            }
        }
    }
    out
}

#[tokio::test]
async fn messages_reach_handlers_in_order_and_eof_ends_cleanly() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.ignore = Some("skipped");
    let seen = record(&role);
    peer.write_all(&frame("a", &1)).await.unwrap();
    peer.write_all(&frame("skipped", &2)).await.unwrap();
    peer.write_all(&frame("b", &"two")).await.unwrap();
    peer.shutdown().await.unwrap();
    drop(peer);
    assert_eq!(drive(&mut role, &mut reader).await, None);
    assert!(role.eof);
    assert_eq!(*seen.lock().unwrap(), vec!["a=1", "b=\"two\""]);
}

#[tokio::test]
async fn pings_requests_and_answers_are_routed_by_the_driver() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    let seen = record(&role);
    role.requests.add(|r| {
        assert_eq!(*r.peer(), "the peer");
        let n: i64 = r.data().map_err(|e| e.to_string())?;
        r.respond(&(n * 2)).map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    // Our own call, answered by the peer below.
    let call = role.link.calls().start();
    let n = call.id().to_owned();
    let enc = encoder();
    peer.write_all(&ext::encode_call(&enc, names::PING, "p1", Some(&"x")).unwrap())
        .await
        .unwrap();
    peer.write_all(&ext::encode_call(&enc, names::REQUEST, "r1", Some(&21)).unwrap())
        .await
        .unwrap();
    peer.write_all(&ext::encode_response(&enc, &n, Some(&"ok")).unwrap())
        .await
        .unwrap();
    peer.write_all(&frame(names::END, &ext::End::new("bye", true)))
        .await
        .unwrap();
    drop(peer);
    assert_eq!(drive(&mut role, &mut reader).await, None);
    // Nothing of the extension reached the handlers; `ipcx.end` went to the role.
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(role.extensions, vec![names::END]);
    let answer = call.wait(Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(answer.data::<String>().unwrap().as_deref(), Some("ok"));
    // The pong and the response are queued on the link, in order.
    let (wr_a, mut rd_b) = tokio::io::duplex(1 << 16);
    role.link.outbox().close();
    let writer = spawn_writer(
        &role.link,
        wr_a,
        CancellationToken::new(),
        None,
        OnWriteFailure::CloseQueue,
    );
    assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
    let frames = read_frames(&mut rd_b, 2).await;
    let (pong, resp) = (&frames[0], &frames[1]);
    assert_eq!(pong.event(), names::PONG);
    assert_eq!(pong.data_json(), Some(&b"{\"n\":\"p1\",\"d\":\"x\"}"[..]));
    assert_eq!(resp.event(), names::RESPONSE);
    assert_eq!(resp.data_json(), Some(&b"{\"n\":\"r1\",\"d\":42}"[..]));
}

#[tokio::test]
async fn handler_panics_become_error_events() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    let seen = record(&role);
    role.events.on("boom", false, |_: &Ev| panic!("kaboom"));
    role.requests.add(|_| panic!("request kaboom"));
    peer.write_all(&frame("boom", &0)).await.unwrap();
    peer.write_all(&ext::encode_call(&encoder(), names::REQUEST, "r", Some(&0)).unwrap())
        .await
        .unwrap();
    drop(peer);
    assert_eq!(drive(&mut role, &mut reader).await, None);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "boom=0".to_owned(),
            "error=panic in boom: kaboom".to_owned(),
            "error=request handler: request kaboom".to_owned(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_peer_ends_the_connection_and_items_move_the_deadline() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.idle = Some(Duration::from_secs(10));
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    role.events.on("tick", false, move |_: &Ev| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let feeder = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            peer.write_all(&frame("tick", &0)).await.unwrap();
        }
        peer // kept open: silence, not end of stream
    });
    let t0 = Instant::now();
    assert_eq!(drive(&mut role, &mut reader).await, Some(Failure::Idle));
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // 3 ticks 8 s apart, then 10 s of silence.
    assert_eq!(t0.elapsed().as_secs(), 34);
    drop(feeder.await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn the_roles_deadline_is_honoured_without_moving_the_idle_one() {
    let cancel = CancellationToken::new();
    let (mut reader, _peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.idle = Some(Duration::from_secs(10));
    role.deadline = Some(Instant::now() + Duration::from_secs(3));
    let t0 = Instant::now();
    assert_eq!(drive(&mut role, &mut reader).await, Some(Failure::Idle));
    assert_eq!(role.deadlines, 1);
    assert_eq!(
        t0.elapsed().as_secs(),
        10,
        "the role's deadline did not reset the idle timer"
    );

    let (mut reader, _peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.end_on_deadline = true;
    role.deadline = Some(Instant::now() + Duration::from_secs(3));
    assert_eq!(drive(&mut role, &mut reader).await, Some(Failure::Deadline));
}

#[tokio::test]
async fn refusals_protocol_errors_and_cancellation_end_the_loop() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.refuse = Some("bad");
    peer.write_all(&frame("bad", &0)).await.unwrap();
    assert_eq!(
        drive(&mut role, &mut reader).await,
        Some(Failure::Refused("bad".into()))
    );

    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    peer.write_all(b"{\"type\":1}\x0c").await.unwrap();
    assert!(matches!(
        drive(&mut role, &mut reader).await,
        Some(Failure::Protocol(_))
    ));

    let cancel = CancellationToken::new();
    let (mut reader, _peer) = pipe(&cancel);
    let mut role = TestRole::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.cancel();
    });
    assert_eq!(drive(&mut role, &mut reader).await, None);
    assert!(!role.eof);
}

/// Two drivers back to back, each with its writer: a request and a ping
/// from one side are answered by the other.
#[tokio::test]
async fn two_drivers_answer_each_other() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (a_rd, a_wr) = tokio::io::split(a);
    let (b_rd, b_wr) = tokio::io::split(b);
    let dec = || FrameDecoder::new(CodecConfig::fast()).unwrap();
    let (ca, cb) = (CancellationToken::new(), CancellationToken::new());

    let mut side_a = TestRole::new();
    let link_a = side_a.link.clone();
    let mut side_b = TestRole::new();
    side_b.requests.add(|r| {
        let s: String = r.data().map_err(|e| e.to_string())?;
        r.respond(&s.to_uppercase()).map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    let seen_b = record(&side_b);
    let wa = spawn_writer(
        &side_a.link,
        a_wr,
        ca.clone(),
        None,
        OnWriteFailure::CloseQueue,
    );
    let wb = spawn_writer(
        &side_b.link,
        b_wr,
        cb.clone(),
        None,
        OnWriteFailure::CloseQueue,
    );
    let mut ra = FrameReader::new(a_rd, dec(), ca.clone());
    let mut rb = FrameReader::new(b_rd, dec(), cb.clone());
    let da = tokio::spawn(async move { drive(&mut side_a, &mut ra).await });
    let db = tokio::spawn(async move { drive(&mut side_b, &mut rb).await });

    let answer = link_a
        .request("hello", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answer.data::<String>().unwrap().as_deref(), Some("HELLO"));
    link_a.ping(Duration::from_secs(10)).await.unwrap();
    link_a.emit("note", Some(&7)).await.unwrap();
    // A's graceful close: its writer drains and shuts down, B sees the end.
    link_a.outbox().close();
    assert!(matches!(wa.await.unwrap(), WriterExit::Drained));
    assert_eq!(db.await.unwrap(), None);
    assert_eq!(*seen_b.lock().unwrap(), vec!["note=7"]);
    cb.cancel();
    let _ = wb.await;
    ca.cancel();
    assert_eq!(da.await.unwrap(), None);
}

/// Malformed extension frames: an answer whose call can be named fails that
/// call at once; one that cannot, and a request without an id, are
/// reported as error events; the connection goes on.
#[tokio::test]
async fn malformed_extension_frames_fail_their_call_or_are_reported() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    let seen = record(&role);
    let call = role.link.calls().start();
    let n = call.id().to_owned();
    peer.write_all(&frame(
        names::RESPONSE,
        &serde_json::json!({"n": n, "e": 5}),
    ))
    .await
    .unwrap();
    peer.write_all(&frame(names::REQUEST, &"no id"))
        .await
        .unwrap();
    peer.write_all(&frame("after", &1)).await.unwrap();
    drop(peer);
    assert_eq!(drive(&mut role, &mut reader).await, None);
    let err = call.wait(Some(Duration::from_secs(5))).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidMessage), "{err:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen[0].starts_with("error=Protocol(InvalidMessage)"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("error=Protocol(InvalidMessage)"),
        "{seen:?}"
    );
    assert_eq!(seen[2], "after=1");
}

/// Answers that do not fit in the queue are counted and reported in one
/// error event with the count.
#[tokio::test]
async fn answers_that_cannot_be_queued_are_reported_with_their_count() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.link = Link::new(encoder(), 64);
    let seen = record(&role);
    let enc = encoder();
    for i in 0..5 {
        let n = format!("p{i}");
        peer.write_all(&ext::encode_call(&enc, names::PING, &n, Some(&"0123456789")).unwrap())
            .await
            .unwrap();
    }
    drop(peer);
    assert_eq!(drive(&mut role, &mut reader).await, None);
    // The first pong fits in 64 bytes; the other four do not.
    let seen = seen.lock().unwrap().clone();
    let unsent: u64 = seen
        .iter()
        .filter_map(|e| {
            e.strip_prefix("error=Unsent(")?
                .strip_suffix(')')?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(unsent, 4, "{seen:?}");
    assert_eq!(role.link.outbox().queued_frames(), 1);
}

/// While the peer's budget is full the driver stops reading; taking events
/// from the stream lets it go on, and cancelling ends the wait.
#[tokio::test]
async fn a_full_budget_stops_reading_until_events_are_taken() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let mut role = TestRole::new();
    role.budget = Budget::new(4 * 1024);
    let mut stream = role.events.stream();
    let budget = role.budget.clone();
    let feeder = tokio::spawn(async move {
        for i in 0..100u32 {
            peer.write_all(&frame("m", &i)).await.unwrap();
        }
        peer
    });
    let driving = tokio::spawn(async move {
        let end = drive(&mut role, &mut reader).await;
        (end, role)
    });
    // The budget fills (256 bytes per event: 16 events) and reading stops.
    tokio::time::timeout(Duration::from_secs(10), async {
        while budget.charged() + 256 <= budget.limit() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(budget.charged() <= budget.limit());
    assert!(!feeder.is_finished() || budget.charged() > 0);
    // Taking every event lets all 100 through, in order.
    for i in 0..100u32 {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .unwrap()
            .unwrap();
        match ev {
            Ev::Message(m) => assert_eq!(m.data::<u32>().unwrap(), i),
            other => panic!("{other:?}"),
        }
    }
    let peer = feeder.await.unwrap();
    assert_eq!(budget.charged(), 0);
    // A driver waiting for room ends when its connection is cancelled.
    let mut peer = peer;
    for i in 0..40u32 {
        peer.write_all(&frame("m", &i)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while budget.charged() + 256 <= budget.limit() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    let (end, _role) = tokio::time::timeout(Duration::from_secs(10), driving)
        .await
        .expect("the driver waited past its cancellation")
        .unwrap();
    assert_eq!(end, None);
}

/// A server socket's writer that fails closes its queue: an `emit` waiting
/// for room fails at once instead of waiting for a peer that is gone.
#[tokio::test]
async fn a_failed_writer_closes_the_queue_so_waiting_emits_fail() {
    let link = Link::new(encoder(), 256);
    let (wr, rd) = tokio::io::duplex(64);
    let cancel = CancellationToken::new();
    let writer = spawn_writer(&link, wr, cancel.clone(), None, OnWriteFailure::CloseQueue);
    // Emits until one waits for room (the pipe and the queue are full).
    let emitting = {
        let link = link.clone();
        tokio::spawn(async move {
            let big = "x".repeat(200);
            let mut sent = 0u32;
            loop {
                if let Err(e) = link.emit("a", Some(&big)).await {
                    return (sent, e);
                }
                sent += 1;
            }
        })
    };
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(!emitting.is_finished());
    // The peer goes away: the write fails, the queue closes, the emit fails.
    drop(rd);
    let (sent, e) = tokio::time::timeout(Duration::from_secs(10), emitting)
        .await
        .expect("the emit waited past the writer's failure")
        .unwrap();
    assert!(sent > 0);
    assert!(matches!(e, ipc_conn::LinkError::Closed), "{e:?}");
    assert!(matches!(writer.await.unwrap(), WriterExit::Failed(_)));
    assert!(link.outbox().is_closed());
    assert!(cancel.is_cancelled());
}

/// A connection that has sent nothing holds no read buffer, one that sent
/// a little keeps a small one, and a burst's large buffer is given back
/// once everything read is decoded and the peer is quiet. A frame split
/// across reads keeps its bytes meanwhile.
#[tokio::test]
async fn a_quiet_peer_costs_no_large_read_buffer() {
    let cancel = CancellationToken::new();
    let (mut reader, mut peer) = pipe(&cancel);
    let pending = |reader: &mut FrameReader<DuplexStream>| {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        reader.poll_next(&mut cx).is_pending()
    };
    assert!(pending(&mut reader));
    assert_eq!(reader.buffer_capacity(), 0);

    let small = frame("a", &serde_json::json!({"n": 1}));
    peer.write_all(&small).await.unwrap();
    match reader.next().await {
        ipc_conn::ReadEvent::Item(Inbound::Message(m)) => assert_eq!(m.event(), "a"),
        other => panic!("{other:?}"),
    }
    assert!(pending(&mut reader));
    assert!(reader.buffer_capacity() <= ipc_conn::READ_CHUNK);

    // A burst grows the buffer; once it is read and the peer is quiet, the
    // buffer is given back.
    let big = frame("b", &"x".repeat(200_000));
    let writing = tokio::spawn(async move {
        peer.write_all(&big).await.unwrap();
        peer
    });
    match reader.next().await {
        ipc_conn::ReadEvent::Item(Inbound::Message(m)) => {
            assert_eq!(m.data::<String>().unwrap().len(), 200_000);
        }
        other => panic!("{other:?}"),
    }
    let mut peer = writing.await.unwrap();
    assert!(pending(&mut reader));
    assert_eq!(reader.buffer_capacity(), 0);

    // Half a frame: kept while the peer is quiet, completed by the rest.
    let next = frame("c", &"y".repeat(5000));
    let (head, tail) = next.split_at(3000);
    peer.write_all(head).await.unwrap();
    assert!(pending(&mut reader));
    assert!(reader.buffer_capacity() >= 3000);
    peer.write_all(tail).await.unwrap();
    match reader.next().await {
        ipc_conn::ReadEvent::Item(Inbound::Message(m)) => {
            assert_eq!(m.event(), "c");
            assert_eq!(m.data::<String>().unwrap().len(), 5000);
        }
        other => panic!("{other:?}"),
    }
    drop(peer);
    assert!(matches!(reader.next().await, ipc_conn::ReadEvent::Eof));
}

/// A writer's task starts with the first frame queued, not before; one
/// that never had anything to write starts when awaited and shuts the
/// write half down after a close.
#[tokio::test]
async fn the_writer_starts_with_the_first_frame() {
    let link = Link::new(encoder(), 1 << 16);
    let (wr, mut rd) = tokio::io::duplex(1 << 16);
    let cancel = CancellationToken::new();
    let writer = spawn_writer(&link, wr, cancel.clone(), None, OnWriteFailure::CloseQueue);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!writer.is_started());
    link.try_emit("a", Some(&1)).unwrap();
    assert!(writer.is_started());
    let got = read_frames(&mut rd, 1).await;
    assert_eq!(got[0].event(), "a");

    // Nothing queued, then closed: awaiting it drains and shuts down.
    let quiet = Link::new(encoder(), 1 << 16);
    let (wr, mut rd) = tokio::io::duplex(1 << 16);
    let idle = spawn_writer(
        &quiet,
        wr,
        cancel.child_token(),
        None,
        OnWriteFailure::CloseQueue,
    );
    assert!(!idle.is_started());
    quiet.outbox().close();
    assert!(idle.is_started());
    assert!(matches!(idle.await.unwrap(), WriterExit::Drained));
    let mut rest = Vec::new();
    rd.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    // Something queued before the writer is made: it starts at once.
    let early = Link::new(encoder(), 1 << 16);
    early.try_emit("b", Some(&2)).unwrap();
    let (wr, mut rd) = tokio::io::duplex(1 << 16);
    let started = spawn_writer(
        &early,
        wr,
        cancel.child_token(),
        None,
        OnWriteFailure::CloseQueue,
    );
    assert!(started.is_started());
    assert_eq!(read_frames(&mut rd, 1).await[0].event(), "b");
    cancel.cancel();
    assert!(matches!(writer.await.unwrap(), WriterExit::Cancelled));
    assert!(matches!(started.await.unwrap(), WriterExit::Cancelled));
}
