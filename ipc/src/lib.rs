#![doc = include_str!("../README.md")]
//! ## ipc — node-ipc's API in Rust
//!
//! **Owns:** the node-ipc-shaped facade ([`Ipc`] instances with
//! [`config`](Ipc::config), [`serve`](Ipc::serve),
//! [`serve_net`](Ipc::serve_net), [`connect_to`](Ipc::connect_to),
//! [`connect_to_net`](Ipc::connect_to_net), [`of`](Ipc::of),
//! [`server`](Ipc::server), [`disconnect`](Ipc::disconnect),
//! [`log!`]), the [`Config`] with every node-ipc key and its node-ipc 14
//! default, node-ipc-shaped handlers ([`ServerExt`], [`ClientExt`]), the
//! [`prelude`], and the `nipc` command-line tool (feature `cli`).
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
//! node-ipc's README server and client in one process (two instances);
//! `ipc/examples/world.rs` and `hello.rs` are the same as two programs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ipc::IpcError> {
//! use ipc::prelude::*;
//! # let dir = tempfile::tempdir().unwrap();
//! # let root = format!("{}/", dir.path().display());
//!
//! let world = Ipc::new();
//! world.configure(|c| c.id = "world".into());
//! # world.configure(|c| { c.socket_root = root.clone().into(); c.silent = true; });
//! let server = world.serve(None)?;
//! server.handle("message", |data: String, socket, server| {
//!     server.send(socket, "message", &format!("{data} world!"))
//! });
//! server.start().await?;
//!
//! let hello = Ipc::new(); // a second, independent instance
//! # hello.configure(|c| c.socket_root = root.into());
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! hello.connect_to_with("world", None, |world| {
//!     world.on_connect(|world| {
//!         let _ = world.try_emit("message", "hello");
//!     });
//!     world.handle("message", move |data: String, _| {
//!         let _ = tx.send(data);
//!     });
//! })?;
//! assert_eq!(rx.recv().await.as_deref(), Some("hello world!"));
//! hello.disconnect("world").await?;
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! ## Porting from node-ipc
//!
//! `use ipc::prelude::*;` brings every name below into scope. Callbacks
//! run synchronously on the connection's task, as node-ipc's listeners do:
//! keep them short; they answer without waiting ([`ServerExt::send`],
//! [`Client::try_emit`]) and get their own server or client as an
//! argument, so they never need to capture it (which would keep it alive
//! forever). `ipc.log` in a callback is [`Ipc::logger`]'s [`IpcLog`],
//! which holds only the configuration.
//!
//! ### Methods and stores (node-ipc's README)
//!
//! | node-ipc | here | difference |
//! |---|---|---|
//! | `import ipc from 'node-ipc'`; `new IPCModule()`, `new ipc.IPC` | [`Ipc::new`], [`Ipc::with_config`] | no global instance: make one (instances share nothing) |
//! | `ipc.config` (read) | [`Ipc::config`] → [`Config`] | a copy |
//! | `ipc.config.x = v` | [`Ipc::configure`]`(\|c\| c.x = v)`; JSON: [`Config::from_json`] | snake_case fields; node-ipc's names in JSON |
//! | `ipc.log(a, b, c)` | [`log!`]`(ipc, a, b, c)`; [`Ipc::log`] (one line), [`Ipc::log_value`], [`Ipc::logger`] | arguments must be serializable; objects print as `util.inspect` does |
//! | `ipc.connectTo(id, path?, cb?)` | [`Ipc::connect_to`], [`Ipc::connect_to_with`] | `cb` gets the client (`ipc.of[id]`, already stored); a live `id` connected elsewhere is [`IpcError::IdInUse`] instead of being silently reused |
//! | `ipc.connectToNet(id, host?, port?, cb?)` | [`Ipc::connect_to_net`], [`Ipc::connect_to_net_with`] | TLS when `config.tls` is set |
//! | `ipc.disconnect(id)` | [`Ipc::disconnect`] (async); from a callback: [`Ipc::disconnect_detached`] | reports (or logs) messages it could not deliver |
//! | `ipc.serve(path?, cb?)` | [`Ipc::serve`]`(Option<&Path>)`; `cb` = [`ServerExt::on_start`] | the server is returned; call [`Server::start`] |
//! | `ipc.serveNet(host?, port?, udpType?, cb?)` | [`Ipc::serve_net`]`(`[`ServeNet`]`::tcp()/udp4()/udp6().host(h).port(p))`; the JS argument juggling: [`ServeNet::from_js_args`] | port `0` = any free port |
//! | `server.listen(handle)` (cluster) | [`Ipc::serve_listener`] | |
//! | `ipc.of[id]`, `ipc.of.world` | [`Ipc::of`]`("world")`, [`Ipc::of_ids`] | `Option<Client>` |
//! | `ipc.server` | [`Ipc::server`] | `Option<Server>` |
//! | `ipc.server.start()` / `stop()` | [`Server::start`] (async, returns the bound endpoint) / [`Server::stop`]; [`Server::abort`] | |
//! | `ipc.server.on(type, (data, socket) => …)` | [`ServerExt::handle`]`(type, \|data: T, socket, server\| …)`; [`ServerExt::on_typed`], [`Server::on_message`], [`Server::on`] (every [`ServerEvent`]), [`Server::events`] (async stream) | `data` is deserialized into the closure's type; messages that do not fit are logged and skipped |
//! | `ipc.server.once` / `off` | [`Server::once`] / [`Server::off`], [`Server::off_event`] | `off` takes the [`HandlerId`] `on` returned |
//! | `ipc.server.emit(socket, type, data)` | [`ServerExt::send`] (now), [`Socket::emit`] (waits for room), [`Server::emit`] | `send` fails with `ERR_IPC_BACKPRESSURE` instead of buffering without bound |
//! | `ipc.server.emit({address, port}, type, data)` (UDP) | [`ServerExt::send`] with [`Peer::Udp`], [`ServerExt::send_to_host`]; `Server::emit_to` (async) | |
//! | `ipc.server.emit(socket, string \| buffer)` (raw) | [`ServerExt::send_str`] (applies `encoding`), [`ServerExt::send_raw`] (now); [`Socket::emit_raw`] (waits for room) | |
//! | `ipc.server.broadcast(type, data)` | [`Server::broadcast`] | a peer too slow to take it is disconnected |
//! | `ipc.server.sockets` | [`Server::sockets`], [`Server::connections`]; UDP: `Server::udp_peers` | |
//! | `ipc.server.define.listen[type] = text` (v0 docs) | not carried over | it only held documentation strings |
//! | `ipc.of[id].emit(type, data)` | [`Client::emit`] (async, waits for room), [`Client::try_emit`] (now), [`Client::emit_empty`] | |
//! | `ipc.of[id].emit(string \| buffer)` (raw) | [`Client::emit_str`] (applies `encoding`), [`Client::emit_raw`] | |
//! | `ipc.of[id].on/once/off(type, fn)`, `'*'` | [`ClientExt::handle`]`(type, \|data: T, client\| …)`, [`ClientExt::on_typed`], [`ClientExt::on_message`], [`Client::on`], [`Client::once`], [`Client::off`], [`Client::off_event`] | `"*"` is the wildcard (runs first) |
//! | (none) | [`Client::connected`], [`Client::connected_within`] | awaitable connect: the first connection, or [`ClientError::NotConnected`] with the last cause (`ENOENT`, `ECONNREFUSED`, TLS) |
//!
//! ### Configuration keys (node-ipc's README; `interface` is v14's name)
//!
//! | node-ipc key | [`Config`] field (JSON key) | default | difference |
//! |---|---|---|---|
//! | `appspace` | `appspace` | `"app."` | |
//! | `socketRoot` | `socket_root` | v14's per-user root ([`LocalPaths::default_socket_root`]); [`Config::legacy`]: `/tmp/` | |
//! | `id` | `id` | host name | |
//! | `networkHost` | `network_host` | `"127.0.0.1"` | v14's default, not the README's `localhost` |
//! | `networkPort` | `network_port` | `8000` | |
//! | `readableAll` / `writableAll` | `readable_all` / `writable_all` | `false` | |
//! | `encoding` | `encoding` ([`RawEncoding`]) | `utf8` | applied by [`Client::emit_str`] and [`ServerExt::send_str`]; `ucs2` is `utf16le` |
//! | `rawBuffer` | `raw_buffer` | `false` | |
//! | `delimiter` | `delimiter` | `"\f"` | |
//! | `sync` | `sync` | `false` | `sync_timeout` can release a message that is never answered |
//! | `silent` | `silent` | `false` | |
//! | `logInColor` | `log_in_color` | `true` | colours only when standard output is a terminal |
//! | `logDepth` | `log_depth` | 5 | |
//! | `logger` | `logger` ([`Logger`], not in JSON) | standard output | |
//! | `maxConnections` | `max_connections` | 100 | applies to every stream server, not only Unix sockets |
//! | `retry` | `retry` (ms in JSON) | 500 ms | |
//! | `maxRetries` | `max_retries` ([`MaxRetries`]) | `false` (`Infinity`) | |
//! | `stopRetrying` | `stop_retrying` | `false` | live: [`Ipc::configure`] reaches running clients |
//! | `unlink` | `unlink` | `true` | |
//! | `interfaces.localAddress` / `localPort` / `family` | `interface.local_address` / `local_port` / `family` | unset | |
//! | `interfaces.hints` | `interface.hints` | unset | anything but `0` is refused: the system resolver is called without flags |
//! | `interfaces.lookup` | [`Config::lookup`] (a closure; JSON: only `false`) | unset | called once per `connect_to_net`, not per retry |
//! | `tls.public` / `private` / `key` / `cert` / `ca` / `trustedConnections` / `requestCert` / `rejectUnauthorized` / `servername` | `tls` ([`TlsOptions`]) | `false` (`None`) | rustls: certificates must be CA-signed leaves (no self-signed CN-only fixtures) |
//! | `tls.dhparam` | `tls.dhparam` | unset | refused: rustls has no finite-field Diffie-Hellman |
//! | v14: `parser`, `maxMessageSize`, `maxPendingBytes`, `maxEventNameLength`, `messageTimeout`, `allowReservedEvents`, `allowedEvents`, `identifyPeer`, `logPayloads`, `secureSocketRoot`, `IPType` | `parser` ([`Parser`]), `max_message_size`, `max_pending_bytes`, `max_event_name_length`, `message_timeout`, `allow_reserved_events`, `allowed_events`, `identify_peer`, `log_payloads`, `secure_socket_root`, `ip_type` | v14's | |
//! | (none) | `unlink_mode`, `strict_eof`, `strict_utf8`, `strict_json`, `max_json_depth`, `udp_max_peers`, `udp_max_fragment_bytes`, `retry_backoff`, `retry_on_tls_failure`, `sync_timeout`, `legacy_v9_payloads`, `ext` | see [`Config`] | |
//!
//! ### Events (node-ipc's README)
//!
//! | node-ipc event | typed hook | event |
//! |---|---|---|
//! | server `start` (the `serve` callback) | [`ServerExt::on_start`] | [`ServerEvent::Start`] |
//! | server `connect` | [`ServerExt::on_connect`] | [`ServerEvent::Connect`] |
//! | server `socket.disconnected(socket, destroyedSocketID)` | [`ServerExt::on_socket_disconnected`] | [`ServerEvent::SocketDisconnected`] |
//! | server `error` | [`ServerExt::on_error`] | [`ServerEvent::Error`] |
//! | server `data` (raw) | [`ServerExt::on_data`] | [`ServerEvent::Data`] |
//! | server `close` (per connection, after `socket.disconnected`) | `on("close", …)` | [`ServerEvent::Close`] |
//! | client `connect` | [`ClientExt::on_connect`] | [`ClientEvent::Connect`] |
//! | client `disconnect` | [`ClientExt::on_disconnect`] | [`ClientEvent::Disconnect`] |
//! | client `destroy` | [`ClientExt::on_destroy`] | [`ClientEvent::Destroy`] |
//! | client `error` | [`ClientExt::on_error`] | [`ClientEvent::Error`] |
//! | client `data` (raw) | [`ClientExt::on_data`] | [`ClientEvent::Data`] |
//! | *your event type* | [`ServerExt::handle`], [`ClientExt::handle`] | [`ServerEvent::Message`], [`ClientEvent::Message`] |
//!
//! ### @isdk/ipc-server
//!
//! isdk's own wire format is not node-ipc's; its features are served by the
//! `ipcx.*` extension (`docs/protocol.md` §5) over node-ipc framing, so both ends are
//! this crate. `ipc/examples/isdk.rs` is the README example.
//!
//! | @isdk/ipc-server | here | difference |
//! |---|---|---|
//! | `new IPCServer({path})`, `await server.start()` | [`Ipc::serve`]`(Some(path))`, [`Server::start`] | |
//! | server `ready(address)` | [`ServerExt::on_start`] | |
//! | server `error(error, connection)` | [`ServerExt::on_error`] | |
//! | server `connect(connection, payload)` | [`ServerExt::on_handshake`] ([`ServerEvent::Hello`], `"hello"`); a check that may refuse: [`Server::on_hello`] | only clients that send a handshake raise it; every connection raises [`ServerExt::on_connect`] |
//! | server `disconnect(connection, reason)` | [`ServerExt::on_disconnect`] ([`Socket::close_reason`]) | |
//! | server `close()` | [`ServerExt::on_closed`] ([`ServerEvent::Closed`], `"closed"`) | node-ipc's per-connection `close` keeps its name |
//! | server `message(message, connection)` | [`ServerExt::handle`]`("message", …)` | |
//! | server `request(request, response, connection)`, `this.stopped = true` | [`Server::on_request`] with [`Request::respond`], returning [`Flow::Stop`] | |
//! | `server.publish({pub, message})` | [`Server::publish`]`(topic, message)` | |
//! | `await server.close(allowReconnect)` | [`Server::close`] | |
//! | `new IPCClient({path})`, `await client.connect()` | [`Ipc::connect_to`]`(id, Some(path))`, [`Client::connected`] | |
//! | client handshake payload | `ext.payload` (JSON `"payload"`) | |
//! | `await client.ping()` | [`Client::ping_default`] ([`Client::ping`] with a timeout) | |
//! | `await client.send(message)` | [`Client::emit`]`("message", message)` | |
//! | `await client.request(data)` | [`Client::request_default`] → [`Response`]; [`Client::request_as`]`::<T>` → `T`; [`Client::request`] with a timeout | the default timeout is `ext.requestTimeout` (10 s) |
//! | `client.on(topic, fn)`, `subscribe`, `unsubscribe`, `publish` | [`ClientExt::handle`], [`Client::subscribe`], [`Client::unsubscribe`], [`Client::publish`] | |
//! | `await client.close(reason)` | [`Client::close`] | |
//! | `client.destroy(reason)` | [`Client::destroy_with_reason`] ([`Client::destroy`] without one) | async |
//! | client `disconnect` reason | [`Client::close_reason`] in [`ClientExt::on_disconnect`] | |
//!
//! Errors print readably from `main`: [`IpcError`]'s `Debug` is its message
//! and causes.
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

#[cfg(feature = "blocking")]
pub mod blocking;
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
    Authorizer, Peer, Server, ServerConfig, ServerError, ServerEvent, ServerState, Socket,
    WeakServer,
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
