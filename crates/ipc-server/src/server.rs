//! [`Server`]: accept connections (or datagrams), dispatch their messages,
//! emit and broadcast.

#[cfg(feature = "udp")]
use std::collections::HashMap;
#[cfg(feature = "udp")]
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
#[cfg(feature = "udp")]
use std::time::Instant;

use bytes::Bytes;
use ipc_client::handlers::{HandlerId, Handlers, WILDCARD};
use ipc_client::link::{FrameReader, ReadEvent};
use ipc_client::outbox::{write_loop, SendError, WriterExit};
use ipc_client::EventStream;
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound, Message, UdpLimits};
use ipc_transport::{Endpoint, Incoming, ListenOptions, Listener};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authorize::Authorizer;
use crate::error::ServerError;
use crate::event::ServerEvent;
use crate::socket::{Peer, Socket};

/// Everything a [`Server`] is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Profile, limits and delimiter.
    pub codec: CodecConfig,
    /// Transport options: unlink, permissions, TLS.
    pub listen: ListenOptions,
    /// node-ipc's `maxConnections` (default 100): connections beyond it are
    /// closed at once and reported in an `error` event.
    pub max_connections: usize,
    /// node-ipc's `identifyPeer`: remember a truthy string `data.id` of any
    /// received message as the socket's peer id.
    pub identify_peer: bool,
    /// Per-connection outbound queue bound in bytes (default: the codec's
    /// `max_pending_bytes`, 8 MiB).
    pub queue_bytes: usize,
    /// Capacity of each [`EventStream`].
    pub event_buffer: usize,
    /// How long [`Server::stop`] waits for queues to flush before it drops
    /// what is left (and reports it).
    pub stop_timeout: Duration,
    /// UDP: bounded per-peer reassembly (peers, retained bytes, timeout).
    pub udp_limits: UdpLimits,
    /// UDP: known peers are forgotten after this long without a datagram.
    pub udp_peer_idle: Duration,
    /// Checked for every accepted stream connection (after the TLS
    /// handshake, before `connect`); a refusal closes the connection and
    /// emits an `error` event naming the peer and the reason. Default: none.
    pub authorize: Option<Authorizer>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let codec = CodecConfig::fast();
        ServerConfig {
            queue_bytes: codec.max_pending_bytes,
            codec,
            listen: ListenOptions::default(),
            max_connections: 100,
            identify_peer: false,
            event_buffer: 1024,
            stop_timeout: Duration::from_secs(10),
            udp_limits: UdpLimits::default(),
            udp_peer_idle: Duration::from_secs(300),
            authorize: None,
        }
    }
}

/// Where a server is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Created, not started.
    Idle,
    /// Listening.
    Running,
    /// Stopped (it can be started again).
    Stopped,
}

#[cfg(feature = "udp")]
type UdpSock = ipc_transport::UdpSocket;

#[cfg(feature = "udp")]
#[derive(Default)]
struct KnownPeers {
    seen: HashMap<SocketAddr, Instant>,
}

struct Inner {
    endpoint: Endpoint,
    name: String,
    config: ServerConfig,
    encoder: FrameEncoder,
    handlers: Handlers<ServerEvent>,
    streams: Mutex<Arc<Vec<mpsc::Sender<ServerEvent>>>>,
    sockets: Mutex<Arc<Vec<Socket>>>,
    next_id: AtomicU64,
    live: AtomicUsize,
    run: Mutex<Option<Run>>,
    state: watch::Sender<ServerState>,
    #[cfg(feature = "udp")]
    udp: Mutex<Option<Arc<UdpSock>>>,
    #[cfg(feature = "udp")]
    known: Mutex<KnownPeers>,
}

struct Run {
    cancel: CancellationToken,
    tracker: TaskTracker,
    local: Endpoint,
}

/// A node-ipc server on one endpoint. Cheap to clone (all clones are the same
/// server).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ipc_server::{Server, ServerConfig, ServerEvent};
/// let server = Server::new("unix:/tmp/app.world".parse()?, ServerConfig::default())?;
/// let s = server.clone();
/// server.on("message", move |ev: &ServerEvent| {
///     if let (Some(m), Some(from)) = (ev.message(), ev.peer()) {
///         if let Some(sock) = from.socket() {
///             let _ = sock.try_emit("message", &format!("echo {}", m.data_value()));
///         }
///     }
/// });
/// server.start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.inner.name)
            .field("state", &self.state())
            .field("connections", &self.connections())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Server {
    /// Creates a server for `endpoint` without listening: register handlers
    /// and event streams, then call [`Server::start`].
    pub fn new(endpoint: Endpoint, config: ServerConfig) -> Result<Server, ServerError> {
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        FrameDecoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        let (state, _) = watch::channel(ServerState::Idle);
        Ok(Server {
            inner: Arc::new(Inner {
                name: endpoint.to_string(),
                endpoint,
                encoder,
                handlers: Handlers::new(),
                streams: Mutex::new(Arc::new(Vec::new())),
                sockets: Mutex::new(Arc::new(Vec::new())),
                next_id: AtomicU64::new(1),
                live: AtomicUsize::new(0),
                run: Mutex::new(None),
                state,
                #[cfg(feature = "udp")]
                udp: Mutex::new(None),
                #[cfg(feature = "udp")]
                known: Mutex::new(KnownPeers::default()),
                config,
            }),
        })
    }

    /// The configured endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The endpoint actually listened on (real port for port 0), while
    /// running.
    pub fn local_endpoint(&self) -> Option<Endpoint> {
        lock(&self.inner.run).as_ref().map(|r| r.local.clone())
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        *self.inner.state.borrow()
    }

    /// How many stream connections are open.
    pub fn connections(&self) -> usize {
        lock(&self.inner.sockets).len()
    }

    /// The open stream connections.
    pub fn sockets(&self) -> Vec<Socket> {
        lock(&self.inner.sockets).to_vec()
    }

    /// Registers a handler for `event` (`"*"` = wildcard, runs first and
    /// sees every event).
    pub fn on(&self, event: &str, f: impl Fn(&ServerEvent) + Send + Sync + 'static) -> HandlerId {
        if event == WILDCARD {
            self.inner.handlers.on_any(move |_, ev| f(ev))
        } else {
            self.inner.handlers.on(event, f)
        }
    }

    /// Registers a handler for the next `event` only.
    pub fn once(&self, event: &str, f: impl Fn(&ServerEvent) + Send + Sync + 'static) -> HandlerId {
        if event == WILDCARD {
            self.inner.handlers.once_any(move |_, ev| f(ev))
        } else {
            self.inner.handlers.once(event, f)
        }
    }

    /// node-ipc's `server.on(type, (data, socket) => …)` for messages.
    pub fn on_message(
        &self,
        event: &str,
        f: impl Fn(&Message, &Peer) + Send + Sync + 'static,
    ) -> HandlerId {
        self.inner.handlers.on(event, move |ev| {
            if let ServerEvent::Message { from, message } = ev {
                f(message, from)
            }
        })
    }

    /// Removes a handler.
    pub fn off(&self, id: HandlerId) -> bool {
        self.inner.handlers.off(id)
    }

    /// Removes every handler of `event`.
    pub fn off_event(&self, event: &str) -> usize {
        self.inner.handlers.off_event(event)
    }

    /// A new stream of every event from now on. While it is full, readers
    /// wait (backpressure reaches the peers).
    pub fn events(&self) -> EventStream<ServerEvent> {
        let (tx, stream) = EventStream::channel(self.inner.config.event_buffer);
        let mut streams = lock(&self.inner.streams);
        let mut v: Vec<_> = streams.iter().filter(|s| !s.is_closed()).cloned().collect();
        v.push(tx);
        *streams = Arc::new(v);
        stream
    }

    /// Binds and starts serving; returns the endpoint listened on. Emits
    /// `start`.
    pub async fn start(&self) -> Result<Endpoint, ServerError> {
        if self.state() == ServerState::Running {
            return self.local_endpoint().ok_or(ServerError::NotRunning {
                endpoint: self.inner.name.clone(),
            });
        }
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let local = match &self.inner.endpoint {
            #[cfg(feature = "udp")]
            Endpoint::Udp { .. } => {
                let sock = UdpSock::bind(&self.inner.endpoint)
                    .await
                    .map_err(|source| ServerError::Listen {
                        endpoint: self.inner.name.clone(),
                        source,
                    })?;
                let sock = Arc::new(sock);
                let local = sock.local_endpoint();
                *lock(&self.inner.udp) = Some(sock.clone());
                tracker.spawn(udp_loop(self.inner.clone(), sock, cancel.clone()));
                local
            }
            _ => {
                let listener = Listener::bind(&self.inner.endpoint, &self.inner.config.listen)
                    .await
                    .map_err(|source| ServerError::Listen {
                        endpoint: self.inner.name.clone(),
                        source,
                    })?;
                let local = listener.local_endpoint();
                tracker.spawn(accept_loop(
                    self.inner.clone(),
                    listener,
                    cancel.clone(),
                    tracker.clone(),
                ));
                local
            }
        };
        *lock(&self.inner.run) = Some(Run {
            cancel,
            tracker,
            local: local.clone(),
        });
        self.inner.state.send_replace(ServerState::Running);
        tracing::debug!(endpoint = %local, "server started");
        self.inner.emit(ServerEvent::Start(local.clone())).await;
        Ok(local)
    }

    /// Sends `{"type":event,"data":data}` to one stream socket, waiting while
    /// its queue is full (node-ipc's `server.emit(socket, type, data)`).
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        socket: &Socket,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        socket.emit(event, data).await
    }

    /// UDP: sends one frame in one datagram to `target`.
    #[cfg(feature = "udp")]
    pub async fn emit_to<T: Serialize + ?Sized>(
        &self,
        target: SocketAddr,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let frame = self.encode(event, data, &target.to_string())?;
        self.send_datagram(target, &frame).await
    }

    /// UDP, raw profile: sends `bytes` as one datagram to `target`.
    #[cfg(feature = "udp")]
    pub async fn emit_raw_to(&self, target: SocketAddr, bytes: &[u8]) -> Result<(), ServerError> {
        let mut dst = bytes::BytesMut::new();
        self.inner
            .encoder
            .encode_raw(bytes, &mut dst)
            .map_err(|source| ServerError::Encode {
                peer: target.to_string(),
                source,
            })?;
        self.send_datagram(target, &dst).await
    }

    #[cfg(feature = "udp")]
    async fn send_datagram(&self, target: SocketAddr, frame: &[u8]) -> Result<(), ServerError> {
        let sock = lock(&self.inner.udp)
            .clone()
            .ok_or(ServerError::NotRunning {
                endpoint: self.inner.name.clone(),
            })?;
        sock.send_to(frame, target)
            .await
            .map_err(|source| ServerError::Datagram {
                peer: target.to_string(),
                source,
            })
    }

    fn encode<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        peer: &str,
    ) -> Result<Bytes, ServerError> {
        self.inner
            .encoder
            .encode_to_bytes(event, Some(data))
            .map_err(|source| ServerError::Encode {
                peer: peer.to_owned(),
                source,
            })
    }

    /// Sends one event to every connected peer, encoding it once. Never
    /// waits for a slow peer: a peer whose queue is full is disconnected
    /// with an `ERR_IPC_BACKPRESSURE` error event so the others keep their
    /// pace. UDP: one datagram to every known live peer. Returns how many
    /// peers the frame was queued (or sent) to.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<usize, ServerError> {
        let frame = self.encode(event, data, "broadcast")?;
        self.broadcast_frame(frame).await
    }

    /// [`Server::broadcast`] of an already encoded frame.
    pub async fn broadcast_frame(&self, frame: Bytes) -> Result<usize, ServerError> {
        let mut sent = 0;
        let sockets = lock(&self.inner.sockets).clone();
        let mut slow = Vec::new();
        for s in sockets.iter() {
            match s.inner.outbox.try_send(frame.clone()) {
                Ok(()) => sent += 1,
                Err(e @ SendError::Full { .. }) => slow.push((s.clone(), s.send_error(e))),
                // Closing: its end is reported by its own task.
                Err(SendError::Closed { .. }) => {}
            }
        }
        for (s, err) in slow {
            tracing::warn!(peer = %s.label(), "disconnecting a peer that does not keep up: {err}");
            self.inner
                .emit(ServerEvent::Error {
                    peer: Some(Peer::Socket(s.clone())),
                    error: Arc::new(err),
                })
                .await;
            s.destroy();
        }
        #[cfg(feature = "udp")]
        {
            let peers = self.udp_peers();
            for p in peers {
                match self.send_datagram(p, &frame).await {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        self.inner
                            .emit(ServerEvent::Error {
                                peer: Some(Peer::Udp(p)),
                                error: Arc::new(e),
                            })
                            .await
                    }
                }
            }
        }
        Ok(sent)
    }

    /// UDP: the peers seen recently (bounded by `udp_limits.max_peers`).
    #[cfg(feature = "udp")]
    pub fn udp_peers(&self) -> Vec<SocketAddr> {
        let idle = self.inner.config.udp_peer_idle;
        let mut known = lock(&self.inner.known);
        let now = Instant::now();
        known.seen.retain(|_, t| now.duration_since(*t) < idle);
        known.seen.keys().copied().collect()
    }

    /// Stops gracefully: stops accepting (the Unix socket file is removed),
    /// writes what every queue holds (within `stop_timeout`), closes every
    /// connection and emits `socket.disconnected` and `close` for each.
    /// Whatever could not be written in time is reported as `error` events.
    pub async fn stop(&self) {
        let Some(run) = lock(&self.inner.run).take() else {
            return;
        };
        // Stop accepting; connections finish on their own once their queues
        // are drained.
        run.cancel.cancel();
        for s in lock(&self.inner.sockets).iter() {
            s.close();
        }
        run.tracker.close();
        if tokio::time::timeout(self.inner.config.stop_timeout, run.tracker.wait())
            .await
            .is_err()
        {
            for s in lock(&self.inner.sockets).iter() {
                s.destroy();
            }
            run.tracker.wait().await;
        }
        self.after_stop();
    }

    /// Stops at once: every connection is destroyed, queued messages are
    /// dropped and reported as `error` events.
    pub async fn abort(&self) {
        let Some(run) = lock(&self.inner.run).take() else {
            return;
        };
        run.cancel.cancel();
        for s in lock(&self.inner.sockets).iter() {
            s.destroy();
        }
        run.tracker.close();
        run.tracker.wait().await;
        self.after_stop();
    }

    fn after_stop(&self) {
        #[cfg(feature = "udp")]
        {
            *lock(&self.inner.udp) = None;
            lock(&self.inner.known).seen.clear();
        }
        self.inner.state.send_replace(ServerState::Stopped);
    }
}

impl Inner {
    async fn emit(&self, ev: ServerEvent) {
        let d = self.handlers.dispatch(ev.name(), &ev);
        let streams = lock(&self.streams).clone();
        let is_error = matches!(ev, ServerEvent::Error { .. });
        if is_error && d.ran == 0 && streams.is_empty() {
            if let ServerEvent::Error { peer, error } = &ev {
                match peer {
                    Some(p) => {
                        tracing::warn!(endpoint = %self.name, peer = %p, "unhandled server error: {error}")
                    }
                    None => {
                        tracing::warn!(endpoint = %self.name, "unhandled server error: {error}")
                    }
                }
            }
        }
        let mut closed = false;
        for tx in streams.iter() {
            if tx.send(ev.clone()).await.is_err() {
                closed = true;
            }
        }
        if closed {
            let mut s = lock(&self.streams);
            let v: Vec<_> = s.iter().filter(|t| !t.is_closed()).cloned().collect();
            *s = Arc::new(v);
        }
        for p in d.panics {
            let err = ServerError::Handler {
                event: p.event,
                message: p.message,
            };
            if is_error {
                tracing::error!(endpoint = %self.name, "error handler panicked: {err}");
            } else {
                Box::pin(self.emit(ServerEvent::Error {
                    peer: ev.peer(),
                    error: Arc::new(err),
                }))
                .await;
            }
        }
    }

    async fn error(&self, peer: Option<Peer>, error: ServerError) {
        self.emit(ServerEvent::Error {
            peer,
            error: Arc::new(error),
        })
        .await;
    }

    fn register(&self, s: &Socket) {
        let mut sockets = lock(&self.sockets);
        let mut v = sockets.to_vec();
        v.push(s.clone());
        *sockets = Arc::new(v);
    }

    fn unregister(&self, s: &Socket) {
        let mut sockets = lock(&self.sockets);
        let v: Vec<_> = sockets.iter().filter(|x| *x != s).cloned().collect();
        *sockets = Arc::new(v);
    }
}

async fn accept_loop(
    inner: Arc<Inner>,
    listener: Listener,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let incoming = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = listener.accept_raw() => r,
        };
        match incoming {
            Ok(incoming) => {
                let limit = inner.config.max_connections;
                if inner.live.load(Ordering::SeqCst) >= limit {
                    let peer = incoming.peer().addr.to_string();
                    drop(incoming);
                    tracing::warn!(endpoint = %inner.name, %peer, limit, "maxConnections reached; connection closed");
                    inner
                        .error(None, ServerError::MaxConnections { peer, limit })
                        .await;
                    continue;
                }
                inner.live.fetch_add(1, Ordering::SeqCst);
                tracker.spawn(connection(inner.clone(), incoming, cancel.clone()));
            }
            Err(source) => {
                inner
                    .error(
                        None,
                        ServerError::Accept {
                            endpoint: inner.name.clone(),
                            source,
                        },
                    )
                    .await;
                // Resource exhaustion (EMFILE…) would spin: pause briefly.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    }
    listener.close().await;
}

/// Runs one connection from handshake to `close`.
async fn connection(inner: Arc<Inner>, incoming: Incoming, server_cancel: CancellationToken) {
    let handshake = tokio::select! {
        biased;
        _ = server_cancel.cancelled() => None,
        r = incoming.handshake() => Some(r),
    };
    let (stream, peer) = match handshake {
        None => {
            inner.live.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        Some(Ok(x)) => x,
        Some(Err(source)) => {
            inner.live.fetch_sub(1, Ordering::SeqCst);
            inner
                .error(
                    None,
                    ServerError::Accept {
                        endpoint: inner.name.clone(),
                        source,
                    },
                )
                .await;
            return;
        }
    };
    if let Some(authorize) = &inner.config.authorize {
        if let Err(reason) = authorize.check(&peer) {
            drop(stream);
            inner.live.fetch_sub(1, Ordering::SeqCst);
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
            inner.live.fetch_sub(1, Ordering::SeqCst);
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
        inner.config.queue_bytes,
        inner.encoder.clone(),
        cancel.clone(),
    );
    inner.register(&socket);
    inner.emit(ServerEvent::Connect(socket.clone())).await;

    let (rd, mut wr) = stream.into_split();
    let writer = {
        let s = socket.clone();
        tokio::spawn(async move {
            let exit = write_loop(&s.inner.outbox, &mut wr, true, &s.inner.cancel, None).await;
            // After a graceful close the write half is shut down and the
            // reader goes on until the peer closes too, so nothing the peer
            // sent before it saw our end is lost. A failed writer ends the
            // connection.
            if !matches!(exit, WriterExit::Drained) {
                s.inner.cancel.cancel();
            }
            exit
        })
    };
    let mut reader = FrameReader::new(rd, decoder);
    let from = Peer::Socket(socket.clone());
    let mut failure = None;
    loop {
        match reader.next(&cancel).await {
            ReadEvent::Item(Inbound::Message(message)) => {
                if inner.config.identify_peer {
                    identify(&socket, &message);
                }
                inner
                    .emit(ServerEvent::Message {
                        from: from.clone(),
                        message,
                    })
                    .await;
            }
            ReadEvent::Item(Inbound::Raw(bytes)) => {
                inner
                    .emit(ServerEvent::Data {
                        from: from.clone(),
                        bytes,
                    })
                    .await;
            }
            ReadEvent::Eof => {
                // The peer is done sending: write what is queued, then close.
                socket.close();
                break;
            }
            ReadEvent::Cancelled => break,
            ReadEvent::Protocol(source) => {
                failure = Some(ServerError::Protocol {
                    peer: socket.label().to_owned(),
                    source,
                });
                break;
            }
            ReadEvent::Io(source) => {
                failure = Some(ServerError::Io {
                    peer: socket.label().to_owned(),
                    source,
                });
                break;
            }
        }
    }
    if failure.is_some() {
        cancel.cancel();
    }
    let exit = match tokio::time::timeout(inner.config.stop_timeout, writer).await {
        Ok(exit) => exit,
        Err(_) => {
            // The peer does not read what is left: give up on it.
            cancel.cancel();
            Ok(WriterExit::Cancelled)
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
    inner.live.fetch_sub(1, Ordering::SeqCst);
    if let Some(e) = failure {
        inner.error(Some(from.clone()), e).await;
    }
    let (frames, bytes) = socket.inner.outbox.abort();
    if frames > 0 {
        inner
            .error(
                Some(from.clone()),
                ServerError::Undelivered {
                    peer: socket.label().to_owned(),
                    frames,
                    bytes,
                },
            )
            .await;
    }
    let id = socket.peer_id();
    inner
        .emit(ServerEvent::SocketDisconnected {
            socket: socket.clone(),
            id,
        })
        .await;
    inner.emit(ServerEvent::Close(socket)).await;
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

#[cfg(feature = "udp")]
async fn udp_loop(inner: Arc<Inner>, sock: Arc<UdpSock>, cancel: CancellationToken) {
    use ipc_proto::UdpReassembler;
    let mut reasm: UdpReassembler<SocketAddr> =
        match UdpReassembler::new(inner.config.codec.clone(), inner.config.udp_limits) {
            Ok(r) => r,
            Err(e) => {
                inner.error(None, ServerError::Config(e)).await;
                return;
            }
        };
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::new();
    loop {
        let deadline = reasm.next_deadline().map(tokio::time::Instant::from_std);
        let r = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = sock.recv_from(&mut buf) => Some(r),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        let now = Instant::now();
        let Some(r) = r else {
            for (peer, e) in reasm.expire(now) {
                inner
                    .error(
                        Some(Peer::Udp(peer)),
                        ServerError::Protocol {
                            peer: format!("udp {peer}"),
                            source: e,
                        },
                    )
                    .await;
            }
            continue;
        };
        match r {
            Ok((n, from)) => {
                remember(&inner, from, now);
                let pushed = reasm.push(from, &buf[..n], now, &mut out);
                for item in out.drain(..) {
                    let ev = match item {
                        Inbound::Message(message) => ServerEvent::Message {
                            from: Peer::Udp(from),
                            message,
                        },
                        Inbound::Raw(bytes) => ServerEvent::Data {
                            from: Peer::Udp(from),
                            bytes,
                        },
                    };
                    inner.emit(ev).await;
                }
                if let Err(source) = pushed {
                    inner
                        .error(
                            Some(Peer::Udp(from)),
                            ServerError::Protocol {
                                peer: format!("udp {from}"),
                                source,
                            },
                        )
                        .await;
                }
            }
            Err(source) => {
                inner
                    .error(
                        None,
                        ServerError::Datagram {
                            peer: inner.name.clone(),
                            source,
                        },
                    )
                    .await;
            }
        }
    }
}

/// Records a UDP sender in the bounded table of known peers (the oldest is
/// forgotten when the table is full).
#[cfg(feature = "udp")]
fn remember(inner: &Inner, from: SocketAddr, now: Instant) {
    let max = inner.config.udp_limits.max_peers.max(1);
    let mut known = lock(&inner.known);
    if !known.seen.contains_key(&from) && known.seen.len() >= max {
        if let Some(oldest) = known.seen.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
            known.seen.remove(&oldest);
        }
    }
    known.seen.insert(from, now);
}
