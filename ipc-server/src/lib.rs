#![doc = include_str!("../README.md")]
//! ## ipc-server — an async node-ipc server
//!
//! **Owns:** the server side of node-ipc's behaviour: the accept loop with
//! `maxConnections`, the connection registry, `emit`, `broadcast`, the
//! publish/subscribe broker, the extension handshake, the lifecycle events of `docs/protocol.md` §3.3 in their exact order,
//! graceful `stop` and immediate `abort`, `identifyPeer`, and UDP endpoints
//! with bounded per-peer reassembly and a bounded table of known peers.
//!
//! Every stream endpoint also serves net-ipc clients
//! ([`ServerConfig::net_ipc`]): a connection whose first bytes are `IPC` or
//! `GET` speaks net-ipc and is mapped onto the same model — `message`
//! events, the request handlers, ping, server-to-client requests,
//! [`Server::broadcast`], [`Server::survey`], the `hello` event carrying the
//! connect payload, and END on [`Server::close`] (see `ipc_proto::netipc`
//! for the packet-by-packet mapping).
//!
//! **Does not own:** bytes on the wire and the `ipcx` message shapes
//! (`ipc-proto`), sockets (`ipc-transport`), or what one connection does
//! once its bytes flow — outbound queue and writer, frame reader, handler
//! dispatch, call correlation and the read loop, which run in `ipc-conn`
//! with this crate's role (`server/conn.rs`). It never depends on
//! `ipc-client`.
//!
//! ## Delivery and backpressure
//!
//! Every connection has an outbound queue bounded in bytes
//! ([`ServerConfig::queue_bytes`]). [`Socket::emit`] waits while the queue
//! is full; [`Socket::try_emit`] fails instead. [`Server::broadcast`]
//! encodes once, shares the bytes with every queue and never waits: a peer
//! whose queue is full is disconnected with an `ERR_IPC_BACKPRESSURE`
//! `error` event, so one stuck reader cannot slow the others. A connection
//! that ends with frames still queued reports them in an `error` event
//! (`ERR_IPC_NOT_CONNECTED`): nothing accepted disappears silently.
//!
//! ## Stop
//!
//! [`Server::stop`] stops accepting (the Unix socket file is removed),
//! writes what every queue holds, closes every connection and emits
//! `socket.disconnected` then `close` for each (node-ipc 14 omits
//! `socket.disconnected` on stop; `docs/protocol.md` §8 item 9). [`Server::abort`] drops the
//! queues instead, and reports what they held.
#![forbid(unsafe_code)]

mod assured;
mod authorize;
#[cfg(feature = "blocking")]
pub mod blocking;
mod error;
mod event;
mod server;
mod socket;

pub use authorize::Authorizer;
pub use error::ServerError;
pub use event::ServerEvent;
pub use server::{Server, ServerConfig, ServerState, WeakServer};
pub use socket::{Peer, Socket};

pub use ipc_conn::{
    CallError, EventStream, Flow, HandlerId, HandshakeMode, Origin, Request, Responder, Response,
};
pub use ipc_proto::ext::Hello;
