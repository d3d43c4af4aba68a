//! One accepted connection, from the transport handshake to `close`: the
//! server's side of the shared connection driver.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipc_conn::{
    drive, spawn_writer, Admit, Budget, CallError, Dispatcher, FrameReader, HandshakeMode, Link,
    OnWriteFailure, RequestHandlers, Role, Step, WriterExit,
};
use ipc_proto::ext::{self, names, End, Hello, Welcome};
use ipc_proto::{ErrorCode, FrameDecoder, Inbound, Message, ProtocolError};
use ipc_transport::Incoming;
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
pub(super) async fn connection(
    inner: Arc<Inner>,
    incoming: Incoming,
    server_cancel: CancellationToken,
) {
    let mut slot = LiveSlot(Some(&inner));
    let handshake = tokio::select! {
        biased;
        _ = server_cancel.cancelled() => None,
        r = incoming.handshake() => Some(r),
    };
    let (stream, peer) = match handshake {
        None => return,
        Some(Ok(x)) => x,
        Some(Err(source)) => {
            slot.release();
            let endpoint = inner.name.clone();
            inner
                .error(None, ServerError::Accept { endpoint, source })
                .await;
            return;
        }
    };
    if let Some(authorize) = &inner.config.authorize {
        if let Err(reason) = authorize.check(&peer) {
            drop(stream);
            slot.release();
            let peer = peer.to_string();
            tracing::warn!(endpoint = %inner.name, %peer, %reason, "connection refused by the authorizer");
            inner
                .error(None, ServerError::Unauthorized { peer, reason })
                .await;
            return;
        }
    }
    let decoder = match FrameDecoder::new(inner.config.codec.clone()) {
        Ok(d) => d,
        Err(e) => {
            slot.release();
            inner.error(None, ServerError::Config(e)).await;
            return;
        }
    };
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
    inner.deliver(ServerEvent::Connect(socket.clone())).await;

    let (rd, wr) = stream.into_split();
    // node-ipc and net-ipc clients share the endpoint: the first bytes tell.
    let (mut failure, exit) = match super::netipc::sniff(&inner, rd, &cancel).await {
        super::netipc::Sniffed::NodeIpc(rd) => {
            serve(&inner, &socket, &cancel, decoder, rd, wr).await
        }
        super::netipc::Sniffed::NetIpc(buf, rd) => {
            super::netipc::serve(&inner, &socket, &cancel, decoder, buf, rd, wr).await
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

/// Reads and writes one connection's node-ipc frames until it ends: the
/// writer, the frame reader and the driver. Returns the failure that ended
/// it (if any) and how the writer ended.
pub(super) async fn serve<R, W>(
    inner: &Arc<Inner>,
    socket: &Socket,
    cancel: &CancellationToken,
    decoder: FrameDecoder,
    rd: R,
    wr: W,
) -> (
    Option<ServerError>,
    Result<WriterExit, tokio::task::JoinError>,
)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // After a graceful close the write half is shut down and the reader
    // goes on until the peer closes too, so nothing the peer sent before it
    // saw our end is lost. A failed writer ends the connection and closes
    // the socket's queue: every emit waiting for room in it fails at once
    // instead of waiting for a peer that is gone.
    let writer = spawn_writer(
        socket.link(),
        wr,
        cancel.clone(),
        None,
        OnWriteFailure::CloseQueue,
    );
    let mut reader = FrameReader::new(rd, decoder, cancel.clone());
    let mut role = ServerRole {
        inner,
        from: Peer::Socket(socket.clone()),
        // Required handshake: nothing but `ipcx.hello` before the deadline.
        greeting: (inner.config.handshake == HandshakeMode::Required)
            .then(|| Instant::now() + inner.config.handshake_timeout),
        refused: false,
        failure: None,
        budget: Budget::new(inner.config.inbound_bytes),
        socket: socket.clone(),
    };
    let ended = drive(&mut role, &mut reader).await;
    if ended.is_some() {
        cancel.cancel();
    }
    // A refused hello ends reading at once but lets the queue (with its
    // `ipcx.end`) drain.
    let failure = ended.or(role.failure.take());
    if failure.is_some() {
        socket.close();
    }
    let exit = match tokio::time::timeout(inner.config.stop_timeout, writer).await {
        Ok(exit) => exit,
        Err(_) => {
            // The peer does not read what is left: give up on it.
            cancel.cancel();
            Ok(WriterExit::Cancelled)
        }
    };
    (failure, exit)
}

/// The server's side of the connection driver, for one socket.
struct ServerRole<'a> {
    inner: &'a Arc<Inner>,
    socket: Socket,
    from: Peer,
    /// The deadline of a required `ipcx.hello`, until it arrives.
    greeting: Option<Instant>,
    /// A refused hello: the peer's further messages reach nobody.
    refused: bool,
    /// An error to report when the connection ends (a refused hello; the
    /// connection is closing gracefully meanwhile).
    failure: Option<ServerError>,
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
            peer: Some(self.from.clone()),
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
        (&self.inner.requests, self.from.clone())
    }

    fn request_panicked(&self, message: String) -> ServerEvent {
        ServerEvent::Error {
            peer: Some(self.from.clone()),
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
                self.failure = Some(ServerError::Handshake {
                    peer: self.socket.label().to_owned(),
                    code,
                    reason,
                });
                return Step::End(None);
            }
            return Step::Continue;
        }
        self.inner.broker_message(&self.socket, m).await;
        Step::Continue
    }

    #[inline]
    fn event(&mut self, item: Inbound) -> ServerEvent {
        let from = self.from.clone();
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
