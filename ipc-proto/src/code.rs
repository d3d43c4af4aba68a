//! The `ERR_IPC_*` error codes shared by every crate of the workspace.
//!
//! node-ipc 14 reports protocol failures as errors carrying a `code` string;
//! this project keeps exactly those strings (`docs/protocol.md` §4.2) and adds its own for
//! the conditions node-ipc does not detect. Every error type in the workspace
//! can report one of these codes, so a user can match on the same names in
//! Rust and in JavaScript.

use std::fmt;

/// One `ERR_IPC_*` code.
///
/// [`ErrorCode::as_str`] returns exactly the string node-ipc uses (or, for
/// codes node-ipc does not have, the string this project defines in `docs/protocol.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame is not valid JSON.
    InvalidJson,
    /// The JSON root of a frame is not an object.
    InvalidMessage,
    /// Missing, empty, non-string or unsafe event name.
    InvalidEvent,
    /// Event name longer than `maxEventNameLength`.
    EventTooLarge,
    /// Lifecycle (reserved) event name received or sent without `allowReservedEvents`.
    ReservedEvent,
    /// Event name outside the assured profile's allow-list.
    EventNotAllowed,
    /// Frame (or buffered partial frame) larger than `maxMessageSize`.
    FrameTooLarge,
    /// A bounded queue or buffer is full (`maxPendingBytes`, UDP retention limits).
    Backpressure,
    /// A partial frame stayed incomplete longer than `messageTimeout`.
    MessageTimeout,
    /// The assured profile refuses this transport.
    AssuredTransport,
    /// The assured profile lacks the TLS material or verification it needs.
    AssuredTls,
    /// TLS server without key/certificate, or an unusable TLS configuration.
    TlsConfiguration,
    /// The socket root is a symlink, not a directory, or owned by someone else.
    SocketRoot,
    /// Something other than a socket exists at the endpoint path.
    UnlinkNotSocket,
    /// Generic protocol failure label (node-ipc 14 logs).
    Protocol,
    /// An invalid codec or endpoint configuration.
    InvalidConfiguration,
    /// The stream ended inside a frame (only with `strict_eof`).
    IncompleteFrame,
    /// A raw operation on a framed codec or the reverse.
    WrongProfile,
    /// A live server already owns the endpoint.
    AddressInUse,
    /// A Unix socket path does not fit into `sun_path`.
    SocketPathTooLong,
    /// A datagram larger than the transport can carry.
    DatagramTooLarge,
    /// A UDP emit without a target address.
    NoTarget,
    /// A sync-mode write waited longer than `sync_timeout`.
    SyncTimeout,
    /// The operation needs a connection and there is none.
    NotConnected,
    /// A request or ping did not get its answer in time.
    RequestTimeout,
    /// The endpoint was destroyed while the operation was pending.
    Destroyed,
    /// The extension handshake did not complete in time.
    HandshakeTimeout,
    /// The server requires the extension handshake first.
    HandshakeRequired,
    /// A request handler failed.
    Handler,
    /// `maxConnections` was reached: a new connection was refused.
    MaxConnections,
    /// The authorizer refused a connection.
    Unauthorized,
    /// A transport operation failed (the OS error is the cause).
    Io,
    /// The operation needs a running server.
    NotRunning,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidJson,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidEvent,
        ErrorCode::EventTooLarge,
        ErrorCode::ReservedEvent,
        ErrorCode::EventNotAllowed,
        ErrorCode::FrameTooLarge,
        ErrorCode::Backpressure,
        ErrorCode::MessageTimeout,
        ErrorCode::AssuredTransport,
        ErrorCode::AssuredTls,
        ErrorCode::TlsConfiguration,
        ErrorCode::SocketRoot,
        ErrorCode::UnlinkNotSocket,
        ErrorCode::Protocol,
        ErrorCode::InvalidConfiguration,
        ErrorCode::IncompleteFrame,
        ErrorCode::WrongProfile,
        ErrorCode::AddressInUse,
        ErrorCode::SocketPathTooLong,
        ErrorCode::DatagramTooLarge,
        ErrorCode::NoTarget,
        ErrorCode::SyncTimeout,
        ErrorCode::NotConnected,
        ErrorCode::RequestTimeout,
        ErrorCode::Destroyed,
        ErrorCode::HandshakeTimeout,
        ErrorCode::HandshakeRequired,
        ErrorCode::Handler,
        ErrorCode::MaxConnections,
        ErrorCode::Unauthorized,
        ErrorCode::Io,
        ErrorCode::NotRunning,
    ];

    /// The exact `ERR_IPC_*` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "ERR_IPC_INVALID_JSON",
            ErrorCode::InvalidMessage => "ERR_IPC_INVALID_MESSAGE",
            ErrorCode::InvalidEvent => "ERR_IPC_INVALID_EVENT",
            ErrorCode::EventTooLarge => "ERR_IPC_EVENT_TOO_LARGE",
            ErrorCode::ReservedEvent => "ERR_IPC_RESERVED_EVENT",
            ErrorCode::EventNotAllowed => "ERR_IPC_EVENT_NOT_ALLOWED",
            ErrorCode::FrameTooLarge => "ERR_IPC_FRAME_TOO_LARGE",
            ErrorCode::Backpressure => "ERR_IPC_BACKPRESSURE",
            ErrorCode::MessageTimeout => "ERR_IPC_MESSAGE_TIMEOUT",
            ErrorCode::AssuredTransport => "ERR_IPC_ASSURED_TRANSPORT",
            ErrorCode::AssuredTls => "ERR_IPC_ASSURED_TLS",
            ErrorCode::TlsConfiguration => "ERR_IPC_TLS_CONFIGURATION",
            ErrorCode::SocketRoot => "ERR_IPC_SOCKET_ROOT",
            ErrorCode::UnlinkNotSocket => "ERR_IPC_UNLINK_NOT_SOCKET",
            ErrorCode::Protocol => "ERR_IPC_PROTOCOL",
            ErrorCode::InvalidConfiguration => "ERR_IPC_INVALID_CONFIGURATION",
            ErrorCode::IncompleteFrame => "ERR_IPC_INCOMPLETE_FRAME",
            ErrorCode::WrongProfile => "ERR_IPC_WRONG_PROFILE",
            ErrorCode::AddressInUse => "ERR_IPC_ADDRESS_IN_USE",
            ErrorCode::SocketPathTooLong => "ERR_IPC_SOCKET_PATH_TOO_LONG",
            ErrorCode::DatagramTooLarge => "ERR_IPC_DATAGRAM_TOO_LARGE",
            ErrorCode::NoTarget => "ERR_IPC_NO_TARGET",
            ErrorCode::SyncTimeout => "ERR_IPC_SYNC_TIMEOUT",
            ErrorCode::NotConnected => "ERR_IPC_NOT_CONNECTED",
            ErrorCode::RequestTimeout => "ERR_IPC_REQUEST_TIMEOUT",
            ErrorCode::Destroyed => "ERR_IPC_DESTROYED",
            ErrorCode::HandshakeTimeout => "ERR_IPC_HANDSHAKE_TIMEOUT",
            ErrorCode::HandshakeRequired => "ERR_IPC_HANDSHAKE_REQUIRED",
            ErrorCode::Handler => "ERR_IPC_HANDLER",
            ErrorCode::MaxConnections => "ERR_IPC_MAX_CONNECTIONS",
            ErrorCode::Unauthorized => "ERR_IPC_UNAUTHORIZED",
            ErrorCode::Io => "ERR_IPC_IO",
            ErrorCode::NotRunning => "ERR_IPC_NOT_RUNNING",
        }
    }

    /// Looks a code up by its `ERR_IPC_*` string.
    pub fn from_code_str(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(code.as_str().starts_with("ERR_IPC_"));
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(ErrorCode::from_code_str(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_code_str("ERR_IPC_NOPE"), None);
        assert_eq!(ErrorCode::InvalidJson.to_string(), "ERR_IPC_INVALID_JSON");
    }
}
