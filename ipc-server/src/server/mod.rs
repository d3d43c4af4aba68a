//! [`Server`]: accept connections (or datagrams), dispatch their messages,
//! emit and broadcast.

mod accept;
mod broker;
mod config;
mod conn;
mod netipc;
#[cfg(feature = "udp")]
mod udp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::{Bytes, BytesMut};
use ipc_conn::{Dispatcher, EventStream, Flow, HandlerId, Request, RequestHandlers};
use ipc_proto::ext::{self, names, End, Hello};
use ipc_proto::{FrameDecoder, FrameEncoder, HeadCache, Message};
use ipc_transport::{Endpoint, Listener};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{ServerConfig, ServerState};

use crate::error::ServerError;
use crate::event::ServerEvent;
use crate::socket::{Peer, Socket};

struct Inner {
    endpoint: Endpoint,
    name: String,
    config: ServerConfig,
    encoder: FrameEncoder,
    /// A fresh decoder every connection starts from a clone of (they share
    /// the profile's compiled configuration).
    decoder: FrameDecoder,
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
    udp: udp::UdpState,
    requests: RequestHandlers<Peer>,
    subs: Mutex<HashMap<String, Arc<Vec<Socket>>>>,
    hello_check: Mutex<Option<HelloCheck>>,
    /// The `ipcx.end` notices `close` queued (socket id → frame bytes): a
    /// courtesy the peer may not stay to read, so never reported as an
    /// undelivered message.
    notices: Mutex<HashMap<u64, usize>>,
    /// How text becomes bytes in raw mode (node-ipc's `encoding`).
    raw_encoding: Mutex<ipc_proto::RawEncoding>,
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

/// A [`Server`] handle that does not keep it alive ([`Server::downgrade`]).
#[derive(Clone)]
pub struct WeakServer {
    inner: Weak<Inner>,
}

impl std::fmt::Debug for WeakServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakServer").finish_non_exhaustive()
    }
}

impl WeakServer {
    /// The server, if it still exists.
    pub fn upgrade(&self) -> Option<Server> {
        self.inner.upgrade().map(|inner| Server { inner })
    }
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
        let decoder = FrameDecoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        let (state, _) = watch::channel(ServerState::Idle);
        Ok(Server {
            inner: Arc::new(Inner {
                name: endpoint.to_string(),
                endpoint,
                encoder,
                decoder,
                events: Dispatcher::new(config.event_buffer),
                sockets: Mutex::new(Registry::default()),
                next_id: AtomicU64::new(1),
                live: AtomicUsize::new(0),
                run: Mutex::new(None),
                prebound: Mutex::new(None),
                state,
                #[cfg(feature = "udp")]
                udp: udp::UdpState::default(),
                requests: RequestHandlers::default(),
                subs: Mutex::new(HashMap::new()),
                hello_check: Mutex::new(None),
                scratch: Mutex::new(Scratch::default()),
                notices: Mutex::new(HashMap::new()),
                raw_encoding: Mutex::new(ipc_proto::RawEncoding::Utf8),
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

    /// A handle that does not keep the server alive: what a handler stored
    /// inside the server itself should hold (no reference cycle).
    pub fn downgrade(&self) -> WeakServer {
        WeakServer {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Sets how raw-mode text becomes bytes (node-ipc's `encoding`:
    /// `Buffer.from(text, encoding)`); the `ipc` facade sets it from its
    /// configuration.
    pub fn set_raw_encoding(&self, encoding: ipc_proto::RawEncoding) {
        *lock(&self.inner.raw_encoding) = encoding;
    }

    /// The raw-mode text encoding ([`Server::set_raw_encoding`]).
    pub fn raw_encoding(&self) -> ipc_proto::RawEncoding {
        *lock(&self.inner.raw_encoding)
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
        crate::assured::check_start(&self.inner.endpoint, &self.inner.name, &self.inner.config)?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let local = match &self.inner.endpoint {
            #[cfg(feature = "udp")]
            Endpoint::Udp { .. } => self.start_udp(&cancel, &tracker).await?,
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
                tracker.spawn(accept::accept_loop(
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
        self.inner.deliver(ServerEvent::Start(local.clone())).await;
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
        let sent = self.inner.fan_out(&frame, &sockets, None).await;
        #[cfg(feature = "udp")]
        let sent = sent + self.broadcast_udp(&frame).await;
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

    /// Answers requests from clients (`docs/protocol.md` §5.2 rule 3): handlers run in
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
        let end = End::new("Server was shut down", allow_reconnect);
        if let Ok(frame) = self.inner.encoder.encode_to_bytes(names::END, Some(&end)) {
            for s in lock(&self.inner.sockets).list.iter() {
                // A socket that cannot take the notice is closed by the
                // stop below all the same; its queue's end is reported.
                match s.try_send_frame(frame.clone()) {
                    Ok(()) => {
                        lock(&self.inner.notices).insert(s.id(), frame.len());
                        s.set_close_reason(end.reason_text());
                    }
                    Err(e) => tracing::debug!(peer = %s.label(), "cannot send ipcx.end: {e}"),
                }
                // Nothing is queued after the notice: if anything in this
                // queue is left unwritten, the notice is.
                s.close();
            }
        }
        self.stop().await;
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
        self.inner.deliver(ServerEvent::Closed).await;
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
        self.inner.deliver(ServerEvent::Closed).await;
    }

    fn after_stop(&self) {
        lock(&self.inner.notices).clear();
        #[cfg(feature = "udp")]
        self.inner.udp.clear();
        self.inner.state.send_replace(ServerState::Stopped);
    }
}

impl Inner {
    /// Delivers one of the server's own events to the handlers, then to
    /// every event stream; handler panics become `error` events. While the
    /// streams hold `event_buffer` such events it waits for the application
    /// to take some — but never once the server is stopping, so a stop
    /// never waits on an application that waits on it.
    async fn deliver(&self, ev: ServerEvent) {
        let running = lock(&self.run).as_ref().map(|r| r.cancel.clone());
        self.events
            .dispatch_local(ev, &self.name, running.as_ref())
            .await;
    }

    async fn error(&self, peer: Option<Peer>, mut error: ServerError) {
        if let (Some(Peer::Socket(s)), ServerError::Undelivered { frames, bytes, .. }) =
            (&peer, &mut error)
        {
            // The peer left before reading the server's own close notice
            // (the last frame queued): that is not a lost message.
            if let Some(n) = lock(&self.notices).remove(&s.id()) {
                *frames -= 1;
                *bytes = bytes.saturating_sub(n);
                if *frames == 0 {
                    tracing::debug!(peer = %s.label(), "the close notice was not read");
                    return;
                }
            }
        }
        self.deliver(ServerEvent::Error {
            peer,
            error: Arc::new(error),
        })
        .await;
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
