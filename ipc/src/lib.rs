//! # ipc — node-ipc's API in Rust
//!
//! **Owns:** the node-ipc-shaped facade ([`Ipc`] instances with
//! [`config`](Ipc::config), [`serve`](Ipc::serve),
//! [`serve_net`](Ipc::serve_net), [`connect_to`](Ipc::connect_to),
//! [`connect_to_net`](Ipc::connect_to_net), [`of`](Ipc::of),
//! [`server`](Ipc::server), [`disconnect`](Ipc::disconnect),
//! [`log`](Ipc::log)), the [`Config`] with every node-ipc key and its
//! node-ipc 14 default, and the `nipc` command-line tool (feature `cli`).
//!
//! **Does not own:** behaviour (that is `ipc-client` / `ipc-server`, over the
//! shared connection engine in `ipc-conn`), sockets
//! (`ipc-transport`) or the wire format (`ipc-proto`); this crate maps
//! node-ipc's names and defaults onto them and re-exports them. Clients are
//! [`Client`]s and servers are [`Server`]s: everything they can do is
//! available unchanged.
//!
//! ## Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ipc::{ClientEvent, Ipc, ServerExt};
//!
//! let world = Ipc::new();
//! world.configure(|c| c.id = "world".into());
//! let server = world.serve(None)?;
//! server.on_typed("message", |text: String, peer| {
//!     if let Some(socket) = peer.socket() {
//!         let _ = socket.try_emit("message", &format!("{text} world!"));
//!     }
//! });
//! server.start().await?;
//!
//! let hello = Ipc::new(); // a second, independent instance
//! let client = hello.connect_to("world", None)?;
//! let mut events = client.events(); // async style
//! client.emit("message", "hello").await?;
//! while let Some(ev) = events.recv().await {
//!     if let ClientEvent::Message(m) = ev {
//!         println!("{}", m.data_value());
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ## node-ipc → ipc
//!
//! | node-ipc | here |
//! |---|---|
//! | `const ipc = require('node-ipc')`, `new IPCModule()`, `new ipc.IPC` | [`Ipc::new`] (instances share nothing) |
//! | `ipc.config` (read) | [`Ipc::config`] → [`Config`] |
//! | `ipc.config.x = v` | [`Ipc::configure`]`(\|c\| c.x = v)`; JSON: [`Config::from_json`] |
//! | `ipc.serve(path?, cb?)` | [`Ipc::serve`]`(Option<&Path>)`; `cb` = `server.on("start", …)` |
//! | `ipc.serveNet(host?, port?, udpType?, cb?)` | [`Ipc::serve_net`]`(`[`ServeNet`]`::tcp()/udp4()/udp6().host(h).port(p))`; node-ipc's argument juggling exactly: [`ServeNet::from_js_args`] |
//! | `ipc.connectTo(id, path?, cb?)` | [`Ipc::connect_to`], [`Ipc::connect_to_with`] (`cb` runs before the first attempt) |
//! | `ipc.connectToNet(id, host?, port?, cb?)` | [`Ipc::connect_to_net`], [`Ipc::connect_to_net_with`] |
//! | `ipc.disconnect(id)` | [`Ipc::disconnect`] |
//! | `ipc.of[id]`, `ipc.of.world` | [`Ipc::of`]`("world")`, [`Ipc::of_ids`] |
//! | `ipc.server` | [`Ipc::server`] |
//! | `ipc.log(...)` | [`Ipc::log`], [`Ipc::log_value`]; `init_logging` (feature `logging`) sets up `tracing` |
//! | `ipc.server.start()` / `stop()` | [`Server::start`] (async, returns the bound endpoint) / [`Server::stop`]; [`Server::abort`] |
//! | `ipc.server.on(type, (data, socket) => …)` | [`Server::on_message`] (`&Message, &Peer`), [`ServerExt::on_typed`] (typed data), [`Server::on`] (every [`ServerEvent`]), [`Server::events`] (async stream) |
//! | `ipc.server.once` / `off` | [`Server::once`] / [`Server::off`], [`Server::off_event`] |
//! | `ipc.server.emit(socket, type, data)` | [`Server::emit`], [`Socket::emit`], [`Socket::try_emit`], [`Socket::emit_raw`] |
//! | `ipc.server.emit({address, port}, type, data)` (UDP) | `Server::emit_to(addr, …)`, `Server::emit_raw_to` (feature `udp`) |
//! | `ipc.server.broadcast(type, data)` | [`Server::broadcast`] |
//! | `ipc.server.sockets` | [`Server::sockets`], [`Server::connections`] (UDP peers: `Server::udp_peers`) |
//! | `ipc.server.define.listen[type] = text` (v0 docs) | not carried over: it only held documentation strings |
//! | `ipc.of[id].emit(type, data)` / `emit(buffer)` (raw) | [`Client::emit`], [`Client::emit_empty`], [`Client::try_emit`] / [`Client::emit_raw`] |
//! | `ipc.of[id].on/once/off(type, fn)`, `'*'` | [`Client::on`], [`Client::once`], [`Client::off`], [`Client::off_event`], [`ClientExt::on_message`], [`ClientExt::on_typed`]; `"*"` is the wildcard (runs first) |
//! | async (no node-ipc equivalent) | [`Client::events`], [`Client::connected`], [`Server::events`] |
//! | request/response, ping, pub/sub (extension, SPEC §5.4; config `ext`) | [`Client::request`], [`Client::ping`], [`Client::subscribe`], [`Client::unsubscribe`], [`Client::publish`], [`Server::on_request`], [`Server::publish`], [`Client::close`], [`Server::close`] |
//!
//! | node-ipc config key | [`Config`] field (JSON key) | default |
//! |---|---|---|
//! | `appspace` | `appspace` | `"app."` |
//! | `socketRoot` | `socket_root` | v14 per-user root ([`LocalPaths::default_socket_root`]); [`Config::legacy`] gives `/tmp/` |
//! | `id` | `id` | host name |
//! | `networkHost` | `network_host` | `"127.0.0.1"` |
//! | `networkPort` | `network_port` | `8000` |
//! | `IPType` | `ip_type` (`IPType`) | `"IPv4"` |
//! | `encoding` | `encoding` | `utf8` ([`RawEncoding`]) |
//! | `rawBuffer` | `raw_buffer` | `false` |
//! | `parser` | `parser` ([`Parser`]) | `fast` |
//! | `delimiter` | `delimiter` | `"\f"` |
//! | `sync` | `sync` | `false` |
//! | `unlink` | `unlink` | `true` |
//! | `identifyPeer` | `identify_peer` | `false` |
//! | `maxMessageSize` | `max_message_size` | 1 MiB |
//! | `maxPendingBytes` | `max_pending_bytes` | 8 MiB |
//! | `maxEventNameLength` | `max_event_name_length` | 256 |
//! | `messageTimeout` | `message_timeout` (ms) | 30 000 |
//! | `allowReservedEvents` | `allow_reserved_events` | `false` |
//! | `allowedEvents` | `allowed_events` | `false` (`None`) |
//! | `silent` | `silent` | `false` |
//! | `logPayloads` | `log_payloads` | `false` |
//! | `logDepth` | `log_depth` | 5 |
//! | `logInColor` | `log_in_color` | `true` |
//! | `logger` | `logger` ([`Logger`], not in JSON) | `tracing` at info |
//! | `maxConnections` | `max_connections` | 100 |
//! | `retry` | `retry` (ms in JSON) | 500 ms |
//! | `maxRetries` | `max_retries` ([`MaxRetries`]) | `Infinity` |
//! | `stopRetrying` | `stop_retrying` | `false` |
//! | `tls` | `tls` ([`TlsOptions`]: `public`, `private`, `key`, `cert`, `ca`, `trustedConnections`, `requestCert`, `rejectUnauthorized`, `servername`, `dhparam`) | `false` (`None`) |
//! | `readableAll` / `writableAll` | `readable_all` / `writable_all` | `false` |
//! | `secureSocketRoot` | `secure_socket_root` | `true` |
//! | `interface` (`interfaces` in the v9 README) | `interface` ([`Interface`]: `localAddress`, `localPort`, `family`, `hints`, `lookup`) | all unset |
//! | extras | `unlink_mode`, `strict_eof`, `strict_utf8`, `strict_json`, `max_json_depth` (256), `udp_max_peers` (1024), `udp_max_fragment_bytes` (8 MiB), `retry_backoff`, `retry_on_tls_failure`, `sync_timeout`, `legacy_v9_payloads`, `ext` | see [`Config`] |
//!
//! | node-ipc event | here |
//! |---|---|
//! | client `connect`, `disconnect`, `destroy`, `error`, `data` | [`ClientEvent::Connect`], [`ClientEvent::Disconnect`], [`ClientEvent::Destroy`], [`ClientEvent::Error`], [`ClientEvent::Data`] (handlers registered under those names) |
//! | server `start`, `connect`, `error`, `data`, `socket.disconnected`, `close` | [`ServerEvent::Start`], [`ServerEvent::Connect`], [`ServerEvent::Error`], [`ServerEvent::Data`], [`ServerEvent::SocketDisconnected`], [`ServerEvent::Close`] |
//! | *your event type* | [`ClientEvent::Message`] / [`ServerEvent::Message`] under the message's type |
//!
//! Callbacks run synchronously on the connection's task, as node-ipc's
//! listeners do: keep them short, and use [`Socket::try_emit`] (or spawn a
//! task) to answer from inside one.
//!
//! ## Features
//!
//! `unix`, `tcp`, `tls`, `udp` forward to the transports; the defaults
//! enable all four, and `default-features = false, features = ["unix",
//! "tcp"]` (plus `tls`, `udp` as needed) gives a smaller library.
//! `logging` adds `init_logging` (a `tracing-subscriber` that follows the
//! [`Config`]). `cli` builds the `nipc` command-line tool (and enables
//! `logging`): `cargo install --path ipc --features cli`, or
//! `cargo run -p ipc --features cli --bin nipc -- demo`.
#![forbid(unsafe_code)]

mod config;
mod error;
mod handlers;
mod ipc;
mod log;

pub use crate::config::{
    hostname, Config, ExtConfig, Handshake, Interface, Logger, Lookup, Parser, RetryBackoff,
    TlsOptions, UnlinkPolicy,
};
pub use crate::error::IpcError;
pub use crate::handlers::{ClientExt, HandlerResult, ServerExt};
#[cfg(feature = "logging")]
pub use crate::ipc::init_logging;
pub use crate::ipc::{Ipc, IpcLog, JsArg, ServeNet};
pub use crate::log::LogPart;

pub use ipc_client as client;
pub use ipc_proto as proto;
pub use ipc_server as server;
pub use ipc_transport as transport;

pub use ipc_client::{
    Backoff, CallError, Client, ClientConfig, ClientError, ClientEvent, ClientState, EventStream,
    Flow, HandlerId, HandshakeMode, MaxRetries, Origin, Request, Responder, Response, RetryConfig,
    WeakClient,
};
pub use ipc_proto::ext::Hello;
pub use ipc_proto::{ErrorCode, Message, Profile, RawEncoding};
pub use ipc_server::{
    Peer, Server, ServerConfig, ServerError, ServerEvent, ServerState, Socket, WeakServer,
};
pub use ipc_transport::{Endpoint, LocalPaths, UdpFamily};

/// Everything a node-ipc port needs, in one import:
/// `use ipc::prelude::*;` brings [`Ipc`], [`Config`], [`ServeNet`], the
/// client and server types with their events, and the handler traits
/// ([`ServerExt`], [`ClientExt`]) whose methods (`handle`, `send`,
/// `on_connect`, …) would otherwise not be found.
pub mod prelude {
    pub use crate::{
        CallError, Client, ClientError, ClientEvent, ClientExt, ClientState, Config, Endpoint,
        Flow, HandlerResult, Hello, Ipc, IpcError, MaxRetries, Message, Peer, Request, Response,
        ServeNet, Server, ServerError, ServerEvent, ServerExt, Socket,
    };
}
