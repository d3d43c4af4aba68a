//! A blocking server (feature `blocking`): std sockets, `ipc-proto`'s
//! sans-IO codec and plain threads, no async runtime.
//!
//! [`BlockingServer`] runs one accept thread and, per connection, one
//! reader thread that decodes frames and calls the handlers in order. It
//! takes the same [`ServerConfig`] (profile, limits, `queue_bytes`,
//! `max_connections`, `idle_timeout`, `stop_timeout`, the extension switch)
//! and reports the same [`ServerError`]s as the async
//! [`Server`](crate::Server); `ipcx.ping` and `ipcx.request` are answered
//! ([`BlockingServer::on_request`]), `ipcx.hello` is welcomed. It serves
//! Unix sockets, TCP and TLS (rustls; the handshake runs in the accept
//! thread, bounded by `tls_handshake_timeout`) and checks
//! [`ServerConfig::authorize`] before a connection is served. Not served
//! here: Windows named pipes (std has no blocking pipe server), UDP,
//! pub/sub (`ipcx.sub`/`ipcx.pub` get an error answer); `identify_peer` and
//! a required handshake are refused by [`BlockingServer::bind`] rather than
//! ignored.
//!
//! ## Writes
//!
//! Every connection has an outbound buffer bounded by
//! [`ServerConfig::queue_bytes`]. What a handler emits while its reader
//! thread handles a batch of frames is written in one system call when the
//! batch is done (an echo answers with one write per read). What other
//! threads emit (a [`broadcast`](BlockingServer::broadcast) loop, say) is
//! written by the connection's writer thread, started on first use, which
//! lets a small batch grow for up to 100 µs and then takes everything
//! queued at once: a burst costs one write, not one per message. [`BlockingSocket::emit`] waits while the buffer is full,
//! [`BlockingSocket::try_emit`] fails with `ERR_IPC_BACKPRESSURE`, and
//! `broadcast` disconnects a peer whose buffer is full (with an error
//! naming it), as the async server does. Frames still queued when a
//! connection ends are reported as [`ServerError::Undelivered`].
//!
//! ```no_run
//! use ipc_server::blocking::BlockingServer;
//! use ipc_server::ServerConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = BlockingServer::bind("unix:/tmp/app.world".parse()?, ServerConfig::default())?;
//! server.on("message", |msg, socket| {
//!     let text: String = msg.data().unwrap_or_default();
//!     let _ = socket.emit("message", &format!("{text} world!"));
//! });
//! server.start()?;
//! # server.stop();
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipc_proto::ext::{self, names};
use ipc_proto::{ErrorCode, FrameDecoder, FrameEncoder, Inbound, Message};
use ipc_transport::blocking::{BlockingListener, BlockingReader, BlockingStream, BlockingWriter};
use ipc_transport::{Endpoint, PeerInfo, TransportError};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::{ServerConfig, ServerError};

const READ_CHUNK: usize = 64 * 1024;
/// The writer thread writes a batch at once when it holds this much, and
/// otherwise waits up to [`LINGER`] for it to grow.
const LINGER_BYTES: usize = 32 * 1024;
/// How long the writer thread lets a small batch from another thread grow.
const LINGER: Duration = Duration::from_micros(100);

type MessageHandler = Arc<dyn Fn(&Message, &BlockingSocket) + Send + Sync>;
type SocketHandler = Arc<dyn Fn(&BlockingSocket) + Send + Sync>;
type DataHandler = Arc<dyn Fn(&Bytes, &BlockingSocket) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(&ServerError) + Send + Sync>;
type RequestHandler = Arc<
    dyn Fn(Option<&RawValue>, &BlockingSocket) -> Result<serde_json::Value, String> + Send + Sync,
>;

#[derive(Default, Clone)]
struct Handlers {
    events: HashMap<String, Vec<MessageHandler>>,
    any: Vec<MessageHandler>,
    connect: Vec<SocketHandler>,
    disconnect: Vec<SocketHandler>,
    error: Vec<ErrorHandler>,
    data: Vec<DataHandler>,
    request: Option<RequestHandler>,
}

struct Shared {
    name: String,
    config: ServerConfig,
    encoder: FrameEncoder,
    handlers: RwLock<Arc<Handlers>>,
    conns: Mutex<HashMap<u64, BlockingSocket>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    stopping: AtomicBool,
    next_id: AtomicU64,
}

/// A blocking node-ipc server. See the [module docs](self).
pub struct BlockingServer {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    listener: Mutex<Option<Arc<BlockingListener>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for BlockingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingServer")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BlockingServer {
    /// Binds `endpoint` (Unix socket, TCP or TLS) with the listen options of
    /// `config`; [`start`](Self::start) begins accepting.
    pub fn bind(endpoint: Endpoint, mut config: ServerConfig) -> Result<Self, ServerError> {
        config.codec.validate().map_err(ServerError::Config)?;
        // Settings this server cannot honour are refused, never ignored.
        let unsupported = if config.identify_peer {
            Some("identify_peer")
        } else if config.handshake == crate::HandshakeMode::Required {
            Some("a required handshake (HandshakeMode::Required)")
        } else {
            None
        };
        if let Some(what) = unsupported {
            return Err(ServerError::Config(ipc_proto::ProtocolError::new(
                ErrorCode::InvalidConfiguration,
                format!("the blocking server does not support {what}; use the async Server"),
            )));
        }
        if let Some(k) = config.keepalive {
            config.listen.keepalive = Some(k);
        }
        let listen_err = |source| ServerError::Listen {
            endpoint: endpoint.to_string(),
            source,
        };
        let listener = BlockingListener::bind(&endpoint, &config.listen).map_err(listen_err)?;
        let endpoint = listener.local_endpoint();
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ServerError::Config)?;
        Ok(BlockingServer {
            shared: Arc::new(Shared {
                name: endpoint.to_string(),
                config,
                encoder,
                handlers: RwLock::new(Arc::new(Handlers::default())),
                conns: Mutex::new(HashMap::new()),
                readers: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
            }),
            endpoint,
            listener: Mutex::new(Some(Arc::new(listener))),
            accept: Mutex::new(None),
        })
    }

    /// The endpoint listened on (with the bound port for port 0).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Registration copies the handler table: readers take a snapshot per
    /// message without holding a lock while handlers run.
    fn edit(&self, f: impl FnOnce(&mut Handlers)) {
        let mut w = self
            .shared
            .handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut h = Handlers::clone(&w);
        f(&mut h);
        *w = Arc::new(h);
    }

    /// Calls `f` for every message of type `event`, on the connection's
    /// reader thread, in order.
    pub fn on(&self, event: &str, f: impl Fn(&Message, &BlockingSocket) + Send + Sync + 'static) {
        self.edit(|h| {
            h.events
                .entry(event.to_owned())
                .or_default()
                .push(Arc::new(f))
        });
    }

    /// Calls `f` for every message (after the handlers of its type).
    pub fn on_any(&self, f: impl Fn(&Message, &BlockingSocket) + Send + Sync + 'static) {
        self.edit(|h| h.any.push(Arc::new(f)));
    }

    /// Calls `f` for every chunk of a raw-profile connection.
    pub fn on_data(&self, f: impl Fn(&Bytes, &BlockingSocket) + Send + Sync + 'static) {
        self.edit(|h| h.data.push(Arc::new(f)));
    }

    /// Calls `f` when a connection is accepted (node-ipc's `connect`).
    pub fn on_connect(&self, f: impl Fn(&BlockingSocket) + Send + Sync + 'static) {
        self.edit(|h| h.connect.push(Arc::new(f)));
    }

    /// Calls `f` when a connection ended (node-ipc's `socket.disconnected`).
    pub fn on_disconnect(&self, f: impl Fn(&BlockingSocket) + Send + Sync + 'static) {
        self.edit(|h| h.disconnect.push(Arc::new(f)));
    }

    /// Calls `f` for every error (bad input, a refused connection, frames
    /// that could not be delivered, …), each naming the peer.
    pub fn on_error(&self, f: impl Fn(&ServerError) + Send + Sync + 'static) {
        self.edit(|h| h.error.push(Arc::new(f)));
    }

    /// Answers `ipcx.request`s: `Ok(value)` is the answer, `Err(text)` an
    /// `ERR_IPC_HANDLER` error answer. Without a handler requests are
    /// answered without data.
    pub fn on_request(
        &self,
        f: impl Fn(Option<&RawValue>, &BlockingSocket) -> Result<serde_json::Value, String>
            + Send
            + Sync
            + 'static,
    ) {
        self.edit(|h| h.request = Some(Arc::new(f)));
    }

    /// Starts the accept thread.
    pub fn start(&self) -> Result<(), ServerError> {
        let mut accept = lock(&self.accept);
        let listener = match &*lock(&self.listener) {
            Some(l) if accept.is_none() => l.clone(),
            _ => {
                return Err(ServerError::NotRunning {
                    endpoint: self.shared.name.clone(),
                })
            }
        };
        let shared = self.shared.clone();
        let handle = std::thread::Builder::new()
            .name("ipc-accept".into())
            .spawn(move || accept_loop(&shared, &listener))
            .map_err(|e| ServerError::Accept {
                endpoint: self.shared.name.clone(),
                source: TransportError::Accept {
                    endpoint: self.shared.name.clone(),
                    source: e,
                },
            })?;
        *accept = Some(handle);
        Ok(())
    }

    /// The connected sockets.
    pub fn sockets(&self) -> Vec<BlockingSocket> {
        lock(&self.shared.conns).values().cloned().collect()
    }

    /// Encodes `{"type":event,"data":data}` once and queues it to every
    /// connection; never waits. A peer whose buffer is full is disconnected
    /// with an `ERR_IPC_BACKPRESSURE` error. Returns how many connections
    /// it was queued to.
    pub fn broadcast<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<usize, ServerError> {
        let frame = self
            .shared
            .encoder
            .encode_to_bytes(event, Some(data))
            .map_err(|source| ServerError::Encode {
                peer: "broadcast".into(),
                source,
            })?;
        let conns: Vec<BlockingSocket> = lock(&self.shared.conns).values().cloned().collect();
        let mut reached = 0;
        for c in conns {
            match c.push(&frame, Push::Never) {
                Ok(()) => reached += 1,
                Err(e @ ServerError::Backpressure { .. }) => {
                    c.fail(e);
                }
                Err(_) => {}
            }
        }
        Ok(reached)
    }

    /// Stops: no more connections are accepted (the Unix socket file is
    /// removed), what every connection has queued is written (waiting at
    /// most `stop_timeout`), every connection is closed and its
    /// `disconnect` handlers have run when this returns (except, when it is
    /// called from a handler, that handler's own connection's).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let listener = lock(&self.listener).take();
        if let Some(h) = lock(&self.accept).take() {
            // A connection of our own wakes the blocked accept.
            if let Some(l) = &listener {
                l.wake();
            }
            let _ = h.join();
        }
        // The last handle on the listener: the socket file goes with it.
        drop(listener);
        let deadline = Instant::now() + self.shared.config.stop_timeout;
        for c in self.sockets() {
            c.drain_until(deadline);
            c.close();
        }
        let readers: Vec<JoinHandle<()>> = lock(&self.shared.readers).drain(..).collect();
        let me = std::thread::current().id();
        for r in readers {
            // `stop` called from a handler: that reader ends after it
            // returns; waiting for it here would wait forever.
            if r.thread().id() != me {
                let _ = r.join();
            }
        }
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        if !self.shared.stopping.load(Ordering::SeqCst) {
            self.stop();
        }
    }
}

impl Shared {
    fn snapshot(&self) -> Arc<Handlers> {
        self.handlers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn report(shared: &Shared, e: &ServerError) {
    tracing::debug!(error = %e, "blocking server error");
    let hs: Vec<ErrorHandler> = shared.snapshot().error.clone();
    for h in hs {
        h(e);
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &BlockingListener) {
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(source) => {
                let e = ServerError::Accept {
                    endpoint: shared.name.clone(),
                    source,
                };
                report(shared, &e);
                continue;
            }
        };
        let count = lock(&shared.conns).len();
        if count >= shared.config.max_connections {
            let _ = stream.shutdown();
            report(
                shared,
                &ServerError::MaxConnections {
                    peer: peer.to_string(),
                    limit: shared.config.max_connections,
                },
            );
            continue;
        }
        if let Some(authorize) = &shared.config.authorize {
            if let Err(reason) = authorize.check(&peer) {
                let _ = stream.shutdown();
                let peer = peer.to_string();
                tracing::warn!(endpoint = %shared.name, %peer, %reason, "connection refused by the authorizer");
                report(shared, &ServerError::Unauthorized { peer, reason });
                continue;
            }
        }
        if let Err(e) = spawn_conn(shared, stream, peer) {
            report(shared, &e);
        }
    }
}

/// How a push waits for room.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Push {
    Wait,
    Never,
}

#[derive(Default)]
struct Out {
    buf: BytesMut,
    frames: usize,
    /// Someone is writing (the writer thread or the reader thread).
    busy: bool,
    closed: bool,
    writer_started: bool,
    writer_idle: bool,
    /// The writer waits a moment for a small batch to grow.
    lingering: bool,
    /// Threads waiting for room or for the queue to drain.
    waiters: usize,
}

struct Conn {
    id: u64,
    peer: PeerInfo,
    name: String,
    shared: Arc<Shared>,
    out: Mutex<Out>,
    cv: Condvar,
    /// The write side; locked only by whoever holds `busy`.
    wstream: Mutex<BlockingWriter>,
    /// A third handle on the socket, to shut it down while a write blocks.
    ctl: BlockingStream,
    reader: std::sync::OnceLock<ThreadId>,
    ended: AtomicBool,
}

/// One connection as handlers and the application see it. Cheap to clone.
#[derive(Clone)]
pub struct BlockingSocket(Arc<Conn>);

impl std::fmt::Debug for BlockingSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingSocket")
            .field("id", &self.0.id)
            .field("peer", &self.0.name)
            .finish()
    }
}

fn spawn_conn(
    shared: &Arc<Shared>,
    stream: BlockingStream,
    peer: PeerInfo,
) -> Result<(), ServerError> {
    let name = peer.to_string();
    let io_err = |source| ServerError::Io {
        peer: name.clone(),
        source,
    };
    let (reader, mut wstream) = stream.split().map_err(io_err)?;
    let Some(ctl) = wstream.take_shutdown_handle() else {
        return Err(io_err(io::Error::other("no shutdown handle")));
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let socket = BlockingSocket(Arc::new(Conn {
        id,
        peer,
        name: name.clone(),
        shared: shared.clone(),
        out: Mutex::new(Out::default()),
        cv: Condvar::new(),
        wstream: Mutex::new(wstream),
        ctl,
        reader: std::sync::OnceLock::new(),
        ended: AtomicBool::new(false),
    }));
    lock(&shared.conns).insert(id, socket.clone());
    let s2 = socket.clone();
    let handle = std::thread::Builder::new()
        .name(format!("ipc-conn-{id}"))
        .spawn(move || reader_loop(s2, reader))
        .map_err(|e| {
            lock(&shared.conns).remove(&id);
            io_err(e)
        })?;
    let mut readers = lock(&shared.readers);
    readers.retain(|h| !h.is_finished());
    readers.push(handle);
    Ok(())
}

fn reader_loop(socket: BlockingSocket, mut stream: BlockingReader) {
    let shared = socket.0.shared.clone();
    let _ = socket.0.reader.set(std::thread::current().id());
    let connect: Vec<SocketHandler> = shared.snapshot().connect.clone();
    for h in connect {
        h(&socket);
    }
    let mut decoder = match FrameDecoder::new(shared.config.codec.clone()) {
        Ok(d) => d,
        Err(e) => {
            socket.fail(ServerError::Config(e));
            socket.ended();
            return;
        }
    };
    let mut rbuf = BytesMut::new();
    // Reads land here (zeroed once) and are appended to `rbuf`.
    let mut scratch = vec![0u8; READ_CHUNK];
    let mut armed: Option<Option<Duration>> = None;
    let idle = shared.config.idle_timeout;
    let mut last = Instant::now();
    'read: loop {
        let now = Instant::now();
        let wake = [idle.map(|t| last + t), decoder.deadline()]
            .into_iter()
            .flatten()
            .min();
        if let Some(w) = wake {
            if w <= now {
                if let Err(e) = decoder.check_timeout(now) {
                    socket.fail(ServerError::Protocol {
                        peer: socket.0.name.clone(),
                        source: e,
                    });
                    break;
                }
                if let Some(after) = idle.filter(|t| last + *t <= now) {
                    socket.fail(ServerError::Idle {
                        peer: socket.0.name.clone(),
                        after,
                    });
                    break;
                }
            }
        }
        let timeout = wake.map(|w| {
            w.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        if armed != Some(timeout) {
            if let Err(e) = stream.set_read_timeout(timeout) {
                socket.fail(socket.io_error(e));
                break;
            }
            armed = Some(timeout);
        }
        match stream.read(&mut scratch) {
            Ok(0) => {
                if let Err(e) = decoder.finish(&mut rbuf) {
                    socket.fail(ServerError::Protocol {
                        peer: socket.0.name.clone(),
                        source: e,
                    });
                }
                break;
            }
            Ok(k) => rbuf.extend_from_slice(&scratch[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                if !socket.0.out_closed() {
                    socket.fail(socket.io_error(e));
                }
                break;
            }
        }
        loop {
            match decoder.decode(&mut rbuf, Instant::now()) {
                Ok(Some(inbound)) => {
                    last = Instant::now();
                    socket.dispatch(inbound);
                }
                Ok(None) => break,
                Err(e) => {
                    socket.fail(ServerError::Protocol {
                        peer: socket.0.name.clone(),
                        source: e,
                    });
                    break 'read;
                }
            }
        }
        // What the handlers answered goes out in one write.
        socket.flush_here();
        if socket.0.out_closed() {
            break;
        }
    }
    socket.close();
    socket.ended();
}

impl Conn {
    fn out_closed(&self) -> bool {
        lock(&self.out).closed
    }
}

impl BlockingSocket {
    /// The connection's id (unique in this server).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The peer's address and credentials.
    pub fn peer(&self) -> &PeerInfo {
        &self.0.peer
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        lock(&self.0.out).buf.len()
    }

    /// Queues `{"type":event,"data":data}` to this peer, waiting while its
    /// buffer is full.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), ServerError> {
        let frame = self.encode(event, data)?;
        self.push(&frame, Push::Wait)
    }

    /// Like [`emit`](Self::emit), but fails with
    /// [`ServerError::Backpressure`] instead of waiting.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let frame = self.encode(event, data)?;
        self.push(&frame, Push::Never)
    }

    /// Queues already encoded bytes (a frame, or raw-profile data).
    pub fn send_frame(&self, frame: &[u8]) -> Result<(), ServerError> {
        self.push(frame, Push::Wait)
    }

    /// Closes the connection after writing what is queued (waiting at most
    /// the server's `stop_timeout`).
    pub fn disconnect(&self) {
        self.drain_until(Instant::now() + self.0.shared.config.stop_timeout);
        self.close();
    }

    fn encode<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<Bytes, ServerError> {
        self.0
            .shared
            .encoder
            .encode_to_bytes(event, Some(data))
            .map_err(|source| ServerError::Encode {
                peer: self.0.name.clone(),
                source,
            })
    }

    fn io_error(&self, source: io::Error) -> ServerError {
        ServerError::Io {
            peer: self.0.name.clone(),
            source,
        }
    }

    fn on_reader_thread(&self) -> bool {
        self.0.reader.get() == Some(&std::thread::current().id())
    }

    fn push(&self, frame: &[u8], wait: Push) -> Result<(), ServerError> {
        let cap = self.0.shared.config.queue_bytes;
        let here = self.on_reader_thread();
        let mut out = lock(&self.0.out);
        loop {
            if out.closed {
                return Err(ServerError::NotConnected {
                    peer: self.0.name.clone(),
                });
            }
            if out.buf.is_empty() || out.buf.len() + frame.len() <= cap {
                break;
            }
            if wait == Push::Never {
                return Err(ServerError::Backpressure {
                    peer: self.0.name.clone(),
                    queued: out.buf.len(),
                    capacity: cap,
                });
            }
            if here && !out.busy {
                // The reader thread itself is the writer here: write what
                // is queued to make room.
                drop(out);
                self.flush_here();
                out = lock(&self.0.out);
                continue;
            }
            self.start_writer(&mut out);
            out.waiters += 1;
            out = self
                .0
                .cv
                .wait(out)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            out.waiters -= 1;
        }
        out.buf.extend_from_slice(frame);
        out.frames += 1;
        if !here {
            self.start_writer(&mut out);
        }
        Ok(())
    }

    /// Wakes (or starts) the writer thread for what another thread queued.
    fn start_writer(&self, out: &mut Out) {
        if out.busy || out.buf.is_empty() {
            return;
        }
        if !out.writer_started {
            out.writer_started = true;
            let s = self.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ipc-write-{}", self.0.id))
                .spawn(move || s.writer_loop());
            if let Err(e) = spawned {
                out.writer_started = false;
                tracing::warn!(peer = %self.0.name, error = %e, "cannot start a writer thread");
            }
        } else if out.writer_idle || (out.lingering && out.buf.len() >= LINGER_BYTES) {
            self.0.cv.notify_all();
        }
    }

    fn writer_loop(&self) {
        let mut out = lock(&self.0.out);
        loop {
            while (out.buf.is_empty() || out.busy) && !out.closed {
                out.writer_idle = true;
                out = self
                    .0
                    .cv
                    .wait(out)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                out.writer_idle = false;
            }
            if out.closed {
                return;
            }
            if out.buf.len() < LINGER_BYTES {
                // A burst from another thread (a broadcast loop) has only
                // begun: let it grow for a moment, so it costs one write
                // instead of one per message.
                out.lingering = true;
                out = self
                    .0
                    .cv
                    .wait_timeout(out, LINGER)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                out.lingering = false;
                if out.closed || out.busy || out.buf.is_empty() {
                    continue;
                }
            }
            out = self.write_batch(out);
        }
    }

    /// Writes what is queued on the reader thread (after a batch of
    /// handlers), unless another thread is writing already.
    fn flush_here(&self) {
        let out = lock(&self.0.out);
        if out.busy || out.buf.is_empty() || out.closed {
            return;
        }
        drop(self.write_batch(out));
    }

    /// Takes everything queued and writes it with `busy` held; returns the
    /// re-taken lock.
    fn write_batch<'a>(&'a self, mut out: MutexGuard<'a, Out>) -> MutexGuard<'a, Out> {
        out.busy = true;
        let batch = out.buf.split().freeze();
        let frames = std::mem::take(&mut out.frames);
        drop(out);
        let result = lock(&self.0.wstream).write_all(&batch);
        let mut out = lock(&self.0.out);
        out.busy = false;
        // A condvar notification is a system call even with nobody
        // waiting: only when someone waits for room or for the drain.
        if out.waiters > 0 {
            self.0.cv.notify_all();
        }
        if let Err(e) = result {
            // Count what was lost with the rest of the queue.
            out.frames += frames;
            let mut lost = BytesMut::from(&batch[..]);
            lost.extend_from_slice(&out.buf);
            out.buf = lost;
            drop(out);
            if !self.0.ended.load(Ordering::SeqCst) {
                self.fail(self.io_error(e));
            }
            return lock(&self.0.out);
        }
        out
    }

    /// Waits until the queue is written or `deadline` passes.
    fn drain_until(&self, deadline: Instant) {
        let mut out = lock(&self.0.out);
        while (!out.buf.is_empty() || out.busy) && !out.closed {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if !out.busy {
                out = self.write_batch(out);
                continue;
            }
            out.waiters += 1;
            out = self
                .0
                .cv
                .wait_timeout(out, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            out.waiters -= 1;
        }
    }

    /// Reports `e` and closes the connection.
    fn fail(&self, e: ServerError) {
        report(&self.0.shared, &e);
        self.close();
    }

    /// Closes the connection now; what is still queued is reported.
    fn close(&self) {
        let mut out = lock(&self.0.out);
        if out.closed {
            return;
        }
        out.closed = true;
        let (frames, bytes) = (out.frames, out.buf.len());
        out.buf.clear();
        out.frames = 0;
        self.0.cv.notify_all();
        drop(out);
        let _ = self.0.ctl.shutdown();
        if frames > 0 {
            report(
                &self.0.shared,
                &ServerError::Undelivered {
                    peer: self.0.name.clone(),
                    frames,
                    bytes,
                },
            );
        }
    }

    /// The reader thread is done: unregister and run the disconnect
    /// handlers.
    fn ended(&self) {
        self.0.ended.store(true, Ordering::SeqCst);
        lock(&self.0.shared.conns).remove(&self.0.id);
        let hs: Vec<SocketHandler> = self.0.shared.snapshot().disconnect.clone();
        for h in hs {
            h(self);
        }
    }

    fn dispatch(&self, inbound: Inbound) {
        let msg = match inbound {
            Inbound::Message(m) => m,
            Inbound::Raw(b) => {
                let hs = self.0.shared.snapshot().data.clone();
                for h in hs {
                    h(&b, self);
                }
                return;
            }
        };
        let shared = &self.0.shared;
        if shared.config.extension && ext::is_extension(msg.event()) {
            self.on_extension(&msg);
            return;
        }
        let handlers = shared.snapshot();
        let typed = handlers.events.get(msg.event());
        for h in typed.into_iter().flatten().chain(handlers.any.iter()) {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(&msg, self)))
            {
                let message = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                report(
                    shared,
                    &ServerError::Handler {
                        event: msg.event().to_owned(),
                        message,
                    },
                );
            }
        }
    }

    fn on_extension(&self, msg: &Message) {
        let enc = &self.0.shared.encoder;
        let answer = match msg.event() {
            names::PING => ext::pong_for(msg, enc),
            names::REQUEST => match ext::decode::<ext::CallIn>(msg) {
                Ok(c) => {
                    let h = self.0.shared.snapshot().request.clone();
                    match h {
                        None => ext::encode_response::<()>(enc, &c.n, None),
                        Some(h) => match h(c.d.as_deref(), self) {
                            Ok(v) => ext::encode_response(enc, &c.n, Some(&v)),
                            Err(m) => ext::encode_error(enc, &c.n, ErrorCode::Handler.as_str(), &m),
                        },
                    }
                }
                Err(e) => Err(e),
            },
            names::HELLO => {
                let w = ext::Welcome {
                    v: ext::VERSION,
                    id: self.0.id.to_string(),
                    features: vec!["request".into(), "ping".into()],
                };
                enc.encode_to_bytes(names::WELCOME, Some(&w))
            }
            names::SUB | names::UNSUB | names::PUB => match ext::decode::<ext::CallIn>(msg) {
                Ok(c) => ext::encode_error(
                    enc,
                    &c.n,
                    ErrorCode::Protocol.as_str(),
                    "publish/subscribe is not served by this (blocking) server",
                ),
                Err(_) => return,
            },
            _ => return,
        };
        match answer {
            Ok(f) => {
                if let Err(e) = self.push(&f, Push::Wait) {
                    tracing::debug!(peer = %self.0.name, error = %e, "extension answer not queued");
                }
            }
            Err(e) => report(
                &self.0.shared,
                &ServerError::Protocol {
                    peer: self.0.name.clone(),
                    source: e,
                },
            ),
        }
    }
}
