//! The client's events, as handlers and the event stream see them.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use ipc_proto::Message;
use tokio::sync::mpsc;

use crate::error::ClientError;

/// Where an event came from.
///
/// A peer may send a frame named like a lifecycle event (`connect`,
/// `error`, …). The fast profile delivers it to the same-named handlers, as
/// node-ipc does, but it is always a [`ClientEvent::Message`] with
/// [`Origin::Remote`]: lifecycle events are never synthesised from wire data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Raised by this endpoint (lifecycle, errors).
    Local,
    /// Received from the peer.
    Remote,
}

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

/// An async stream of an endpoint's events ([`futures_core::Stream`]).
///
/// The stream is bounded: while it is full, the endpoint stops reading from
/// the transport (backpressure reaches the peer) instead of buffering
/// without limit. Drop it when no longer needed.
#[derive(Debug)]
pub struct EventStream<E> {
    rx: mpsc::Receiver<E>,
}

impl<E> EventStream<E> {
    pub(crate) fn new(rx: mpsc::Receiver<E>) -> Self {
        EventStream { rx }
    }

    /// Creates a stream and the sender that feeds it.
    pub fn channel(capacity: usize) -> (mpsc::Sender<E>, EventStream<E>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, EventStream::new(rx))
    }

    /// The next event, or `None` once the endpoint is gone.
    pub async fn recv(&mut self) -> Option<E> {
        self.rx.recv().await
    }
}

impl<E> futures_core::Stream for EventStream<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.rx.poll_recv(cx)
    }
}
