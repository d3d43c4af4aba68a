//! The connection driver: one read loop that both sides run, with what
//! differs between a client and a server's socket expressed as a [`Role`]
//! (the way hyper's HTTP/1 dispatcher serves both sides through its
//! `role::Client` and `role::Server`).
//!
//! For every read the driver:
//! 1. waits for the next frame, the idle deadline ([`Role::idle_timeout`],
//!    moved forward by every item) or the role's own deadline
//!    ([`Role::deadline`]: a required handshake, a sync-mode answer);
//! 2. lets the role refuse or ignore the item ([`Role::admit`]);
//! 3. routes `ipcx.*` messages when the extension is on: answers to our
//!    calls settle them, pings are answered, requests run the role's
//!    request handlers; every other extension message goes to
//!    [`Role::extension`];
//! 4. turns anything else into the role's event ([`Role::event`]) and
//!    delivers it through the role's [`Dispatcher`], which reports handler
//!    panics as `error` events.
//!
//! The loop ends at end of stream, cancellation, a protocol or transport
//! error, a passed deadline, or when a hook says so; [`drive`] returns the
//! error that ended it, if any. Writing is the outbox writer's job
//! ([`spawn_writer`]), so a peer that does not read never stalls the read
//! loop.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use ipc_proto::ext::{self, names};
use ipc_proto::{Inbound, Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::budget::{Budget, Charge, EVENT_OVERHEAD};
use crate::calls::{CallError, RequestHandlers};
use crate::dispatch::{Dispatcher, Event};
use crate::handlers::DispatchCache;
use crate::link::Link;
use crate::outbox::{write_loop, SyncGate, WriterExit};
use crate::reader::{FrameReader, ReadEvent};

/// What the driver does after a hook.
#[derive(Debug)]
pub enum Step<E> {
    /// Go on reading.
    Continue,
    /// End the connection, with the error that ends it (`None`: a clean
    /// end).
    End(Option<E>),
}

/// Whether a received item is taken ([`Role::admit`]).
#[derive(Debug)]
pub enum Admit<E> {
    /// Route and deliver it.
    Route,
    /// Drop it unseen (e.g. everything after a refused handshake).
    Ignore,
    /// End the connection with this error.
    End(E),
}

/// What differs between the two sides of a connection.
///
/// The hooks are called from the one task that runs [`drive`], in the
/// order the items arrived.
pub trait Role {
    /// The side's event type.
    type Event: Event;
    /// Who a request came from, as the side's request handlers see it.
    type Peer: Clone;
    /// The side's error type.
    type Error;

    /// The link of this connection (for answering pings and requests, and
    /// settling our calls).
    fn link(&self) -> &Link;

    /// Where events go.
    fn events(&self) -> &Dispatcher<Self::Event>;

    /// What this peer may have waiting in the event streams
    /// ([`crate::budget`]): the driver charges every event it delivers and
    /// stops reading while the budget is full.
    fn budget(&self) -> &Budget;

    /// The endpoint or peer, for logs.
    fn label(&self) -> &str;

    /// Whether `ipcx.*` messages are handled (not delivered as events).
    fn extension(&self) -> bool;

    /// The request handlers, and the peer they are told about.
    fn requests(&self) -> (&RequestHandlers<Self::Peer>, Self::Peer);

    /// What an answer to a request fails with when the queue is closed.
    fn closed_call_error(&self) -> CallError {
        CallError::NotConnected
    }

    /// The error event for a request handler's panic.
    fn request_panicked(&self, message: String) -> Self::Event;

    /// The `error` event reporting `error` (concerning this peer).
    fn error_event(&self, error: Self::Error) -> Self::Event;

    /// The error for `count` answers to this peer (responses, pongs,
    /// acknowledgements) that could not be queued.
    fn answers_unsent(&self, count: u64) -> Self::Error;

    /// Close the connection when nothing arrives for this long.
    fn idle_timeout(&self) -> Option<std::time::Duration>;

    /// The error for an idle connection.
    fn idle_error(&self) -> Self::Error;

    /// A deadline of the role's own for the next read, asked before every
    /// read.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// [`Role::deadline`] passed before anything arrived.
    fn timed_out(&mut self) -> impl Future<Output = Step<Self::Error>> + Send {
        async { Step::Continue }
    }

    /// Something arrived (before it is admitted): the peer is alive.
    fn received(&mut self) {}

    /// Whether `item` is taken.
    fn admit(&mut self, _item: &Inbound) -> Admit<Self::Error> {
        Admit::Route
    }

    /// An `ipcx.*` message other than a request, ping, pong or response.
    fn extension_message(&mut self, m: &Message) -> impl Future<Output = Step<Self::Error>> + Send;

    /// The event for a message or raw chunk from the peer.
    fn event(&mut self, item: Inbound) -> Self::Event;

    /// The peer closed its side (the read loop ends after this).
    fn eof(&mut self) {}

    /// The error for a frame the profile refuses.
    fn protocol_error(&self, e: ProtocolError) -> Self::Error;

    /// The error for a failed read.
    fn io_error(&self, e: io::Error) -> Self::Error;
}

/// Runs the read loop of one connection until it ends; returns the error
/// that ended it (`None`: end of stream or cancellation). Cancel-safe
/// between items; every wait in it ends when the reader's cancellation
/// token fires.
pub async fn drive<R, S>(role: &mut S, reader: &mut FrameReader<R>) -> Option<S::Error>
where
    R: AsyncRead + Unpin,
    S: Role,
{
    let end = read_loop(role, reader).await;
    report_unsent(role);
    end
}

/// Reports the answers that could not be queued since the last report.
fn report_unsent<S: Role>(role: &S) {
    let n = role.link().take_unsent_answers();
    if n > 0 {
        let ev = role.error_event(role.answers_unsent(n));
        role.events()
            .dispatch(ev, None, role.label(), Charge::none());
    }
}

async fn read_loop<R, S>(role: &mut S, reader: &mut FrameReader<R>) -> Option<S::Error>
where
    R: AsyncRead + Unpin,
    S: Role,
{
    let mut cache = DispatchCache::default();
    let idle = role.idle_timeout();
    // Moved forward by every item, and only by items.
    let mut idle_at = idle.map(|t| Instant::now() + t);
    // One timer for both deadlines, made when first needed and reset after.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    loop {
        // The item is taken inside this block, so nothing of it is kept in
        // the loop's future across the rare wait below: the future every
        // waiting connection holds stays small.
        let later = {
            let own = role.deadline();
            let deadline = match (own, idle_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let ev = match deadline {
                None => reader.next().await,
                Some(d) => {
                    let timer = match &mut timer {
                        Some(t) => {
                            if t.deadline() != d {
                                t.as_mut().reset(d);
                            }
                            t
                        }
                        None => timer.insert(Box::pin(tokio::time::sleep_until(d))),
                    };
                    let next = poll_fn(|cx| match reader.poll_next(cx) {
                        Poll::Ready(ev) => Poll::Ready(Some(ev)),
                        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
                    });
                    match next.await {
                        Some(ev) => ev,
                        None if own.is_some_and(|o| o <= d) => {
                            match Box::pin(role.timed_out()).await {
                                Step::Continue => continue,
                                Step::End(e) => return e,
                            }
                        }
                        None => return Some(role.idle_error()),
                    }
                }
            };
            let item = match ev {
                ReadEvent::Item(item) => {
                    idle_at = idle.map(|t| Instant::now() + t);
                    item
                }
                ReadEvent::Eof => {
                    role.eof();
                    return None;
                }
                ReadEvent::Cancelled => return None,
                ReadEvent::Protocol(e) => return Some(role.protocol_error(e)),
                ReadEvent::Io(e) => return Some(role.io_error(e)),
            };
            match take(role, &mut cache, item) {
                Ok(Step::Continue) => continue,
                Ok(Step::End(e)) => return e,
                Err(later) => Box::pin(wait_then_take(
                    role,
                    reader.cancellation(),
                    &mut cache,
                    later,
                )),
            }
        };
        match later.await {
            Step::Continue => {}
            Step::End(e) => return e,
        }
    }
}

/// What an item needs before it is taken: a wait the read loop boxes.
enum Later {
    /// The role's own extension message ([`Role::extension_message`]).
    Extension(Message),
    /// Room in the peer's budget for this item, which costs this much.
    Budget(Inbound, usize),
}

/// Takes one item: admits it, routes extension messages, charges the
/// peer's budget and delivers the event, or says what must be waited for
/// first.
fn take<S: Role>(
    role: &mut S,
    cache: &mut DispatchCache<S::Event>,
    item: Inbound,
) -> Result<Step<S::Error>, Later> {
    role.received();
    match role.admit(&item) {
        Admit::Route => {}
        Admit::Ignore => return Ok(Step::Continue),
        Admit::End(e) => return Ok(Step::End(Some(e))),
    }
    let item = match item {
        Inbound::Message(m) if role.extension() && ext::is_extension(m.event()) => {
            return match route_extension(role, &m) {
                Some(step) => {
                    report_unsent(role);
                    Ok(step)
                }
                None => Err(Later::Extension(m)),
            };
        }
        item => item,
    };
    let cost = EVENT_OVERHEAD
        + match &item {
            Inbound::Message(m) => m.frame().len(),
            Inbound::Raw(b) => b.len(),
        };
    let charge = if !role.events().has_streams() {
        Charge::none()
    } else if let Some(c) = role.budget().try_charge(cost) {
        c
    } else {
        return Err(Later::Budget(item, cost));
    };
    deliver(role, cache, item, charge);
    Ok(Step::Continue)
}

/// Waits for what [`take`] asked, then takes the item.
async fn wait_then_take<S: Role>(
    role: &mut S,
    cancel: &CancellationToken,
    cache: &mut DispatchCache<S::Event>,
    later: Later,
) -> Step<S::Error> {
    match later {
        Later::Extension(m) => {
            let step = role.extension_message(&m).await;
            report_unsent(role);
            step
        }
        Later::Budget(item, cost) => {
            // The application has not taken what this peer sent yet: stop
            // reading from it (the kernel's buffers fill and slow it down)
            // until it has, or the connection ends.
            let charge = tokio::select! {
                c = role.budget().charge(cost) => c,
                _ = cancel.cancelled() => return Step::End(None),
            };
            deliver(role, cache, item, charge);
            Step::Continue
        }
    }
}

/// Delivers an item from the peer as the role's event.
fn deliver<S: Role>(
    role: &mut S,
    cache: &mut DispatchCache<S::Event>,
    item: Inbound,
    charge: Charge,
) {
    let ev = role.event(item);
    role.events()
        .dispatch(ev, Some(cache), role.label(), charge);
}

/// The extension messages both sides handle alike; `None` for one that is
/// the role's own ([`Role::extension_message`]).
fn route_extension<S: Role>(role: &S, m: &Message) -> Option<Step<S::Error>> {
    match m.event() {
        names::RESPONSE | names::PONG => {
            if let Err(e) = role.link().calls().resolve(m) {
                report(role, role.protocol_error(e));
            }
        }
        names::PING => match ext::pong_for(m, role.link().encoder()) {
            Ok(pong) => {
                // A pong that cannot be queued is counted and reported.
                let sink = role.link().sink(role.closed_call_error());
                if let Err(e) = sink(pong) {
                    tracing::debug!(peer = role.label(), "cannot answer a ping: {e}");
                }
            }
            Err(e) => report(role, role.protocol_error(e)),
        },
        names::REQUEST => {
            let link = role.link();
            let sink = link.sink(role.closed_call_error());
            let (handlers, peer) = role.requests();
            match handlers.dispatch(m, peer, sink, link.encoder()) {
                Ok(panics) => {
                    for message in panics {
                        let ev = role.request_panicked(message);
                        role.events()
                            .dispatch(ev, None, role.label(), Charge::none());
                    }
                }
                Err(e) => report(role, role.protocol_error(e)),
            }
        }
        _ => return None,
    }
    Some(Step::Continue)
}

/// What a failed or cancelled writer does with its outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnWriteFailure {
    /// Close it: the queue belongs to this connection only (a server's
    /// socket), so every `emit` waiting for room fails at once and later
    /// ones fail too.
    CloseQueue,
    /// Keep it open for the next connection, which writes what is left (a
    /// client's queue outlives its connections).
    KeepQueue,
}

/// Reports `error` as an `error` event concerning this peer (the connection
/// goes on).
fn report<S: Role>(role: &S, error: S::Error) {
    let ev = role.error_event(error);
    role.events()
        .dispatch(ev, None, role.label(), Charge::none());
}

/// Makes the writer of one connection: it drains `outbox` into `wr`
/// (shutting the write half down once the outbox is closed and empty)
/// until `cancel` fires. A writer that fails or is cancelled cancels
/// `cancel`, which ends the read loop too, and closes the queue if told to.
///
/// The writer's task is spawned when the first frame is queued (or the
/// queue closes), not before: a connection that is never written to holds
/// no second task. Awaiting the returned [`Writer`] starts it if it has not
/// started yet and waits for it to end.
pub fn spawn_writer<W>(
    link: &Link,
    mut wr: W,
    cancel: CancellationToken,
    gate: Option<Arc<SyncGate>>,
    on_failure: OnWriteFailure,
) -> Writer
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let outbox = link.outbox().clone();
    let handle = tokio::runtime::Handle::current();
    let queue = outbox.clone();
    let spawn = move || {
        handle.spawn(async move {
            let exit = write_loop(&outbox, &mut wr, true, &cancel, gate.as_deref()).await;
            if !matches!(exit, WriterExit::Drained) {
                if on_failure == OnWriteFailure::CloseQueue {
                    outbox.close();
                }
                cancel.cancel();
            }
            exit
        })
    };
    let start = Arc::new(Start(Mutex::new(StartState {
        spawn: Some(Box::new(spawn)),
        task: None,
    })));
    // Until the task runs, the outbox wakes `start` (in the writer's place)
    // when something is queued.
    let waker = Waker::from(start.clone());
    if queue
        .poll_queued(&mut Context::from_waker(&waker))
        .is_ready()
    {
        start.lock().start();
    }
    Writer(start)
}

/// The writer of one connection ([`spawn_writer`]): a future of how its
/// task ended, which starts the task if nothing started it yet.
pub struct Writer(Arc<Start>);

impl Writer {
    /// Whether the writer's task has been spawned (something was queued,
    /// the queue closed, or the writer was awaited).
    pub fn is_started(&self) -> bool {
        self.0.lock().task.is_some()
    }
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("started", &self.is_started())
            .finish()
    }
}

impl Future for Writer {
    type Output = Result<WriterExit, tokio::task::JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.lock();
        match state.start() {
            Some(task) => Pin::new(task).poll(cx),
            // Not reached: a writer either waits to be spawned or has been.
            None => Poll::Ready(Ok(WriterExit::Cancelled)),
        }
    }
}

/// Starts a writer's task once.
struct Start(Mutex<StartState>);

/// The closure that spawns a writer's task.
type Spawn = Box<dyn FnOnce() -> JoinHandle<WriterExit> + Send>;

struct StartState {
    /// Until the task is spawned.
    spawn: Option<Spawn>,
    /// Once it is.
    task: Option<JoinHandle<WriterExit>>,
}

impl StartState {
    /// Spawns the task if it was not yet; returns it.
    fn start(&mut self) -> Option<&mut JoinHandle<WriterExit>> {
        if let Some(spawn) = self.spawn.take() {
            self.task = Some(spawn());
        }
        self.task.as_mut()
    }
}

impl Start {
    fn lock(&self) -> std::sync::MutexGuard<'_, StartState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Wake for Start {
    fn wake(self: Arc<Self>) {
        self.lock().start();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.lock().start();
    }
}
