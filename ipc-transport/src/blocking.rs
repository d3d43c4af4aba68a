//! Blocking streams and listeners on std sockets (feature `blocking`).
//!
//! The same endpoints, options, path rules and errors as the async
//! [`connect`](crate::connect) and [`Listener`](crate::Listener), for
//! programs without an async runtime: Unix sockets (`std::os::unix::net`),
//! TCP (`std::net`) and TLS (rustls' [`rustls::StreamOwned`] over a
//! `std::net::TcpStream`, feature `tls`). Windows named pipes have no
//! blocking counterpart in std; [`connect`] and [`BlockingListener::bind`]
//! refuse them with `ERR_IPC_UNSUPPORTED`.
//!
//! Unix socket files get the same treatment as the async listener: path
//! length check, secure socket root, a stale socket removed only after a
//! probe connection is refused, owner-only mode, removal on drop if it is
//! still the file that was bound.

use std::io::{self, Read, Write};
#[cfg(feature = "tcp")]
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

#[cfg(feature = "tcp")]
use crate::stream::PeerAddr;
use crate::stream::PeerInfo;
#[cfg(feature = "tcp")]
use crate::AddressFamily;
use crate::{ConnectOptions, Endpoint, ListenOptions, TransportError};

/// A connected blocking stream of any stream transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum BlockingStream {
    /// A Unix-domain socket.
    #[cfg(all(unix, feature = "unix"))]
    Unix(std::os::unix::net::UnixStream),
    /// A TCP connection.
    #[cfg(feature = "tcp")]
    Tcp(TcpStream),
    /// The client side of a TLS connection.
    #[cfg(feature = "tls")]
    TlsClient(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// The server side of a TLS connection.
    #[cfg(feature = "tls")]
    TlsServer(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            #[cfg(all(unix, feature = "unix"))]
            BlockingStream::Unix($s) => $e,
            #[cfg(feature = "tcp")]
            BlockingStream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            BlockingStream::TlsClient($s) => $e,
            #[cfg(feature = "tls")]
            BlockingStream::TlsServer($s) => $e,
        }
    };
}

/// The socket under a stream (the TCP socket under TLS).
macro_rules! sock {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            #[cfg(all(unix, feature = "unix"))]
            BlockingStream::Unix($s) => $e,
            #[cfg(feature = "tcp")]
            BlockingStream::Tcp($s) => $e,
            #[cfg(feature = "tls")]
            BlockingStream::TlsClient(t) => {
                let $s = &t.sock;
                $e
            }
            #[cfg(feature = "tls")]
            BlockingStream::TlsServer(t) => {
                let $s = &t.sock;
                $e
            }
        }
    };
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        each!(self, s => s.read(buf))
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        each!(self, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        each!(self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        each!(self, s => s.flush())
    }
}

impl BlockingStream {
    /// Limits how long a read waits (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        sock!(self, s => s.set_read_timeout(timeout))
    }

    /// Limits how long a write waits (`None`: forever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        sock!(self, s => s.set_write_timeout(timeout))
    }

    /// Shuts the socket down in both directions: a thread blocked reading
    /// or writing it returns at once.
    pub fn shutdown(&self) -> io::Result<()> {
        sock!(self, s => s.shutdown(std::net::Shutdown::Both))
    }

    /// A second handle on the same socket for plain Unix and TCP streams
    /// (one thread reads while another writes); `None` for TLS, whose
    /// session state cannot be shared without a lock.
    pub fn try_clone(&self) -> io::Result<Option<BlockingStream>> {
        match self {
            #[cfg(all(unix, feature = "unix"))]
            BlockingStream::Unix(s) => s.try_clone().map(|s| Some(BlockingStream::Unix(s))),
            #[cfg(feature = "tcp")]
            BlockingStream::Tcp(s) => s.try_clone().map(|s| Some(BlockingStream::Tcp(s))),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if matches!(
            self,
            BlockingStream::TlsClient(_) | BlockingStream::TlsServer(_)
        ) {
            return true;
        }
        false
    }
}

fn unsupported(endpoint: &Endpoint, reason: &str) -> TransportError {
    TransportError::Unsupported {
        endpoint: endpoint.to_string(),
        reason: reason.to_owned(),
    }
}

#[cfg(feature = "tcp")]
fn resolve(
    host: &str,
    port: u16,
    family: Option<AddressFamily>,
) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        (host, port)
            .to_socket_addrs()
            .map_err(|e| crate::tcp::resolve_error(host, port, e))?
            .collect()
    };
    crate::tcp::of_family(host, port, addrs, family)
}

#[cfg(feature = "tcp")]
fn tcp_connect(
    endpoint: &Endpoint,
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<TcpStream, TransportError> {
    let family = opts.family.or(match opts.local_address {
        Some(IpAddr::V4(_)) => Some(AddressFamily::V4),
        Some(IpAddr::V6(_)) => Some(AddressFamily::V6),
        None => None,
    });
    let mut last = None;
    for addr in resolve(host, port, family)? {
        let domain = socket2::Domain::for_address(addr);
        let attempt = (|| {
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            if opts.local_address.is_some() || opts.local_port.is_some() {
                let ip = opts.local_address.unwrap_or(if addr.is_ipv4() {
                    IpAddr::from([0, 0, 0, 0])
                } else {
                    IpAddr::from([0u16; 8])
                });
                if opts.local_port.is_some() {
                    socket.set_reuse_address(true)?;
                }
                socket.bind(&SocketAddr::new(ip, opts.local_port.unwrap_or(0)).into())?;
            }
            match opts.connect_timeout {
                Some(limit) => socket.connect_timeout(&addr.into(), limit)?,
                None => socket.connect(&addr.into())?,
            }
            Ok::<TcpStream, io::Error>(socket.into())
        })();
        match attempt {
            Ok(s) => {
                if opts.tcp_nodelay {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                }
                apply_keepalive(opts.keepalive.as_ref(), &s, endpoint);
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && opts.connect_timeout.is_some() => {
                return Err(TransportError::Timeout {
                    endpoint: endpoint.to_string(),
                    operation: "connect",
                    after: opts.connect_timeout.unwrap_or_default(),
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(TransportError::Connect {
        endpoint: endpoint.to_string(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable)),
    })
}

#[cfg(feature = "tcp")]
fn apply_keepalive(k: Option<&crate::Keepalive>, s: &TcpStream, peer: &dyn std::fmt::Display) {
    if let Some(k) = k {
        if let Err(e) = socket2::SockRef::from(s).set_tcp_keepalive(&k.params()) {
            tracing::warn!(peer = %peer, error = %e, "cannot set TCP keepalive");
        }
    }
}

#[cfg(feature = "tcp")]
fn net_peer(s: &TcpStream) -> PeerInfo {
    match s.peer_addr() {
        Ok(a) => PeerInfo::new(PeerAddr::Net(a)),
        Err(_) => PeerInfo::new(PeerAddr::Net(SocketAddr::from(([0, 0, 0, 0], 0)))),
    }
}

#[cfg(all(unix, feature = "unix"))]
fn unix_peer(s: &std::os::unix::net::UnixStream) -> PeerInfo {
    use crate::stream::{PeerAddr, PeerCred};
    let addr = s
        .peer_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(std::path::Path::to_owned));
    let mut info = PeerInfo::new(PeerAddr::Unix(addr));
    match rustix::net::sockopt::socket_peercred(s) {
        Ok(c) => {
            info.cred = Some(PeerCred {
                pid: Some(c.pid.as_raw_nonzero().get()),
                uid: c.uid.as_raw(),
                gid: c.gid.as_raw(),
            })
        }
        Err(e) => tracing::debug!(error = %e, "peer credentials unavailable"),
    }
    info
}

/// Runs a blocking TLS handshake to completion, bounded by `limit`.
#[cfg(feature = "tls")]
fn complete_handshake<C, S>(
    conn: &mut C,
    sock: &mut TcpStream,
    limit: Option<Duration>,
    peer: &str,
) -> Result<(), TransportError>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    sock.set_read_timeout(limit)
        .and_then(|()| sock.set_write_timeout(limit))
        .map_err(|e| TransportError::io(format!("TLS handshake with {peer}"), e))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(sock) {
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                return Err(TransportError::Timeout {
                    endpoint: peer.to_owned(),
                    operation: "TLS handshake",
                    after: limit.unwrap_or_default(),
                });
            }
            return Err(crate::tls::handshake_error(peer.to_owned(), e));
        }
    }
    sock.set_read_timeout(None)
        .and_then(|()| sock.set_write_timeout(None))
        .map_err(|e| TransportError::io(format!("TLS handshake with {peer}"), e))
}

#[cfg(feature = "tls")]
fn peer_certs(c: &rustls::CommonState) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
    c.peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
}

/// Connects to `endpoint` with blocking I/O. TLS connections are returned
/// after the handshake, with the server verified unless the client
/// configuration explicitly turned verification off.
#[cfg_attr(not(feature = "tcp"), allow(unused_variables))]
pub fn connect(
    endpoint: &Endpoint,
    opts: &ConnectOptions,
) -> Result<(BlockingStream, PeerInfo), TransportError> {
    #[cfg(feature = "tls")]
    if opts.tls.is_some() && !matches!(endpoint, Endpoint::Tls { .. }) {
        return Err(TransportError::InvalidEndpoint {
            input: endpoint.to_string(),
            reason: "TLS options are only used with tls:// endpoints".into(),
        });
    }
    match endpoint {
        #[cfg(all(unix, feature = "unix"))]
        Endpoint::Unix(path) => {
            crate::unix::check_path_len(path)?;
            let s = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
                TransportError::Connect {
                    endpoint: endpoint.to_string(),
                    source: e,
                }
            })?;
            let peer = unix_peer(&s);
            Ok((BlockingStream::Unix(s), peer))
        }
        #[cfg(feature = "tcp")]
        Endpoint::Tcp { host, port } => {
            let s = tcp_connect(endpoint, host, *port, opts)?;
            let peer = net_peer(&s);
            Ok((BlockingStream::Tcp(s), peer))
        }
        #[cfg(feature = "tls")]
        Endpoint::Tls { host, port } => {
            let Some(config) = &opts.tls else {
                return Err(TransportError::tls_config(
                    None,
                    format!("{endpoint} needs a TLS client configuration (trusted CA)"),
                ));
            };
            if config.is_insecure() {
                tracing::warn!(endpoint = %endpoint, "TLS certificate verification is disabled for this connection");
            }
            let name = crate::tls::server_name_for(host, config)?;
            let mut tcp = tcp_connect(endpoint, host, *port, opts)?;
            let mut peer = net_peer(&tcp);
            let mut conn = rustls::ClientConnection::new(config.rustls().clone(), name)
                .map_err(|e| crate::tls::handshake_error(endpoint.to_string(), io::Error::other(e)))?;
            complete_handshake(
                &mut conn,
                &mut tcp,
                opts.connect_timeout,
                &endpoint.to_string(),
            )?;
            peer.tls_peer_certificates = peer_certs(&conn);
            let stream = rustls::StreamOwned::new(conn, tcp);
            Ok((BlockingStream::TlsClient(Box::new(stream)), peer))
        }
        Endpoint::Udp { .. } => Err(TransportError::InvalidEndpoint {
            input: endpoint.to_string(),
            reason: "UDP is connectionless: use UdpSocket".into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(unsupported(
            other,
            "no blocking transport for this endpoint in this build (Windows named pipes need the async API)",
        )),
    }
}

#[derive(Debug)]
enum Inner {
    #[cfg(all(unix, feature = "unix"))]
    Unix {
        listener: std::os::unix::net::UnixListener,
        _guard: Option<crate::unix::SocketFileGuard>,
    },
    #[cfg(feature = "tcp")]
    Tcp(TcpListener),
}

/// A listening endpoint with blocking `accept`.
#[derive(Debug)]
pub struct BlockingListener {
    inner: Inner,
    endpoint: Endpoint,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    handshake_timeout: Option<Duration>,
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    nodelay: bool,
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    keepalive: Option<crate::Keepalive>,
}

/// Removes a stale socket at `path` (see [`crate::unix::unlink_stale`]),
/// probing it with a blocking connect.
#[cfg(all(unix, feature = "unix"))]
fn unlink_stale(path: &std::path::Path, mode: crate::UnlinkMode) -> Result<(), TransportError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(TransportError::io(
                format!("cannot inspect {}", path.display()),
                e,
            ))
        }
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        return Err(TransportError::UnlinkNotSocket {
            path: path.to_owned(),
            kind: crate::unix::kind_name(&ft),
        });
    }
    if mode == crate::UnlinkMode::Probe {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_live) => {
                return Err(TransportError::AddressInUse {
                    endpoint: format!("unix:{}", path.display()),
                    reason: "a live server accepts connections on this socket; \
                             stop it first or use unlink_mode = force"
                        .into(),
                    source: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing stale socket file");
            }
            Err(e) => {
                return Err(TransportError::io(
                    format!("cannot probe the existing socket {}", path.display()),
                    e,
                ))
            }
        }
    } else {
        tracing::warn!(path = %path.display(), "unlink_mode = force: removing the existing socket without probing");
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TransportError::io(
            format!("cannot remove the stale socket {}", path.display()),
            e,
        )),
    }
}

#[cfg(all(unix, feature = "unix"))]
fn bind_unix(path: &std::path::Path, opts: &ListenOptions) -> Result<Inner, TransportError> {
    use std::os::unix::fs::PermissionsExt;
    crate::unix::check_path_len(path)?;
    if let Some(root) = &opts.socket_root {
        crate::unix::prepare_socket_root(path, root, opts.secure_socket_root)?;
    }
    if opts.unlink {
        unlink_stale(path, opts.unlink_mode)?;
    }
    let endpoint = || format!("unix:{}", path.display());
    let listener = match std::os::unix::net::UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            return Err(TransportError::AddressInUse {
                endpoint: endpoint(),
                reason: if opts.unlink {
                    "the path was taken while binding".to_owned()
                } else {
                    "the path exists and unlink is off; remove a stale socket first".to_owned()
                },
                source: Some(e),
            })
        }
        Err(e) => {
            return Err(TransportError::Bind {
                endpoint: endpoint(),
                source: e,
            })
        }
    };
    let guard = crate::unix::SocketFileGuard::new(path);
    let mode = crate::unix::socket_mode(opts.readable_all, opts.writable_all);
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        drop(guard);
        return Err(TransportError::io(
            format!("cannot set mode {mode:o} on {}", path.display()),
            e,
        ));
    }
    Ok(Inner::Unix {
        listener,
        _guard: guard,
    })
}

#[cfg(feature = "tcp")]
fn bind_tcp(endpoint: &Endpoint, host: &str, port: u16) -> Result<Inner, TransportError> {
    let mut last = None;
    for addr in resolve(host, port, None)? {
        let attempt = (|| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            #[cfg(unix)]
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok::<TcpListener, io::Error>(socket.into())
        })();
        match attempt {
            Ok(l) => return Ok(Inner::Tcp(l)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable));
    if e.kind() == io::ErrorKind::AddrInUse {
        return Err(TransportError::AddressInUse {
            endpoint: endpoint.to_string(),
            reason: "another socket is bound to this address and port".into(),
            source: Some(e),
        });
    }
    Err(TransportError::Bind {
        endpoint: endpoint.to_string(),
        source: e,
    })
}

impl BlockingListener {
    /// Binds `endpoint` with the rules of [`Listener::bind`](crate::Listener::bind).
    pub fn bind(endpoint: &Endpoint, opts: &ListenOptions) -> Result<Self, TransportError> {
        #[cfg(feature = "tls")]
        let mut tls = None;
        #[cfg(feature = "tls")]
        if opts.tls.is_some() && !matches!(endpoint, Endpoint::Tls { .. }) {
            return Err(TransportError::InvalidEndpoint {
                input: endpoint.to_string(),
                reason: "TLS options are only used with tls:// endpoints".into(),
            });
        }
        let inner = match endpoint {
            #[cfg(all(unix, feature = "unix"))]
            Endpoint::Unix(path) => bind_unix(path, opts)?,
            #[cfg(feature = "tcp")]
            Endpoint::Tcp { host, port } => bind_tcp(endpoint, host, *port)?,
            #[cfg(feature = "tls")]
            Endpoint::Tls { host, port } => {
                let Some(config) = &opts.tls else {
                    return Err(TransportError::tls_config(
                        None,
                        format!(
                            "{endpoint} needs a TLS server configuration (key and certificate)"
                        ),
                    ));
                };
                tls = Some(config.rustls().clone());
                bind_tcp(endpoint, host, *port)?
            }
            Endpoint::Udp { .. } => {
                return Err(TransportError::InvalidEndpoint {
                    input: endpoint.to_string(),
                    reason: "UDP is connectionless: use UdpSocket::bind".into(),
                })
            }
            #[allow(unreachable_patterns)]
            other => {
                return Err(unsupported(
                    other,
                    "no blocking transport for this endpoint in this build (Windows named pipes need the async API)",
                ))
            }
        };
        let mut l = BlockingListener {
            inner,
            endpoint: endpoint.clone(),
            #[cfg(feature = "tls")]
            tls,
            handshake_timeout: opts.tls_handshake_timeout,
            nodelay: opts.tcp_nodelay,
            keepalive: opts.keepalive,
        };
        l.endpoint = l.local_endpoint();
        tracing::info!(endpoint = %l.endpoint, "listening (blocking)");
        Ok(l)
    }

    /// The endpoint actually listened on (with the bound port for port 0).
    pub fn local_endpoint(&self) -> Endpoint {
        match &self.inner {
            #[cfg(feature = "tcp")]
            Inner::Tcp(l) => match l.local_addr() {
                Ok(a) => {
                    let host = a.ip().to_string();
                    let port = a.port();
                    match &self.endpoint {
                        #[cfg(feature = "tls")]
                        Endpoint::Tls { .. } => Endpoint::Tls { host, port },
                        _ => Endpoint::Tcp { host, port },
                    }
                }
                Err(_) => self.endpoint.clone(),
            },
            #[allow(unreachable_patterns)]
            _ => self.endpoint.clone(),
        }
    }

    /// Sets TCP keepalive for the connections accepted from now on.
    pub fn set_keepalive(&mut self, keepalive: Option<crate::Keepalive>) {
        self.keepalive = keepalive;
    }

    /// Accepts the next connection; for TLS, returns only after the
    /// handshake (bounded by [`ListenOptions::tls_handshake_timeout`]). A
    /// failed handshake is an error naming the peer; the listener keeps
    /// working.
    pub fn accept(&self) -> Result<(BlockingStream, PeerInfo), TransportError> {
        let accept_err = |e| TransportError::Accept {
            endpoint: self.endpoint.to_string(),
            source: e,
        };
        match &self.inner {
            #[cfg(all(unix, feature = "unix"))]
            Inner::Unix { listener, .. } => {
                let (s, _) = listener.accept().map_err(accept_err)?;
                let peer = unix_peer(&s);
                Ok((BlockingStream::Unix(s), peer))
            }
            #[cfg(feature = "tcp")]
            Inner::Tcp(listener) => {
                #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
                let (mut s, addr) = listener.accept().map_err(accept_err)?;
                if self.nodelay {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
                    }
                }
                apply_keepalive(self.keepalive.as_ref(), &s, &addr);
                #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
                let mut peer = PeerInfo::new(PeerAddr::Net(addr));
                #[cfg(feature = "tls")]
                if let Some(config) = &self.tls {
                    let name = addr.to_string();
                    let mut conn = rustls::ServerConnection::new(config.clone()).map_err(|e| {
                        crate::tls::handshake_error(name.clone(), io::Error::other(e))
                    })?;
                    complete_handshake(&mut conn, &mut s, self.handshake_timeout, &name)?;
                    peer.tls_peer_certificates = peer_certs(&conn);
                    let stream = rustls::StreamOwned::new(conn, s);
                    return Ok((BlockingStream::TlsServer(Box::new(stream)), peer));
                }
                Ok((BlockingStream::Tcp(s), peer))
            }
        }
    }

    /// Connects to this listener once and closes the connection: a thread
    /// blocked in [`BlockingListener::accept`] returns (used to stop an
    /// accept loop).
    pub fn wake(&self) {
        match &self.inner {
            #[cfg(all(unix, feature = "unix"))]
            Inner::Unix { listener, .. } => {
                if let Some(p) = listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(std::path::Path::to_owned))
                {
                    let _ = std::os::unix::net::UnixStream::connect(p);
                }
            }
            #[cfg(feature = "tcp")]
            Inner::Tcp(l) => {
                if let Ok(mut a) = l.local_addr() {
                    if a.ip().is_unspecified() {
                        a.set_ip(if a.is_ipv4() {
                            IpAddr::from([127, 0, 0, 1])
                        } else {
                            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
                        });
                    }
                    let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
                }
            }
        }
    }
}

/// The reading half of a [`BlockingStream`] (see [`BlockingStream::split`]).
#[derive(Debug)]
pub struct BlockingReader(ReaderInner);

/// The writing half of a [`BlockingStream`]; it can also shut the
/// connection down while the reader is blocked.
#[derive(Debug)]
pub struct BlockingWriter {
    inner: WriterInner,
    ctl: Option<BlockingStream>,
}

#[derive(Debug)]
enum ReaderInner {
    Plain(BlockingStream),
    #[cfg(feature = "tls")]
    Tls(TlsHalf),
}

#[derive(Debug)]
enum WriterInner {
    Plain(BlockingStream),
    #[cfg(feature = "tls")]
    Tls(TlsHalf),
}

/// One half of a split TLS connection: its own handle on the socket and
/// the shared session state. Socket reads happen outside the lock, so a
/// reader waiting for data never holds up a writer.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct TlsHalf {
    sock: TcpStream,
    conn: std::sync::Arc<std::sync::Mutex<rustls::Connection>>,
    scratch: Vec<u8>,
}

#[cfg(feature = "tls")]
impl TlsHalf {
    fn session(&self) -> std::sync::MutexGuard<'_, rustls::Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut conn = self.session();
                match conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if self.scratch.is_empty() {
                self.scratch = vec![0; 16 * 1024 + 256];
            }
            let k = self.sock.read(&mut self.scratch)?;
            let mut conn = self.session();
            if k == 0 {
                // The peer closed without close_notify: end of stream.
                return Ok(0);
            }
            let mut data = &self.scratch[..k];
            while !data.is_empty() {
                conn.read_tls(&mut data)?;
                conn.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            }
            while conn.wants_write() {
                conn.write_tls(&mut &self.sock)?;
            }
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut conn = self.session();
        conn.writer().write_all(buf)?;
        while conn.wants_write() {
            conn.write_tls(&mut &self.sock)?;
        }
        Ok(())
    }
}

impl BlockingStream {
    /// Splits the stream so one thread reads while another writes: two
    /// handles on the socket for Unix and TCP; for TLS, two socket handles
    /// sharing the session state behind a lock that is never held while
    /// waiting for the peer's data.
    pub fn split(self) -> io::Result<(BlockingReader, BlockingWriter)> {
        let ctl = match &self {
            #[cfg(all(unix, feature = "unix"))]
            BlockingStream::Unix(s) => BlockingStream::Unix(s.try_clone()?),
            #[cfg(feature = "tcp")]
            BlockingStream::Tcp(s) => BlockingStream::Tcp(s.try_clone()?),
            #[cfg(feature = "tls")]
            BlockingStream::TlsClient(t) => BlockingStream::Tcp(t.sock.try_clone()?),
            #[cfg(feature = "tls")]
            BlockingStream::TlsServer(t) => BlockingStream::Tcp(t.sock.try_clone()?),
        };
        #[cfg(feature = "tls")]
        {
            let tls = match self {
                BlockingStream::TlsClient(b) => {
                    let rustls::StreamOwned { conn, sock } = *b;
                    Some((rustls::Connection::from(conn), sock))
                }
                BlockingStream::TlsServer(b) => {
                    let rustls::StreamOwned { conn, sock } = *b;
                    Some((rustls::Connection::from(conn), sock))
                }
                plain => {
                    let w = plain
                        .try_clone()?
                        .ok_or_else(|| io::Error::other("cannot clone"))?;
                    return Ok((
                        BlockingReader(ReaderInner::Plain(plain)),
                        BlockingWriter {
                            inner: WriterInner::Plain(w),
                            ctl: Some(ctl),
                        },
                    ));
                }
            };
            if let Some((conn, sock)) = tls {
                let conn = std::sync::Arc::new(std::sync::Mutex::new(conn));
                let wsock = sock.try_clone()?;
                return Ok((
                    BlockingReader(ReaderInner::Tls(TlsHalf {
                        sock,
                        conn: conn.clone(),
                        scratch: Vec::new(),
                    })),
                    BlockingWriter {
                        inner: WriterInner::Tls(TlsHalf {
                            sock: wsock,
                            conn,
                            scratch: Vec::new(),
                        }),
                        ctl: Some(ctl),
                    },
                ));
            }
            unreachable!("TLS streams returned above")
        }
        #[cfg(not(feature = "tls"))]
        {
            let w = self
                .try_clone()?
                .ok_or_else(|| io::Error::other("cannot clone"))?;
            Ok((
                BlockingReader(ReaderInner::Plain(self)),
                BlockingWriter {
                    inner: WriterInner::Plain(w),
                    ctl: Some(ctl),
                },
            ))
        }
    }
}

impl BlockingReader {
    /// Limits how long a read waits (`None`: forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.0 {
            ReaderInner::Plain(s) => s.set_read_timeout(timeout),
            #[cfg(feature = "tls")]
            ReaderInner::Tls(t) => t.sock.set_read_timeout(timeout),
        }
    }
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            ReaderInner::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            ReaderInner::Tls(t) => t.read(buf),
        }
    }
}

impl BlockingWriter {
    /// Writes all of `buf` (TLS: encrypted and handed to the socket).
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            WriterInner::Plain(s) => s.write_all(buf),
            #[cfg(feature = "tls")]
            WriterInner::Tls(t) => t.write_all(buf),
        }
    }

    /// A handle that shuts the connection down in both directions, usable
    /// while another thread is blocked reading or writing it.
    pub fn take_shutdown_handle(&mut self) -> Option<BlockingStream> {
        self.ctl.take()
    }
}
