//! The server's events, as handlers and the event stream see them.

use std::sync::Arc;

use bytes::Bytes;
use ipc_conn::{Event, HandlerPanic, Origin};
use ipc_proto::Message;
use ipc_transport::Endpoint;

use crate::error::ServerError;
use crate::socket::{Peer, Socket};

/// One server event (`docs/protocol.md` §3.3). Per connection the order is always
/// `connect` → messages → \[`error`\] → `socket.disconnected` → `close`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Listening (stream) or bound (UDP), on this endpoint (with the real
    /// port when port 0 was asked for).
    Start(Endpoint),
    /// A stream connection was accepted (TLS: after the handshake).
    Connect(Socket),
    /// A framed message.
    Message {
        /// Who sent it.
        from: Peer,
        /// The message; `data` is parsed on demand.
        message: Message,
    },
    /// A raw-mode chunk (stream) or datagram (UDP).
    Data {
        /// Who sent it.
        from: Peer,
        /// The bytes.
        bytes: Bytes,
    },
    /// Something failed. `peer` is set when one peer is concerned; the rest
    /// of the server keeps working.
    Error {
        /// The peer concerned, if any.
        peer: Option<Peer>,
        /// What failed.
        error: Arc<ServerError>,
    },
    /// A connection ended (node-ipc's `socket.disconnected(socket, id)`).
    SocketDisconnected {
        /// The connection.
        socket: Socket,
        /// The id the peer announced, if any.
        id: Option<String>,
    },
    /// A connection is closed (after `socket.disconnected`).
    Close(Socket),
    /// The server stopped (`stop`, `close`, `abort`): every connection has
    /// ended and nothing is accepted any more (isdk's server `close`; the
    /// per-connection `close` above is node-ipc's). Fired once per stop.
    Closed,
    /// A client introduced itself with `ipcx.hello` (isdk's
    /// `connect(connection, payload)`); the server has answered with
    /// `ipcx.welcome`.
    Hello {
        /// The connection.
        socket: Socket,
        /// The hello, with the client's `extras`.
        hello: Arc<ipc_proto::ext::Hello>,
    },
}

impl ServerEvent {
    /// The node-ipc event name: `start`, `connect`, `data`, `error`,
    /// `socket.disconnected`, `close`, or the message's `type`.
    pub fn name(&self) -> &str {
        match self {
            ServerEvent::Start(_) => "start",
            ServerEvent::Connect(_) => "connect",
            ServerEvent::Message { message, .. } => message.event(),
            ServerEvent::Data { .. } => "data",
            ServerEvent::Error { .. } => "error",
            ServerEvent::SocketDisconnected { .. } => "socket.disconnected",
            ServerEvent::Close(_) => "close",
            ServerEvent::Hello { .. } => "hello",
            ServerEvent::Closed => "closed",
        }
    }

    /// Whether the event came from a peer.
    pub fn origin(&self) -> Origin {
        match self {
            ServerEvent::Message { .. } | ServerEvent::Data { .. } => Origin::Remote,
            _ => Origin::Local,
        }
    }

    /// The message, for [`ServerEvent::Message`].
    pub fn message(&self) -> Option<&Message> {
        match self {
            ServerEvent::Message { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The peer the event concerns, if any.
    pub fn peer(&self) -> Option<Peer> {
        match self {
            ServerEvent::Message { from, .. } | ServerEvent::Data { from, .. } => {
                Some(from.clone())
            }
            ServerEvent::Error { peer, .. } => peer.clone(),
            ServerEvent::Connect(s)
            | ServerEvent::Close(s)
            | ServerEvent::SocketDisconnected { socket: s, .. }
            | ServerEvent::Hello { socket: s, .. } => Some(Peer::Socket(s.clone())),
            ServerEvent::Start(_) | ServerEvent::Closed => None,
        }
    }

    /// The error, for [`ServerEvent::Error`].
    pub fn error(&self) -> Option<&ServerError> {
        match self {
            ServerEvent::Error { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl Event for ServerEvent {
    fn name(&self) -> &str {
        ServerEvent::name(self)
    }

    fn is_error(&self) -> bool {
        matches!(self, ServerEvent::Error { .. })
    }

    fn error_text(&self) -> Option<String> {
        match self {
            ServerEvent::Error {
                peer: Some(p),
                error,
            } => Some(format!("{p}: {error}")),
            ServerEvent::Error { peer: None, error } => Some(error.to_string()),
            _ => None,
        }
    }

    fn handler_panicked(&self, panic: HandlerPanic) -> Self {
        ServerEvent::Error {
            peer: self.peer(),
            error: Arc::new(ServerError::Handler {
                event: panic.event,
                message: panic.message,
            }),
        }
    }
}
