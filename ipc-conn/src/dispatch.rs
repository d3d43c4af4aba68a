//! How an endpoint delivers its events: handlers first, then every event
//! stream ([`Dispatcher`]), with handler panics turned into error events.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::handlers::{DispatchCache, HandlerId, HandlerPanic, Handlers, WILDCARD};

/// Where an event came from.
///
/// A peer may send a frame named like a lifecycle event (`connect`,
/// `error`, …). The fast profile delivers it to the same-named handlers, as
/// node-ipc does, but it is always a message event with
/// [`Origin::Remote`]: lifecycle events are never synthesised from wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Raised by this endpoint (lifecycle, errors).
    Local,
    /// Received from the peer.
    Remote,
}

/// An endpoint's event type, as its [`Dispatcher`] needs to know it.
pub trait Event: Clone + Send + Sync + 'static {
    /// The name handlers are registered under (node-ipc's event name).
    fn name(&self) -> &str;

    /// The error text, when this is an `error` event (logged when nobody
    /// handles it; a panic in an error handler is logged, not re-reported).
    fn error_text(&self) -> Option<String>;

    /// The `error` event that reports `panic`, caught while this event was
    /// dispatched.
    fn handler_panicked(&self, panic: HandlerPanic) -> Self;
}

/// An async stream of an endpoint's events ([`futures_core::Stream`]).
///
/// The stream is bounded: while it is full, the endpoint stops reading from
/// the transport (backpressure reaches the peer) instead of buffering
/// without limit. Drop it when no longer needed.
#[derive(Debug)]
pub struct EventStream<E> {
    rx: mpsc::Receiver<E>,
}

impl<E> EventStream<E> {
    pub(crate) fn new(rx: mpsc::Receiver<E>) -> Self {
        EventStream { rx }
    }

    /// Creates a stream and the sender that feeds it.
    pub fn channel(capacity: usize) -> (mpsc::Sender<E>, EventStream<E>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, EventStream::new(rx))
    }

    /// The next event, or `None` once the endpoint is gone.
    pub async fn recv(&mut self) -> Option<E> {
        self.rx.recv().await
    }
}

impl<E> futures_core::Stream for EventStream<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.rx.poll_recv(cx)
    }
}

/// Handlers plus event streams: how an endpoint delivers its events. Both
/// sides use one per endpoint.
pub struct Dispatcher<E> {
    handlers: Handlers<E>,
    streams: std::sync::Mutex<Arc<Vec<mpsc::Sender<E>>>>,
    /// How many streams there are, read without the lock on every event.
    stream_count: std::sync::atomic::AtomicUsize,
    capacity: usize,
}

impl<E> std::fmt::Debug for Dispatcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("handlers", &self.handlers)
            .field(
                "streams",
                &self.streams.lock().map(|s| s.len()).unwrap_or_default(),
            )
            .finish()
    }
}

/// What [`Dispatcher::deliver`] did.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Handlers that ran.
    pub handlers: usize,
    /// Streams the event went to.
    pub streams: usize,
    /// Handler panics caught.
    pub panics: Vec<HandlerPanic>,
}

impl<E: Clone> Dispatcher<E> {
    /// A dispatcher whose streams hold `capacity` events each.
    pub fn new(capacity: usize) -> Self {
        Dispatcher {
            handlers: Handlers::new(),
            streams: std::sync::Mutex::new(Arc::new(Vec::new())),
            stream_count: std::sync::atomic::AtomicUsize::new(0),
            capacity,
        }
    }

    /// The handler registry.
    pub fn handlers(&self) -> &Handlers<E> {
        &self.handlers
    }

    fn streams(&self) -> Arc<Vec<mpsc::Sender<E>>> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn prune(&self, add: Option<mpsc::Sender<E>>) {
        let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = s.iter().filter(|t| !t.is_closed()).cloned().collect();
        v.extend(add);
        self.stream_count
            .store(v.len(), std::sync::atomic::Ordering::Release);
        *s = Arc::new(v);
    }

    /// Registers `f` for `event`; `"*"` registers a wildcard handler.
    pub fn on(&self, event: &str, once: bool, f: impl Fn(&E) + Send + Sync + 'static) -> HandlerId {
        match (event == WILDCARD, once) {
            (true, false) => self.handlers.on_any(move |_, ev| f(ev)),
            (true, true) => self.handlers.once_any(move |_, ev| f(ev)),
            (false, false) => self.handlers.on(event, f),
            (false, true) => self.handlers.once(event, f),
        }
    }

    /// A new stream of every event from now on.
    pub fn stream(&self) -> EventStream<E> {
        let (tx, stream) = EventStream::channel(self.capacity);
        self.prune(Some(tx));
        stream
    }

    /// Runs the handlers for `name`, then sends the event to every stream,
    /// waiting while a stream is full (backpressure instead of unbounded
    /// buffering).
    pub async fn deliver(&self, name: &str, ev: &E) -> Delivered {
        self.deliver_with(name, ev, None).await
    }

    /// [`Dispatcher::deliver`], dispatching through `cache` when given (see
    /// [`DispatchCache`]).
    pub async fn deliver_with(
        &self,
        name: &str,
        ev: &E,
        cache: Option<&mut DispatchCache<E>>,
    ) -> Delivered {
        let d = match cache {
            Some(c) => self.handlers.dispatch_cached(c, name, ev),
            None => self.handlers.dispatch(name, ev),
        };
        if self.stream_count.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return Delivered {
                handlers: d.ran,
                streams: 0,
                panics: d.panics,
            };
        }
        let streams = self.streams();
        let mut closed = false;
        for tx in streams.iter() {
            if tx.send(ev.clone()).await.is_err() {
                closed = true;
            }
        }
        if closed {
            self.prune(None);
        }
        Delivered {
            handlers: d.ran,
            streams: streams.len(),
            panics: d.panics,
        }
    }
}

impl<E: Event> Dispatcher<E> {
    /// Delivers `ev` ([`Dispatcher::deliver_with`]) and reports what went
    /// wrong: every handler panic becomes an `error` event delivered in
    /// turn, and an `error` event that no handler or stream took is logged
    /// under `endpoint`, so no error disappears silently.
    pub async fn dispatch(&self, ev: E, cache: Option<&mut DispatchCache<E>>, endpoint: &str) {
        let d = self.deliver_with(ev.name(), &ev, cache).await;
        let error = ev.error_text();
        report(endpoint, error.as_deref(), &d);
        if error.is_some() {
            return;
        }
        for p in d.panics {
            let err = ev.handler_panicked(p);
            let d = self.deliver_with(err.name(), &err, None).await;
            report(endpoint, err.error_text().as_deref(), &d);
        }
    }
}

/// Logs an error event nobody took, and panics of error handlers.
fn report(endpoint: &str, error: Option<&str>, d: &Delivered) {
    let Some(error) = error else {
        return;
    };
    if d.handlers == 0 && d.streams == 0 {
        tracing::warn!(endpoint, "unhandled error: {error}");
    }
    for p in &d.panics {
        tracing::error!(endpoint, event = %p.event, "error handler panicked: {}", p.message);
    }
}
