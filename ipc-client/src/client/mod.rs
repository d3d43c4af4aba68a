//! [`Client`]: connect to a node-ipc server, retry, emit with backpressure.

mod config;
mod netipc;
mod supervisor;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use ipc_conn::{
    Budget, CallError, Dispatcher, EventStream, Flow, HandlerId, Link, LinkError, Request,
    RequestHandlers, Response, SyncGate,
};
use ipc_proto::ext::{self, names, End};
use ipc_proto::{FrameDecoder, FrameEncoder};
use ipc_transport::Endpoint;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{ClientConfig, ClientState, Protocol};

use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::retry::RetryConfig;

struct Inner {
    endpoint: Endpoint,
    name: String,
    config: ClientConfig,
    retry: Mutex<RetryConfig>,
    /// The outbound queue (surviving reconnects), encoder and calls.
    link: Link,
    events: Dispatcher<ClientEvent>,
    /// What the server's events may hold in the event streams.
    budget: Budget,
    /// Set by `disconnect`/`destroy`: no retry, no more events.
    explicit: CancellationToken,
    closing: AtomicBool,
    state: watch::Sender<ClientState>,
    sync_gate: Option<Arc<SyncGate>>,
    task: Mutex<Option<JoinHandle<()>>>,
    requests: RequestHandlers<()>,
    topics: Mutex<BTreeSet<String>>,
    /// The server sent `ipcx.end` with `reconnect: false`.
    refused_reconnect: AtomicBool,
    /// The id the server assigned in `ipcx.welcome` (kept across reconnects).
    session_id: Mutex<Option<String>>,
    /// The last failure of a connection or connection attempt: what
    /// [`Client::connected`] reports when no connection comes.
    last_failure: Mutex<Option<Arc<ClientError>>>,
    /// The timeout of requests and pings that do not name one.
    request_timeout: Mutex<Duration>,
    /// The reason of the server's last `ipcx.end`.
    close_reason: Mutex<Option<String>>,
    /// How [`Client::emit_str`] turns text into bytes (node-ipc's
    /// `encoding`).
    raw_encoding: Mutex<ipc_proto::RawEncoding>,
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

fn acked_topics(r: &Response) -> Vec<String> {
    r.data::<ext::TopicsAck>()
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
        crate::assured::check_new(&endpoint, &config)?;
        let encoder = FrameEncoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        FrameDecoder::new(config.codec.clone()).map_err(ClientError::Config)?;
        let (state, _) = watch::channel(ClientState::Idle);
        Ok(Client {
            inner: Arc::new(Inner {
                name: endpoint.to_string(),
                endpoint,
                retry: Mutex::new(config.retry),
                link: Link::new(encoder, config.queue_bytes),
                events: Dispatcher::new(config.event_buffer),
                budget: Budget::new(config.inbound_bytes),
                explicit: CancellationToken::new(),
                closing: AtomicBool::new(false),
                state,
                sync_gate: config.sync.then(|| Arc::new(SyncGate::default())),
                task: Mutex::new(None),
                requests: RequestHandlers::default(),
                topics: Mutex::new(BTreeSet::new()),
                refused_reconnect: AtomicBool::new(false),
                session_id: Mutex::new(None),
                last_failure: Mutex::new(None),
                request_timeout: Mutex::new(ipc_conn::calls::DEFAULT_TIMEOUT),
                close_reason: Mutex::new(None),
                raw_encoding: Mutex::new(ipc_proto::RawEncoding::Utf8),
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
        *task = Some(tokio::spawn(supervisor::supervise(inner)));
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

    /// Waits until the client is connected. Fails when the retry policy
    /// gives up (or the client is stopped) with
    /// [`ClientError::NotConnected`], whose source is the last real cause
    /// (`ENOENT`, `ECONNREFUSED`, a TLS rejection, a refused handshake…).
    /// Under the default policy (retry forever) it waits until a
    /// connection comes: use [`Client::connected_within`] to bound the wait.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use ipc_client::{Client, ClientConfig, MaxRetries};
    /// let mut config = ClientConfig::default();
    /// config.retry.max_retries = MaxRetries::Limited(3);
    /// let client = Client::connect("unix:/tmp/app.world".parse()?, config)?;
    /// if let Err(e) = client.connected().await {
    ///     eprintln!("{e}"); // names the endpoint and the last cause
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connected(&self) -> Result<(), ClientError> {
        self.wait_connected(None).await
    }

    /// [`Client::connected`], giving up after `limit` (then the error's
    /// `after` is set; the client itself keeps following its retry
    /// policy). `None` waits as long as the policy allows.
    pub async fn connected_within(&self, limit: Option<Duration>) -> Result<(), ClientError> {
        self.wait_connected(limit).await
    }

    async fn wait_connected(&self, limit: Option<Duration>) -> Result<(), ClientError> {
        let mut rx = self.inner.state.subscribe();
        let wait = async {
            loop {
                match *rx.borrow_and_update() {
                    ClientState::Connected => return true,
                    ClientState::Destroyed => return false,
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        let outcome = match limit {
            None => Some(wait.await),
            Some(limit) => tokio::time::timeout(limit, wait).await.ok(),
        };
        match outcome {
            Some(true) => Ok(()),
            Some(false) => Err(self.not_connected(None)),
            None => Err(self.not_connected(limit)),
        }
    }

    fn not_connected(&self, after: Option<Duration>) -> ClientError {
        ClientError::NotConnected {
            endpoint: self.inner.name.clone(),
            after,
            last: lock(&self.inner.last_failure).clone(),
        }
    }

    /// Why the server closed the connection, when it said so with
    /// `ipcx.end` (e.g. `"Server was shut down"`): read it in a
    /// `disconnect` handler. Cleared when a connection comes.
    pub fn close_reason(&self) -> Option<String> {
        lock(&self.inner.close_reason).clone()
    }

    /// The last failure of a connection or connection attempt, if any.
    pub fn last_failure(&self) -> Option<Arc<ClientError>> {
        lock(&self.inner.last_failure).clone()
    }

    /// A handle that does not keep the client alive: what a handler stored
    /// inside the client itself should hold (no reference cycle).
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            inner: Arc::downgrade(&self.inner),
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

    /// The one place a link failure becomes a client error.
    fn link_error(&self, e: LinkError) -> ClientError {
        let endpoint = self.inner.name.clone();
        match e {
            LinkError::Encode(source) => ClientError::Encode { endpoint, source },
            LinkError::Full { queued, capacity } => ClientError::Backpressure {
                endpoint,
                queued,
                capacity,
            },
            LinkError::Closed => ClientError::Destroyed { endpoint },
            LinkError::Call(source) => ClientError::Call { endpoint, source },
            _ => ClientError::Destroyed { endpoint },
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
        let r = self.inner.link.emit(event, Some(data)).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Sends an event without data (`data` becomes `{}`, as node-ipc does).
    pub async fn emit_empty(&self, event: &str) -> Result<(), ClientError> {
        let r = self.inner.link.emit::<()>(event, None).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Like [`Client::emit`] but fails with `ERR_IPC_BACKPRESSURE` instead of
    /// waiting when the queue is full.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        let r = self.inner.link.try_emit(event, Some(data));
        r.map_err(|e| self.link_error(e))
    }

    /// Raw profile: sends the bytes as they are.
    pub async fn emit_raw(&self, bytes: impl AsRef<[u8]>) -> Result<(), ClientError> {
        let r = self.inner.link.emit_raw(bytes.as_ref()).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Raw profile: node-ipc's `emit(string)` in `rawBuffer` mode — the
    /// text turned into bytes with the raw encoding
    /// ([`Client::set_raw_encoding`]; `utf8` by default, `hex`, `base64`,
    /// … as node's `Buffer.from(text, encoding)`), then sent as they are.
    pub async fn emit_str(&self, text: &str) -> Result<(), ClientError> {
        let bytes = lock(&self.inner.raw_encoding).encode_str(text);
        self.emit_raw(bytes).await
    }

    /// Sets the encoding [`Client::emit_str`] applies (node-ipc's
    /// `encoding`; the `ipc` facade sets it from its configuration).
    pub fn set_raw_encoding(&self, encoding: ipc_proto::RawEncoding) {
        *lock(&self.inner.raw_encoding) = encoding;
    }

    /// Queues an already encoded frame (delimiter included), e.g. one shared
    /// by several clients.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), ClientError> {
        let r = self.inner.link.send_frame(frame).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.link.outbox().queued_bytes()
    }

    /// Changes `stopRetrying` while the client runs (`docs/protocol.md` §3.6).
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

    /// Calls need a live connection: they fail at once with
    /// `ERR_IPC_NOT_CONNECTED` otherwise (`ERR_IPC_DESTROYED` once the
    /// client is closing), and are never replayed after a reconnect.
    fn check_call(&self) -> Result<(), ClientError> {
        let failed =
            if self.inner.closing.load(Ordering::SeqCst) || self.inner.explicit.is_cancelled() {
                CallError::Destroyed
            } else if !self.is_connected() {
                CallError::NotConnected
            } else {
                return Ok(());
            };
        Err(self.link_error(LinkError::Call(failed)))
    }

    /// Sends a request and waits for the answer (`docs/protocol.md` §5). `timeout`
    /// zero means no timeout (the default elsewhere is
    /// [`ipc_conn::calls::DEFAULT_TIMEOUT`], 10 s). Dropping the future
    /// cancels the call (a late answer is ignored). Many requests may be
    /// in flight at once.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        self.check_call()?;
        let r = self.inner.link.request(data, timeout).await;
        r.map_err(|e| self.link_error(e))
    }

    /// The timeout of [`Client::request_default`], [`Client::request_as`]
    /// and [`Client::ping_default`] (zero = none; default 10 s, what the
    /// `ipc` facade's `ext.requestTimeout` sets).
    pub fn set_request_timeout(&self, timeout: Duration) {
        *lock(&self.inner.request_timeout) = timeout;
    }

    /// The default request timeout ([`Client::set_request_timeout`]).
    pub fn request_timeout(&self) -> Duration {
        *lock(&self.inner.request_timeout)
    }

    /// isdk's `request(data)`: [`Client::request`] with the default
    /// timeout.
    pub async fn request_default<T: Serialize + ?Sized>(
        &self,
        data: &T,
    ) -> Result<Response, ClientError> {
        self.request(data, self.request_timeout()).await
    }

    /// A request with the default timeout whose answer is deserialized into
    /// `R` (an answer without data reads as JSON `null`, so `R` may be
    /// `()` or an `Option`). An answer that does not fit `R` is
    /// [`ClientError::Answer`].
    pub async fn request_as<R, T>(&self, data: &T) -> Result<R, ClientError>
    where
        R: serde::de::DeserializeOwned,
        T: Serialize + ?Sized,
    {
        let r = self.request_default(data).await?;
        let decoded = match r.raw() {
            Some(raw) => serde_json::from_str(raw),
            None => serde_json::from_value(serde_json::Value::Null),
        };
        decoded.map_err(|source| ClientError::Answer {
            endpoint: self.inner.name.clone(),
            source,
        })
    }

    /// isdk's `ping()`: [`Client::ping`] with the default timeout.
    pub async fn ping_default(&self) -> Result<Duration, ClientError> {
        self.ping(self.request_timeout()).await
    }

    /// Measures the round trip to the server (`ipcx.ping` → `ipcx.pong`).
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ClientError> {
        self.check_call()?;
        let r = self.inner.link.ping(timeout).await;
        r.map_err(|e| self.link_error(e))
    }

    fn check_topics(&self, topics: &[&str]) -> Result<(), ClientError> {
        netipc::no_pubsub(&self.inner)?;
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
        self.check_call()?;
        let link = &self.inner.link;
        let r = link
            .call_with(
                |n| {
                    let body = ext::TopicsOut { n, topics };
                    link.encoder().encode_to_bytes(event, Some(&body))
                },
                ipc_conn::calls::DEFAULT_TIMEOUT,
            )
            .await
            .map_err(|e| self.link_error(e))?;
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
        let body = ext::PubOut { topic, message };
        let r = self.inner.link.emit(names::PUB, Some(&body)).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Answers requests the server sends to this client. Handlers run in
    /// registration order; see [`RequestHandlers::add`].
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
            while !self.inner.link.calls().is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        if self.is_connected() {
            let end = End::new(reason, false);
            if let Err(e) = self.inner.link.try_emit(names::END, Some(&end)) {
                tracing::debug!(endpoint = %self.inner.name, "cannot send ipcx.end: {e}");
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
        let outbox = self.inner.link.outbox();
        outbox.close();
        if self.is_connected() {
            let limit = self.inner.config.close_timeout;
            let _ = tokio::time::timeout(limit, outbox.flushed()).await;
            // The writer shuts the connection down once the queue is empty
            // (TLS: `close_notify`); the server then closes its side. Wait
            // for that end, briefly, rather than cutting the shutdown off.
            let mut state = self.inner.state.subscribe();
            let _ = tokio::time::timeout(limit.min(Duration::from_secs(2)), async {
                while *state.borrow_and_update() == ClientState::Connected {
                    if state.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        self.finish().await
    }

    /// Stops the client at once: calls in flight fail with
    /// `ERR_IPC_DESTROYED`, queued messages are dropped and reported as
    /// `Err(Undelivered)`.
    pub async fn destroy(&self) -> Result<(), ClientError> {
        self.inner.link.calls().fail_all(CallError::Destroyed);
        self.inner.events.handlers().clear();
        self.inner.closing.store(true, Ordering::SeqCst);
        self.finish().await
    }

    /// isdk's `destroy(reason)`: tells the server why with `ipcx.end`
    /// (only if it can be written at once, and only when connected), then
    /// [`Client::destroy`].
    pub async fn destroy_with_reason(&self, reason: &str) -> Result<(), ClientError> {
        if self.is_connected() && self.inner.config.extension {
            let end = End::new(reason, false);
            let queued = self.inner.link.try_emit(names::END, Some(&end));
            if let Err(e) = queued {
                tracing::debug!(endpoint = %self.inner.name, "cannot send ipcx.end: {e}");
            } else {
                // Give the writer a moment to put the notice on the wire.
                let outbox = self.inner.link.outbox();
                outbox.close();
                let _ = tokio::time::timeout(Duration::from_millis(200), outbox.flushed()).await;
            }
        }
        self.destroy().await
    }

    async fn finish(&self) -> Result<(), ClientError> {
        self.inner.explicit.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(t) = task {
            let _ = t.await;
        }
        // Closed before anyone can see the client destroyed: an emit from
        // then on fails instead of queueing what nobody will write.
        let (frames, bytes) = self.inner.link.outbox().abort();
        self.inner.state.send_replace(ClientState::Destroyed);
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

/// A [`Client`] handle that does not keep it alive ([`Client::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakClient {
    inner: Weak<Inner>,
}

impl WeakClient {
    /// The client, if it still exists.
    pub fn upgrade(&self) -> Option<Client> {
        self.inner.upgrade().map(|inner| Client { inner })
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
        if s == ClientState::Connected {
            *lock(&self.close_reason) = None;
        }
        self.state.send_replace(s);
    }

    /// The server announced a close (`ipcx.end`).
    fn note_end(&self, end: Option<&End>) {
        if let Some(e) = end {
            *lock(&self.close_reason) = Some(e.reason_text());
        }
    }

    /// Delivers one of the client's own events to the handlers, then to
    /// every event stream; handler panics become `error` events. While the
    /// streams hold `event_buffer` such events it waits for the
    /// application to take some, until the client is stopped.
    async fn deliver(&self, ev: ClientEvent) {
        self.events
            .dispatch_local(ev, &self.name, Some(&self.explicit))
            .await;
    }

    async fn error(&self, e: ClientError) {
        let e = Arc::new(e);
        if e.is_connection_failure() {
            *lock(&self.last_failure) = Some(e.clone());
        }
        self.deliver(ClientEvent::Error(e)).await;
    }
}
