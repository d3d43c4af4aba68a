//! [`Socket`]: one accepted stream connection, and [`Peer`]: whom an event
//! came from.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;

use ipc_conn::{Link, LinkError, Response, Sink};
use ipc_transport::PeerInfo;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;

pub(crate) struct SocketInner {
    pub(crate) id: u64,
    pub(crate) peer: PeerInfo,
    pub(crate) label: String,
    /// The outbound queue, encoder and calls of this connection.
    pub(crate) link: Link,
    pub(crate) cancel: CancellationToken,
    pub(crate) peer_id: Mutex<Option<String>>,
    pub(crate) topics: Mutex<BTreeSet<String>>,
    /// Set once the first bytes showed a net-ipc client.
    pub(crate) net_ipc: std::sync::atomic::AtomicBool,
    /// Why the connection is closing, once known.
    pub(crate) close_reason: Mutex<Option<String>>,
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
    pub(crate) fn new(id: u64, peer: PeerInfo, link: Link, cancel: CancellationToken) -> Socket {
        let mut label = format!("#{id} {peer}");
        // Kept for the connection's life: no spare room.
        label.shrink_to_fit();
        Socket {
            inner: Arc::new(SocketInner {
                id,
                peer,
                label,
                link,
                cancel,
                peer_id: Mutex::new(None),
                topics: Mutex::new(BTreeSet::new()),
                net_ipc: std::sync::atomic::AtomicBool::new(false),
                close_reason: Mutex::new(None),
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

    /// A readable label: `#<id> <address>`, with the pid/uid/gid a Unix
    /// peer's kernel reported.
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

    /// Whether this peer speaks net-ipc (known once it sent its first
    /// bytes; see [`ServerConfig::net_ipc`](crate::ServerConfig::net_ipc)).
    /// Everything it is sent is translated to net-ipc packets.
    pub fn is_net_ipc(&self) -> bool {
        self.inner.net_ipc.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the connection closed or is closing, when a reason was given:
    /// the peer's `ipcx.end` reason (isdk's `close(reason)` /
    /// `destroy(reason)`), or the server's own (`Server::close`). Read it
    /// in `socket.disconnected`.
    pub fn close_reason(&self) -> Option<String> {
        self.inner
            .close_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records why the connection is closing (the first reason wins).
    pub(crate) fn set_close_reason(&self, reason: String) {
        let mut r = self
            .inner
            .close_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        r.get_or_insert(reason);
    }

    /// Whether the connection is still open for sending.
    pub fn is_open(&self) -> bool {
        !self.inner.link.outbox().is_closed() && !self.inner.cancel.is_cancelled()
    }

    /// Bytes queued for this peer and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.inner.link.outbox().queued_bytes()
    }

    /// The connection's link (outbound queue, encoder, calls).
    pub(crate) fn link(&self) -> &Link {
        &self.inner.link
    }

    /// The topics set, for the broker.
    pub(crate) fn topic_set(&self) -> &Mutex<BTreeSet<String>> {
        &self.inner.topics
    }

    /// The one place a link failure becomes a server error.
    pub(crate) fn link_error(&self, e: LinkError) -> ServerError {
        let peer = self.inner.label.clone();
        match e {
            LinkError::Encode(source) => ServerError::Encode { peer, source },
            LinkError::Full { queued, capacity } => ServerError::Backpressure {
                peer,
                queued,
                capacity,
            },
            LinkError::Call(source) => ServerError::Call { peer, source },
            _ => ServerError::NotConnected { peer },
        }
    }

    /// Sends `{"type":event,"data":data}` to this peer, waiting while its
    /// outbound queue is full.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let r = self.inner.link.emit(event, Some(data)).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Sends an event without data (`data` becomes `{}`).
    pub async fn emit_empty(&self, event: &str) -> Result<(), ServerError> {
        let r = self.inner.link.emit::<()>(event, None).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Like [`Socket::emit`] but fails with `ERR_IPC_BACKPRESSURE` instead of
    /// waiting; the connection is left as it is.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let r = self.inner.link.try_emit(event, Some(data));
        r.map_err(|e| self.link_error(e))
    }

    /// Raw profile: sends the bytes as they are.
    pub async fn emit_raw(&self, bytes: impl AsRef<[u8]>) -> Result<(), ServerError> {
        let r = self.inner.link.emit_raw(bytes.as_ref()).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Queues an already encoded frame, waiting for room.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), ServerError> {
        let r = self.inner.link.send_frame(frame).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Queues an already encoded frame if there is room now.
    pub fn try_send_frame(&self, frame: Bytes) -> Result<(), ServerError> {
        let r = self.inner.link.try_send_frame(frame);
        r.map_err(|e| self.link_error(e))
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

    /// Calls need an open connection: they fail at once with
    /// `ERR_IPC_NOT_CONNECTED` otherwise.
    fn check_call(&self) -> Result<(), ServerError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(self.link_error(LinkError::Call(ipc_conn::CallError::NotConnected)))
        }
    }

    /// Sends a request to this client and waits for its answer (`docs/protocol.md` §5;
    /// `timeout` zero = none). Fails with `ERR_IPC_NOT_CONNECTED` as soon as
    /// the connection ends.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, ServerError> {
        self.check_call()?;
        let r = self.inner.link.request(data, timeout).await;
        r.map_err(|e| self.link_error(e))
    }

    /// Measures the round trip to this client.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, ServerError> {
        self.check_call()?;
        let r = self.inner.link.ping(timeout).await;
        r.map_err(|e| self.link_error(e))
    }

    /// A sink for answers to this peer's requests.
    pub(crate) fn sink(&self) -> Sink {
        self.inner.link.sink(ipc_conn::CallError::NotConnected)
    }

    /// Closes gracefully: what is queued is written, then the connection
    /// closes and the server emits `socket.disconnected` and `close`.
    pub fn close(&self) {
        self.inner.link.outbox().close();
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
