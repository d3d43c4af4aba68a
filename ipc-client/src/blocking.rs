//! A blocking client (feature `blocking`): std sockets and `ipc-proto`'s
//! sans-IO codec, no async runtime and no background thread.
//!
//! [`BlockingClient`] is driven by the thread that calls it. It takes the
//! same [`ClientConfig`], follows the same retry state machine
//! ([`crate::retry`]), reports the same [`ClientEvent`]s and
//! [`ClientError`]s as the async [`Client`](crate::Client), and speaks the
//! same `ipcx` extension for [`request`](BlockingClient::request) and
//! [`ping`](BlockingClient::ping).
//!
//! ## Writes
//!
//! [`emit`](BlockingClient::emit) encodes into an outbound buffer, like
//! `std::io::BufWriter`: a burst of emits costs one write system call, not
//! one per message. The buffer is written when it holds 64 KiB, and
//! whenever the client is about to wait or stops: [`flush`](BlockingClient::flush),
//! [`recv_timeout`](BlockingClient::recv_timeout), [`request`](BlockingClient::request),
//! [`ping`](BlockingClient::ping), [`disconnect`](BlockingClient::disconnect)
//! and drop. A program that emits and then does something else for a long
//! time calls `flush` first. The buffer is bounded by
//! [`ClientConfig::queue_bytes`]: `emit` writes (and waits for the socket)
//! when it is full, [`try_emit`](BlockingClient::try_emit) fails with
//! `ERR_IPC_BACKPRESSURE` instead. In sync mode every emit is written at
//! once and waits for the server's next message (or `sync_timeout`).
//!
//! ## Reconnects
//!
//! A connection that fails is reported as `error` then `disconnect` events;
//! the next call that needs the connection waits for the retry delay and
//! reconnects (a `connect` event), until the retry budget is spent
//! (`destroy`, then [`ClientError::Destroyed`]). Queued frames survive a
//! reconnect; a frame whose write was cut is written again whole, calls are
//! never replayed. Events and messages are read only while the caller waits
//! in one of the calls above: a client that never receives leaves the
//! server's messages in the socket buffers (backpressure on the server).
//!
//! ## What applies from [`ClientConfig`]
//!
//! `codec`, `connect` (TLS, local address, timeouts), `retry`,
//! `queue_bytes`, `sync`, `sync_timeout`, `retry_on_tls_failure`,
//! `close_timeout` (for [`disconnect`](BlockingClient::disconnect) and
//! drop), `extension`, `handshake`, `hello`, `handshake_timeout`,
//! `keepalive` and `idle_timeout`. `event_buffer` has no meaning here
//! (events wait in the client until received). Not offered: request
//! handlers (the server's `ipcx.request`s are answered without data, as
//! with no handler) and pub/sub; use the async client for those. Windows
//! named pipes have no blocking transport in std.
//!
//! ```no_run
//! use ipc_client::blocking::BlockingClient;
//! use ipc_client::{ClientConfig, ClientEvent};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = BlockingClient::connect("unix:/tmp/app.world".parse()?, ClientConfig::default())?;
//! client.emit("message", "hello")?;
//! while let Some(event) = client.recv_timeout(Duration::from_secs(1))? {
//!     if let ClientEvent::Message(m) = event {
//!         println!("{}: {:?}", m.event(), m.data_value());
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipc_conn::{CallError, HandshakeMode, Response};
use ipc_proto::ext::{self, names, ResponseIn};
use ipc_proto::{FrameDecoder, FrameEncoder, Inbound, Message, Profile};
use ipc_transport::blocking::BlockingStream;
use ipc_transport::Endpoint;
use serde::Serialize;

use crate::retry::{OnClose, OnTimer, RetryState};
use crate::{ClientConfig, ClientError, ClientEvent, ClientState};

/// The outbound buffer is written once it holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;
/// Bytes read per `read` call at most (the buffer grows to a frame's size).
const READ_CHUNK: usize = 64 * 1024;

/// A blocking node-ipc client. See the [module docs](self).
#[derive(Debug)]
pub struct BlockingClient {
    endpoint: Endpoint,
    name: String,
    config: ClientConfig,
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    retry: RetryState,
    state: ClientState,
    conn: Option<BlockingStream>,
    /// When the next connection attempt may start (after a retry delay).
    next_attempt: Option<Instant>,
    rbuf: BytesMut,
    /// Where reads land before they are appended to `rbuf` (zeroed once,
    /// not per read).
    scratch: Vec<u8>,
    /// The read timeout the socket has (`None`: not set since connecting).
    armed: Option<Option<Duration>>,
    out: BytesMut,
    /// The length of every frame in `out`, oldest first, with whether it
    /// is a call (never replayed on a new connection).
    frames: VecDeque<(usize, bool)>,
    events: VecDeque<ClientEvent>,
    /// Messages received so far (sync mode waits for the next one).
    received: u64,
    last_read: Instant,
    /// The call waiting for its answer, and the answer once it came.
    call: Option<(String, Option<Result<Response, CallError>>)>,
    next_call: u64,
    session: Option<String>,
    welcomed: bool,
    end_reconnect: Option<bool>,
}

impl BlockingClient {
    /// Creates the client and connects, following the retry policy: returns
    /// once connected, or the error that made the client give up.
    pub fn connect(endpoint: Endpoint, config: ClientConfig) -> Result<Self, ClientError> {
        let mut c = Self::new(endpoint, config)?;
        c.connected()?;
        Ok(c)
    }

    /// Creates the client without connecting; the first call that needs the
    /// connection makes it.
    pub fn new(endpoint: Endpoint, mut config: ClientConfig) -> Result<Self, ClientError> {
        config.codec.validate().map_err(ClientError::Config)?;
        if let Some(k) = config.keepalive {
            config.connect.keepalive = Some(k);
        }
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        let decoder = FrameDecoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        Ok(BlockingClient {
            name: endpoint.to_string(),
            endpoint,
            retry: RetryState::new(&config.retry),
            encoder,
            decoder,
            state: ClientState::Idle,
            conn: None,
            next_attempt: None,
            rbuf: BytesMut::new(),
            scratch: Vec::new(),
            armed: None,
            out: BytesMut::new(),
            frames: VecDeque::new(),
            events: VecDeque::new(),
            received: 0,
            last_read: Instant::now(),
            call: None,
            next_call: 0,
            session: None,
            welcomed: false,
            end_reconnect: None,
            config,
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Where the client is in its lifecycle.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether a connection is up.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The id the server assigned in the extension handshake, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Sets node-ipc's `stopRetrying`: the next close is final.
    pub fn set_stop_retrying(&mut self, stop: bool) {
        self.config.retry.stop_retrying = stop;
    }

    /// Waits until connected (following the retry policy); fails once the
    /// client is destroyed.
    pub fn connected(&mut self) -> Result<(), ClientError> {
        while self.conn.is_none() {
            self.ensure_connected(None)?;
        }
        Ok(())
    }

    /// Queues `{"type":event,"data":data}`; written with the next burst
    /// (see the module docs). Refused with [`ClientError::Encode`] before
    /// anything is queued when the profile rejects it.
    pub fn emit<T: Serialize + ?Sized>(
        &mut self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        self.check_alive()?;
        let before = self.out.len();
        self.encoder
            .encode(event, Some(data), &mut self.out)
            .map_err(|e| self.encode_error(e))?;
        self.queued(before, false)
    }

    /// Queues an event without data (sent as `{}`).
    pub fn emit_empty(&mut self, event: &str) -> Result<(), ClientError> {
        self.check_alive()?;
        let before = self.out.len();
        self.encoder
            .encode::<()>(event, None, &mut self.out)
            .map_err(|e| self.encode_error(e))?;
        self.queued(before, false)
    }

    /// Queues raw bytes (raw profile) or one already encoded frame.
    pub fn emit_raw(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), ClientError> {
        self.check_alive()?;
        let before = self.out.len();
        self.encoder
            .encode_raw(bytes.as_ref(), &mut self.out)
            .map_err(|e| self.encode_error(e))?;
        self.queued(before, false)
    }

    /// Like [`emit`](Self::emit), but never writes or waits: fails with
    /// [`ClientError::Backpressure`] when the queue is full.
    pub fn try_emit<T: Serialize + ?Sized>(
        &mut self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        self.check_alive()?;
        let before = self.out.len();
        self.encoder
            .encode(event, Some(data), &mut self.out)
            .map_err(|e| self.encode_error(e))?;
        if self.out.len() > self.config.queue_bytes && before > 0 {
            self.out.truncate(before);
            return Err(ClientError::Backpressure {
                endpoint: self.name.clone(),
                queued: before,
                capacity: self.config.queue_bytes,
            });
        }
        self.frames.push_back((self.out.len() - before, false));
        Ok(())
    }

    /// Writes everything queued, reconnecting per the retry policy if the
    /// connection fails; fails once the client is destroyed.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        while !self.out.is_empty() {
            self.ensure_connected(None)?;
            if self.conn.is_some() {
                self.write_out();
            }
        }
        Ok(())
    }

    /// The next event, waiting at most `timeout`; `Ok(None)` when none came
    /// in time. Writes what is queued first and reconnects when needed.
    /// After the `destroy` event, fails with [`ClientError::Destroyed`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<ClientEvent>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(Some(e));
            }
            self.check_alive()?;
            if !self.step(Some(deadline))? {
                return Ok(self.events.pop_front());
            }
        }
    }

    /// The next event, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            self.check_alive()?;
            self.step(None)?;
        }
    }

    /// Sends `ipcx.request` with `data` and waits at most `timeout` for the
    /// answer. Events that arrive meanwhile are kept for
    /// [`recv_timeout`](Self::recv_timeout).
    pub fn request<T: Serialize + ?Sized>(
        &mut self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.call_with(
            |encoder, n| ext::encode_call(encoder, names::REQUEST, n, Some(data)),
            timeout,
        )
    }

    /// Measures the round trip to the server (`ipcx.ping` → `ipcx.pong`).
    pub fn ping(&mut self, timeout: Duration) -> Result<Duration, ClientError> {
        let t0 = Instant::now();
        self.call_with(
            |encoder, n| ext::encode_call::<()>(encoder, names::PING, n, None),
            timeout,
        )?;
        Ok(t0.elapsed())
    }

    /// Writes what is queued (waiting at most `close_timeout`), closes the
    /// connection and stops: no retry follows. Frames that could not be
    /// written are reported as [`ClientError::Undelivered`].
    pub fn disconnect(&mut self) -> Result<(), ClientError> {
        if self.state == ClientState::Destroyed {
            return Ok(());
        }
        if let Some(c) = &self.conn {
            // Bounds the last write; a socket that refuses the option is
            // written without it, and `write_out` reports its own failure.
            let _ = c.set_write_timeout(Some(self.config.close_timeout));
            self.write_out();
        }
        self.finish()
    }

    /// Stops at once, dropping what is queued (reported as
    /// [`ClientError::Undelivered`]).
    pub fn destroy(&mut self) -> Result<(), ClientError> {
        if self.state == ClientState::Destroyed {
            return Ok(());
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<(), ClientError> {
        if let Some(c) = self.conn.take() {
            let _ = c.shutdown();
        }
        self.state = ClientState::Destroyed;
        let undelivered = self.take_undelivered();
        match undelivered {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn take_undelivered(&mut self) -> Option<ClientError> {
        let frames = self.frames.len();
        let bytes = self.out.len();
        self.out.clear();
        self.frames.clear();
        (frames > 0).then(|| ClientError::Undelivered {
            endpoint: self.name.clone(),
            frames,
            bytes,
        })
    }

    fn check_alive(&self) -> Result<(), ClientError> {
        if self.state == ClientState::Destroyed {
            return Err(ClientError::Destroyed {
                endpoint: self.name.clone(),
            });
        }
        Ok(())
    }

    fn encode_error(&self, source: ipc_proto::ProtocolError) -> ClientError {
        ClientError::Encode {
            endpoint: self.name.clone(),
            source,
        }
    }

    /// Records the frame just appended at `before` and writes when the
    /// burst is large enough (or at once in sync mode).
    fn queued(&mut self, before: usize, call: bool) -> Result<(), ClientError> {
        self.frames.push_back((self.out.len() - before, call));
        if self.config.sync && !call {
            let seen = self.received;
            self.flush()?;
            let deadline = self.config.sync_timeout.map(|t| Instant::now() + t);
            while self.received == seen {
                if !self.step(deadline)? {
                    self.events
                        .push_back(ClientEvent::Error(Arc::new(ClientError::SyncTimeout {
                            endpoint: self.name.clone(),
                        })));
                    break;
                }
            }
            return Ok(());
        }
        if self.out.len() >= FLUSH_AT.min(self.config.queue_bytes) {
            self.flush()?;
        }
        Ok(())
    }

    fn call_with(
        &mut self,
        build: impl FnOnce(&FrameEncoder, &str) -> Result<Bytes, ipc_proto::ProtocolError>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.check_alive()?;
        let call_err = |s: &Self, source| ClientError::Call {
            endpoint: s.name.clone(),
            source,
        };
        if !self.config.extension {
            return Err(call_err(self, CallError::NotConnected));
        }
        let deadline = Instant::now() + timeout;
        self.next_call += 1;
        let n = format!("b{}", self.next_call);
        let frame = build(&self.encoder, &n).map_err(|e| self.encode_error(e))?;
        // Calls go out on the current connection only: connect first.
        while self.conn.is_none() {
            if !self.ensure_connected(Some(deadline))? {
                return Err(call_err(self, CallError::Timeout(timeout)));
            }
        }
        let before = self.out.len();
        self.out.extend_from_slice(&frame);
        self.frames.push_back((self.out.len() - before, true));
        self.call = Some((n, None));
        let result = loop {
            if let Some((_, Some(_))) = &self.call {
                if let Some((_, Some(r))) = self.call.take() {
                    break r.map_err(|e| call_err(self, e));
                }
            }
            if self.conn.is_none() {
                break Err(call_err(self, CallError::NotConnected));
            }
            match self.step(Some(deadline)) {
                Ok(true) => {}
                Ok(false) => break Err(call_err(self, CallError::Timeout(timeout))),
                Err(e) => break Err(e),
            }
        };
        self.call = None;
        result
    }

    /// One step: write what is queued, (re)connect if needed, read and
    /// handle what arrived. False when `deadline` passed first.
    fn step(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        if self.conn.is_none() {
            return self.ensure_connected(deadline);
        }
        if !self.out.is_empty() {
            self.write_out();
            if self.conn.is_none() {
                return Ok(true);
            }
        }
        if self.handle_buffered() {
            return Ok(true);
        }
        let now = Instant::now();
        let idle_at = self.config.idle_timeout.map(|t| self.last_read + t);
        let partial_at = self.decoder.deadline();
        let wake = [deadline, idle_at, partial_at].into_iter().flatten().min();
        if let Some(w) = wake {
            if w <= now {
                return self.on_deadline(deadline, idle_at, partial_at, now);
            }
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => return Ok(true),
        };
        let needed = wake.map(|w| w - now);
        if rearm(self.armed, needed) {
            if let Err(e) = conn.set_read_timeout(needed) {
                self.fail(self.io_error(e));
                return Ok(true);
            }
            self.armed = Some(needed);
        }
        if self.scratch.is_empty() {
            self.scratch = vec![0; READ_CHUNK];
        }
        match conn.read(&mut self.scratch) {
            Ok(0) => self.on_eof(),
            Ok(k) => {
                self.rbuf.extend_from_slice(&self.scratch[..k]);
                self.handle_buffered();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => self.fail(self.io_error(e)),
        }
        Ok(true)
    }

    fn on_deadline(
        &mut self,
        deadline: Option<Instant>,
        idle_at: Option<Instant>,
        partial_at: Option<Instant>,
        now: Instant,
    ) -> Result<bool, ClientError> {
        if partial_at.is_some_and(|t| t <= now) {
            if let Err(e) = self.decoder.check_timeout(now) {
                self.violation(e);
                return Ok(true);
            }
        }
        if let (Some(t), Some(after)) = (idle_at, self.config.idle_timeout) {
            if t <= now {
                let e = ClientError::Idle {
                    endpoint: self.name.clone(),
                    after,
                };
                self.fail(e);
                return Ok(true);
            }
        }
        Ok(deadline.is_none_or(|d| d > now))
    }

    fn io_error(&self, e: io::Error) -> ClientError {
        if ipc_transport::is_tls_auth_failure(&e) {
            ClientError::TlsRejected {
                endpoint: self.name.clone(),
                source: e,
            }
        } else {
            ClientError::Io {
                endpoint: self.name.clone(),
                source: e,
            }
        }
    }

    /// Decodes and handles every complete frame in the read buffer; true
    /// when at least one was handled.
    fn handle_buffered(&mut self) -> bool {
        let mut any = false;
        while self.conn.is_some() {
            match self.decoder.decode(&mut self.rbuf, Instant::now()) {
                Ok(Some(inbound)) => {
                    any = true;
                    self.last_read = Instant::now();
                    self.received += 1;
                    self.on_inbound(inbound);
                }
                Ok(None) => break,
                Err(e) => {
                    self.violation(e);
                    return true;
                }
            }
        }
        any
    }

    fn on_inbound(&mut self, inbound: Inbound) {
        let msg = match inbound {
            Inbound::Message(m) => m,
            Inbound::Raw(b) => {
                self.events.push_back(ClientEvent::Data(b));
                return;
            }
        };
        if self.config.extension && ext::is_extension(msg.event()) {
            self.on_extension(msg);
            return;
        }
        self.events.push_back(ClientEvent::Message(msg));
    }

    fn on_extension(&mut self, msg: Message) {
        match msg.event() {
            names::RESPONSE | names::PONG => {
                let Ok(r) = ext::decode::<ResponseIn>(&msg) else {
                    tracing::debug!(endpoint = %self.name, event = msg.event(), "malformed extension answer ignored");
                    return;
                };
                let (n, result) = Response::from_answer(r);
                match &mut self.call {
                    Some((id, slot @ None)) if *id == n => *slot = Some(result),
                    _ => {
                        tracing::debug!(endpoint = %self.name, n = %n, "answer to an unknown or expired call ignored")
                    }
                }
            }
            names::PING => match ext::pong_for(&msg, &self.encoder) {
                Ok(f) => self.queue_frame(&f, false),
                Err(e) => {
                    tracing::debug!(endpoint = %self.name, error = %e, "malformed ping ignored")
                }
            },
            names::REQUEST => {
                // No request handlers on the blocking client: answer
                // "no handler" (a response without data), as the async
                // client does when none is registered.
                if let Ok(c) = ext::decode::<ext::CallIn>(&msg) {
                    if let Ok(f) = ext::encode_response::<()>(&self.encoder, &c.n, None) {
                        self.queue_frame(&f, false);
                    }
                }
            }
            names::WELCOME => {
                if let Ok(w) = ext::decode::<ext::Welcome>(&msg) {
                    self.session = Some(w.id);
                }
                self.welcomed = true;
            }
            names::END => {
                let end = ext::decode::<ext::End>(&msg).ok();
                self.end_reconnect = Some(end.as_ref().is_none_or(|e| e.reconnect));
                tracing::info!(endpoint = %self.name, reason = %end.map(|e| e.reason_text()).unwrap_or_default(), "server ends the connection");
            }
            _ => {
                tracing::debug!(endpoint = %self.name, event = msg.event(), "extension message ignored")
            }
        }
    }

    fn queue_frame(&mut self, frame: &[u8], call: bool) {
        self.out.extend_from_slice(frame);
        self.frames.push_back((frame.len(), call));
    }

    /// Writes the outbound buffer; on failure keeps every frame that was
    /// not written whole and closes the connection.
    fn write_out(&mut self) {
        let Some(conn) = &mut self.conn else { return };
        let mut written = 0;
        let mut failure = None;
        while written < self.out.len() {
            match conn.write(&self.out[written..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(k) => written += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() {
            if let Err(e) = conn.flush() {
                failure = Some(e);
            }
        }
        match failure {
            None => {
                self.out.clear();
                self.frames.clear();
            }
            Some(e) => {
                // Drop the frames written whole; a cut frame is written
                // again whole on the next connection.
                let mut done = 0;
                while let Some(&(len, _)) = self.frames.front() {
                    if done + len > written {
                        break;
                    }
                    done += len;
                    self.frames.pop_front();
                }
                bytes::Buf::advance(&mut self.out, done);
                let e = if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    ClientError::Io {
                        endpoint: self.name.clone(),
                        source: io::Error::new(io::ErrorKind::TimedOut, "write timed out"),
                    }
                } else {
                    self.io_error(e)
                };
                self.fail(e);
            }
        }
    }

    fn on_eof(&mut self) {
        if let Err(e) = self.decoder.finish(&mut self.rbuf) {
            self.violation(e);
            return;
        }
        self.close(false, None);
    }

    fn fail(&mut self, e: ClientError) {
        let tls_retry =
            matches!(e, ClientError::TlsRejected { .. }) && self.config.retry_on_tls_failure;
        let violation = !(e.is_retryable() || tls_retry);
        self.close(violation, Some(e));
    }

    fn violation(&mut self, source: ipc_proto::ProtocolError) {
        let e = ClientError::Protocol {
            endpoint: self.name.clone(),
            source,
        };
        self.close(true, Some(e));
    }

    /// The connection (or an attempt) ended: events, then the retry
    /// policy's decision.
    fn close(&mut self, violation: bool, error: Option<ClientError>) {
        if let Some(c) = self.conn.take() {
            let _ = c.shutdown();
        }
        self.rbuf.clear();
        self.decoder.reset();
        // Calls are never replayed on another connection.
        self.drop_calls();
        if let Some(e) = error {
            tracing::debug!(endpoint = %self.name, error = %e, "connection failed");
            self.events.push_back(ClientEvent::Error(Arc::new(e)));
        }
        let no_reconnect = self.end_reconnect.take() == Some(false);
        let decision = self
            .retry
            .on_close(&self.config.retry, no_reconnect, violation);
        self.events.push_back(ClientEvent::Disconnect);
        match decision {
            OnClose::Destroy => self.destroyed_now(),
            OnClose::RetryAfter(d) => {
                self.state = ClientState::Disconnected;
                self.next_attempt = Some(Instant::now() + d);
            }
        }
    }

    fn drop_calls(&mut self) {
        if !self.frames.iter().any(|f| f.1) {
            return;
        }
        let mut kept = BytesMut::with_capacity(self.out.len());
        let mut off = 0;
        self.frames.retain(|&(len, call)| {
            if !call {
                kept.extend_from_slice(&self.out[off..off + len]);
            }
            off += len;
            !call
        });
        self.out = kept;
    }

    fn destroyed_now(&mut self) {
        self.state = ClientState::Destroyed;
        self.next_attempt = None;
        if let Some(e) = self.take_undelivered() {
            self.events.push_back(ClientEvent::Error(Arc::new(e)));
        }
        self.events.push_back(ClientEvent::Destroy);
    }

    /// Makes sure a connection is up or an attempt was made: waits for the
    /// retry delay (up to `deadline`), connects, and runs the handshake if
    /// configured. False when `deadline` passed first.
    fn ensure_connected(&mut self, deadline: Option<Instant>) -> Result<bool, ClientError> {
        if self.conn.is_some() {
            return Ok(true);
        }
        self.check_alive()?;
        if let Some(at) = self.next_attempt {
            let now = Instant::now();
            if at > now {
                match deadline {
                    Some(d) if d < at => {
                        std::thread::sleep(d.saturating_duration_since(now));
                        return Ok(false);
                    }
                    _ => std::thread::sleep(at - now),
                }
            }
            self.next_attempt = None;
            match self.retry.on_timer(&self.config.retry, false) {
                OnTimer::Reconnect => {}
                OnTimer::Stop => {
                    self.state = ClientState::Destroyed;
                    return Ok(true);
                }
                OnTimer::Destroy => {
                    self.destroyed_now();
                    return Ok(true);
                }
            }
        }
        self.state = ClientState::Connecting;
        match ipc_transport::blocking::connect(&self.endpoint, &self.config.connect) {
            Ok((stream, _peer)) => {
                self.conn = Some(stream);
                self.armed = None;
                self.state = ClientState::Connected;
                self.retry.on_connect(&self.config.retry);
                self.last_read = Instant::now();
                self.welcomed = false;
                self.events.push_back(ClientEvent::Connect);
                self.handshake();
            }
            Err(source) => {
                let e = ClientError::Connect {
                    endpoint: self.name.clone(),
                    source,
                };
                self.fail(e);
            }
        }
        Ok(true)
    }

    /// Sends `ipcx.hello` first on a new connection (handshake announce or
    /// required) and, when required, waits for the welcome.
    fn handshake(&mut self) {
        if self.config.handshake == HandshakeMode::Off || self.config.codec.profile == Profile::Raw
        {
            return;
        }
        let hello = ext::Hello {
            v: ext::VERSION,
            id: self.session.clone(),
            extras: self.config.hello.clone(),
            features: ext::features(),
        };
        let frame = match self.encoder.encode_to_bytes(names::HELLO, Some(&hello)) {
            Ok(f) => f,
            Err(e) => {
                let e = ClientError::Handshake {
                    endpoint: self.name.clone(),
                    code: e.code(),
                    reason: e.to_string(),
                };
                self.close(true, Some(e));
                return;
            }
        };
        // The hello goes before everything queued.
        let mut out = BytesMut::with_capacity(frame.len() + self.out.len());
        out.extend_from_slice(&frame);
        out.extend_from_slice(&self.out);
        self.out = out;
        self.frames.push_front((frame.len(), false));
        if self.config.handshake != HandshakeMode::Required {
            return;
        }
        let deadline = Instant::now() + self.config.handshake_timeout;
        // Hold back what was queued until the server welcomes us.
        let held = self.out.split_off(frame.len());
        let held_frames: VecDeque<_> = self.frames.split_off(1);
        while self.conn.is_some() && !self.welcomed {
            match self.step(Some(deadline)) {
                Ok(true) => {}
                _ => {
                    let e = ClientError::Handshake {
                        endpoint: self.name.clone(),
                        code: ipc_proto::ErrorCode::HandshakeTimeout,
                        reason: format!("no welcome within {:?}", self.config.handshake_timeout),
                    };
                    self.out.extend_from_slice(&held);
                    self.frames.extend(held_frames);
                    self.fail(e);
                    return;
                }
            }
        }
        self.out.extend_from_slice(&held);
        self.frames.extend(held_frames);
    }
}

/// Whether the socket's read timeout must change from `armed` to serve a
/// wait of `needed`: a read may end early (the caller loops) but may not
/// block more than a millisecond past the deadline. Keeps a run of waits
/// with nearly the same deadline from costing a system call each.
fn rearm(armed: Option<Option<Duration>>, needed: Option<Duration>) -> bool {
    const SLACK: Duration = Duration::from_millis(1);
    match (armed, needed) {
        (None, _) => true,
        (Some(None), None) => false,
        (Some(None), Some(_)) => true,
        // Waking early now and then is fine; not every few microseconds.
        (Some(Some(cur)), None) => cur < Duration::from_millis(100),
        (Some(Some(cur)), Some(need)) => cur > need + SLACK || cur < need / 2,
    }
}

impl Drop for BlockingClient {
    fn drop(&mut self) {
        if self.state != ClientState::Destroyed && !self.out.is_empty() {
            if let Err(e) = self.disconnect() {
                tracing::warn!(endpoint = %self.name, error = %e, "dropped with messages queued");
            }
        }
    }
}
