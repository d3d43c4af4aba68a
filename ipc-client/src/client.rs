//! [`Client`]: connect to a node-ipc server, retry, emit with backpressure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound, Profile};
use ipc_transport::{ConnectOptions, Endpoint, Stream};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::collections::BTreeSet;

use ipc_proto::Message;

use crate::error::ClientError;
use crate::event::{ClientEvent, Dispatcher, EventStream};
use crate::ext::{
    self, names, CallError, CallFailure, Calls, End, Flow, HandshakeMode, Request, RequestHandlers,
    Response,
};
use crate::handlers::{DispatchCache, HandlerId};
use crate::link::{FrameReader, ReadEvent};
use crate::outbox::{write_loop, EmitError, Outbox, SendError, SyncGate, WriterExit};
use crate::retry::{OnClose, OnTimer, RetryConfig, RetryState};

/// Everything a [`Client`] is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Profile, limits and delimiter (node-ipc's `parser`, `delimiter`,
    /// `rawBuffer`, `maxMessageSize`, …).
    pub codec: CodecConfig,
    /// Transport options: TLS material, local interface, timeouts.
    pub connect: ConnectOptions,
    /// The reconnect policy; its `retry`, `max_retries` and `stop_retrying`
    /// can also be changed while the client runs.
    pub retry: RetryConfig,
    /// Bound of the outbound queue in bytes. `emit` waits while it is full;
    /// `try_emit` fails. Default: the codec's `max_pending_bytes` (8 MiB).
    pub queue_bytes: usize,
    /// node-ipc's `sync`: one message in flight, the next one released by
    /// whatever the server sends (SPEC §3.5).
    pub sync: bool,
    /// Release the next sync-mode message after this long without an answer
    /// and report `ERR_IPC_SYNC_TIMEOUT` (default: wait forever, as node-ipc).
    pub sync_timeout: Option<Duration>,
    /// Retry after TLS authentication failures too (default false: a bad
    /// certificate will not get better by retrying).
    pub retry_on_tls_failure: bool,
    /// Capacity of each [`EventStream`].
    pub event_buffer: usize,
    /// How long [`Client::disconnect`] and [`Client::close`] wait for
    /// queued messages (and, for `close`, calls in flight) before they give
    /// up on them (and report them).
    pub close_timeout: Duration,
    /// Handle the request/ping/pub-sub extension (SPEC §5.4): `ipcx.*`
    /// messages are answered and not delivered as events. Default on.
    pub extension: bool,
    /// The extension handshake (default off: plain node-ipc servers never
    /// answer it).
    pub handshake: HandshakeMode,
    /// Payload sent as `extras` in `ipcx.hello` (e.g. an auth token).
    pub hello: serde_json::Value,
    /// How long a required handshake may take.
    pub handshake_timeout: Duration,
    /// TCP keepalive for TCP/TLS connections (default `None`: node-ipc sets
    /// none, and probes are not free on metered or battery-powered links).
    /// Opt in to detect a server that vanished without closing (a dead host,
    /// a cut network): the kernel fails the connection after
    /// [`Keepalive::detection_time`](ipc_transport::Keepalive::detection_time)
    /// and the client reports it and follows its retry policy.
    /// [`Keepalive::default`](ipc_transport::Keepalive::default) detects it
    /// within about two minutes. When set, it replaces `connect.keepalive`.
    pub keepalive: Option<ipc_transport::Keepalive>,
    /// Close an established connection on which nothing has been received
    /// for this long (default: never, as node-ipc). Detects a server that
    /// vanished or hangs without closing (half-open connection): the
    /// connection ends with [`ClientError::Idle`] (`ERR_IPC_MESSAGE_TIMEOUT`)
    /// and the client follows its retry policy. Queued messages stay queued
    /// for the next connection. Only complete messages (raw profile: chunks)
    /// count as traffic; use it with servers that send something (a
    /// heartbeat, `ipcx.ping`) more often than this.
    pub idle_timeout: Option<Duration>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        let codec = CodecConfig::fast();
        let queue_bytes = codec.max_pending_bytes;
        ClientConfig {
            codec,
            connect: ConnectOptions::default(),
            retry: RetryConfig::default(),
            queue_bytes,
            sync: false,
            sync_timeout: None,
            retry_on_tls_failure: false,
            event_buffer: 1024,
            close_timeout: Duration::from_secs(10),
            extension: true,
            handshake: HandshakeMode::Off,
            hello: serde_json::Value::Null,
            handshake_timeout: Duration::from_secs(10),
            keepalive: None,
            idle_timeout: None,
        }
    }
}

/// Where a client is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Created, not started.
    Idle,
    /// A connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// Disconnected; a retry is scheduled.
    Disconnected,
    /// Finished: destroyed or disconnected explicitly.
    Destroyed,
}

struct Inner {
    endpoint: Endpoint,
    name: String,
    config: ClientConfig,
    retry: Mutex<RetryConfig>,
    encoder: FrameEncoder,
    outbox: Outbox,
    events: Dispatcher<ClientEvent>,
    /// Set by `disconnect`/`destroy`: no retry, no more events.
    explicit: CancellationToken,
    closing: AtomicBool,
    state: watch::Sender<ClientState>,
    sync_gate: Option<Arc<SyncGate>>,
    task: Mutex<Option<JoinHandle<()>>>,
    calls: Arc<Calls>,
    requests: RequestHandlers<()>,
    topics: Mutex<BTreeSet<String>>,
    /// The server sent `ipcx.end` with `reconnect: false`.
    refused_reconnect: AtomicBool,
    /// The id the server assigned in `ipcx.welcome` (kept across reconnects).
    session_id: Mutex<Option<String>>,
}

/// A node-ipc client: one logical connection to one endpoint, reconnecting
/// per node-ipc's policy. Cheap to clone (all clones are the same client).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use ipc_client::{Client, ClientConfig, ClientEvent};
/// let client = Client::new("unix:/tmp/app.world".parse()?, ClientConfig::default())?;
/// client.on("message", |ev: &ClientEvent| {
///     if let Some(m) = ev.message() {
///         println!("got {}", m.data_value());
///     }
/// });
/// client.start();
/// client.emit("message", "hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.name)
            .field("state", &self.state())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Serialize)]
struct TopicsBody<'a> {
    n: &'a str,
    topics: &'a [&'a str],
}

#[derive(Serialize)]
struct PubBody<'a, T: ?Sized> {
    #[serde(rename = "pub")]
    topic: &'a str,
    message: &'a T,
}

#[derive(Serialize)]
struct SubOut<'a> {
    n: &'a str,
    topics: &'a [String],
}

fn acked_topics(r: &Response) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Ack {
        #[serde(default)]
        topics: Vec<String>,
    }
    r.data::<Ack>()
        .ok()
        .flatten()
        .map(|a| a.topics)
        .unwrap_or_default()
}

impl Client {
    /// Creates a client for `endpoint` without connecting: register handlers
    /// and event streams, then call [`Client::start`].
    ///
    /// With the assured profile, a transport that cannot authenticate both
    /// sides is refused here (`ERR_IPC_ASSURED_TRANSPORT`,
    /// `ERR_IPC_ASSURED_TLS`; see `ipc_transport::assured`); a Unix socket's
    /// directory is checked before every connection attempt.
    pub fn new(endpoint: Endpoint, mut config: ClientConfig) -> Result<Client, ClientError> {
        config.connect.keepalive = config.keepalive.or(config.connect.keepalive);
        crate::gates::check_new(&endpoint, &config)?;
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        FrameDecoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        let (state, _) = watch::channel(ClientState::Idle);
        Ok(Client {
            inner: Arc::new(Inner {
                name: endpoint.to_string(),
                endpoint,
                retry: Mutex::new(config.retry),
                encoder,
                outbox: Outbox::new(config.queue_bytes),
                events: Dispatcher::new(config.event_buffer),
                explicit: CancellationToken::new(),
                closing: AtomicBool::new(false),
                state,
                sync_gate: config.sync.then(|| Arc::new(SyncGate::default())),
                task: Mutex::new(None),
                calls: Arc::new(Calls::default()),
                requests: RequestHandlers::default(),
                topics: Mutex::new(BTreeSet::new()),
                refused_reconnect: AtomicBool::new(false),
                session_id: Mutex::new(None),
                config,
            }),
        })
    }

    /// [`Client::new`] + [`Client::start`].
    pub fn connect(endpoint: Endpoint, config: ClientConfig) -> Result<Client, ClientError> {
        let c = Client::new(endpoint, config)?;
        c.start();
        Ok(c)
    }

    /// Starts connecting (in the background, on the current tokio runtime).
    /// Calling it again does nothing.
    pub fn start(&self) {
        let mut task = lock(&self.inner.task);
        if task.is_some() || self.inner.explicit.is_cancelled() {
            return;
        }
        let inner = self.inner.clone();
        *task = Some(tokio::spawn(supervise(inner)));
    }

    /// The endpoint this client connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        *self.inner.state.borrow()
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.state() == ClientState::Connected
    }

    /// Waits until the client is connected (`Ok`) or destroyed (`Err`).
    pub async fn connected(&self) -> Result<(), ClientError> {
        let mut rx = self.inner.state.subscribe();
        loop {
            match *rx.borrow_and_update() {
                ClientState::Connected => return Ok(()),
                ClientState::Destroyed => {
                    return Err(ClientError::Destroyed {
                        endpoint: self.inner.name.clone(),
                    })
                }
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(ClientError::Destroyed {
                    endpoint: self.inner.name.clone(),
                });
            }
        }
    }

    /// Registers a handler for `event` (`"*"` registers a wildcard handler
    /// that sees every event, first).
    pub fn on(&self, event: &str, f: impl Fn(&ClientEvent) + Send + Sync + 'static) -> HandlerId {
        self.inner.events.on(event, false, f)
    }

    /// Registers a handler for the next `event` only.
    pub fn once(&self, event: &str, f: impl Fn(&ClientEvent) + Send + Sync + 'static) -> HandlerId {
        self.inner.events.on(event, true, f)
    }

    /// Removes a handler.
    pub fn off(&self, id: HandlerId) -> bool {
        self.inner.events.handlers().off(id)
    }

    /// Removes every handler of `event`.
    pub fn off_event(&self, event: &str) -> usize {
        self.inner.events.handlers().off_event(event)
    }

    /// A new stream of every event from now on.
    pub fn events(&self) -> EventStream<ClientEvent> {
        self.inner.events.stream()
    }

    fn emit_error(&self, e: EmitError) -> ClientError {
        match e {
            EmitError::Encode(source) => ClientError::Encode {
                endpoint: self.inner.name.clone(),
                source,
            },
            EmitError::Send(e) => self.send_error(e),
        }
    }

    fn send_error(&self, e: SendError) -> ClientError {
        match e {
            SendError::Full {
                queued, capacity, ..
            } => ClientError::Backpressure {
                endpoint: self.inner.name.clone(),
                queued,
                capacity,
            },
            SendError::Closed { .. } => ClientError::Destroyed {
                endpoint: self.inner.name.clone(),
            },
        }
    }

    /// Sends `{"type":event,"data":data}`. Queued while disconnected and
    /// delivered, in order, after the next connect. Waits while the outbound
    /// queue is full, and, like a tokio channel's `send`, yields to the
    /// runtime now and then, so a loop of emits never starves the
    /// connection or other tasks. Fails if the name is refused by the
    /// profile or the client is destroyed.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        self.inner
            .outbox
            .emit(&self.inner.encoder, event, Some(data))
            .await
            .map_err(|e| self.emit_error(e))
    }

    /// Sends an event without data (`data` becomes `{}`, as node-ipc does).
    pub async fn emit_empty(&self, event: &str) -> Result<(), ClientError> {
        self.inner
            .outbox
            .emit::<()>(&self.inner.encoder, event, None)
            .await
            .map_err(|e| self.emit_error(e))
    }

    /// Like [`Client::emit`] but fails with `ERR_IPC_BACKPRESSURE` instead of
    /// waiting when the queue is full.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        self.inner
            .outbox
            .try_emit(&self.inner.encoder, event, Some(data))
            .map_err(|e| self.emit_error(e))
    }

    /// Raw profile: sends the bytes as they are.
    pub async fn emit_raw(&self, bytes: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let mut dst = bytes::BytesMut::with_capacity(bytes.as_ref().len());
        self.inner
            .encoder
            .encode_raw(bytes.as_ref(), &mut dst)
            .map_err(|source| ClientError::Encode {
                endpoint: self.inner.name.clone(),
                source,
            })?;
        self.send_frame(dst.freeze()).await
    }

    /// Queues an already encoded frame (delimiter included), e.g. one shared
    /// by several clients.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        self.inner
            .outbox
            .send(frame)
            .await
            .map_err(|e| self.send_error(e))
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.outbox.queued_bytes()
    }

    /// Changes `stopRetrying` while the client runs (SPEC §3.6).
    pub fn set_stop_retrying(&self, stop: bool) {
        lock(&self.inner.retry).stop_retrying = stop;
    }

    /// Changes the retry settings while the client runs.
    pub fn set_retry(&self, retry: RetryConfig) {
        *lock(&self.inner.retry) = retry;
    }

    /// The connection id the server assigned in the handshake, if any.
    pub fn session_id(&self) -> Option<String> {
        lock(&self.inner.session_id).clone()
    }

    fn call_error(&self, source: CallError) -> ClientError {
        ClientError::Call {
            endpoint: self.inner.name.clone(),
            source,
        }
    }

    /// Sends a call frame and waits for its answer. Calls need a live
    /// connection: they fail at once with `ERR_IPC_NOT_CONNECTED` otherwise,
    /// and are never replayed after a reconnect.
    async fn call<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let encoder = &self.inner.encoder;
        self.call_with(|n| ext::encode_call(encoder, event, n, data), timeout)
            .await
    }

    /// Registers a call, sends the frame `build` makes for its id, and waits.
    async fn call_with(
        &self,
        build: impl FnOnce(&str) -> Result<Bytes, ipc_proto::ProtocolError>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        if self.inner.closing.load(Ordering::SeqCst) || self.inner.explicit.is_cancelled() {
            return Err(self.call_error(CallError::Destroyed));
        }
        if !self.is_connected() {
            return Err(self.call_error(CallError::NotConnected));
        }
        self.inner
            .calls
            .call(build, |frame| self.send_frame(frame), timeout)
            .await
            .map_err(|e| match e {
                CallFailure::Encode(source) => ClientError::Encode {
                    endpoint: self.inner.name.clone(),
                    source,
                },
                CallFailure::Send(e) => e,
                CallFailure::Call(e) => self.call_error(e),
            })
    }

    /// Sends a request and waits for the answer (SPEC §5.4). `timeout`
    /// zero means no timeout (the default elsewhere is
    /// [`ext::DEFAULT_TIMEOUT`], 10 s). Dropping the future cancels the call
    /// (a late answer is ignored). Many requests may be in flight at once.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.call(names::REQUEST, Some(data), timeout).await
    }

    /// Measures the round trip to the server (`ipcx.ping` → `ipcx.pong`).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ClientError> {
        let t0 = tokio::time::Instant::now();
        self.call::<()>(names::PING, None, timeout).await?;
        Ok(t0.elapsed())
    }

    fn check_topics(&self, topics: &[&str]) -> Result<(), ClientError> {
        let max = self.inner.config.codec.max_event_name_length;
        topics
            .iter()
            .try_for_each(|t| ext::validate_topic(t, max))
            .map_err(ClientError::Topic)
    }

    /// Subscribes to `topics`; publications arrive as plain events named
    /// after the topic. Subscriptions are renewed automatically after a
    /// reconnect. While disconnected, the topics are only recorded. Returns
    /// the topics the server acknowledged.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<Vec<String>, ClientError> {
        self.check_topics(topics)?;
        lock(&self.inner.topics).extend(topics.iter().map(|t| t.to_string()));
        if !self.is_connected() {
            return Ok(Vec::new());
        }
        self.topic_call(names::SUB, topics).await
    }

    async fn topic_call(&self, event: &str, topics: &[&str]) -> Result<Vec<String>, ClientError> {
        let encoder = &self.inner.encoder;
        let r = self
            .call_with(
                |n| encoder.encode_to_bytes(event, Some(&TopicsBody { n, topics })),
                ext::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(acked_topics(&r))
    }

    /// Unsubscribes from `topics`.
    pub async fn unsubscribe(&self, topics: &[&str]) -> Result<Vec<String>, ClientError> {
        self.check_topics(topics)?;
        {
            let mut set = lock(&self.inner.topics);
            for t in topics {
                set.remove(*t);
            }
        }
        if !self.is_connected() {
            return Ok(Vec::new());
        }
        self.topic_call(names::UNSUB, topics).await
    }

    /// Publishes `message` on `topic` through the server (fire and forget,
    /// queued like any emit).
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        message: &T,
    ) -> Result<(), ClientError> {
        self.check_topics(&[topic])?;
        let frame = self
            .inner
            .encoder
            .encode_to_bytes(names::PUB, Some(&PubBody { topic, message }))
            .map_err(|source| ClientError::Encode {
                endpoint: self.inner.name.clone(),
                source,
            })?;
        self.send_frame(frame).await
    }

    /// Answers requests the server sends to this client. Handlers run in
    /// registration order; see [`ext::RequestHandlers::add`].
    pub fn on_request(
        &self,
        f: impl Fn(&Request<()>) -> Result<Flow, String> + Send + Sync + 'static,
    ) {
        self.inner.requests.add(f);
    }

    /// Closes gracefully (isdk's `close(reason)`): no new calls; calls in
    /// flight settle and queued messages are written (within
    /// `close_timeout`); the server is told with `ipcx.end`; then the
    /// connection closes without reconnecting.
    pub async fn close(&self, reason: &str) -> Result<(), ClientError> {
        self.inner.closing.store(true, Ordering::SeqCst);
        let limit = self.inner.config.close_timeout;
        let _ = tokio::time::timeout(limit, async {
            while !self.inner.calls.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        if self.is_connected() {
            let end = End {
                reason: serde_json::Value::String(reason.to_owned()),
                reconnect: false,
            };
            if let Ok(frame) = self.inner.encoder.encode_to_bytes(names::END, Some(&end)) {
                let _ = self.inner.outbox.try_send(frame);
            }
        }
        self.disconnect().await
    }

    /// Stops the client: no reconnect, no further events to handlers (they
    /// are removed first, as node-ipc 14 does). Messages already queued are
    /// written first when connected, within `close_timeout`; whatever could
    /// not be written is reported as `Err(Undelivered)`.
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        self.inner.events.handlers().clear();
        self.inner.closing.store(true, Ordering::SeqCst);
        self.inner.outbox.close();
        if self.is_connected() {
            let _ =
                tokio::time::timeout(self.inner.config.close_timeout, self.inner.outbox.flushed())
                    .await;
        }
        self.finish().await
    }

    /// Stops the client at once: calls in flight fail with
    /// `ERR_IPC_DESTROYED`, queued messages are dropped and reported as
    /// `Err(Undelivered)`.
    pub async fn destroy(&self) -> Result<(), ClientError> {
        self.inner.calls.fail_all(CallError::Destroyed);
        self.inner.events.handlers().clear();
        self.inner.closing.store(true, Ordering::SeqCst);
        self.finish().await
    }

    async fn finish(&self) -> Result<(), ClientError> {
        self.inner.explicit.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        self.inner.state.send_replace(ClientState::Destroyed);
        let (frames, bytes) = self.inner.outbox.abort();
        if frames > 0 {
            return Err(ClientError::Undelivered {
                endpoint: self.inner.name.clone(),
                frames,
                bytes,
            });
        }
        Ok(())
    }
}

impl Inner {
    fn retry_config(&self) -> RetryConfig {
        *lock(&self.retry)
    }

    fn explicit(&self) -> bool {
        self.explicit.is_cancelled() || self.closing.load(Ordering::SeqCst)
    }

    fn set_state(&self, s: ClientState) {
        self.state.send_replace(s);
    }

    /// Dispatches to handlers, then to every event stream (waiting while a
    /// stream is full: backpressure instead of unbounded buffering).
    async fn emit(&self, ev: ClientEvent) {
        self.emit_with(ev, None).await;
    }

    /// [`Inner::emit`] with a connection's dispatch cache.
    async fn emit_with(&self, ev: ClientEvent, cache: Option<&mut DispatchCache<ClientEvent>>) {
        let d = self.events.deliver_with(ev.name(), &ev, cache).await;
        let is_error = matches!(ev, ClientEvent::Error(_));
        if is_error && d.handlers == 0 && d.streams == 0 {
            if let ClientEvent::Error(e) = &ev {
                tracing::warn!(endpoint = %self.name, error = %e, "unhandled client error");
            }
        }
        for p in d.panics {
            let err = ClientEvent::Error(Arc::new(ClientError::Handler {
                event: p.event,
                message: p.message,
            }));
            if is_error {
                tracing::error!(endpoint = %self.name, "error handler panicked: {err:?}");
            } else {
                Box::pin(self.emit(err)).await;
            }
        }
    }

    async fn error(&self, e: ClientError) {
        self.emit(ClientEvent::Error(Arc::new(e))).await;
    }
}

async fn supervise(inner: Arc<Inner>) {
    let mut retry = RetryState::new(&inner.retry_config());
    loop {
        inner.set_state(ClientState::Connecting);
        let attempt = tokio::select! {
            biased;
            _ = inner.explicit.cancelled() => break,
            r = crate::gates::connect(&inner.endpoint, &inner.config.connect, inner.config.codec.profile) => r,
        };
        let violation = match attempt {
            Ok(stream) => {
                let failure = run_connection(&inner, stream, &mut retry).await;
                // Calls never outlive their connection, nor are replayed.
                inner.calls.fail_all(CallError::NotConnected);
                inner.outbox.retain(|f| !ext::is_call_frame(f));
                let refused = inner.refused_reconnect.swap(false, Ordering::SeqCst);
                match failure {
                    Some(e) => {
                        let tls_retry = inner.config.retry_on_tls_failure
                            && matches!(e, ClientError::TlsRejected { .. });
                        let violation = !e.is_retryable() && !tls_retry;
                        if !inner.explicit() {
                            inner.error(e).await;
                        }
                        violation || refused
                    }
                    None => refused,
                }
            }
            Err(source) => {
                let tls_retry = inner.config.retry_on_tls_failure
                    && matches!(inner.endpoint, Endpoint::Tls { .. });
                let e = ClientError::Connect {
                    endpoint: inner.name.clone(),
                    source,
                };
                let violation = !e.is_retryable() && !tls_retry;
                if !inner.explicit() {
                    inner.error(e).await;
                }
                violation
            }
        };
        if inner.explicit() {
            break;
        }
        let cfg = inner.retry_config();
        inner.set_state(ClientState::Disconnected);
        match retry.on_close(&cfg, false, violation) {
            OnClose::Destroy => {
                inner.emit(ClientEvent::Disconnect).await;
                inner.set_state(ClientState::Destroyed);
                inner.emit(ClientEvent::Destroy).await;
                report_undelivered(&inner).await;
                return;
            }
            OnClose::RetryAfter(delay) => {
                inner.emit(ClientEvent::Disconnect).await;
                tokio::select! {
                    biased;
                    _ = inner.explicit.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                match retry.on_timer(&inner.retry_config(), inner.explicit()) {
                    OnTimer::Stop => break,
                    OnTimer::Destroy => {
                        inner.set_state(ClientState::Destroyed);
                        inner.emit(ClientEvent::Destroy).await;
                        report_undelivered(&inner).await;
                        return;
                    }
                    OnTimer::Reconnect => {}
                }
            }
        }
    }
    inner.set_state(ClientState::Destroyed);
}

/// The client is finished: anything still queued will never be written.
async fn report_undelivered(inner: &Inner) {
    let (frames, bytes) = inner.outbox.abort();
    if frames > 0 {
        inner
            .error(ClientError::Undelivered {
                endpoint: inner.name.clone(),
                frames,
                bytes,
            })
            .await;
    }
}

/// Runs one connection until it ends; returns the error that ended it, if
/// any (`None` = the peer closed cleanly, or the client was stopped).
async fn run_connection(
    inner: &Arc<Inner>,
    stream: Stream,
    retry: &mut RetryState,
) -> Option<ClientError> {
    use tokio::io::AsyncWriteExt;
    let decoder = match FrameDecoder::new(inner.config.codec.clone()) {
        Ok(d) => d,
        Err(e) => return Some(ClientError::Config(e)),
    };
    let (rd, mut wr) = stream.into_split();
    let conn = inner.explicit.child_token();
    let mut reader = FrameReader::new(rd, decoder, conn.clone());
    let mut dispatch_cache = DispatchCache::default();
    // What must precede every queued message on a new connection: the hello
    // and the renewal of subscriptions.
    let preface = preface(inner);
    if !preface.is_empty() {
        if let Err(source) = wr.write_all(&preface).await {
            return Some(ClientError::Io {
                endpoint: inner.name.clone(),
                source,
            });
        }
    }
    if inner.config.handshake == HandshakeMode::Required {
        if let Err(e) = await_welcome(inner, &mut reader).await {
            return Some(e);
        }
    }
    retry.on_connect(&inner.retry_config());
    inner.set_state(ClientState::Connected);
    inner.emit(ClientEvent::Connect).await;
    let writer = {
        let outbox = inner.outbox.clone();
        let conn = conn.clone();
        let gate = inner.sync_gate.clone();
        tokio::spawn(async move {
            let exit = write_loop(&outbox, &mut wr, true, &conn, gate.as_deref()).await;
            if !matches!(exit, WriterExit::Drained) {
                conn.cancel();
            }
            exit
        })
    };
    let raw = inner.config.codec.profile == Profile::Raw;
    let mut failure = None;
    let mut idle = IdleTimer::new(inner.config.idle_timeout);
    loop {
        let ev = match (&inner.sync_gate, inner.config.sync_timeout) {
            (Some(gate), Some(limit)) if !gate.is_ready() => {
                match tokio::time::timeout(limit, idle.read(&mut reader)).await {
                    Ok(ev) => ev,
                    Err(_) => {
                        gate.release();
                        inner
                            .error(ClientError::SyncTimeout {
                                endpoint: inner.name.clone(),
                            })
                            .await;
                        continue;
                    }
                }
            }
            _ => idle.read(&mut reader).await,
        };
        let Some(ev) = ev else {
            failure = Some(ClientError::Idle {
                endpoint: inner.name.clone(),
                after: inner.config.idle_timeout.unwrap_or_default(),
            });
            break;
        };
        match ev {
            ReadEvent::Item(item) => {
                idle.received();
                if let Some(g) = &inner.sync_gate {
                    g.release();
                }
                let ev = match item {
                    Inbound::Message(m) => {
                        if inner.config.extension && m.event().starts_with(names::PREFIX) {
                            handle_extension(inner, &m).await;
                            continue;
                        }
                        ClientEvent::Message(m)
                    }
                    Inbound::Raw(b) => ClientEvent::Data(b),
                };
                debug_assert!(raw == matches!(ev, ClientEvent::Data(_)));
                inner.emit_with(ev, Some(&mut dispatch_cache)).await;
            }
            ReadEvent::Eof | ReadEvent::Cancelled => break,
            ReadEvent::Protocol(source) => {
                failure = Some(ClientError::Protocol {
                    endpoint: inner.name.clone(),
                    source,
                });
                break;
            }
            ReadEvent::Io(source) => {
                failure = Some(io_failure(inner, source));
                break;
            }
        }
    }
    conn.cancel();
    match writer.await {
        Ok(WriterExit::Failed(source)) if failure.is_none() && !inner.explicit() => {
            failure = Some(io_failure(inner, source));
        }
        _ => {}
    }
    failure
}

/// The client's `idle_timeout` on one connection: a deadline moved forward
/// by every received item. Without a timeout it costs nothing: reads are
/// awaited as they are.
struct IdleTimer {
    limit: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
}

impl IdleTimer {
    fn new(limit: Option<Duration>) -> Self {
        IdleTimer {
            limit,
            deadline: limit.map(|t| tokio::time::Instant::now() + t),
        }
    }

    /// Something arrived: the peer is alive.
    fn received(&mut self) {
        if let Some(t) = self.limit {
            self.deadline = Some(tokio::time::Instant::now() + t);
        }
    }

    /// The next read event, or `None` when the deadline passed first.
    /// Cancel-safe, as [`FrameReader::next`].
    async fn read<R: tokio::io::AsyncRead + Unpin>(
        &self,
        reader: &mut FrameReader<R>,
    ) -> Option<ReadEvent> {
        match self.deadline {
            Some(d) => tokio::time::timeout_at(d, reader.next()).await.ok(),
            None => Some(reader.next().await),
        }
    }
}

/// Classifies a transport failure of an established connection.
fn io_failure(inner: &Inner, source: std::io::Error) -> ClientError {
    if ipc_transport::is_tls_auth_failure(&source) {
        ClientError::TlsRejected {
            endpoint: inner.name.clone(),
            source,
        }
    } else {
        ClientError::Io {
            endpoint: inner.name.clone(),
            source,
        }
    }
}

/// The frames written before anything queued on a new connection.
fn preface(inner: &Inner) -> Vec<u8> {
    let mut out = Vec::new();
    if inner.config.handshake != HandshakeMode::Off {
        let hello = ext::Hello {
            v: 1,
            id: lock(&inner.session_id).clone(),
            extras: inner.config.hello.clone(),
            features: ext::FEATURES.iter().map(|f| f.to_string()).collect(),
        };
        match inner.encoder.encode_to_bytes(names::HELLO, Some(&hello)) {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => tracing::warn!(endpoint = %inner.name, "cannot encode the hello: {e}"),
        }
    }
    let topics: Vec<String> = lock(&inner.topics).iter().cloned().collect();
    if inner.config.extension && !topics.is_empty() {
        // Nobody waits for this acknowledgement: its id is not registered,
        // so the answer is ignored.
        let body = SubOut {
            n: "resubscribe",
            topics: &topics,
        };
        match inner.encoder.encode_to_bytes(names::SUB, Some(&body)) {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => tracing::warn!(endpoint = %inner.name, "cannot renew subscriptions: {e}"),
        }
    }
    out
}

/// Required handshake: the first thing the server sends must be
/// `ipcx.welcome` (an `ipcx.end` means it refused us).
async fn await_welcome<R: tokio::io::AsyncRead + Unpin>(
    inner: &Inner,
    reader: &mut FrameReader<R>,
) -> Result<(), ClientError> {
    let fail = |code, reason: String| ClientError::Handshake {
        endpoint: inner.name.clone(),
        code,
        reason,
    };
    let limit = inner.config.handshake_timeout;
    let ev = match tokio::time::timeout(limit, reader.next()).await {
        Ok(ev) => ev,
        Err(_) => {
            return Err(fail(
                ipc_proto::ErrorCode::HandshakeTimeout,
                format!("no ipcx.welcome within {limit:?}"),
            ))
        }
    };
    match ev {
        ReadEvent::Item(Inbound::Message(m)) if m.event() == names::WELCOME => {
            if let Ok(w) = m.data::<ext::Welcome>() {
                *lock(&inner.session_id) = Some(w.id);
            }
            Ok(())
        }
        ReadEvent::Item(Inbound::Message(m)) if m.event() == names::END => {
            let end = m.data::<End>().ok();
            if end.as_ref().is_some_and(|e| !e.reconnect) {
                inner.refused_reconnect.store(true, Ordering::SeqCst);
            }
            let reason = end
                .map(|e| match e.reason {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_default();
            Err(fail(
                ipc_proto::ErrorCode::HandshakeRequired,
                format!("the server refused the handshake: {reason}"),
            ))
        }
        ReadEvent::Item(_) => Err(fail(
            ipc_proto::ErrorCode::HandshakeRequired,
            "the server sent something else before ipcx.welcome".into(),
        )),
        ReadEvent::Protocol(source) => Err(ClientError::Protocol {
            endpoint: inner.name.clone(),
            source,
        }),
        ReadEvent::Io(source) => Err(ClientError::Io {
            endpoint: inner.name.clone(),
            source,
        }),
        ReadEvent::Eof | ReadEvent::Cancelled => Err(fail(
            ipc_proto::ErrorCode::HandshakeRequired,
            "the connection closed before ipcx.welcome".into(),
        )),
    }
}

/// Handles one `ipcx.*` message from the server.
async fn handle_extension(inner: &Arc<Inner>, m: &Message) {
    match m.event() {
        names::RESPONSE | names::PONG => {
            inner.calls.resolve(m);
        }
        names::REQUEST => {
            let outbox = inner.outbox.clone();
            let sink: ext::Sink = Arc::new(move |frame| {
                outbox.try_send(frame).map_err(|e| match e {
                    SendError::Full { .. } => CallError::Backpressure,
                    SendError::Closed { .. } => CallError::Destroyed,
                })
            });
            let panics = inner.requests.dispatch(m, (), sink, &inner.encoder);
            for message in panics {
                inner
                    .error(ClientError::Handler {
                        event: names::REQUEST.into(),
                        message,
                    })
                    .await;
            }
        }
        names::PING => {
            if let Some(pong) = ext::pong_for(m, &inner.encoder) {
                let _ = inner.outbox.try_send(pong);
            }
        }
        names::END => {
            let end = m.data::<End>().ok();
            tracing::debug!(endpoint = %inner.name, ?end, "server announced a close");
            if end.is_some_and(|e| !e.reconnect) {
                inner.refused_reconnect.store(true, Ordering::SeqCst);
            }
        }
        names::WELCOME => {
            if let Ok(w) = m.data::<ext::Welcome>() {
                *lock(&inner.session_id) = Some(w.id);
            }
        }
        other => {
            tracing::debug!(endpoint = %inner.name, event = other, "unexpected extension message ignored")
        }
    }
}
