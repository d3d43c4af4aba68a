//! How an endpoint delivers its events: handlers first, then every event
//! stream ([`Dispatcher`]), with handler panics turned into error events.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, Charge, EVENT_OVERHEAD};
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

    /// Whether this is an `error` event (asked for every event: keep it
    /// cheap).
    fn is_error(&self) -> bool {
        self.name() == "error"
    }

    /// The `error` event that reports `panic`, caught while this event was
    /// dispatched.
    fn handler_panicked(&self, panic: HandlerPanic) -> Self;
}

/// An async stream of an endpoint's events ([`futures_core::Stream`]).
///
/// What waits in a stream is bounded in bytes per peer: every event a peer
/// sent is charged to that peer's [`Budget`] until the stream hands it out,
/// and while the budget is full the endpoint stops reading from that peer
/// (backpressure reaches it through the kernel) instead of buffering
/// without limit; other peers go on. The endpoint's own events (connect,
/// close, errors) share a budget of their own. Drop the stream when no
/// longer needed.
#[derive(Debug)]
pub struct EventStream<E> {
    rx: mpsc::UnboundedReceiver<Queued<E>>,
}

/// An event in a stream, with the room it holds in its peer's budget.
#[derive(Debug)]
struct Queued<E> {
    ev: E,
    _charge: Held,
}

/// The charge an event in a stream holds: its own, or one shared by every
/// stream it went to.
#[derive(Debug)]
// The charges are held, never read: dropping them gives the room back.
#[allow(dead_code)]
enum Held {
    Own(Charge),
    Shared(Arc<Charge>),
}

impl<E> EventStream<E> {
    /// Creates a stream and the sender that feeds it.
    fn channel() -> (mpsc::UnboundedSender<Queued<E>>, EventStream<E>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, EventStream { rx })
    }

    /// The next event, or `None` once the endpoint is gone. Taking an event
    /// gives its room back to its peer's budget.
    pub async fn recv(&mut self) -> Option<E> {
        self.rx.recv().await.map(|q| q.ev)
    }

    /// The next event if one is waiting now.
    pub fn try_recv(&mut self) -> Option<E> {
        self.rx.try_recv().ok().map(|q| q.ev)
    }
}

impl<E> futures_core::Stream for EventStream<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.rx.poll_recv(cx).map(|q| q.map(|q| q.ev))
    }
}

/// Handlers plus event streams: how an endpoint delivers its events. Both
/// sides use one per endpoint.
pub struct Dispatcher<E> {
    handlers: Handlers<E>,
    streams: std::sync::Mutex<Arc<Vec<mpsc::UnboundedSender<Queued<E>>>>>,
    /// How many streams there are, read without the lock on every event.
    stream_count: std::sync::atomic::AtomicUsize,
    /// What the endpoint's own events may hold in the streams.
    local: Budget,
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
    /// A dispatcher whose streams hold at most `local_events` of the
    /// endpoint's own events (connect, close, errors) not taken yet; what
    /// peers send is bounded by their own [`Budget`]s.
    pub fn new(local_events: usize) -> Self {
        Dispatcher {
            handlers: Handlers::new(),
            streams: std::sync::Mutex::new(Arc::new(Vec::new())),
            stream_count: std::sync::atomic::AtomicUsize::new(0),
            local: Budget::new(local_events.max(1).saturating_mul(EVENT_OVERHEAD)),
        }
    }

    /// Whether any event stream is open (events are charged only then:
    /// handlers keep nothing waiting).
    pub fn has_streams(&self) -> bool {
        self.stream_count.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// The handler registry.
    pub fn handlers(&self) -> &Handlers<E> {
        &self.handlers
    }

    fn streams(&self) -> Arc<Vec<mpsc::UnboundedSender<Queued<E>>>> {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn prune(&self, add: Option<mpsc::UnboundedSender<Queued<E>>>) {
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
        let (tx, stream) = EventStream::channel();
        self.prune(Some(tx));
        stream
    }

    /// Runs the handlers for `name`, then queues the event in every
    /// stream, holding `charge` until every stream has handed it out.
    /// Never waits: the caller charged the event's budget first.
    pub fn deliver(&self, name: &str, ev: &E, charge: Charge) -> Delivered {
        self.deliver_with(name, ev, None, charge)
    }

    /// [`Dispatcher::deliver`], dispatching through `cache` when given (see
    /// [`DispatchCache`]).
    pub fn deliver_with(
        &self,
        name: &str,
        ev: &E,
        cache: Option<&mut DispatchCache<E>>,
        charge: Charge,
    ) -> Delivered {
        let d = match cache {
            Some(c) => self.handlers.dispatch_cached(c, name, ev),
            None => self.handlers.dispatch(name, ev),
        };
        if !self.has_streams() {
            return Delivered {
                handlers: d.ran,
                streams: 0,
                panics: d.panics,
            };
        }
        let streams = self.streams();
        let mut closed = false;
        if let [tx] = streams.as_slice() {
            let q = Queued {
                ev: ev.clone(),
                _charge: Held::Own(charge),
            };
            closed = tx.send(q).is_err();
        } else {
            let shared = Arc::new(charge);
            for tx in streams.iter() {
                let q = Queued {
                    ev: ev.clone(),
                    _charge: Held::Shared(shared.clone()),
                };
                closed |= tx.send(q).is_err();
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
    pub fn dispatch(
        &self,
        ev: E,
        cache: Option<&mut DispatchCache<E>>,
        endpoint: &str,
        charge: Charge,
    ) {
        let d = self.deliver_with(ev.name(), &ev, cache, charge);
        if d.panics.is_empty() && !ev.is_error() {
            // The common case: nothing to report.
            return;
        }
        let error = ev.error_text();
        report(endpoint, error.as_deref(), &d);
        if error.is_some() {
            return;
        }
        for p in d.panics {
            let err = ev.handler_panicked(p);
            // Reports of what already happened are not held back.
            let d = self.deliver_with(err.name(), &err, None, Charge::none());
            report(endpoint, err.error_text().as_deref(), &d);
        }
    }

    /// Dispatches one of the endpoint's own events, charged to the local
    /// budget: while the streams already hold as many of them as the
    /// dispatcher was made for, it waits for the application to take some —
    /// until `exit` fires (the endpoint is stopping), and without waiting at
    /// all when there is no `exit`. Either way the event is delivered.
    pub async fn dispatch_local(&self, ev: E, endpoint: &str, exit: Option<&CancellationToken>) {
        let charge = if !self.has_streams() {
            Charge::none()
        } else if let Some(c) = self.local.try_charge(EVENT_OVERHEAD) {
            c
        } else if let Some(exit) = exit {
            tokio::select! {
                c = self.local.charge(EVENT_OVERHEAD) => c,
                _ = exit.cancelled() => Charge::none(),
            }
        } else {
            Charge::none()
        };
        self.dispatch(ev, None, endpoint, charge);
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
