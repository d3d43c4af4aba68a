//! [`Server`]: accept connections (or datagrams), dispatch their messages,
//! emit and broadcast.

use std::collections::HashMap;
#[cfg(feature = "udp")]
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
#[cfg(feature = "udp")]
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ipc_client::ext::{
    self, names, CallError, Flow, HandshakeMode, Hello, Request, RequestHandlers,
};
use ipc_client::handlers::{DispatchCache, HandlerId};
use ipc_client::link::{FrameReader, ReadEvent};
use ipc_client::outbox::{write_loop, SendError, WriterExit};
use ipc_client::Dispatcher;
use ipc_client::EventStream;
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, HeadCache, Inbound, Message, UdpLimits};
use ipc_transport::{Endpoint, Incoming, ListenOptions, Listener};
use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::watch;
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
    /// Handle the request/ping/pub-sub extension (SPEC §5.4): `ipcx.*`
    /// messages are answered and not delivered as events. Default on.
    pub extension: bool,
    /// `Required`: the first message of every connection must be
    /// `ipcx.hello`, within `handshake_timeout`. Otherwise a hello is
    /// answered whenever it arrives.
    pub handshake: HandshakeMode,
    /// How long a required handshake may take.
    pub handshake_timeout: Duration,
    /// Do not deliver a client's publication back to itself.
    pub no_local: bool,
    /// Close a stream connection that sends nothing for this long (default:
    /// never, as node-ipc). Detects half-open peers (a vanished host, a cut
    /// network) that would otherwise hold their slot forever; the
    /// connection ends with an `ERR_IPC_MESSAGE_TIMEOUT` error event.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive for accepted TCP/TLS connections (default `None`:
    /// node-ipc sets none, and probes are not free on metered or
    /// battery-powered links). Opt in to detect clients that vanished
    /// without closing even when they are expected to stay silent for long
    /// (unlike `idle_timeout`, which closes any silent peer): the kernel
    /// fails the connection after
    /// [`Keepalive::detection_time`](ipc_transport::Keepalive::detection_time)
    /// and the server reports and closes it.
    /// [`Keepalive::default`](ipc_transport::Keepalive::default) detects it
    /// within about two minutes. When set, it replaces `listen.keepalive`;
    /// it also applies to a listener given to [`Server::from_listener`]
    /// that has no keepalive of its own.
    pub keepalive: Option<ipc_transport::Keepalive>,
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
            extension: true,
            handshake: HandshakeMode::Off,
            handshake_timeout: Duration::from_secs(10),
            no_local: false,
            idle_timeout: None,
            keepalive: None,
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
    events: Dispatcher<ServerEvent>,
    sockets: Mutex<Registry>,
    next_id: AtomicU64,
    live: AtomicUsize,
    run: Mutex<Option<Run>>,
    /// A listener bound by someone else ([`Server::from_listener`]), used by
    /// the next `start`.
    prebound: Mutex<Option<Listener>>,
    state: watch::Sender<ServerState>,
    #[cfg(feature = "udp")]
    udp: Mutex<Option<Arc<UdpSock>>>,
    #[cfg(feature = "udp")]
    known: Mutex<KnownPeers>,
    requests: RequestHandlers<Peer>,
    subs: Mutex<HashMap<String, Arc<Vec<Socket>>>>,
    hello_check: Mutex<Option<HelloCheck>>,
    /// Where broadcast and publish frames are encoded.
    scratch: Mutex<Scratch>,
}

/// One buffer frames are cut from (no allocation per frame while the
/// previous ones have been let go), and the checked head of the last event
/// name.
#[derive(Default)]
struct Scratch {
    heads: HeadCache,
    buf: BytesMut,
}

/// A scratch buffer larger than this (after a large frame) is let go.
const SCRATCH_KEEP_MAX: usize = 256 * 1024;

type HelloCheck = Arc<dyn Fn(&Socket, &Hello) -> Result<(), String> + Send + Sync>;

/// The open stream connections, in accept order. Accepts and closes are
/// O(1)/O(n) without copying; broadcasts share one snapshot until the set
/// changes.
#[derive(Default)]
struct Registry {
    list: Vec<Socket>,
    snapshot: Option<Arc<Vec<Socket>>>,
}

impl Registry {
    fn snapshot(&mut self) -> Arc<Vec<Socket>> {
        self.snapshot
            .get_or_insert_with(|| Arc::new(self.list.clone()))
            .clone()
    }
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
    pub fn new(endpoint: Endpoint, mut config: ServerConfig) -> Result<Server, ServerError> {
        config.listen.keepalive = config.keepalive.or(config.listen.keepalive);
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        FrameDecoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        let (state, _) = watch::channel(ServerState::Idle);
        Ok(Server {
            inner: Arc::new(Inner {
                name: endpoint.to_string(),
                endpoint,
                encoder,
                events: Dispatcher::new(config.event_buffer),
                sockets: Mutex::new(Registry::default()),
                next_id: AtomicU64::new(1),
                live: AtomicUsize::new(0),
                run: Mutex::new(None),
                prebound: Mutex::new(None),
                state,
                #[cfg(feature = "udp")]
                udp: Mutex::new(None),
                #[cfg(feature = "udp")]
                known: Mutex::new(KnownPeers::default()),
                requests: RequestHandlers::default(),
                subs: Mutex::new(HashMap::new()),
                hello_check: Mutex::new(None),
                scratch: Mutex::new(Scratch::default()),
                config,
            }),
        })
    }

    /// A server on a listener bound elsewhere: the cluster pattern, where
    /// several workers accept on one Unix socket bound once by a supervisor
    /// (`ipc_transport::Listener::from_std_unix`), or a listener inherited
    /// from a service manager. The path is never unlinked or removed by this
    /// server. `start` uses the listener once; a later restart binds anew.
    pub fn from_listener(listener: Listener, config: ServerConfig) -> Result<Server, ServerError> {
        let server = Server::new(listener.local_endpoint(), config)?;
        *lock(&server.inner.prebound) = Some(listener);
        Ok(server)
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
        lock(&self.inner.sockets).list.len()
    }

    /// The open stream connections.
    pub fn sockets(&self) -> Vec<Socket> {
        lock(&self.inner.sockets).list.clone()
    }

    /// Registers a handler for `event` (`"*"` = wildcard, runs first and
    /// sees every event).
    pub fn on(&self, event: &str, f: impl Fn(&ServerEvent) + Send + Sync + 'static) -> HandlerId {
        self.inner.events.on(event, false, f)
    }

    /// Registers a handler for the next `event` only.
    pub fn once(&self, event: &str, f: impl Fn(&ServerEvent) + Send + Sync + 'static) -> HandlerId {
        self.inner.events.on(event, true, f)
    }

    /// node-ipc's `server.on(type, (data, socket) => …)` for messages.
    pub fn on_message(
        &self,
        event: &str,
        f: impl Fn(&Message, &Peer) + Send + Sync + 'static,
    ) -> HandlerId {
        self.inner.events.handlers().on(event, move |ev| {
            if let ServerEvent::Message { from, message } = ev {
                f(message, from)
            }
        })
    }

    /// Removes a handler.
    pub fn off(&self, id: HandlerId) -> bool {
        self.inner.events.handlers().off(id)
    }

    /// Removes every handler of `event`.
    pub fn off_event(&self, event: &str) -> usize {
        self.inner.events.handlers().off_event(event)
    }

    /// A new stream of every event from now on. While it is full, readers
    /// wait (backpressure reaches the peers).
    pub fn events(&self) -> EventStream<ServerEvent> {
        self.inner.events.stream()
    }

    /// Binds and starts serving; returns the endpoint listened on. Emits
    /// `start`.
    ///
    /// With the assured profile, refuses before binding anything a
    /// transport that cannot authenticate clients
    /// (`ERR_IPC_ASSURED_TRANSPORT`, `ERR_IPC_ASSURED_TLS`; see
    /// `ipc_transport::assured`).
    pub async fn start(&self) -> Result<Endpoint, ServerError> {
        if self.state() == ServerState::Running {
            return self.local_endpoint().ok_or(ServerError::NotRunning {
                endpoint: self.inner.name.clone(),
            });
        }
        crate::gates::check_start(&self.inner.endpoint, &self.inner.name, &self.inner.config)?;
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
                let prebound = lock(&self.inner.prebound).take();
                let listener = match prebound {
                    Some(mut l) if l.keepalive().is_none() => {
                        l.set_keepalive(self.inner.config.listen.keepalive);
                        l
                    }
                    Some(l) => l,
                    None => Listener::bind(&self.inner.endpoint, &self.inner.config.listen)
                        .await
                        .map_err(|source| ServerError::Listen {
                            endpoint: self.inner.name.clone(),
                            source,
                        })?,
                };
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

    /// UDP: sends an event without data (`data` becomes `{}`) to `target`.
    #[cfg(feature = "udp")]
    pub async fn emit_empty_to(&self, target: SocketAddr, event: &str) -> Result<(), ServerError> {
        let frame = self
            .inner
            .encoder
            .encode_to_bytes::<()>(event, None)
            .map_err(|source| ServerError::Encode {
                peer: target.to_string(),
                source,
            })?;
        self.send_datagram(target, &frame).await
    }

    /// UDP: sends an already encoded frame as one datagram to `target`.
    #[cfg(feature = "udp")]
    pub async fn send_frame_to(&self, target: SocketAddr, frame: &[u8]) -> Result<(), ServerError> {
        self.send_datagram(target, frame).await
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
        let mut scratch = lock(&self.inner.scratch);
        let Scratch { heads, buf } = &mut *scratch;
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(4096);
        }
        self.inner
            .encoder
            .encode_cached(heads, event, Some(data), buf)
            .map_err(|source| ServerError::Encode {
                peer: peer.to_owned(),
                source,
            })?;
        let frame = buf.split().freeze();
        if buf.capacity() > SCRATCH_KEEP_MAX {
            *buf = BytesMut::new();
        }
        Ok(frame)
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
        let sockets = lock(&self.inner.sockets).snapshot();
        #[allow(unused_mut)]
        let mut sent = self.inner.fan_out(&frame, &sockets, None).await;
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

    /// Publishes `message` on `topic`: one plain node-ipc frame
    /// `{"type":topic,"data":message}` to every subscribed connection, so any
    /// node-ipc client can consume it. Like `broadcast`, it never waits for a
    /// slow subscriber. Returns how many subscribers it was queued to.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
    ) -> Result<usize, ServerError> {
        ext::validate_topic(topic, self.inner.config.codec.max_event_name_length).map_err(
            |source| ServerError::Encode {
                peer: format!("topic {topic}"),
                source,
            },
        )?;
        let frame = self.encode(topic, message, "publish")?;
        Ok(self.inner.publish_frame(topic, &frame, None).await)
    }

    /// Answers requests from clients (SPEC §5.4 rule 3): handlers run in
    /// registration order, get the request (data, peer, responder), may stop
    /// propagation with [`Flow::Stop`], and answer now or later. With no
    /// handler a request is answered at once without data; an `Err` or a
    /// panic is answered with `ERR_IPC_HANDLER`.
    pub fn on_request(
        &self,
        f: impl Fn(&Request<Peer>) -> Result<Flow, String> + Send + Sync + 'static,
    ) {
        self.inner.requests.add(f);
    }

    /// Checks every `ipcx.hello` (e.g. an auth token in `extras`) before it
    /// is welcomed. A refusal answers `ipcx.end {"reason", "reconnect":false}`
    /// and closes the connection; nothing the peer sends after the hello
    /// reaches the handlers.
    pub fn on_hello(
        &self,
        f: impl Fn(&Socket, &Hello) -> Result<(), String> + Send + Sync + 'static,
    ) {
        *lock(&self.inner.hello_check) = Some(Arc::new(f));
    }

    /// isdk's `server.close(allowReconnect)`: stops listening and closes
    /// every connection gracefully after telling it with
    /// `ipcx.end {"reason":"Server was shut down","reconnect":allow_reconnect}`.
    pub async fn close(&self, allow_reconnect: bool) {
        let end = ext::End {
            reason: serde_json::Value::String("Server was shut down".into()),
            reconnect: allow_reconnect,
        };
        if let Ok(frame) = self.inner.encoder.encode_to_bytes(names::END, Some(&end)) {
            for s in lock(&self.inner.sockets).list.iter() {
                let _ = s.try_send_frame(frame.clone());
            }
        }
        self.stop().await;
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
        for s in lock(&self.inner.sockets).list.iter() {
            s.close();
        }
        run.tracker.close();
        if tokio::time::timeout(self.inner.config.stop_timeout, run.tracker.wait())
            .await
            .is_err()
        {
            for s in lock(&self.inner.sockets).list.iter() {
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
        for s in lock(&self.inner.sockets).list.iter() {
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
        self.emit_with(ev, None).await;
    }

    /// [`Inner::emit`] with a connection's dispatch cache.
    async fn emit_with(&self, ev: ServerEvent, cache: Option<&mut DispatchCache<ServerEvent>>) {
        let d = self.events.deliver_with(ev.name(), &ev, cache).await;
        let is_error = matches!(ev, ServerEvent::Error { .. });
        if is_error && d.handlers == 0 && d.streams == 0 {
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

    /// Queues `frame` to each socket (except `skip`) without waiting; a
    /// socket whose queue is full is disconnected with an error event.
    async fn fan_out(&self, frame: &Bytes, sockets: &[Socket], skip: Option<&Socket>) -> usize {
        let mut sent = 0;
        let mut slow = Vec::new();
        for s in sockets.iter().filter(|s| Some(*s) != skip) {
            match s.inner.outbox.try_send_copy(frame) {
                Ok(()) => sent += 1,
                Err(e @ SendError::Full { .. }) => slow.push((s.clone(), s.send_error(e))),
                // Closing: its end is reported by its own task.
                Err(SendError::Closed { .. }) => {}
            }
        }
        for (s, err) in slow {
            tracing::warn!(peer = %s.label(), "disconnecting a peer that does not keep up: {err}");
            self.emit(ServerEvent::Error {
                peer: Some(Peer::Socket(s.clone())),
                error: Arc::new(err),
            })
            .await;
            s.destroy();
        }
        sent
    }

    async fn publish_frame(&self, topic: &str, frame: &Bytes, skip: Option<&Socket>) -> usize {
        let subscribers = lock(&self.subs).get(topic).cloned();
        match subscribers {
            Some(list) => self.fan_out(frame, &list, skip).await,
            None => 0,
        }
    }

    /// Adds (or removes) `topics` for `socket`.
    fn subscribe(&self, socket: &Socket, topics: &[String], add: bool) {
        let mut subs = lock(&self.subs);
        let mut mine = socket
            .inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for t in topics {
            let mut v: Vec<Socket> = subs
                .get(t)
                .map(|l| l.iter().filter(|s| *s != socket).cloned().collect())
                .unwrap_or_default();
            if add {
                v.push(socket.clone());
                mine.insert(t.clone());
            } else {
                mine.remove(t);
            }
            if v.is_empty() {
                subs.remove(t);
            } else {
                subs.insert(t.clone(), Arc::new(v));
            }
        }
    }

    fn unsubscribe_all(&self, socket: &Socket) {
        let topics: Vec<String> = socket.topics();
        self.subscribe(socket, &topics, false);
    }

    fn register(&self, s: &Socket) {
        let mut r = lock(&self.sockets);
        r.list.push(s.clone());
        r.snapshot = None;
    }

    fn unregister(&self, s: &Socket) {
        let mut r = lock(&self.sockets);
        if let Some(i) = r.list.iter().position(|x| x == s) {
            r.list.remove(i);
        }
        r.snapshot = None;
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
    let mut reader = FrameReader::new(rd, decoder, cancel.clone());
    let mut dispatch_cache = DispatchCache::default();
    let from = Peer::Socket(socket.clone());
    let mut failure = None;
    // Required handshake: nothing but `ipcx.hello` before the deadline.
    let mut greeting = (inner.config.handshake == HandshakeMode::Required)
        .then(|| tokio::time::Instant::now() + inner.config.handshake_timeout);
    // A refused hello: the peer's further messages reach nobody.
    let mut refused = false;
    loop {
        let idle = inner
            .config
            .idle_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let deadline = match (greeting, idle) {
            (Some(g), Some(i)) => Some(g.min(i)),
            (g, i) => g.or(i),
        };
        let ev = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(ev) => ev,
                Err(_) if greeting.is_some_and(|g| g <= deadline) => {
                    failure = Some(ServerError::Handshake {
                        peer: socket.label().to_owned(),
                        code: ipc_proto::ErrorCode::HandshakeTimeout,
                        reason: "no ipcx.hello in time".into(),
                    });
                    break;
                }
                Err(_) => {
                    failure = Some(ServerError::Idle {
                        peer: socket.label().to_owned(),
                        after: inner.config.idle_timeout.unwrap_or_default(),
                    });
                    break;
                }
            },
            None => reader.next().await,
        };
        match ev {
            ReadEvent::Item(_) if refused => {}
            ReadEvent::Item(Inbound::Message(message))
                if inner.config.extension && message.event().starts_with(names::PREFIX) =>
            {
                if message.event() == names::HELLO {
                    greeting = None;
                    if let Err(reason) = welcome(&inner, &socket, &message).await {
                        refused = true;
                        failure = Some(ServerError::Handshake {
                            peer: socket.label().to_owned(),
                            code: ipc_proto::ErrorCode::HandshakeRequired,
                            reason,
                        });
                    }
                } else if greeting.is_some() {
                    failure = Some(handshake_required(&socket, message.event()));
                    break;
                } else {
                    handle_extension(&inner, &socket, &message).await;
                }
            }
            ReadEvent::Item(Inbound::Message(message)) if greeting.is_some() => {
                failure = Some(handshake_required(&socket, message.event()));
                break;
            }
            ReadEvent::Item(Inbound::Message(message)) => {
                if inner.config.identify_peer {
                    identify(&socket, &message);
                }
                inner
                    .emit_with(
                        ServerEvent::Message {
                            from: from.clone(),
                            message,
                        },
                        Some(&mut dispatch_cache),
                    )
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
    inner.unsubscribe_all(&socket);
    socket.inner.calls.fail_all(CallError::NotConnected);
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

fn handshake_required(socket: &Socket, first: &str) -> ServerError {
    ServerError::Handshake {
        peer: socket.label().to_owned(),
        code: ipc_proto::ErrorCode::HandshakeRequired,
        reason: format!("`{first}` arrived before ipcx.hello"),
    }
}

/// Answers an `ipcx.hello`: runs the hello check, then replies
/// `ipcx.welcome` (or `ipcx.end` and a graceful close on refusal) and emits
/// `hello`.
async fn welcome(inner: &Arc<Inner>, socket: &Socket, message: &Message) -> Result<(), String> {
    let hello: Hello = message
        .data()
        .map_err(|e| format!("malformed ipcx.hello: {e}"))?;
    let check = lock(&inner.hello_check).clone();
    if let Some(check) = check {
        if let Err(reason) = check(socket, &hello) {
            let end = ext::End {
                reason: serde_json::Value::String(reason.clone()),
                reconnect: false,
            };
            if let Ok(frame) = inner.encoder.encode_to_bytes(names::END, Some(&end)) {
                let _ = socket.try_send_frame(frame);
            }
            socket.close();
            return Err(reason);
        }
    }
    // Reconnecting clients keep their id; others get the connection's.
    let id = hello
        .id
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| format!("{}", socket.id()));
    socket.set_peer_id(id.clone());
    let welcome = ext::Welcome {
        v: 1,
        id,
        features: ext::FEATURES.iter().map(|f| f.to_string()).collect(),
    };
    if let Ok(frame) = inner
        .encoder
        .encode_to_bytes(names::WELCOME, Some(&welcome))
    {
        let _ = socket.try_send_frame(frame);
    }
    inner
        .emit(ServerEvent::Hello {
            socket: socket.clone(),
            hello: Arc::new(hello),
        })
        .await;
    Ok(())
}

#[derive(Deserialize)]
struct TopicsIn {
    n: String,
    #[serde(default)]
    topics: Vec<String>,
}

#[derive(Deserialize)]
struct PubIn {
    #[serde(default)]
    n: Option<String>,
    #[serde(rename = "pub")]
    topic: String,
    message: Option<Box<RawValue>>,
}

#[derive(serde::Serialize)]
struct TopicsAck {
    topics: Vec<String>,
}

#[derive(serde::Serialize)]
struct PubAck {
    delivered: usize,
}

/// Handles one `ipcx.*` message from a client (other than the hello).
async fn handle_extension(inner: &Arc<Inner>, socket: &Socket, m: &Message) {
    let max = inner.config.codec.max_event_name_length;
    match m.event() {
        names::REQUEST => {
            let panics = inner.requests.dispatch(
                m,
                Peer::Socket(socket.clone()),
                socket.sink(),
                &inner.encoder,
            );
            for message in panics {
                inner
                    .error(
                        Some(Peer::Socket(socket.clone())),
                        ServerError::Handler {
                            event: names::REQUEST.into(),
                            message,
                        },
                    )
                    .await;
            }
        }
        names::RESPONSE | names::PONG => {
            socket.inner.calls.resolve(m);
        }
        names::PING => {
            if let Some(pong) = ext::pong_for(m, &inner.encoder) {
                let _ = socket.try_send_frame(pong);
            }
        }
        names::SUB | names::UNSUB => {
            let Ok(req) = m.data::<TopicsIn>() else {
                tracing::debug!(peer = %socket.label(), "malformed {} ignored", m.event());
                return;
            };
            let responder = ext::Responder::new(&req.n, socket.sink(), inner.encoder.clone());
            if let Some(bad) = req
                .topics
                .iter()
                .find_map(|t| ext::validate_topic(t, max).err())
            {
                let _ = responder.send_error(bad.code().as_str(), &bad.to_string());
                return;
            }
            inner.subscribe(socket, &req.topics, m.event() == names::SUB);
            let _ = responder.send(&TopicsAck {
                topics: socket.topics(),
            });
        }
        names::PUB => {
            let Ok(req) = m.data::<PubIn>() else {
                tracing::debug!(peer = %socket.label(), "malformed ipcx.pub ignored");
                return;
            };
            let responder = req
                .n
                .as_deref()
                .map(|n| ext::Responder::new(n, socket.sink(), inner.encoder.clone()));
            if let Err(bad) = ext::validate_topic(&req.topic, max) {
                if let Some(r) = responder {
                    let _ = r.send_error(bad.code().as_str(), &bad.to_string());
                }
                return;
            }
            let frame = match inner
                .encoder
                .encode_to_bytes(&req.topic, req.message.as_deref())
            {
                Ok(f) => f,
                Err(bad) => {
                    if let Some(r) = responder {
                        let _ = r.send_error(bad.code().as_str(), &bad.to_string());
                    }
                    return;
                }
            };
            let skip = inner.config.no_local.then_some(socket);
            let delivered = inner.publish_frame(&req.topic, &frame, skip).await;
            if let Some(r) = responder {
                let _ = r.send(&PubAck { delivered });
            }
        }
        names::END => {
            tracing::debug!(peer = %socket.label(), "peer announced a close");
        }
        other => {
            tracing::debug!(peer = %socket.label(), event = other, "unexpected extension message ignored")
        }
    }
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
