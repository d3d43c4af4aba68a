//! The client's events, as handlers and the event stream see them.

use std::sync::Arc;

use bytes::Bytes;
use ipc_conn::{Event, HandlerPanic, Origin};
use ipc_proto::Message;

use crate::error::ClientError;

/// One client event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The transport is connected (TLS: after the handshake). Resets the
    /// retry budget.
    Connect,
    /// A connection or connection attempt ended; a retry may follow.
    Disconnect,
    /// Final: no retry remains, or the client was stopped.
    Destroy,
    /// Something failed; always before the matching `disconnect`.
    Error(Arc<ClientError>),
    /// A raw-mode chunk.
    Data(Bytes),
    /// A framed message from the peer.
    Message(Message),
}

impl ClientEvent {
    /// The node-ipc event name: `connect`, `disconnect`, `destroy`, `error`,
    /// `data`, or the message's `type`.
    pub fn name(&self) -> &str {
        match self {
            ClientEvent::Connect => "connect",
            ClientEvent::Disconnect => "disconnect",
            ClientEvent::Destroy => "destroy",
            ClientEvent::Error(_) => "error",
            ClientEvent::Data(_) => "data",
            ClientEvent::Message(m) => m.event(),
        }
    }

    /// Whether the event came from the peer.
    pub fn origin(&self) -> Origin {
        match self {
            ClientEvent::Message(_) | ClientEvent::Data(_) => Origin::Remote,
            _ => Origin::Local,
        }
    }

    /// The message, for [`ClientEvent::Message`].
    pub fn message(&self) -> Option<&Message> {
        match self {
            ClientEvent::Message(m) => Some(m),
            _ => None,
        }
    }

    /// The error, for [`ClientEvent::Error`].
    pub fn error(&self) -> Option<&ClientError> {
        match self {
            ClientEvent::Error(e) => Some(e),
            _ => None,
        }
    }
}

impl Event for ClientEvent {
    fn name(&self) -> &str {
        ClientEvent::name(self)
    }

    fn is_error(&self) -> bool {
        matches!(self, ClientEvent::Error(_))
    }

    fn error_text(&self) -> Option<String> {
        self.error().map(|e| e.to_string())
    }

    fn handler_panicked(&self, panic: HandlerPanic) -> Self {
        ClientEvent::Error(Arc::new(ClientError::Handler {
            event: panic.event,
            message: panic.message,
        }))
    }
}
