//! # ipc-server — an async node-ipc server
//!
//! **Owns:** the server side of node-ipc's behaviour: the accept loop, one
//! reader and one writer task per connection, `emit`/`broadcast`, lifecycle
//! events, stop semantics, UDP endpoints and the server half of the
//! request/ping/pub-sub extension.
//!
//! **Does not own:** bytes on the wire (`ipc-proto`) or sockets
//! (`ipc-transport`).
#![forbid(unsafe_code)]
