#![doc = include_str!("../README.md")]
//! ## ipc-conn — one node-ipc connection, either side
//!
//! **Owns:** everything a framed connection does once its bytes flow, the
//! same for a client and for a server's accepted socket:
//! - the bounded outbound queue and its coalescing writer ([`outbox`]);
//! - the frame reader with the partial-frame timer ([`reader`]);
//! - the handler registry and event delivery ([`handlers`], [`Dispatcher`],
//!   [`EventStream`]) with the per-peer inbound [`budget`];
//! - request/response and ping correlation, request handlers and
//!   responders ([`calls`]);
//! - the [`Link`] handle (emit, send, request, ping on one connection) and
//!   the one connection [`driver`] both sides run, which differ only by
//!   their [`Role`];
//! - the net-ipc bridge ([`netipc`]): a net-ipc connection runs the same
//!   machinery on an in-memory pipe whose far end is translated to and
//!   from net-ipc packets.
//!
//! **Does not own:** bytes on the wire or the `ipcx` message shapes
//! (`ipc_proto`), sockets (`ipc-transport`), connecting and retry
//! (`ipc-client`), accepting, the connection registry, broadcast and the
//! pub/sub broker (`ipc-server`). It depends on no transport: the driver
//! runs over any `AsyncRead`/`AsyncWrite` pair, so its behaviour is tested
//! over `tokio::io::duplex`.
//!
//! ## Guarantees
//!
//! The outbound queue is bounded in bytes: `emit` waits for room,
//! `try_emit` fails with `ERR_IPC_BACKPRESSURE`. A frame is either written,
//! handed back to the caller, or counted in what [`Outbox::abort`]
//! returns: nothing disappears silently. A frame whose write was cut is
//! written again whole on the next connection, unless it was queued as a
//! call (request, ping, subscription change), which is never replayed.
//!
//! Inbound is bounded in bytes per peer ([`budget`]): what a peer sent and
//! the application has not taken from its event streams is charged to that
//! peer, and while its budget is full the driver stops reading from it
//! alone. Delivering an event never waits on a stream. Every wait in the
//! engine has an exit: the driver's waits end with the connection's
//! cancellation, a server socket's failed writer closes its queue so
//! waiting `emit`s fail at once, and an endpoint's own events wait for room
//! only until it stops. An answer (response, pong, acknowledgement) that
//! cannot be queued is counted and reported as an `error` event.
#![forbid(unsafe_code)]

pub mod budget;
pub mod calls;
mod dispatch;
pub mod driver;
pub mod handlers;
mod link;
pub mod netipc;
pub mod outbox;
pub mod reader;

pub use budget::{Budget, Charge, DEFAULT_INBOUND_BYTES, EVENT_OVERHEAD};
pub use calls::{
    CallError, CallFailure, Calls, Flow, HandshakeMode, PendingCall, Request, RequestHandlers,
    RespondError, Responder, Response, Sink,
};
pub use dispatch::{Delivered, Dispatcher, Event, EventStream, Origin};
pub use driver::{drive, spawn_writer, Admit, OnWriteFailure, Role, Step, Writer};
pub use handlers::{DispatchCache, HandlerId, HandlerPanic, Handlers};
pub use link::{Link, LinkError};
pub use outbox::{EmitError, Outbox, SendError, SyncGate, WriterExit};
pub use reader::{poll_read_via_stack, FrameReader, ReadEvent, READ_CHUNK, READ_CHUNK_MAX};
