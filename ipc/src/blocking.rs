//! The blocking API (feature `blocking`): a client and a server on std
//! sockets and `ipc-proto`'s sans-IO codec, for programs without an async
//! runtime (command-line tools, GUI applications, build scripts).
//!
//! They take the same [`ClientConfig`](crate::ClientConfig) and
//! [`ServerConfig`](crate::ServerConfig), follow the same retry policy and
//! protocol rules and report the same errors as the async
//! [`Client`](crate::Client) and [`Server`](crate::Server). See
//! [`BlockingClient`] and [`BlockingServer`] for what each does and how
//! writes are batched.
//!
//! ```no_run
//! use ipc::blocking::{BlockingClient, BlockingServer};
//! use ipc::{ClientConfig, ClientEvent, ServerConfig};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = BlockingServer::bind("tcp://127.0.0.1:0".parse()?, ServerConfig::default())?;
//! server.on("hello", |msg, socket| {
//!     let _ = socket.emit("welcome", &msg.data_value());
//! });
//! server.start()?;
//!
//! let mut client = BlockingClient::connect(server.endpoint().clone(), ClientConfig::default())?;
//! client.emit("hello", "world")?;
//! if let Some(ClientEvent::Message(m)) = client.recv_timeout(Duration::from_secs(5))? {
//!     println!("{} {}", m.event(), m.data_value());
//! }
//! client.disconnect()?;
//! server.stop();
//! # Ok(()) }
//! ```

pub use ipc_client::blocking::{BlockingClient, FLUSH_AT};
pub use ipc_server::blocking::{BlockingServer, BlockingSocket};
pub use ipc_transport::blocking::{
    BlockingListener, BlockingReader, BlockingStream, BlockingWriter,
};
