//! Listening on and connecting to stream endpoints.

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

#[cfg(feature = "tcp")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(any(feature = "tcp", windows))]
use crate::stream::PeerAddr;
use crate::stream::{PeerInfo, Stream, StreamKind};
use crate::{Endpoint, TransportError};

#[cfg(feature = "tls")]
use crate::tls::{TlsClientConfig, TlsServerConfig};

/// What to do with an existing socket file before binding (`docs/protocol.md` §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnlinkMode {
    /// Connect to it first: a live server keeps it (`ERR_IPC_ADDRESS_IN_USE`),
    /// a stale socket is removed. The default.
    #[default]
    Probe,
    /// Remove any socket without probing (node-ipc's behaviour). Non-socket
    /// files are still never removed.
    Force,
}

/// An IP address family for client connections (node-ipc's
/// `interface.family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// How to listen. `Default` gives the secure defaults: unlink stale sockets
/// after probing, owner-only socket file, secure socket root checks,
/// `TCP_NODELAY`.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Remove a stale socket file before binding (`unlink`, default true).
    /// With false the path is never touched: binding fails with
    /// `ERR_IPC_ADDRESS_IN_USE` if anything exists there.
    pub unlink: bool,
    /// How an existing socket is judged stale.
    pub unlink_mode: UnlinkMode,
    /// Add read permission for group and other to the socket file
    /// (`readableAll`).
    pub readable_all: bool,
    /// Add write permission for group and other to the socket file
    /// (`writableAll`); needed for other users to connect.
    pub writable_all: bool,
    /// Check (and tighten) the socket root when the socket lies inside it
    /// (`secureSocketRoot`, default true). Only used with `socket_root`.
    pub secure_socket_root: bool,
    /// The socket root to create/secure before binding a Unix socket inside
    /// it (`docs/protocol.md` §2.1); `None` skips all root handling.
    pub socket_root: Option<PathBuf>,
    /// TLS material for `tls://` endpoints (required for them).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsServerConfig>,
    /// Longest time a TLS handshake may take in [`Listener::accept`] and
    /// [`Incoming::handshake`] (default 10 s; `None` waits forever).
    pub tls_handshake_timeout: Option<Duration>,
    /// Set `TCP_NODELAY` on accepted TCP/TLS connections (default true).
    pub tcp_nodelay: bool,
    /// TCP keepalive on every accepted TCP/TLS connection (default none, as
    /// node-ipc): detects peers that vanished without closing. See
    /// [`Keepalive`](crate::Keepalive).
    pub keepalive: Option<crate::Keepalive>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            unlink: true,
            unlink_mode: UnlinkMode::Probe,
            readable_all: false,
            writable_all: false,
            secure_socket_root: true,
            socket_root: None,
            #[cfg(feature = "tls")]
            tls: None,
            tls_handshake_timeout: Some(Duration::from_secs(10)),
            tcp_nodelay: true,
            keepalive: None,
        }
    }
}

/// How to connect. `Default`: no TLS, no local binding, `TCP_NODELAY` on,
/// no timeout.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TLS material for `tls://` endpoints (required for them).
    #[cfg(feature = "tls")]
    pub tls: Option<TlsClientConfig>,
    /// Local address to bind before connecting (`interface.localAddress`).
    pub local_address: Option<std::net::IpAddr>,
    /// Local port to bind before connecting (`interface.localPort`).
    pub local_port: Option<u16>,
    /// Only use addresses of this family (`interface.family`).
    pub family: Option<AddressFamily>,
    /// Set `TCP_NODELAY` (default true).
    pub tcp_nodelay: bool,
    /// Limit for connecting, including the TLS handshake.
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive on TCP/TLS connections (default none, as node-ipc):
    /// detects a server that vanished without closing. See
    /// [`Keepalive`](crate::Keepalive).
    pub keepalive: Option<crate::Keepalive>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            #[cfg(feature = "tls")]
            tls: None,
            local_address: None,
            local_port: None,
            family: None,
            tcp_nodelay: true,
            connect_timeout: None,
            keepalive: None,
        }
    }
}

#[allow(dead_code)]
fn unsupported(endpoint: &Endpoint, reason: &str) -> TransportError {
    TransportError::Unsupported {
        endpoint: endpoint.to_string(),
        reason: reason.to_owned(),
    }
}

#[derive(Debug)]
enum Inner {
    #[cfg(all(unix, feature = "unix"))]
    Unix {
        listener: tokio::net::UnixListener,
        // Dropped with the listener: removes the socket file if still ours.
        _guard: Option<crate::unix::SocketFileGuard>,
    },
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpListener),
    #[cfg(windows)]
    Pipe(tokio::sync::Mutex<tokio::net::windows::named_pipe::NamedPipeServer>),
    #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
    Never(std::convert::Infallible),
}

/// A listening endpoint of any stream transport.
///
/// ## TLS handshakes
///
/// [`Listener::accept`] returns a connection only after its TLS handshake,
/// bounded by [`ListenOptions::tls_handshake_timeout`]; a failed handshake is
/// returned as an error naming the peer and the listener keeps working (call
/// `accept` again). A loop calling `accept` serially waits for each
/// handshake, so a slow client delays the next accept by at most the
/// timeout. Servers that must not wait use [`Listener::accept_raw`], which
/// returns as soon as the TCP connection is accepted, and run
/// [`Incoming::handshake`] in a task of their own.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    endpoint: Endpoint,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    handshake_timeout: Option<Duration>,
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    nodelay: bool,
    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    keepalive: Option<crate::Keepalive>,
}

/// An accepted connection whose TLS handshake (if any) has not run yet.
#[derive(Debug)]
pub struct Incoming {
    stream: Stream,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    handshake_timeout: Option<Duration>,
}

impl Incoming {
    /// The peer.
    pub fn peer(&self) -> &PeerInfo {
        self.stream.peer()
    }

    /// True when [`Incoming::handshake`] has a TLS handshake to run.
    pub fn needs_handshake(&self) -> bool {
        #[cfg(feature = "tls")]
        {
            self.tls.is_some()
        }
        #[cfg(not(feature = "tls"))]
        {
            false
        }
    }

    /// The stream and its peer at once when there is no handshake to run,
    /// or this connection back when there is ([`Incoming::handshake`]).
    /// Boxed, as a server keeps accepted connections until their tasks
    /// take them.
    pub fn ready(self: Box<Self>) -> Result<(Stream, PeerInfo), Box<Incoming>> {
        if self.needs_handshake() {
            return Err(self);
        }
        let Incoming { stream, .. } = *self;
        let peer = stream.peer().clone();
        Ok((stream, peer))
    }

    /// Runs the TLS handshake (if any) and returns the ready stream with its
    /// peer information (including the client's certificates under mutual
    /// TLS).
    pub async fn handshake(self) -> Result<(Stream, PeerInfo), TransportError> {
        #[cfg(feature = "tls")]
        if let Some(config) = self.tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let (kind, mut peer) = self.stream.into_parts();
            #[allow(irrefutable_let_patterns)]
            let StreamKind::Tcp(tcp) = kind
            else {
                return Err(TransportError::io(
                    format!("TLS handshake with {peer}"),
                    std::io::Error::other("not a TCP stream"),
                ));
            };
            let fut = acceptor.accept(tcp);
            let result = match self.handshake_timeout {
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(TransportError::Timeout {
                            endpoint: peer.to_string(),
                            operation: "TLS handshake",
                            after: limit,
                        })
                    }
                },
                None => fut.await,
            };
            let tls = result.map_err(|e| crate::tls::handshake_error(peer.to_string(), e))?;
            peer.tls_peer_certificates = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            let stream = Stream::new(StreamKind::TlsServer(Box::new(tls)), peer.clone());
            return Ok((stream, peer));
        }
        let _ = self.handshake_timeout;
        let peer = self.stream.peer().clone();
        Ok((self.stream, peer))
    }
}

impl Listener {
    /// Binds (listens on) `endpoint`.
    ///
    /// Unix sockets: checks the path length, prepares the socket root when
    /// [`ListenOptions::socket_root`] is set, unlinks a stale socket (never
    /// anything else, never a live server's socket unless forced), binds and
    /// sets the file mode. The file is removed when the listener is dropped
    /// if it is still the same file. TCP/TLS: port 0 picks a free port, see
    /// [`Listener::local_endpoint`]. `tls://` needs [`ListenOptions::tls`].
    pub async fn bind(
        endpoint: &Endpoint,
        opts: &ListenOptions,
    ) -> Result<Listener, TransportError> {
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
            Endpoint::Unix(path) => {
                let bound = crate::unix::bind(path, opts).await?;
                Inner::Unix {
                    listener: bound.listener,
                    _guard: bound.guard,
                }
            }
            #[cfg(feature = "tcp")]
            Endpoint::Tcp { host, port } => {
                Inner::Tcp(crate::tcp::bind(&endpoint.to_string(), host, *port).await?)
            }
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
                Inner::Tcp(crate::tcp::bind(&endpoint.to_string(), host, *port).await?)
            }
            #[cfg(windows)]
            Endpoint::NamedPipe(name) => {
                Inner::Pipe(tokio::sync::Mutex::new(crate::pipe::create_first(name)?))
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
                    "transport not built into this library or not available on this platform",
                ))
            }
        };
        let mut listener = Listener {
            inner,
            endpoint: endpoint.clone(),
            #[cfg(feature = "tls")]
            tls,
            handshake_timeout: opts.tls_handshake_timeout,
            nodelay: opts.tcp_nodelay,
            keepalive: opts.keepalive,
        };
        listener.endpoint = listener.local_endpoint();
        tracing::info!(endpoint = %listener.endpoint, "listening");
        Ok(listener)
    }

    /// Wraps a listening Unix socket bound elsewhere (the cluster pattern:
    /// one pre-bound socket shared by several processes or threads). The
    /// path is never touched, not even removed on drop.
    #[cfg(all(unix, feature = "unix"))]
    pub fn from_std_unix(
        listener: std::os::unix::net::UnixListener,
    ) -> Result<Listener, TransportError> {
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(std::path::Path::to_owned))
            .unwrap_or_default();
        let endpoint = Endpoint::Unix(path);
        listener
            .set_nonblocking(true)
            .map_err(|e| TransportError::io(format!("{endpoint}: set non-blocking"), e))?;
        let listener = tokio::net::UnixListener::from_std(listener)
            .map_err(|e| TransportError::io(format!("{endpoint}: register listener"), e))?;
        Ok(Listener {
            inner: Inner::Unix {
                listener,
                _guard: None,
            },
            endpoint,
            #[cfg(feature = "tls")]
            tls: None,
            handshake_timeout: None,
            nodelay: true,
            keepalive: None,
        })
    }

    /// Wraps a listening TCP socket bound elsewhere (plain TCP).
    #[cfg(feature = "tcp")]
    pub fn from_std_tcp(listener: std::net::TcpListener) -> Result<Listener, TransportError> {
        listener
            .set_nonblocking(true)
            .map_err(|e| TransportError::io("tcp listener: set non-blocking", e))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| TransportError::io("tcp listener: register", e))?;
        let mut l = Listener {
            inner: Inner::Tcp(listener),
            endpoint: Endpoint::Tcp {
                host: String::new(),
                port: 0,
            },
            #[cfg(feature = "tls")]
            tls: None,
            handshake_timeout: None,
            nodelay: true,
            keepalive: None,
        };
        l.endpoint = l.local_endpoint();
        Ok(l)
    }

    /// Accepts the next connection; for TLS, returns only after the
    /// handshake (see the type docs).
    pub async fn accept(&self) -> Result<(Stream, PeerInfo), TransportError> {
        self.accept_raw().await?.handshake().await
    }

    /// Accepts the next connection without running its TLS handshake.
    pub async fn accept_raw(&self) -> Result<Incoming, TransportError> {
        let accept_err = |e| TransportError::Accept {
            endpoint: self.endpoint.to_string(),
            source: e,
        };
        let stream = match &self.inner {
            #[cfg(all(unix, feature = "unix"))]
            Inner::Unix { listener, .. } => {
                let (s, _) = listener.accept().await.map_err(accept_err)?;
                let peer = crate::unix::peer_info(&s);
                Stream::new(StreamKind::Unix(s), peer)
            }
            #[cfg(feature = "tcp")]
            Inner::Tcp(listener) => {
                let (s, addr) = listener.accept().await.map_err(accept_err)?;
                if self.nodelay {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
                    }
                }
                crate::keepalive::apply_opt(self.keepalive.as_ref(), &s, &addr);
                Stream::new(StreamKind::Tcp(s), PeerInfo::new(PeerAddr::Net(addr)))
            }
            #[cfg(windows)]
            Inner::Pipe(server) => {
                let name = match &self.endpoint {
                    Endpoint::NamedPipe(n) => n.clone(),
                    _ => String::new(),
                };
                let mut guard = server.lock().await;
                guard.connect().await.map_err(accept_err)?;
                let next = crate::pipe::create_next(&name)?;
                let connected = std::mem::replace(&mut *guard, next);
                Stream::new(
                    StreamKind::PipeServer(crate::pipe::PipeStream::server(connected)),
                    PeerInfo::new(PeerAddr::Pipe(name)),
                )
            }
            #[cfg(not(any(all(unix, feature = "unix"), feature = "tcp", windows)))]
            Inner::Never(n) => match *n {},
        };
        Ok(Incoming {
            stream,
            #[cfg(feature = "tls")]
            tls: self.tls.clone(),
            handshake_timeout: self.handshake_timeout,
        })
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

    /// Sets TCP keepalive for the connections accepted from now on (e.g. on
    /// a listener from [`Listener::from_std_tcp`], which has none).
    pub fn set_keepalive(&mut self, keepalive: Option<crate::Keepalive>) {
        self.keepalive = keepalive;
    }

    /// The TCP keepalive applied to accepted connections, if any.
    pub fn keepalive(&self) -> Option<crate::Keepalive> {
        self.keepalive
    }

    /// The bound socket address of a TCP/TLS listener.
    #[cfg(feature = "tcp")]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().ok(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Stops listening. A Unix socket file is removed if it is still the one
    /// this listener created (the same happens on drop).
    pub async fn close(self) {
        tracing::info!(endpoint = %self.endpoint, "listener closed");
        drop(self);
    }
}

/// Connects to `endpoint`. TLS connections are returned after the
/// handshake, with the server verified unless the client configuration
/// explicitly turned verification off.
pub async fn connect(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<Stream, TransportError> {
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
            let fut = crate::unix::connect(path);
            let s = match opts.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, fut).await.map_err(|_| {
                    TransportError::Timeout {
                        endpoint: endpoint.to_string(),
                        operation: "connect",
                        after: limit,
                    }
                })??,
                None => fut.await?,
            };
            let peer = crate::unix::peer_info(&s);
            Ok(Stream::new(StreamKind::Unix(s), peer))
        }
        #[cfg(feature = "tcp")]
        Endpoint::Tcp { host, port } => {
            let s = crate::tcp::connect(&endpoint.to_string(), host, *port, opts).await?;
            let peer = net_peer(&s);
            Ok(Stream::new(StreamKind::Tcp(s), peer))
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
            let fut = async {
                let tcp = crate::tcp::connect(&endpoint.to_string(), host, *port, opts).await?;
                let mut peer = net_peer(&tcp);
                let connector = tokio_rustls::TlsConnector::from(config.rustls().clone());
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| crate::tls::handshake_error(endpoint.to_string(), e))?;
                peer.tls_peer_certificates = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
                Ok::<_, TransportError>(Stream::new(StreamKind::TlsClient(Box::new(tls)), peer))
            };
            match opts.connect_timeout {
                Some(limit) => {
                    tokio::time::timeout(limit, fut)
                        .await
                        .map_err(|_| TransportError::Timeout {
                            endpoint: endpoint.to_string(),
                            operation: "TLS connect",
                            after: limit,
                        })?
                }
                None => fut.await,
            }
        }
        #[cfg(windows)]
        Endpoint::NamedPipe(name) => {
            let client = crate::pipe::connect(name, opts.connect_timeout).await?;
            Ok(Stream::new(
                StreamKind::PipeClient(crate::pipe::PipeStream::client(client)),
                PeerInfo::new(PeerAddr::Pipe(name.clone())),
            ))
        }
        Endpoint::Udp { .. } => Err(TransportError::InvalidEndpoint {
            input: endpoint.to_string(),
            reason: "UDP is connectionless: use UdpSocket".into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(unsupported(
            other,
            "transport not built into this library or not available on this platform",
        )),
    }
}

#[cfg(feature = "tcp")]
fn net_peer(s: &tokio::net::TcpStream) -> PeerInfo {
    match s.peer_addr() {
        Ok(a) => PeerInfo::new(PeerAddr::Net(a)),
        Err(_) => PeerInfo::new(PeerAddr::Net(SocketAddr::from(([0, 0, 0, 0], 0)))),
    }
}
