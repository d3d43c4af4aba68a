//! UDP serving (feature `udp`): one frame per datagram, bounded per-peer
//! reassembly, a bounded table of known peers, and sending to a peer by
//! address.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipc_conn::{Budget, Charge, EVENT_OVERHEAD};
use ipc_proto::{Inbound, UdpReassembler};
use ipc_transport::{Endpoint, UdpSocket};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{lock, Inner, Server};
use crate::error::ServerError;
use crate::event::ServerEvent;
use crate::socket::Peer;

/// A running server's UDP socket and the peers it has heard from.
#[derive(Default)]
pub(super) struct UdpState {
    sock: Mutex<Option<Arc<UdpSocket>>>,
    known: Mutex<KnownPeers>,
}

#[derive(Default)]
struct KnownPeers {
    seen: HashMap<SocketAddr, Instant>,
}

impl UdpState {
    /// Forgets the socket and the peers (the server stopped).
    pub(super) fn clear(&self) {
        *lock(&self.sock) = None;
        lock(&self.known).seen.clear();
    }
}

impl Server {
    /// Binds the UDP socket and spawns its receive loop; returns the bound
    /// endpoint.
    pub(super) async fn start_udp(
        &self,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Endpoint, ServerError> {
        let sock = UdpSocket::bind(&self.inner.endpoint)
            .await
            .map_err(|source| ServerError::Listen {
                endpoint: self.inner.name.clone(),
                source,
            })?;
        let sock = Arc::new(sock);
        let local = sock.local_endpoint();
        *lock(&self.inner.udp.sock) = Some(sock.clone());
        tracker.spawn(udp_loop(self.inner.clone(), sock, cancel.clone()));
        Ok(local)
    }

    /// UDP: sends one frame in one datagram to `target`.
    pub async fn emit_to<T: Serialize + ?Sized>(
        &self,
        target: SocketAddr,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let frame = self.encode(event, data, &target.to_string())?;
        self.send_datagram(target, &frame).await
    }

    /// UDP, raw profile: sends `bytes` as one datagram to `target`.
    pub async fn emit_raw_to(&self, target: SocketAddr, bytes: &[u8]) -> Result<(), ServerError> {
        let mut dst = bytes::BytesMut::new();
        self.inner
            .encoder
            .encode_raw(bytes, &mut dst)
            .map_err(|source| ServerError::Encode {
                peer: target.to_string(),
                source,
            })?;
        self.send_datagram(target, &dst).await
    }

    /// UDP: sends an event without data (`data` becomes `{}`) to `target`.
    pub async fn emit_empty_to(&self, target: SocketAddr, event: &str) -> Result<(), ServerError> {
        let frame = self
            .inner
            .encoder
            .encode_to_bytes::<()>(event, None)
            .map_err(|source| ServerError::Encode {
                peer: target.to_string(),
                source,
            })?;
        self.send_datagram(target, &frame).await
    }

    /// UDP: sends an already encoded frame as one datagram to `target`.
    pub async fn send_frame_to(&self, target: SocketAddr, frame: &[u8]) -> Result<(), ServerError> {
        self.send_datagram(target, frame).await
    }

    /// UDP: sends one frame to `target` without waiting, for answering from
    /// inside a handler. Encoding and "not running" fail here; the send
    /// itself is attempted at once and, if the socket is not ready, finished
    /// in the background, a failure then becoming an `error` event naming
    /// the peer.
    pub fn try_emit_to<T: Serialize + ?Sized>(
        &self,
        target: SocketAddr,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        let frame = self.encode(event, data, &target.to_string())?;
        self.try_send_datagram(target, frame)
    }

    /// UDP, raw profile: [`Server::emit_raw_to`] without waiting (see
    /// [`Server::try_emit_to`]).
    pub fn try_emit_raw_to(&self, target: SocketAddr, bytes: &[u8]) -> Result<(), ServerError> {
        let mut dst = bytes::BytesMut::new();
        self.inner
            .encoder
            .encode_raw(bytes, &mut dst)
            .map_err(|source| ServerError::Encode {
                peer: target.to_string(),
                source,
            })?;
        self.try_send_datagram(target, dst.freeze())
    }

    fn try_send_datagram(
        &self,
        target: SocketAddr,
        frame: bytes::Bytes,
    ) -> Result<(), ServerError> {
        let sock = lock(&self.inner.udp.sock)
            .clone()
            .ok_or(ServerError::NotRunning {
                endpoint: self.inner.name.clone(),
            })?;
        let inner = self.inner.clone();
        let mut send = Box::pin(async move {
            if let Err(source) = sock.send_to(&frame, target).await {
                let e = ServerError::Datagram {
                    peer: target.to_string(),
                    source,
                };
                inner.error(Some(Peer::Udp(target)), e).await;
            }
        });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if send.as_mut().poll(&mut cx).is_pending() {
            // Finished on the runtime the server runs on; outside any
            // runtime (a thread of the caller's own) it cannot be.
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| ServerError::NotRunning {
                    endpoint: format!("{} (no tokio runtime on this thread)", self.inner.name),
                })?;
            runtime.spawn(send);
        }
        Ok(())
    }

    async fn send_datagram(&self, target: SocketAddr, frame: &[u8]) -> Result<(), ServerError> {
        let sock = lock(&self.inner.udp.sock)
            .clone()
            .ok_or(ServerError::NotRunning {
                endpoint: self.inner.name.clone(),
            })?;
        sock.send_to(frame, target)
            .await
            .map_err(|source| ServerError::Datagram {
                peer: target.to_string(),
                source,
            })
    }

    /// UDP: the peers seen recently (bounded by `udp_limits.max_peers`).
    pub fn udp_peers(&self) -> Vec<SocketAddr> {
        let idle = self.inner.config.udp_peer_idle;
        let mut known = lock(&self.inner.udp.known);
        let now = Instant::now();
        known.seen.retain(|_, t| now.duration_since(*t) < idle);
        known.seen.keys().copied().collect()
    }

    /// Sends `frame` to every known live UDP peer; returns how many it was
    /// sent to. A failed send is an `error` event naming the peer.
    pub(super) async fn broadcast_udp(&self, frame: &[u8]) -> usize {
        let mut sent = 0;
        for p in self.udp_peers() {
            match self.send_datagram(p, frame).await {
                Ok(()) => sent += 1,
                Err(e) => self.inner.error(Some(Peer::Udp(p)), e).await,
            }
        }
        sent
    }
}

async fn udp_loop(inner: Arc<Inner>, sock: Arc<UdpSocket>, cancel: CancellationToken) {
    let mut reasm: UdpReassembler<SocketAddr> =
        match UdpReassembler::new(inner.config.codec.clone(), inner.config.udp_limits) {
            Ok(r) => r,
            Err(e) => {
                inner.error(None, ServerError::Config(e)).await;
                return;
            }
        };
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::new();
    let budget = Budget::new(inner.config.inbound_bytes);
    'recv: loop {
        let deadline = reasm.next_deadline().map(tokio::time::Instant::from_std);
        let r = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = sock.recv_from(&mut buf) => Some(r),
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        let now = Instant::now();
        let Some(r) = r else {
            for (peer, e) in reasm.expire(now) {
                inner
                    .error(
                        Some(Peer::Udp(peer)),
                        ServerError::Protocol {
                            peer: format!("udp {peer}"),
                            source: e,
                        },
                    )
                    .await;
            }
            continue;
        };
        match r {
            Ok((n, from)) => {
                remember(&inner, from, now);
                let pushed = reasm.push(from, &buf[..n], now, &mut out);
                for item in out.drain(..) {
                    let ev = match item {
                        Inbound::Message(message) => ServerEvent::Message {
                            from: Peer::Udp(from),
                            message,
                        },
                        Inbound::Raw(bytes) => ServerEvent::Data {
                            from: Peer::Udp(from),
                            bytes,
                        },
                    };
                    // Datagrams waiting in the event streams share one
                    // budget: while it is full the socket is not read and
                    // the kernel drops what does not fit, as UDP does.
                    let charge = if inner.events.has_streams() {
                        tokio::select! {
                            c = budget.charge(EVENT_OVERHEAD + n) => c,
                            _ = cancel.cancelled() => break 'recv,
                        }
                    } else {
                        Charge::none()
                    };
                    inner.events.dispatch(ev, None, &inner.name, charge);
                }
                if let Err(source) = pushed {
                    inner
                        .error(
                            Some(Peer::Udp(from)),
                            ServerError::Protocol {
                                peer: format!("udp {from}"),
                                source,
                            },
                        )
                        .await;
                }
            }
            Err(source) => {
                inner
                    .error(
                        None,
                        ServerError::Datagram {
                            peer: inner.name.clone(),
                            source,
                        },
                    )
                    .await;
            }
        }
    }
}

/// Records a UDP sender in the bounded table of known peers (the oldest is
/// forgotten when the table is full).
fn remember(inner: &Inner, from: SocketAddr, now: Instant) {
    let max = inner.config.udp_limits.max_peers.max(1);
    let mut known = lock(&inner.udp.known);
    if !known.seen.contains_key(&from) && known.seen.len() >= max {
        if let Some(oldest) = known.seen.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a) {
            known.seen.remove(&oldest);
        }
    }
    known.seen.insert(from, now);
}
