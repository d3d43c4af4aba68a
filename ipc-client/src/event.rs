//! The client's events, as handlers and the event stream see them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ipc_proto::Message;
use tokio::sync::mpsc;

use crate::error::ClientError;

/// Where an event came from.
///
/// A peer may send a frame named like a lifecycle event (`connect`,
/// `error`, …). The fast profile delivers it to the same-named handlers, as
/// node-ipc does, but it is always a [`ClientEvent::Message`] with
/// [`Origin::Remote`]: lifecycle events are never synthesised from wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Raised by this endpoint (lifecycle, errors).
    Local,
    /// Received from the peer.
    Remote,
}

/// One client event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The transport is connected (TLS: after the handshake). Resets the
    /// retry budget.
    Connect,
    /// A connection or connection attempt ended; a retry may follow.
    Disconnect,
    /// Final: no retry remains, or the client was stopped.
    Destroy,
    /// Something failed; always before the matching `disconnect`.
    Error(Arc<ClientError>),
    /// A raw-mode chunk.
    Data(Bytes),
    /// A framed message from the peer.
    Message(Message),
}

impl ClientEvent {
    /// The node-ipc event name: `connect`, `disconnect`, `destroy`, `error`,
    /// `data`, or the message's `type`.
    pub fn name(&self) -> &str {
        match self {
            ClientEvent::Connect => "connect",
            ClientEvent::Disconnect => "disconnect",
            ClientEvent::Destroy => "destroy",
            ClientEvent::Error(_) => "error",
            ClientEvent::Data(_) => "data",
            ClientEvent::Message(m) => m.event(),
        }
    }

    /// Whether the event came from the peer.
    pub fn origin(&self) -> Origin {
        match self {
            ClientEvent::Message(_) | ClientEvent::Data(_) => Origin::Remote,
            _ => Origin::Local,
        }
    }

    /// The message, for [`ClientEvent::Message`].
    pub fn message(&self) -> Option<&Message> {
        match self {
            ClientEvent::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The error, for [`ClientEvent::Error`].
    pub fn error(&self) -> Option<&ClientError> {
        match self {
            ClientEvent::Error(e) => Some(e),
            _ => None,
        }
    }
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

/// Handlers plus event streams: how an endpoint delivers its events. Shared
/// by `ipc-client` and `ipc-server`.
pub struct Dispatcher<E> {
    handlers: crate::handlers::Handlers<E>,
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
    pub panics: Vec<crate::handlers::HandlerPanic>,
}

impl<E: Clone> Dispatcher<E> {
    /// A dispatcher whose streams hold `capacity` events each.
    pub fn new(capacity: usize) -> Self {
        Dispatcher {
            handlers: crate::handlers::Handlers::new(),
            streams: std::sync::Mutex::new(Arc::new(Vec::new())),
            stream_count: std::sync::atomic::AtomicUsize::new(0),
            capacity,
        }
    }

    /// The handler registry.
    pub fn handlers(&self) -> &crate::handlers::Handlers<E> {
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
    pub fn on(
        &self,
        event: &str,
        once: bool,
        f: impl Fn(&E) + Send + Sync + 'static,
    ) -> crate::handlers::HandlerId {
        match (event == crate::handlers::WILDCARD, once) {
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
    /// [`crate::handlers::DispatchCache`]).
    pub async fn deliver_with(
        &self,
        name: &str,
        ev: &E,
        cache: Option<&mut crate::handlers::DispatchCache<E>>,
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
