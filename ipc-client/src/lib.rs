#![doc = include_str!("../README.md")]
//! ## ipc-client — an async node-ipc client
//!
//! **Owns:** the client side of node-ipc's behaviour: connecting to an
//! endpoint (with the assured profile's transport checks), the reconnect
//! policy ([`retry`], `docs/protocol.md` §3.6), the outbound queue surviving reconnects,
//! sync mode, the extension handshake and subscriptions renewed after a
//! reconnect, and the lifecycle events of `docs/protocol.md` §3.3. With
//! [`ClientConfig::protocol`] set to [`Protocol::NetIpc`] it joins net-ipc
//! servers instead (the net-ipc handshake with the `hello` as connect
//! payload, then the same machinery through `ipc_conn::netipc`);
//! [`RetryConfig::net_ipc`] is net-ipc's own reconnect policy.
//!
//! **Does not own:** bytes on the wire and the `ipcx` message shapes
//! (`ipc-proto`), sockets (`ipc-transport`), or what one connection does
//! once its bytes flow — the outbound queue and writer, the frame reader,
//! handler dispatch, call correlation and the read loop itself, which run
//! in `ipc-conn` with this crate's role. It never depends on `ipc-server`.
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

mod assured;
#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod error;
mod event;
pub mod retry;

pub use client::{Client, ClientConfig, ClientState, Protocol, WeakClient};
pub use error::ClientError;
pub use event::ClientEvent;
pub use ipc_conn::{
    CallError, EventStream, Flow, HandlerId, HandshakeMode, Origin, Request, Responder, Response,
};
pub use retry::{Backoff, MaxRetries, RetryConfig};
