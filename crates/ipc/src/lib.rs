//! # ipc — node-ipc's API in Rust
//!
//! **Owns:** the node-ipc-shaped facade (`Ipc` instances with `config`,
//! `serve`, `serve_net`, `connect_to`, `connect_to_net`, `of`, `server`,
//! `disconnect`, `log`) and the `nipc` command-line tool.
//!
//! **Does not own:** behaviour (that is `ipc-client` / `ipc-server`), sockets
//! (`ipc-transport`) or the wire format (`ipc-proto`); this crate maps
//! node-ipc's names and defaults onto them and re-exports them.
#![forbid(unsafe_code)]

pub use ipc_client as client;
pub use ipc_proto as proto;
pub use ipc_server as server;
pub use ipc_transport as transport;
