//! # ipc-client — an async node-ipc client
//!
//! **Owns:** the client side of node-ipc's behaviour: connecting to an
//! endpoint, the reconnect policy ([`retry`], SPEC §3.6), the bounded
//! outbound queue ([`outbox`]), sync mode and the lifecycle events of SPEC
//! §3.3. It also owns the connection plumbing both sides share — the handler
//! registry ([`handlers`]), the outbox and its coalescing writer, and the
//! frame reader ([`link`]) — which `ipc-server` re-uses.
//!
//! **Does not own:** bytes on the wire (`ipc-proto`) or sockets
//! (`ipc-transport`).
//!
//! ## Delivery guarantee
//!
//! [`Client::emit`] queues one encoded frame on a queue bounded in bytes;
//! it waits while the queue is full ([`Client::try_emit`] fails instead).
//! While disconnected, frames stay queued and are written after the next
//! connect, in order; a frame whose write was interrupted is written again
//! whole (the peer discards the partial frame at EOF). When the client is
//! destroyed, whatever is still queued is reported through an `error` event
//! (`ERR_IPC_NOT_CONNECTED`, [`ClientError::Undelivered`]) or the result of
//! [`Client::disconnect`]/[`Client::destroy`]. Frames already handed to the
//! kernel when the peer process dies are beyond any sender's knowledge:
//! node-ipc has no acknowledgements (stream transports only; UDP has no
//! client).
#![forbid(unsafe_code)]

mod client;
mod error;
mod event;
pub mod ext;
mod gates;
pub mod handlers;
pub mod link;
pub mod outbox;
pub mod retry;

pub use client::{Client, ClientConfig, ClientState};
pub use error::ClientError;
pub use event::{ClientEvent, Delivered, Dispatcher, EventStream, Origin};
pub use ext::{CallError, Flow, HandshakeMode, Request, Responder, Response};
pub use handlers::{HandlerId, Handlers};
pub use retry::{Backoff, MaxRetries, RetryConfig};
