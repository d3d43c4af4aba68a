//! The one error type of this crate.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipc_proto::ErrorCode;

/// Everything that can go wrong while binding, connecting, accepting or
/// sending on a transport.
///
/// Every variant names the endpoint, path or peer concerned and carries the
/// underlying cause. [`TransportError::code`] maps a variant onto the shared
/// `ERR_IPC_*` code when one exists; [`TransportError::is_retryable`] tells a
/// reconnect loop whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// An endpoint string or value that cannot be used.
    #[error("invalid endpoint `{input}`: {reason}")]
    InvalidEndpoint {
        /// The text (or rendered endpoint) that was rejected.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The endpoint needs a transport this build or platform does not have.
    #[error("endpoint {endpoint} is not supported here: {reason}")]
    Unsupported {
        /// The endpoint.
        endpoint: String,
        /// What is missing (a cargo feature or the platform).
        reason: String,
    },
    /// A Unix socket path does not fit into `sun_path`.
    #[error(
        "socket path {} is {len} bytes, more than the {max} bytes `sun_path` holds (including the NUL); \
         choose a shorter socketRoot, appspace or id",
        path.display()
    )]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes (without the NUL).
        len: usize,
        /// The largest usable length on this platform (without the NUL).
        max: usize,
    },
    /// Something already listens on the endpoint.
    #[error("address in use: {endpoint}: {reason}")]
    AddressInUse {
        /// The endpoint.
        endpoint: String,
        /// What was found.
        reason: String,
        /// The operating system's error, when there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// The path to unlink before binding is not a socket (a file, directory
    /// or symlink); it is left untouched.
    #[error("refusing to unlink {}: it is a {kind}, not a socket", path.display())]
    UnlinkNotSocket {
        /// The path.
        path: PathBuf,
        /// What was found there (`file`, `directory`, `symlink`, ...).
        kind: &'static str,
    },
    /// The socket root directory is unusable or unsafe.
    #[error("socket root {}: {reason}", root.display())]
    SocketRoot {
        /// The socket root directory.
        root: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The operating system's error, when there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// Binding (listening) failed.
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A host name did not resolve to a usable address.
    #[error("cannot resolve {host}:{port}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Why it failed.
        reason: String,
        /// The resolver's error, when there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// Accepting a connection failed.
    #[error("accept on {endpoint} failed: {source}")]
    Accept {
        /// The listening endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An operation did not finish in time.
    #[error("{operation} with {endpoint} timed out after {after:?}")]
    Timeout {
        /// The endpoint or peer.
        endpoint: String,
        /// What timed out (`connect`, `TLS handshake`, ...).
        operation: &'static str,
        /// The limit that was exceeded.
        after: std::time::Duration,
    },
    /// TLS material or options that cannot be used.
    #[error("TLS configuration: {reason}")]
    TlsConfiguration {
        /// The file concerned, if any.
        path: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// A TLS handshake failed (certificate rejected, no certificate,
    /// protocol mismatch, or the peer went away during the handshake).
    #[error("TLS handshake with {peer} failed: {source}")]
    TlsHandshake {
        /// The peer (remote address or endpoint).
        peer: String,
        /// The cause; a `rustls::Error` is inside when TLS itself failed.
        #[source]
        source: io::Error,
        /// True when the failure is a certificate or authentication problem
        /// that a retry cannot fix.
        authentication: bool,
    },
    /// A datagram exceeds the largest payload UDP can carry.
    #[error("datagram of {len} bytes to {target} exceeds the {max}-byte UDP limit")]
    DatagramTooLarge {
        /// The destination.
        target: SocketAddr,
        /// The payload length.
        len: usize,
        /// The limit for the socket's family.
        max: usize,
    },
    /// The assured profile refuses this transport or socket location
    /// (`ERR_IPC_ASSURED_TRANSPORT`; see [`crate::assured`]).
    #[error("assured profile refuses {endpoint}: {reason}")]
    AssuredTransport {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The assured profile needs verified mutual TLS and this configuration
    /// does not provide it (`ERR_IPC_ASSURED_TLS`; see [`crate::assured`]).
    #[error("assured profile refuses TLS on {endpoint}: {reason}")]
    AssuredTls {
        /// The endpoint.
        endpoint: String,
        /// What is missing.
        reason: String,
    },
    /// Any other I/O failure on an endpoint or peer.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the endpoint or peer.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl TransportError {
    /// The shared `ERR_IPC_*` code of this error, if it has one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::InvalidEndpoint { .. } | Self::Unsupported { .. } => {
                Some(ErrorCode::InvalidConfiguration)
            }
            Self::SocketPathTooLong { .. } => Some(ErrorCode::SocketPathTooLong),
            Self::AddressInUse { .. } => Some(ErrorCode::AddressInUse),
            Self::UnlinkNotSocket { .. } => Some(ErrorCode::UnlinkNotSocket),
            Self::SocketRoot { .. } => Some(ErrorCode::SocketRoot),
            Self::TlsConfiguration { .. } => Some(ErrorCode::TlsConfiguration),
            Self::DatagramTooLarge { .. } => Some(ErrorCode::DatagramTooLarge),
            Self::AssuredTransport { .. } => Some(ErrorCode::AssuredTransport),
            Self::AssuredTls { .. } => Some(ErrorCode::AssuredTls),
            Self::Bind { .. }
            | Self::Connect { .. }
            | Self::Resolve { .. }
            | Self::Accept { .. }
            | Self::Timeout { .. }
            | Self::TlsHandshake { .. }
            | Self::Io { .. } => None,
        }
    }

    /// The kind of the underlying I/O error, if there is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Bind { source, .. }
            | Self::Connect { source, .. }
            | Self::Accept { source, .. }
            | Self::TlsHandshake { source, .. }
            | Self::Io { source, .. } => Some(source.kind()),
            Self::AddressInUse { source, .. } => Some(
                source
                    .as_ref()
                    .map_or(io::ErrorKind::AddrInUse, io::Error::kind),
            ),
            Self::SocketRoot { source, .. } | Self::Resolve { source, .. } => {
                source.as_ref().map(io::Error::kind)
            }
            Self::Timeout { .. } => Some(io::ErrorKind::TimedOut),
            _ => None,
        }
    }

    /// Whether trying the same operation again later can succeed.
    ///
    /// True for transient network conditions: connection refused, reset or
    /// aborted, a missing socket file (the server is not up yet), timeouts,
    /// resolver failures and TLS handshakes cut short by the network. False
    /// for configuration errors, certificate and authentication failures,
    /// oversized datagrams, permission problems and an address owned by a live
    /// server (each needs someone to change something first).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { source, .. } | Self::Io { source, .. } => retryable_kind(source.kind()),
            Self::Accept { .. } | Self::Timeout { .. } | Self::Resolve { .. } => true,
            Self::TlsHandshake { authentication, .. } => !authentication,
            _ => false,
        }
    }

    #[cfg_attr(
        not(any(all(unix, feature = "unix"), feature = "tcp", feature = "udp", windows)),
        allow(dead_code)
    )]
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls_config(path: Option<PathBuf>, reason: impl Into<String>) -> Self {
        Self::TlsConfiguration {
            path,
            reason: reason.into(),
        }
    }
}

fn retryable_kind(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotFound
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
            | io::ErrorKind::AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_retry_classification() {
        let refused = TransportError::Connect {
            endpoint: "tcp://127.0.0.1:1".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_retryable());
        assert_eq!(refused.code(), None);
        assert_eq!(refused.io_kind(), Some(io::ErrorKind::ConnectionRefused));
        let denied = TransportError::Connect {
            endpoint: "unix:/x".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(!denied.is_retryable());
        let long = TransportError::SocketPathTooLong {
            path: "/x".into(),
            len: 200,
            max: 107,
        };
        assert_eq!(long.code(), Some(ErrorCode::SocketPathTooLong));
        assert!(!long.is_retryable());
        assert!(long.to_string().contains("200 bytes"));
        let tls = TransportError::TlsHandshake {
            peer: "127.0.0.1:5".into(),
            source: io::Error::other("bad cert"),
            authentication: true,
        };
        assert!(!tls.is_retryable());
        assert!(tls.to_string().contains("127.0.0.1:5"));
    }
}
