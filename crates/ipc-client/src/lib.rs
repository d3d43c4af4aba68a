//! # ipc-client — an async node-ipc client
//!
//! **Owns:** the client side of node-ipc's behaviour: connecting to an
//! endpoint, the reconnect policy, the bounded outbound queue, sync mode and
//! the client half of the request/ping/pub-sub extension.
//!
//! **Does not own:** bytes on the wire (`ipc-proto`) or sockets
//! (`ipc-transport`).
#![forbid(unsafe_code)]
