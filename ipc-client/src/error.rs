//! The client's error type.

use std::io;

use ipc_proto::{ErrorCode, ProtocolError};
use ipc_transport::TransportError;

/// Everything that can go wrong in a client. Each variant names the endpoint
/// it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting failed (refused, not found, TLS failure, …).
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// The connection failed while in use.
    #[error("connection to {endpoint} failed: {source}")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The TLS server refused this client's certificate (TLS 1.3 reports it
    /// after the handshake, on the first read). Not retried unless
    /// `retry_on_tls_failure`.
    #[error("{endpoint} refused our TLS credentials: {source}")]
    TlsRejected {
        /// The endpoint.
        endpoint: String,
        /// The TLS alert, as an I/O error.
        #[source]
        source: io::Error,
    },
    /// The peer sent something the profile refuses; the client closed the
    /// connection and will not reconnect (`docs/protocol.md` §1.4).
    #[error("protocol violation from {endpoint}: {source}")]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
    /// An emit was refused before anything was written (bad name, frame too
    /// large, …).
    #[error("cannot emit to {endpoint}: {source}")]
    Encode {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: ProtocolError,
    },
    /// The outbound queue is full (`try_emit` only).
    #[error("outbound queue to {endpoint} is full ({queued} of {capacity} bytes)")]
    Backpressure {
        /// The endpoint.
        endpoint: String,
        /// Bytes queued.
        queued: usize,
        /// The queue's capacity.
        capacity: usize,
    },
    /// The client is destroyed; nothing more can be sent.
    #[error("client for {endpoint} is destroyed")]
    Destroyed {
        /// The endpoint.
        endpoint: String,
    },
    /// Messages that were accepted by `emit` could not be delivered because
    /// the client was destroyed before they were written.
    #[error("{frames} queued message(s) ({bytes} bytes) to {endpoint} were not delivered: the client was destroyed")]
    Undelivered {
        /// The endpoint.
        endpoint: String,
        /// How many frames.
        frames: usize,
        /// How many bytes.
        bytes: usize,
    },
    /// Answers to the server's calls (responses, pongs) could not be
    /// queued: the outbound queue was full or closed.
    #[error("{count} answer(s) to {endpoint} could not be queued")]
    AnswersUnsent {
        /// The endpoint.
        endpoint: String,
        /// How many answers were lost.
        count: u64,
    },
    /// A sync-mode emit got no answer within `sync_timeout`.
    #[error("no answer from {endpoint} within the sync timeout; releasing the next message")]
    SyncTimeout {
        /// The endpoint.
        endpoint: String,
    },
    /// Nothing was received on the connection for `idle_timeout`; it was
    /// closed and the client follows its retry policy (half-open or hung
    /// server).
    #[error("connection to {endpoint} idle for {after:?}: closed")]
    Idle {
        /// The endpoint.
        endpoint: String,
        /// The configured idle timeout.
        after: std::time::Duration,
    },
    /// A user handler panicked.
    #[error("handler for `{event}` panicked: {message}")]
    Handler {
        /// The event being handled.
        event: String,
        /// The panic message.
        message: String,
    },
    /// A request, ping or subscription failed.
    #[error("call to {endpoint} failed: {source}")]
    Call {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: ipc_conn::CallError,
    },
    /// The extension handshake failed: no `ipcx.welcome` in time, or the
    /// server refused the client (`ipcx.end` instead of a welcome).
    #[error("handshake with {endpoint} failed: {reason}")]
    Handshake {
        /// The endpoint.
        endpoint: String,
        /// `ERR_IPC_HANDSHAKE_TIMEOUT` or `ERR_IPC_HANDSHAKE_REQUIRED`.
        code: ErrorCode,
        /// What happened.
        reason: String,
    },
    /// A pub/sub topic is not a valid event name.
    #[error("invalid topic: {0}")]
    Topic(#[source] ProtocolError),
    /// The configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(#[source] ProtocolError),
    /// The answer to a request does not fit the type asked for
    /// ([`Client::request_as`](crate::Client::request_as)).
    #[error("the answer from {endpoint} does not fit the expected type: {source}")]
    Answer {
        /// The endpoint.
        endpoint: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// No connection came: the retry policy gave up, the client was
    /// stopped, or (with `after`) the wait timed out. The source is the
    /// last real cause, when there was one.
    #[error("{}", not_connected_text(endpoint, after, last.as_deref()))]
    NotConnected {
        /// The endpoint.
        endpoint: String,
        /// The time limit that ran out, if the wait had one.
        after: Option<std::time::Duration>,
        /// The last failure of a connection attempt.
        #[source]
        last: Option<std::sync::Arc<ClientError>>,
    },
}

fn not_connected_text(
    endpoint: &str,
    after: &Option<std::time::Duration>,
    last: Option<&ClientError>,
) -> String {
    let mut s = match after {
        Some(d) => format!("not connected to {endpoint} within {d:?}"),
        None => format!("not connected to {endpoint}: no retry left"),
    };
    match last {
        Some(e) => s.push_str(&format!(" (last failure: {e})")),
        None => s.push_str(" (no attempt has failed yet)"),
    }
    s
}

impl ClientError {
    /// The `ERR_IPC_*` code, where one applies.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Connect { source, .. } => source.code(),
            ClientError::Io { .. } => Some(ErrorCode::Io),
            ClientError::TlsRejected { .. } => Some(ErrorCode::AssuredTls),
            ClientError::Protocol { source, .. }
            | ClientError::Encode { source, .. }
            | ClientError::Topic(source)
            | ClientError::Config(source) => Some(source.code()),
            ClientError::Call { source, .. } => source.code(),
            ClientError::Handshake { code, .. } => Some(*code),
            ClientError::Backpressure { .. } | ClientError::AnswersUnsent { .. } => {
                Some(ErrorCode::Backpressure)
            }
            ClientError::Destroyed { .. } => Some(ErrorCode::Destroyed),
            ClientError::Undelivered { .. } => Some(ErrorCode::NotConnected),
            ClientError::SyncTimeout { .. } => Some(ErrorCode::SyncTimeout),
            ClientError::Idle { .. } => Some(ErrorCode::MessageTimeout),
            ClientError::Handler { .. } => Some(ErrorCode::Handler),
            ClientError::Answer { .. } => Some(ErrorCode::InvalidMessage),
            ClientError::NotConnected { last, .. } => last
                .as_ref()
                .and_then(|e| e.code())
                .or(Some(ErrorCode::NotConnected)),
        }
    }

    /// Whether this error ended a connection or a connection attempt (what
    /// [`ClientError::NotConnected`] reports as the last failure).
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Io { .. }
                | ClientError::TlsRejected { .. }
                | ClientError::Protocol { .. }
                | ClientError::Idle { .. }
                | ClientError::Handshake { .. }
        )
    }

    /// The kind of the underlying I/O error (`NotFound` for `ENOENT`,
    /// `ConnectionRefused` for `ECONNREFUSED`, …), looking through
    /// [`ClientError::NotConnected`] to its last failure.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            ClientError::Connect { source, .. } => source.io_kind(),
            ClientError::Io { source, .. } | ClientError::TlsRejected { source, .. } => {
                Some(source.kind())
            }
            ClientError::NotConnected { last, .. } => last.as_ref().and_then(|e| e.io_kind()),
            _ => None,
        }
    }

    /// Whether a reconnect makes sense after this error: false for protocol
    /// violations and non-retryable transport failures (TLS authentication,
    /// configuration).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Connect { source, .. } => source.is_retryable(),
            ClientError::Io { .. } | ClientError::Idle { .. } => true,
            ClientError::Handshake { code, .. } => *code == ErrorCode::HandshakeTimeout,
            _ => false,
        }
    }
}
