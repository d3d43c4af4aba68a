//! One accepted connection, from the transport handshake to `close`: the
//! server's side of the shared connection driver.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipc_conn::{
    drive, spawn_writer, Admit, Budget, CallError, Dispatcher, FrameReader, HandshakeMode, Link,
    OnWriteFailure, RequestHandlers, Role, Step, Writer, WriterExit,
};
use ipc_proto::ext::{self, names, End, Hello, Welcome};
use ipc_proto::{ErrorCode, Inbound, Message, ProtocolError};
use ipc_transport::{Incoming, PeerInfo, Stream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{lock, Inner};
use crate::error::ServerError;
use crate::event::ServerEvent;
use crate::socket::{Peer, Socket};

/// One place in `maxConnections`, given back when the connection's
/// transport is gone (before its last events are delivered, so a burst of
/// closes never refuses the next client), or when the task ends early.
struct LiveSlot<'a>(Option<&'a Inner>);

impl LiveSlot<'_> {
    fn release(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.live.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for LiveSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs one connection from handshake to `close`. The accept loop counted
/// it in `live`; this task gives the place back.
///
/// A task is as large as its largest state, and an idle connection should
/// cost little more than its socket (`cargo xtask bench --workloads w4`):
/// every wait larger than the connection's life itself is boxed.
pub(super) async fn connection(
    inner: Arc<Inner>,
    incoming: Box<Incoming>,
    server_cancel: CancellationToken,
) {
    let mut slot = LiveSlot(Some(&inner));
    if server_cancel.is_cancelled() {
        // Accepted as the server began to stop: not served.
        return;
    }
    // The stream and the peer are taken inside this block, so they are not
    // kept in the task (as dead space) for the connection's life.
    let (socket, cancel, rd, wr) = {
        let (stream, peer) = match incoming.ready() {
            Ok(ready) => ready,
            // Boxed: a TLS handshake's state is larger than the rest of the
            // connection's.
            Err(incoming) => {
                match Box::pin(handshake(&inner, incoming, &server_cancel, &mut slot)).await {
                    Some(ready) => ready,
                    None => return,
                }
            }
        };
        if let Some(authorize) = &inner.config.authorize {
            if let Err(reason) = authorize.check(&peer) {
                drop(stream);
                slot.release();
                let peer = peer.to_string();
                tracing::warn!(endpoint = %inner.name, %peer, %reason, "connection refused by the authorizer");
                let refused = ServerError::Unauthorized { peer, reason };
                Box::pin(inner.error(None, refused)).await;
                return;
            }
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        // Stopping the server does not cancel connections directly: `stop`
        // closes their queues so they drain first; `abort` destroys them.
        let cancel = CancellationToken::new();
        let socket = Socket::new(
            id,
            peer,
            Link::new(inner.encoder.clone(), inner.config.queue_bytes),
            cancel.clone(),
        );
        inner.register(&socket);
        let (rd, wr) = stream.into_split();
        (socket, cancel, rd, wr)
    };
    // Boxed: delivering an event takes more room than the connection's
    // life below.
    Box::pin(inner.deliver(ServerEvent::Connect(socket.clone()))).await;
    // node-ipc and net-ipc clients share the endpoint: the first bytes tell.
    let (mut failure, exit) = match super::netipc::sniff(&inner, rd, &cancel).await {
        super::netipc::Sniffed::NodeIpc(rd) => {
            let (mut reader, writer) = start(&inner, &socket, &cancel, rd, wr);
            serve(&inner, &socket, &cancel, &mut reader, writer).await
        }
        super::netipc::Sniffed::NetIpc(buf, rd) => {
            Box::pin(super::netipc::serve(&inner, &socket, &cancel, buf, rd, wr)).await
        }
    };
    if failure.is_none() {
        if let Ok(WriterExit::Failed(source)) = exit {
            if !is_disconnect(&source) {
                failure = Some(ServerError::Io {
                    peer: socket.label().to_owned(),
                    source,
                });
            }
        }
    }
    inner.unregister(&socket);
    inner.unsubscribe_all(&socket);
    socket.link().calls().fail_all(CallError::NotConnected);
    slot.release();
    Box::pin(closed(&inner, socket, failure)).await;
}

/// The transport's handshake: the stream and who is on the other end, or
/// `None` when it failed (reported) or the server stopped first.
async fn handshake(
    inner: &Inner,
    incoming: Box<Incoming>,
    server_cancel: &CancellationToken,
    slot: &mut LiveSlot<'_>,
) -> Option<(Stream, PeerInfo)> {
    let handshake = tokio::select! {
        biased;
        _ = server_cancel.cancelled() => return None,
        r = (*incoming).handshake() => r,
    };
    match handshake {
        Ok(ready) => Some(ready),
        Err(source) => {
            slot.release();
            let endpoint = inner.name.clone();
            inner
                .error(None, ServerError::Accept { endpoint, source })
                .await;
            None
        }
    }
}

/// The frame reader and the writer of one connection's node-ipc frames.
///
/// After a graceful close the write half is shut down and the reader goes
/// on until the peer closes too, so nothing the peer sent before it saw our
/// end is lost. A failed writer ends the connection and closes the socket's
/// queue: every emit waiting for room in it fails at once instead of
/// waiting for a peer that is gone.
pub(super) fn start<R, W>(
    inner: &Inner,
    socket: &Socket,
    cancel: &CancellationToken,
    rd: R,
    wr: W,
) -> (FrameReader<R>, Writer)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let reader = FrameReader::new(rd, inner.decoder.clone(), cancel.clone());
    let writer = spawn_writer(
        socket.link(),
        wr,
        cancel.clone(),
        None,
        OnWriteFailure::CloseQueue,
    );
    (reader, writer)
}

/// Reports how a connection ended: its failure, what it did not deliver,
/// then `socket.disconnected` and `close`.
async fn closed(inner: &Inner, socket: Socket, failure: Option<ServerError>) {
    let from = Peer::Socket(socket.clone());
    if let Some(e) = failure {
        inner.error(Some(from.clone()), e).await;
    }
    let (frames, bytes) = socket.link().outbox().abort();
    if frames > 0 {
        let peer = socket.label().to_owned();
        let e = ServerError::Undelivered {
            peer,
            frames,
            bytes,
        };
        inner.error(Some(from), e).await;
    }
    let id = socket.peer_id();
    inner
        .deliver(ServerEvent::SocketDisconnected {
            socket: socket.clone(),
            id,
        })
        .await;
    inner.deliver(ServerEvent::Close(socket)).await;
}

/// Reads and writes one connection's node-ipc frames until it ends.
/// Returns the failure that ended it (if any) and how the writer ended.
pub(super) async fn serve<R>(
    inner: &Arc<Inner>,
    socket: &Socket,
    cancel: &CancellationToken,
    reader: &mut FrameReader<R>,
    writer: Writer,
) -> (
    Option<ServerError>,
    Result<WriterExit, tokio::task::JoinError>,
)
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut role = ServerRole {
        inner,
        // Required handshake: nothing but `ipcx.hello` before the deadline.
        greeting: (inner.config.handshake == HandshakeMode::Required)
            .then(|| Instant::now() + inner.config.handshake_timeout),
        refused: false,
        failure: None,
        budget: Budget::new(inner.config.inbound_bytes),
        socket: socket.clone(),
    };
    // Boxed while the last frames are written (kept small: see
    // `connection`).
    let failure = match drive(&mut role, reader).await {
        Some(e) => {
            cancel.cancel();
            Some(Box::new(e))
        }
        // A refused hello ends reading at once but lets the queue (with its
        // `ipcx.end`) drain.
        None => role.failure.take(),
    };
    if failure.is_some() {
        socket.close();
    }
    let exit = match Box::pin(tokio::time::timeout(inner.config.stop_timeout, writer)).await {
        Ok(exit) => exit,
        Err(_) => {
            // The peer does not read what is left: give up on it.
            cancel.cancel();
            Ok(WriterExit::Cancelled)
        }
    };
    (failure.map(|e| *e), exit)
}

/// The server's side of the connection driver, for one socket.
struct ServerRole<'a> {
    inner: &'a Arc<Inner>,
    socket: Socket,
    /// The deadline of a required `ipcx.hello`, until it arrives.
    greeting: Option<Instant>,
    /// A refused hello: the peer's further messages reach nobody.
    refused: bool,
    /// An error to report when the connection ends (a refused hello; the
    /// connection is closing gracefully meanwhile).
    failure: Option<Box<ServerError>>,
    /// What this peer may have waiting in the event streams.
    budget: Budget,
}

impl Role for ServerRole<'_> {
    type Event = ServerEvent;
    type Peer = Peer;
    type Error = ServerError;

    #[inline]
    fn link(&self) -> &Link {
        self.socket.link()
    }

    #[inline]
    fn events(&self) -> &Dispatcher<ServerEvent> {
        &self.inner.events
    }

    #[inline]
    fn budget(&self) -> &Budget {
        &self.budget
    }

    fn error_event(&self, error: ServerError) -> ServerEvent {
        ServerEvent::Error {
            peer: Some(self.from()),
            error: Arc::new(error),
        }
    }

    fn answers_unsent(&self, count: u64) -> ServerError {
        ServerError::AnswersUnsent {
            peer: self.socket.label().to_owned(),
            count,
        }
    }

    #[inline]
    fn label(&self) -> &str {
        self.socket.label()
    }

    #[inline]
    fn extension(&self) -> bool {
        self.inner.config.extension
    }

    fn requests(&self) -> (&RequestHandlers<Peer>, Peer) {
        (&self.inner.requests, self.from())
    }

    fn request_panicked(&self, message: String) -> ServerEvent {
        ServerEvent::Error {
            peer: Some(self.from()),
            error: Arc::new(ServerError::Handler {
                event: names::REQUEST.into(),
                message,
            }),
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.inner.config.idle_timeout
    }

    fn idle_error(&self) -> ServerError {
        ServerError::Idle {
            peer: self.socket.label().to_owned(),
            after: self.inner.config.idle_timeout.unwrap_or_default(),
        }
    }

    #[inline]
    fn deadline(&self) -> Option<Instant> {
        self.greeting
    }

    async fn timed_out(&mut self) -> Step<ServerError> {
        Step::End(Some(ServerError::Handshake {
            peer: self.socket.label().to_owned(),
            code: ErrorCode::HandshakeTimeout,
            reason: "no ipcx.hello in time".into(),
        }))
    }

    #[inline]
    fn admit(&mut self, item: &Inbound) -> Admit<ServerError> {
        if self.refused {
            return Admit::Ignore;
        }
        match item {
            Inbound::Message(m) if self.greeting.is_some() => {
                let hello = self.inner.config.extension && m.event() == names::HELLO;
                if hello {
                    Admit::Route
                } else {
                    Admit::End(self.handshake_required(m.event()))
                }
            }
            _ => Admit::Route,
        }
    }

    async fn extension_message(&mut self, m: &Message) -> Step<ServerError> {
        if m.event() == names::HELLO {
            self.greeting = None;
            if let Err((code, reason)) = welcome(self.inner, &self.socket, m).await {
                // Refused: nothing more is read; the `ipcx.end` already
                // queued is written before the connection closes.
                self.refused = true;
                self.failure = Some(Box::new(ServerError::Handshake {
                    peer: self.socket.label().to_owned(),
                    code,
                    reason,
                }));
                return Step::End(None);
            }
            return Step::Continue;
        }
        self.inner.broker_message(&self.socket, m).await;
        Step::Continue
    }

    #[inline]
    fn event(&mut self, item: Inbound) -> ServerEvent {
        let from = self.from();
        match item {
            Inbound::Message(message) => {
                if self.inner.config.identify_peer {
                    identify(&self.socket, &message);
                }
                ServerEvent::Message { from, message }
            }
            Inbound::Raw(bytes) => ServerEvent::Data { from, bytes },
        }
    }

    fn eof(&mut self) {
        // The peer is done sending: write what is queued, then close.
        self.socket.close();
    }

    fn protocol_error(&self, source: ProtocolError) -> ServerError {
        ServerError::Protocol {
            peer: self.socket.label().to_owned(),
            source,
        }
    }

    fn io_error(&self, source: std::io::Error) -> ServerError {
        ServerError::Io {
            peer: self.socket.label().to_owned(),
            source,
        }
    }
}

impl ServerRole<'_> {
    /// This socket, as the peer events name.
    fn from(&self) -> Peer {
        Peer::Socket(self.socket.clone())
    }

    fn handshake_required(&self, first: &str) -> ServerError {
        ServerError::Handshake {
            peer: self.socket.label().to_owned(),
            code: ErrorCode::HandshakeRequired,
            reason: format!("`{first}` arrived before ipcx.hello"),
        }
    }
}

/// Answers an `ipcx.hello`: checks its shape and runs the hello check,
/// then replies `ipcx.welcome` and emits `hello` — or, refusing it, replies
/// `ipcx.end` (no reconnect) and closes gracefully.
async fn welcome(
    inner: &Arc<Inner>,
    socket: &Socket,
    message: &Message,
) -> Result<(), (ErrorCode, String)> {
    let refuse = |code: ErrorCode, reason: String| {
        let end = End::new(&reason, false);
        if let Err(e) = socket.link().try_emit(names::END, Some(&end)) {
            tracing::debug!(peer = %socket.label(), "cannot send ipcx.end: {e}");
        }
        socket.close();
        Err((code, reason))
    };
    let hello: Hello = match ext::decode(message) {
        Ok(h) => h,
        Err(e) => return refuse(e.code(), e.message().to_owned()),
    };
    let check = lock(&inner.hello_check).clone();
    if let Some(check) = check {
        if let Err(reason) = check(socket, &hello) {
            return refuse(ErrorCode::HandshakeRequired, reason);
        }
    }
    // Reconnecting clients keep their id; others get the connection's.
    let id = hello
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("{}", socket.id()));
    socket.set_peer_id(id.clone());
    let welcome = Welcome {
        v: ext::VERSION,
        id,
        features: ext::features(),
    };
    if let Err(e) = socket.link().try_emit(names::WELCOME, Some(&welcome)) {
        tracing::debug!(peer = %socket.label(), "cannot send ipcx.welcome: {e}");
    }
    inner
        .deliver(ServerEvent::Hello {
            socket: socket.clone(),
            hello: Arc::new(hello),
        })
        .await;
    Ok(())
}

/// A write failing because the peer went away is the normal end of a
/// connection, not an error worth an event of its own.
fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected
    )
}

/// `identifyPeer`: a truthy string (or number) `data.id` names the socket.
fn identify(socket: &Socket, message: &Message) {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<serde_json::Value>,
    }
    if let Ok(WithId { id: Some(v) }) = message.data::<WithId>() {
        let id = match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            serde_json::Value::Number(n) if n.as_f64() != Some(0.0) => Some(n.to_string()),
            _ => None,
        };
        if let Some(id) = id {
            socket.set_peer_id(id);
        }
    }
}
