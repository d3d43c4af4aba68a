#![doc = include_str!("../README.md")]
//! ## ipc-transport — where node-ipc peers meet
//!
//! **Owns:** endpoints (where to listen or connect), connected byte streams,
//! listeners and datagram sockets for every transport node-ipc has: Unix
//! sockets (feature `unix`), TCP (`tcp`), TLS through rustls (`tls`), UDP
//! (`udp`) and Windows named pipes (always built on Windows). Paths,
//! permissions, unlinking, peer credentials and certificates live here.
//!
//! **Does not own:** events, framing or JSON (that is `ipc-proto`), nor
//! lifecycle, retry, connection limits or queues (`ipc-client`,
//! `ipc-server`).
//!
//! ## Shape
//!
//! * [`Endpoint`] names a place (`unix:/run/x/app.world`, `tcp://[::1]:8000`,
//!   `tls://localhost:8443`, `udp4://127.0.0.1:0`, `pipe:\\.\pipe\x`).
//! * [`Listener::bind`] + [`Listener::accept`] and [`connect`] give a
//!   [`Stream`], one type for every stream transport (an enum inside, static
//!   dispatch), so client and server code is written once.
//! * [`UdpSocket`] (feature `udp`) sends and receives whole datagrams.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ipc_transport::TransportError> {
//! use ipc_transport::{connect, ConnectOptions, Endpoint, ListenOptions, Listener};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let listener = Listener::bind(&"tcp://127.0.0.1:0".parse()?, &ListenOptions::default()).await?;
//! let endpoint = listener.local_endpoint();
//! let mut client = connect(&endpoint, &ConnectOptions::default()).await?;
//! let (mut server_side, peer) = listener.accept().await?;
//! client.write_all(b"hello\x0c").await.ok();
//! let mut buf = [0u8; 6];
//! server_side.read_exact(&mut buf).await.ok();
//! println!("{peer}: {buf:?}");
//! # Ok(()) }
//! ```
//!
//! A Windows named pipe has no half-close: shutting a pipe stream's write
//! half down closes the whole pipe once what was written has gone out, so
//! the peer reads it and then end-of-stream (see `PipeStream`, Windows
//! only).
//!
//! ## Secure defaults
//!
//! Unix socket files are made owner-only (0600) right after binding unless
//! `readable_all`/`writable_all` add group/other bits; binding inside a
//! socket root can create and secure the root (0700, owned by us, not a
//! symlink). A stale socket file is removed only after a probe shows no
//! server behind it, and a non-socket file is never removed. The socket file
//! is removed when the listener goes away, and only if it is still the file
//! the listener created. TLS verifies certificates unless told otherwise,
//! and says so in the log every time verification is off.
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod assured;
#[cfg(feature = "blocking")]
pub mod blocking;
mod endpoint;
mod error;
mod keepalive;
mod listener;
mod stream;

#[cfg(windows)]
mod pipe;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "udp")]
pub mod udp;
#[cfg(all(unix, feature = "unix"))]
pub mod unix;

pub use endpoint::{pipe_name, sanitize_user, Endpoint, LocalPaths, UdpFamily, PIPE_PREFIX};
pub use error::TransportError;
pub use keepalive::Keepalive;
pub use listener::{
    connect, AddressFamily, ConnectOptions, Incoming, ListenOptions, Listener, UnlinkMode,
};
pub use stream::{PeerAddr, PeerCred, PeerInfo, ReadHalf, Stream, StreamKind, WriteHalf};

#[cfg(windows)]
pub use pipe::PipeStream;
#[cfg(feature = "tls")]
pub use tls::{NodeTlsOptions, PemSource, TlsClientConfig, TlsServerConfig};
#[cfg(feature = "udp")]
pub use udp::{RecvBatch, UdpSocket};

/// The `ERR_IPC_*` code type shared by the workspace.
pub use ipc_proto::ErrorCode;

/// Whether an I/O error on an established stream is the TLS peer refusing
/// our certificate or identity. With TLS 1.3 a client learns that its
/// certificate was rejected only on its first read after the handshake;
/// retrying cannot fix it.
pub fn is_tls_auth_failure(e: &std::io::Error) -> bool {
    #[cfg(feature = "tls")]
    {
        tls::is_auth_failure(e)
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        false
    }
}
