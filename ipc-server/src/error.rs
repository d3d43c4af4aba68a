//! The server's error type.

use std::io;

use ipc_proto::{ErrorCode, ProtocolError};
use ipc_transport::TransportError;

/// Everything that can go wrong in a server. Each variant names the peer (or
/// the endpoint) it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding or listening failed.
    #[error("cannot serve on {endpoint}: {source}")]
    Listen {
        /// The endpoint.
        endpoint: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// Accepting a connection failed (including a failed TLS handshake).
    #[error("accepting a connection on {endpoint} failed: {source}")]
    Accept {
        /// The endpoint.
        endpoint: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// The connection limit was reached; the new connection was closed.
    #[error("refused connection from {peer}: maxConnections ({limit}) reached")]
    MaxConnections {
        /// The refused peer.
        peer: String,
        /// The limit.
        limit: usize,
    },
    /// A connection's transport failed.
    #[error("connection {peer} failed: {source}")]
    Io {
        /// The peer.
        peer: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A datagram could not be sent or received.
    #[error("datagram to/from {peer} failed: {source}")]
    Datagram {
        /// The peer.
        peer: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// A peer sent something the profile refuses; its connection was closed
    /// (UDP: its reassembly buffer was reset).
    #[error("protocol violation from {peer}: {source}")]
    Protocol {
        /// The peer.
        peer: String,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
    /// An emit was refused before anything was written.
    #[error("cannot emit to {peer}: {source}")]
    Encode {
        /// The peer (or `broadcast`).
        peer: String,
        /// Why.
        #[source]
        source: ProtocolError,
    },
    /// The [`Authorizer`](crate::Authorizer) refused a connection; it was
    /// closed before `connect`.
    #[error("refused connection from {peer}: {reason}")]
    Unauthorized {
        /// The refused peer (address and, for Unix sockets, credentials).
        peer: String,
        /// The authorizer's reason.
        reason: String,
    },
    /// A peer's outbound queue is full. From `try_emit` nothing happened to
    /// the connection; from `broadcast` the slow peer was disconnected so the
    /// others keep their pace.
    #[error("outbound queue to {peer} is full ({queued} of {capacity} bytes)")]
    Backpressure {
        /// The peer.
        peer: String,
        /// Bytes queued.
        queued: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The socket is closed; nothing more can be sent to it.
    #[error("connection {peer} is closed")]
    NotConnected {
        /// The peer.
        peer: String,
    },
    /// Messages accepted for a peer could not be delivered because its
    /// connection ended first.
    #[error("{frames} queued message(s) ({bytes} bytes) to {peer} were not delivered: the connection ended")]
    Undelivered {
        /// The peer.
        peer: String,
        /// How many frames.
        frames: usize,
        /// How many bytes.
        bytes: usize,
    },
    /// A request or ping to a client failed.
    #[error("call to {peer} failed: {source}")]
    Call {
        /// The peer.
        peer: String,
        /// Why.
        #[source]
        source: ipc_conn::CallError,
    },
    /// A peer broke the extension handshake rules: it sent something before
    /// `ipcx.hello` (`ERR_IPC_HANDSHAKE_REQUIRED`), stayed silent too long
    /// (`ERR_IPC_HANDSHAKE_TIMEOUT`), or was refused by the hello check.
    #[error("handshake with {peer} failed: {reason}")]
    Handshake {
        /// The peer.
        peer: String,
        /// The code.
        code: ErrorCode,
        /// What happened.
        reason: String,
    },
    /// A stream peer sent nothing for `idle_timeout`; its connection was
    /// closed (half-open or stuck peers).
    #[error("connection {peer} idle for {after:?}: closed")]
    Idle {
        /// The peer.
        peer: String,
        /// The configured idle timeout.
        after: std::time::Duration,
    },
    /// A UDP emit without a target.
    #[error("UDP emit without a target address")]
    NoTarget,
    /// The operation needs a running server.
    #[error("server on {endpoint} is not running")]
    NotRunning {
        /// The endpoint.
        endpoint: String,
    },
    /// Answers to a peer's calls (responses, pongs, acknowledgements) could
    /// not be queued: its outbound queue was full or closed. The peer's
    /// calls time out or fail on its side.
    #[error("{count} answer(s) to {peer} could not be queued")]
    AnswersUnsent {
        /// The peer.
        peer: String,
        /// How many answers were lost.
        count: u64,
    },
    /// A user handler panicked.
    #[error("handler for `{event}` panicked: {message}")]
    Handler {
        /// The event being handled.
        event: String,
        /// The panic message.
        message: String,
    },
    /// The configuration is unusable.
    #[error("invalid server configuration: {0}")]
    Config(#[source] ProtocolError),
}

impl ServerError {
    /// The `ERR_IPC_*` code, where one applies.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ServerError::Listen { source, .. }
            | ServerError::Accept { source, .. }
            | ServerError::Datagram { source, .. } => source.code().or(Some(ErrorCode::Io)),
            ServerError::Protocol { source, .. }
            | ServerError::Encode { source, .. }
            | ServerError::Config(source) => Some(source.code()),
            ServerError::Backpressure { .. } | ServerError::AnswersUnsent { .. } => {
                Some(ErrorCode::Backpressure)
            }
            ServerError::NotConnected { .. } | ServerError::Undelivered { .. } => {
                Some(ErrorCode::NotConnected)
            }
            ServerError::NoTarget => Some(ErrorCode::NoTarget),
            ServerError::Idle { .. } => Some(ErrorCode::MessageTimeout),
            ServerError::Call { source, .. } => source.code(),
            ServerError::Handshake { code, .. } => Some(*code),
            ServerError::Handler { .. } => Some(ErrorCode::Handler),
            ServerError::MaxConnections { .. } => Some(ErrorCode::MaxConnections),
            ServerError::Unauthorized { .. } => Some(ErrorCode::Unauthorized),
            ServerError::Io { .. } => Some(ErrorCode::Io),
            ServerError::NotRunning { .. } => Some(ErrorCode::NotRunning),
        }
    }
}
