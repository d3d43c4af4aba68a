//! [`Socket`]: one accepted stream connection, and [`Peer`]: whom an event
//! came from.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use std::collections::BTreeSet;
use std::time::Duration;

use ipc_client::ext::{self, names, CallError, CallFailure, Calls, Response};
use ipc_client::outbox::{EmitError, Outbox, SendError};
use ipc_proto::FrameEncoder;
use ipc_transport::PeerInfo;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;

pub(crate) struct SocketInner {
    pub(crate) id: u64,
    pub(crate) peer: PeerInfo,
    pub(crate) label: String,
    pub(crate) outbox: Outbox,
    pub(crate) cancel: CancellationToken,
    pub(crate) encoder: FrameEncoder,
    pub(crate) peer_id: Mutex<Option<String>>,
    pub(crate) calls: Arc<Calls>,
    pub(crate) topics: Mutex<BTreeSet<String>>,
}

/// One connected stream peer (node-ipc's `socket`). Cheap to clone; all
/// clones are the same connection. Emitting to a socket that has closed
/// fails with `ERR_IPC_NOT_CONNECTED`.
#[derive(Clone)]
pub struct Socket {
    pub(crate) inner: Arc<SocketInner>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.label)
            .finish()
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Socket {}

impl Socket {
    pub(crate) fn new(
        id: u64,
        peer: PeerInfo,
        queue_bytes: usize,
        encoder: FrameEncoder,
        cancel: CancellationToken,
    ) -> Socket {
        let label = format!("#{id} {}", peer.addr);
        Socket {
            inner: Arc::new(SocketInner {
                id,
                peer,
                label,
                outbox: Outbox::new(queue_bytes),
                cancel,
                encoder,
                peer_id: Mutex::new(None),
                calls: Arc::new(Calls::default()),
                topics: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// The server-assigned id, unique for the server's lifetime.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Address and credentials of the peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.inner.peer
    }

    /// A readable label: `#<id> <address>`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// The id the peer announced (`identifyPeer`, or the extension
    /// handshake). Peer-controlled: never an authentication.
    pub fn peer_id(&self) -> Option<String> {
        self.inner
            .peer_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_peer_id(&self, id: String) {
        *self.inner.peer_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    /// Whether the connection is still open for sending.
    pub fn is_open(&self) -> bool {
        !self.inner.outbox.is_closed() && !self.inner.cancel.is_cancelled()
    }

    /// Bytes queued for this peer and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.outbox.queued_bytes()
    }

    fn emit_error(&self, e: EmitError) -> ServerError {
        match e {
            EmitError::Encode(source) => ServerError::Encode {
                peer: self.inner.label.clone(),
                source,
            },
            EmitError::Send(e) => self.send_error(e),
        }
    }

    pub(crate) fn send_error(&self, e: SendError) -> ServerError {
        match e {
            SendError::Full {
                queued, capacity, ..
            } => ServerError::Backpressure {
                peer: self.inner.label.clone(),
                queued,
                capacity,
            },
            SendError::Closed { .. } => ServerError::NotConnected {
                peer: self.inner.label.clone(),
            },
        }
    }

    /// Sends `{"type":event,"data":data}` to this peer, waiting while its
    /// outbound queue is full.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        self.inner
            .outbox
            .emit(&self.inner.encoder, event, Some(data))
            .await
            .map_err(|e| self.emit_error(e))
    }

    /// Sends an event without data (`data` becomes `{}`).
    pub async fn emit_empty(&self, event: &str) -> Result<(), ServerError> {
        self.inner
            .outbox
            .emit::<()>(&self.inner.encoder, event, None)
            .await
            .map_err(|e| self.emit_error(e))
    }

    /// Like [`Socket::emit`] but fails with `ERR_IPC_BACKPRESSURE` instead of
    /// waiting; the connection is left as it is.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        self.inner
            .outbox
            .try_emit(&self.inner.encoder, event, Some(data))
            .map_err(|e| self.emit_error(e))
    }

    /// Raw profile: sends the bytes as they are.
    pub async fn emit_raw(&self, bytes: impl AsRef<[u8]>) -> Result<(), ServerError> {
        let mut dst = BytesMut::with_capacity(bytes.as_ref().len());
        self.inner
            .encoder
            .encode_raw(bytes.as_ref(), &mut dst)
            .map_err(|source| ServerError::Encode {
                peer: self.inner.label.clone(),
                source,
            })?;
        self.send_frame(dst.freeze()).await
    }

    /// Queues an already encoded frame, waiting for room.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), ServerError> {
        self.inner
            .outbox
            .send(frame)
            .await
            .map_err(|e| self.send_error(e))
    }

    /// Queues an already encoded frame if there is room now.
    pub fn try_send_frame(&self, frame: Bytes) -> Result<(), ServerError> {
        self.inner
            .outbox
            .try_send(frame)
            .map_err(|e| self.send_error(e))
    }

    /// The topics this peer is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn call_error(&self, source: CallError) -> ServerError {
        ServerError::Call {
            peer: self.inner.label.clone(),
            source,
        }
    }

    async fn call<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
        timeout: Duration,
    ) -> Result<Response, ServerError> {
        if !self.is_open() {
            return Err(self.call_error(CallError::NotConnected));
        }
        let encoder = &self.inner.encoder;
        self.inner
            .calls
            .call(
                |n| ext::encode_call(encoder, event, n, data),
                |frame| self.send_frame(frame),
                timeout,
            )
            .await
            .map_err(|e| match e {
                CallFailure::Encode(source) => ServerError::Encode {
                    peer: self.inner.label.clone(),
                    source,
                },
                CallFailure::Send(e) => e,
                CallFailure::Call(e) => self.call_error(e),
            })
    }

    /// Sends a request to this client and waits for its answer (SPEC §5.4;
    /// `timeout` zero = none). Fails with `ERR_IPC_NOT_CONNECTED` as soon as
    /// the connection ends.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, ServerError> {
        self.call(names::REQUEST, Some(data), timeout).await
    }

    /// Measures the round trip to this client.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ServerError> {
        let t0 = tokio::time::Instant::now();
        self.call::<()>(names::PING, None, timeout).await?;
        Ok(t0.elapsed())
    }

    /// A sink for answers to this peer's requests.
    pub(crate) fn sink(&self) -> ext::Sink {
        let outbox = self.inner.outbox.clone();
        Arc::new(move |frame| {
            outbox.try_send(frame).map_err(|e| match e {
                SendError::Full { .. } => CallError::Backpressure,
                SendError::Closed { .. } => CallError::NotConnected,
            })
        })
    }

    /// Closes gracefully: what is queued is written, then the connection
    /// closes and the server emits `socket.disconnected` and `close`.
    pub fn close(&self) {
        self.inner.outbox.close();
    }

    /// Closes at once; queued messages are dropped and reported in an
    /// `error` event (`ERR_IPC_NOT_CONNECTED`).
    pub fn destroy(&self) {
        self.inner.cancel.cancel();
    }
}

/// Whom an inbound event came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A stream connection.
    Socket(Socket),
    /// A UDP sender.
    Udp(SocketAddr),
}

impl Peer {
    /// The stream socket, if this is one.
    pub fn socket(&self) -> Option<&Socket> {
        match self {
            Peer::Socket(s) => Some(s),
            Peer::Udp(_) => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Socket(s) => f.write_str(s.label()),
            Peer::Udp(a) => write!(f, "udp {a}"),
        }
    }
}
