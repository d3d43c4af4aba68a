//! Bounded per-peer reassembly of framed datagrams (`docs/protocol.md` §2.5).
//!
//! node-ipc 14 keeps one partial-frame buffer per sender (`address:port`)
//! and prefixes it to that sender's next datagram; it never bounds them.
//! [`UdpReassembler`] does the same with limits:
//!
//! * only peers with an incomplete frame hold state — a datagram made of
//!   whole frames (the normal case) costs no table entry;
//! * at most [`UdpLimits::max_peers`] peers hold fragments; a new one evicts
//!   the least recently active (reported as `ERR_IPC_BACKPRESSURE` by
//!   [`UdpReassembler::expire`]);
//! * at most [`UdpLimits::max_retained_bytes`] bytes are retained in total;
//!   a fragment that would exceed it is rejected with `ERR_IPC_BACKPRESSURE`
//!   and that peer is reset;
//! * a fragment older than [`UdpLimits::fragment_timeout`] is dropped by
//!   `expire` (`ERR_IPC_MESSAGE_TIMEOUT`) — in every framed profile, since a
//!   datagram socket has no connection to close;
//! * the profile's frame rules apply per peer; an error resets only that
//!   peer (frames of the same datagram before the bad one are delivered).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::decoder::Shared;
use crate::{CodecConfig, ErrorCode, FrameDecoder, Inbound, Profile, ProtocolError};

/// Limits of a [`UdpReassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpLimits {
    /// Most peers holding a partial frame at once (default 1024).
    pub max_peers: usize,
    /// Most bytes retained across all peers (default 8 MiB).
    pub max_retained_bytes: usize,
    /// How long a partial frame may wait for its rest (default 30 s;
    /// `None` keeps fragments until evicted).
    pub fragment_timeout: Option<Duration>,
}

impl Default for UdpLimits {
    fn default() -> Self {
        UdpLimits {
            max_peers: 1024,
            max_retained_bytes: 8 * 1024 * 1024,
            fragment_timeout: Some(Duration::from_secs(30)),
        }
    }
}

struct Peer {
    buf: BytesMut,
    decoder: FrameDecoder,
    since: Instant,
    last_active: u64,
}

/// Per-peer reassembly for one datagram socket (see the module docs).
pub struct UdpReassembler<K: Hash + Eq + Clone = SocketAddr> {
    shared: Arc<Shared>,
    limits: UdpLimits,
    peers: HashMap<K, Peer>,
    retained: usize,
    tick: u64,
    pending_errors: Vec<(K, ProtocolError)>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for UdpReassembler<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpReassembler")
            .field("profile", &self.shared.config.profile)
            .field("limits", &self.limits)
            .field("peers", &self.peers.len())
            .field("retained", &self.retained)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> UdpReassembler<K> {
    /// Builds a reassembler; fails with `ERR_IPC_INVALID_CONFIGURATION`.
    pub fn new(config: CodecConfig, limits: UdpLimits) -> Result<Self, ProtocolError> {
        if limits.max_peers == 0 || limits.max_retained_bytes == 0 {
            return Err(ProtocolError::config(
                "UDP max_peers and max_retained_bytes must be positive",
            ));
        }
        Ok(UdpReassembler {
            shared: Shared::new(config)?,
            limits,
            peers: HashMap::new(),
            retained: 0,
            tick: 0,
            pending_errors: Vec::new(),
        })
    }

    /// Feeds one datagram from `peer`; complete items are appended to `out`
    /// in order. Raw profile: the datagram (even empty) is one
    /// `Inbound::Raw`. On `Err` only this peer was reset; items decoded
    /// before the bad frame are already in `out`.
    pub fn push(
        &mut self,
        peer: K,
        datagram: &[u8],
        now: Instant,
        out: &mut Vec<Inbound>,
    ) -> Result<(), ProtocolError> {
        if self.shared.config.profile == Profile::Raw {
            out.push(Inbound::Raw(Bytes::copy_from_slice(datagram)));
            return Ok(());
        }
        self.tick += 1;
        let (mut buf, mut decoder, since) = match self.peers.remove(&peer) {
            Some(state) => {
                self.retained -= state.buf.len();
                let expired = self
                    .limits
                    .fragment_timeout
                    .and_then(|t| state.since.checked_add(t))
                    .is_some_and(|deadline| now >= deadline);
                if expired {
                    self.pending_errors.push((peer.clone(), timeout_error()));
                    (BytesMut::new(), state.decoder, now)
                } else {
                    (state.buf, state.decoder, state.since)
                }
            }
            None => (
                BytesMut::new(),
                FrameDecoder::from_shared(self.shared.clone()),
                now,
            ),
        };
        let had_partial = !buf.is_empty();
        buf.extend_from_slice(datagram);
        let before = out.len();
        loop {
            match decoder.decode(&mut buf, now) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return Err(e),
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        if self.retained.saturating_add(buf.len()) > self.limits.max_retained_bytes {
            return Err(ProtocolError::new(
                ErrorCode::Backpressure,
                "UDP fragment retention limit reached; fragment dropped",
            ));
        }
        if self.peers.len() >= self.limits.max_peers {
            self.evict_lru();
        }
        // A frame completed in this datagram means the remainder is a new
        // partial frame: its age starts now.
        let completed = out.len() > before;
        let since = if had_partial && !completed {
            since
        } else {
            now
        };
        self.retained += buf.len();
        self.peers.insert(
            peer,
            Peer {
                buf,
                decoder,
                since,
                last_active: self.tick,
            },
        );
        Ok(())
    }

    /// Drops fragments older than the timeout and returns them, with the
    /// peers evicted since the last call, as `(peer, error)` pairs.
    pub fn expire(&mut self, now: Instant) -> Vec<(K, ProtocolError)> {
        let mut errors = std::mem::take(&mut self.pending_errors);
        if let Some(timeout) = self.limits.fragment_timeout {
            let expired: Vec<K> = self
                .peers
                .iter()
                .filter(|(_, p)| p.since.checked_add(timeout).is_some_and(|d| now >= d))
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                if let Some(p) = self.peers.remove(&k) {
                    self.retained -= p.buf.len();
                    errors.push((k, timeout_error()));
                }
            }
        }
        errors
    }

    /// The earliest time [`UdpReassembler::expire`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.limits.fragment_timeout?;
        self.peers
            .values()
            .filter_map(|p| p.since.checked_add(timeout))
            .min()
    }

    /// Forgets `peer`'s partial frame.
    pub fn remove_peer(&mut self, peer: &K) {
        if let Some(p) = self.peers.remove(peer) {
            self.retained -= p.buf.len();
        }
    }

    /// Number of peers currently holding a partial frame.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Bytes currently retained across all peers.
    pub fn retained_bytes(&self) -> usize {
        self.retained
    }

    /// The limits in use.
    pub fn limits(&self) -> &UdpLimits {
        &self.limits
    }

    fn evict_lru(&mut self) {
        let victim = self
            .peers
            .iter()
            .min_by_key(|(_, p)| p.last_active)
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            if let Some(p) = self.peers.remove(&k) {
                self.retained -= p.buf.len();
            }
            self.pending_errors.push((
                k,
                ProtocolError::new(
                    ErrorCode::Backpressure,
                    "UDP peer table full; least recently active fragment evicted",
                ),
            ));
        }
    }
}

fn timeout_error() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::MessageTimeout,
        "UDP fragment stayed incomplete longer than the fragment timeout",
    )
}
