//! Connected byte streams of every stream transport, by static dispatch.

// Without any stream transport the code below is unreachable by design.
#![cfg_attr(
    not(any(all(unix, feature = "unix"), feature = "tcp", windows)),
    allow(
        unreachable_code,
        unused_variables,
        unused_mut,
        unused_imports,
        dead_code
    )
)]

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a peer is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    /// A Unix-socket peer: the path it is bound to, or `None` for the usual
    /// unnamed client socket.
    Unix(Option<PathBuf>),
    /// A TCP or TLS peer.
    Net(SocketAddr),
    /// A Windows named-pipe peer (the pipe name).
    Pipe(String),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Unix(Some(p)) => write!(f, "unix:{}", p.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
            PeerAddr::Net(a) => write!(f, "{a}"),
            PeerAddr::Pipe(name) => write!(f, "pipe:{name}"),
        }
    }
}

/// Credentials of a Unix-socket peer, as the kernel reports them
/// (`SO_PEERCRED` and equivalents) at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCred {
    /// Process id, where the platform reports it.
    pub pid: Option<i32>,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// What is known about the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: PeerAddr,
    /// Kernel-reported credentials (Unix sockets only).
    pub cred: Option<PeerCred>,
    /// The certificate chain the peer presented in the TLS handshake, end
    /// entity first (TLS only, when the peer sent one).
    #[cfg(feature = "tls")]
    pub tls_peer_certificates: Option<Vec<rustls_pki_types::CertificateDer<'static>>>,
}

impl PeerInfo {
    /// A peer known only by its address.
    pub fn new(addr: PeerAddr) -> Self {
        PeerInfo {
            addr,
            cred: None,
            #[cfg(feature = "tls")]
            tls_peer_certificates: None,
        }
    }
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if let Some(c) = &self.cred {
            match c.pid {
                Some(pid) => write!(f, " (pid {pid}, uid {}, gid {})", c.uid, c.gid)?,
                None => write!(f, " (uid {}, gid {})", c.uid, c.gid)?,
            }
        }
        Ok(())
    }
}

/// The concrete stream inside a [`Stream`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamKind {
    /// A Unix-domain socket.
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::UnixStream),
    /// A TCP connection.
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpStream),
    /// The client side of a TLS connection.
    #[cfg(feature = "tls")]
    TlsClient(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// The server side of a TLS connection.
    #[cfg(feature = "tls")]
    TlsServer(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
    /// The client end of a Windows named pipe.
    #[cfg(windows)]
    PipeClient(crate::pipe::PipeStream),
    /// The server end of a Windows named pipe.
    #[cfg(windows)]
    PipeServer(crate::pipe::PipeStream),
    /// Never built: keeps the type valid when no stream transport is enabled.
    #[doc(hidden)]
    #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
    __Never(std::convert::Infallible),
}

/// A connected byte stream of any stream transport, with what is known
/// about its peer.
///
/// It implements `AsyncRead` + `AsyncWrite` by matching on [`StreamKind`]
/// (no boxing of the I/O path, no dynamic dispatch). TLS streams are ready
/// to use: the handshake is complete before a `Stream` is handed out.
#[derive(Debug)]
pub struct Stream {
    kind: StreamKind,
    peer: PeerInfo,
}

macro_rules! dispatch {
    ($on:expr, $s:ident => $e:expr) => {
        match $on {
            #[cfg(all(unix, feature = "unix"))]
            StreamKind::Unix($s) => $e,
            #[cfg(feature = "tcp")]
            StreamKind::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            StreamKind::TlsClient($s) => $e,
            #[cfg(feature = "tls")]
            StreamKind::TlsServer($s) => $e,
            #[cfg(windows)]
            StreamKind::PipeClient($s) => $e,
            #[cfg(windows)]
            StreamKind::PipeServer($s) => $e,
            #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
            StreamKind::__Never(n) => match *n {},
        }
    };
}

impl Stream {
    /// Wraps a concrete stream.
    pub fn new(kind: StreamKind, peer: PeerInfo) -> Self {
        Stream { kind, peer }
    }

    /// What is known about the peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The concrete stream.
    pub fn kind(&self) -> &StreamKind {
        &self.kind
    }

    /// The concrete stream, mutably (e.g. to set socket options).
    pub fn kind_mut(&mut self) -> &mut StreamKind {
        &mut self.kind
    }

    /// Takes the stream apart.
    pub fn into_parts(self) -> (StreamKind, PeerInfo) {
        (self.kind, self.peer)
    }

    /// Splits into owned read and write halves that can move to different
    /// tasks. Unix, TCP and pipe streams split without a lock; TLS streams
    /// use `tokio::io::split` (a lock shared by both halves). A pipe has no
    /// half-close: shutting its write half down closes the pipe once what was
    /// written has gone out, and its read half then reads end-of-stream.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self.kind {
            #[cfg(all(unix, feature = "unix"))]
            StreamKind::Unix(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
            #[cfg(feature = "tcp")]
            StreamKind::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            #[cfg(feature = "tls")]
            StreamKind::TlsClient(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::TlsClient(r), WriteHalf::TlsClient(w))
            }
            #[cfg(feature = "tls")]
            StreamKind::TlsServer(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::TlsServer(r), WriteHalf::TlsServer(w))
            }
            #[cfg(windows)]
            StreamKind::PipeClient(s) => {
                (ReadHalf::PipeClient(s.handle()), WriteHalf::PipeClient(s))
            }
            #[cfg(windows)]
            StreamKind::PipeServer(s) => {
                (ReadHalf::PipeServer(s.handle()), WriteHalf::PipeServer(s))
            }
            #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
            StreamKind::__Never(n) => match n {},
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().kind, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().kind, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().kind, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch!(&mut self.get_mut().kind, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch!(&mut self.get_mut().kind, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        dispatch!(&self.kind, s => s.is_write_vectored())
    }
}

/// The owned read half of a [`Stream`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadHalf {
    /// Unix socket.
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::unix::OwnedReadHalf),
    /// TCP.
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::tcp::OwnedReadHalf),
    /// TLS client.
    #[cfg(feature = "tls")]
    TlsClient(tokio::io::ReadHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// TLS server.
    #[cfg(feature = "tls")]
    TlsServer(tokio::io::ReadHalf<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
    /// Pipe client.
    #[cfg(windows)]
    PipeClient(crate::pipe::PipeStream),
    /// Pipe server.
    #[cfg(windows)]
    PipeServer(crate::pipe::PipeStream),
    /// Never built: keeps the type valid when no stream transport is enabled.
    #[doc(hidden)]
    #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
    __Never(std::convert::Infallible),
}

/// The owned write half of a [`Stream`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteHalf {
    /// Unix socket.
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::unix::OwnedWriteHalf),
    /// TCP.
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    /// TLS client.
    #[cfg(feature = "tls")]
    TlsClient(tokio::io::WriteHalf<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    /// TLS server.
    #[cfg(feature = "tls")]
    TlsServer(tokio::io::WriteHalf<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
    /// Pipe client.
    #[cfg(windows)]
    PipeClient(crate::pipe::PipeStream),
    /// Pipe server.
    #[cfg(windows)]
    PipeServer(crate::pipe::PipeStream),
    /// Never built: keeps the type valid when no stream transport is enabled.
    #[doc(hidden)]
    #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
    __Never(std::convert::Infallible),
}

macro_rules! dispatch_half {
    ($ty:ident, $on:expr, $s:ident => $e:expr) => {
        match $on {
            #[cfg(all(unix, feature = "unix"))]
            $ty::Unix($s) => $e,
            #[cfg(feature = "tcp")]
            $ty::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            $ty::TlsClient($s) => $e,
            #[cfg(feature = "tls")]
            $ty::TlsServer($s) => $e,
            #[cfg(windows)]
            $ty::PipeClient($s) => $e,
            #[cfg(windows)]
            $ty::PipeServer($s) => $e,
            #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
            $ty::__Never(n) => match *n {},
        }
    };
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        dispatch_half!(ReadHalf, self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        dispatch_half!(WriteHalf, self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch_half!(WriteHalf, self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        dispatch_half!(WriteHalf, self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        dispatch_half!(WriteHalf, self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        dispatch_half!(WriteHalf, self, s => s.is_write_vectored())
    }
}
