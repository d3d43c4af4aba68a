//! UDP endpoints (`udp4` / `udp6`) with batched I/O through `quinn-udp`.
//!
//! One datagram carries one whole frame: nothing here splits or joins
//! payloads. Sizes are checked before sending (`ERR_IPC_DATAGRAM_TOO_LARGE`).
//! Where the kernel offers them, [`UdpSocket::send_batch`] uses GSO and
//! [`UdpSocket::recv_batch`] GRO + `recvmmsg`; when `quinn-udp` cannot set a
//! socket up, plain `send_to`/`recv_from` are used instead.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use crate::endpoint::UdpFamily;
use crate::{Endpoint, TransportError};

/// Largest UDP payload over IPv4.
pub const MAX_UDP4_PAYLOAD: usize = 65_507;
/// Largest UDP payload over IPv6.
pub const MAX_UDP6_PAYLOAD: usize = 65_527;
/// Above this payload size a warning about IP fragmentation is logged
/// (once per socket).
pub const FRAGMENTATION_WARNING: usize = 1_200;

/// Bytes per receive slot: room for the largest GRO train the kernel builds.
const SLOT_BYTES: usize = 128 * 1024;
/// Largest total of one GSO send.
const MAX_GSO_BYTES: usize = 64_000;

/// A UDP endpoint bound to one address family.
#[derive(Debug)]
pub struct UdpSocket {
    io: tokio::net::UdpSocket,
    state: Option<UdpSocketState>,
    family: UdpFamily,
    warned: AtomicBool,
    scratch: tokio::sync::Mutex<Scratch>,
}

#[derive(Debug)]
struct Scratch {
    batch: Option<RecvBatch>,
    pending: VecDeque<(Vec<u8>, SocketAddr)>,
}

/// Reusable buffers for [`UdpSocket::recv_batch`].
#[derive(Debug)]
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    metas: Vec<RecvMeta>,
    spans: Vec<(usize, usize, usize, SocketAddr)>,
}

impl RecvBatch {
    /// Buffers for up to `slots` receive calls' worth of datagrams per batch
    /// (clamped to `1..=quinn_udp::BATCH_SIZE`; each slot takes 128 KiB).
    pub fn new(slots: usize) -> Self {
        let slots = slots.clamp(1, quinn_udp::BATCH_SIZE);
        RecvBatch {
            bufs: (0..slots).map(|_| vec![0u8; SLOT_BYTES]).collect(),
            metas: vec![RecvMeta::default(); slots],
            spans: Vec::new(),
        }
    }

    /// Number of datagrams received by the last call.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The datagrams of the last call with their senders, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.spans
            .iter()
            .map(|&(slot, start, end, addr)| (addr, &self.bufs[slot][start..end]))
    }

    fn fill_spans(&mut self, count: usize) {
        self.spans.clear();
        for (slot, meta) in self.metas.iter().take(count).enumerate() {
            let stride = if meta.stride == 0 {
                meta.len
            } else {
                meta.stride
            };
            let mut start = 0;
            while start < meta.len {
                let end = (start + stride.max(1)).min(meta.len);
                self.spans.push((slot, start, end, meta.addr));
                start = end;
            }
            if meta.len == 0 {
                // An empty datagram is delivered too.
                self.spans.push((slot, 0, 0, meta.addr));
            }
        }
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new(8)
    }
}

fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

impl UdpSocket {
    /// Binds a `udp4://` or `udp6://` endpoint. As in node-ipc, `udp4` with
    /// host `::1` binds `127.0.0.1`; host names resolve with the endpoint's
    /// family.
    pub async fn bind(endpoint: &Endpoint) -> Result<UdpSocket, TransportError> {
        let Endpoint::Udp { family, host, port } = endpoint else {
            return Err(TransportError::InvalidEndpoint {
                input: endpoint.to_string(),
                reason: "UdpSocket::bind needs a udp4:// or udp6:// endpoint".into(),
            });
        };
        let family = *family;
        let host = if family == UdpFamily::V4 && host == "::1" {
            tracing::debug!("udp4 endpoint with host ::1 rebound to 127.0.0.1");
            "127.0.0.1"
        } else {
            host.as_str()
        };
        let addr = resolve(host, *port, family).await?;
        let std_sock = std::net::UdpSocket::bind(addr).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddressInUse {
                    endpoint: endpoint.to_string(),
                    reason: "another socket is bound to this address and port".into(),
                    source: Some(e),
                }
            } else {
                TransportError::Bind {
                    endpoint: endpoint.to_string(),
                    source: e,
                }
            }
        })?;
        std_sock
            .set_nonblocking(true)
            .map_err(|e| TransportError::io(format!("{endpoint}: set non-blocking"), e))?;
        let state = batched_state(&std_sock, family);
        let io = tokio::net::UdpSocket::from_std(std_sock)
            .map_err(|e| TransportError::io(format!("{endpoint}: register socket"), e))?;
        let sock = UdpSocket {
            io,
            state,
            family,
            warned: AtomicBool::new(false),
            scratch: tokio::sync::Mutex::new(Scratch {
                batch: None,
                pending: VecDeque::new(),
            }),
        };
        tracing::info!(endpoint = %sock.local_endpoint(), "UDP socket bound");
        Ok(sock)
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.io
            .local_addr()
            .map_err(|e| TransportError::io("UDP socket: local address", e))
    }

    /// The bound endpoint (with the real port for port 0).
    pub fn local_endpoint(&self) -> Endpoint {
        let (host, port) = match self.io.local_addr() {
            Ok(a) => (a.ip().to_string(), a.port()),
            Err(_) => (String::new(), 0),
        };
        Endpoint::Udp {
            family: self.family,
            host,
            port,
        }
    }

    /// The socket's family.
    pub fn family(&self) -> UdpFamily {
        self.family
    }

    /// The largest payload this socket sends.
    pub fn max_payload(&self) -> usize {
        match self.family {
            UdpFamily::V4 => MAX_UDP4_PAYLOAD,
            UdpFamily::V6 => MAX_UDP6_PAYLOAD,
        }
    }

    /// Whether batched I/O through `quinn-udp` is in use.
    pub fn is_batched(&self) -> bool {
        self.state.is_some()
    }

    /// How many datagrams one GSO send may carry (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state
            .as_ref()
            .map_or(1, UdpSocketState::max_gso_segments)
    }

    /// Resolves a target host with this socket's family.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, TransportError> {
        resolve(host, port, self.family).await
    }

    fn check(&self, len: usize, target: SocketAddr) -> Result<(), TransportError> {
        // IPv4 peers of a dual-stack udp6 socket get the IPv4 limit.
        let max = if target.is_ipv4() {
            MAX_UDP4_PAYLOAD
        } else {
            self.max_payload()
        };
        if len > max {
            return Err(TransportError::DatagramTooLarge { target, len, max });
        }
        if len > FRAGMENTATION_WARNING && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(%target, len, "UDP datagram above {FRAGMENTATION_WARNING} bytes may be fragmented or dropped");
        }
        Ok(())
    }

    fn send_err(&self, target: SocketAddr, len: usize, e: io::Error) -> TransportError {
        if quinn_udp::is_msg_size_err(&e) {
            return TransportError::DatagramTooLarge {
                target,
                len,
                max: self.max_payload(),
            };
        }
        TransportError::io(format!("UDP send to {target}"), e)
    }

    async fn transmit(
        &self,
        original_target: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        // A dual-stack udp6 socket reaches IPv4 peers through mapped addresses
        // (received addresses are reported unmapped).
        let target = match (self.family, original_target) {
            (UdpFamily::V6, SocketAddr::V4(v4)) => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            _ => original_target,
        };
        match &self.state {
            Some(state) => {
                let transmit = Transmit {
                    destination: target,
                    ecn: None,
                    contents,
                    segment_size: segment,
                    src_ip: None,
                };
                self.io
                    .async_io(Interest::WRITABLE, || {
                        state.try_send((&self.io).into(), &transmit)
                    })
                    .await
            }
            None => {
                let n = self.io.send_to(contents, target).await?;
                if n != contents.len() {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short UDP send"));
                }
                Ok(())
            }
        }
    }

    /// Sends one datagram. Payloads above the family's limit are refused
    /// with `ERR_IPC_DATAGRAM_TOO_LARGE` before anything is sent.
    pub async fn send_to(&self, payload: &[u8], target: SocketAddr) -> Result<(), TransportError> {
        self.check(payload.len(), target)?;
        self.transmit(target, payload, None)
            .await
            .map_err(|e| self.send_err(target, payload.len(), e))
    }

    /// Resolves `host` with the socket's family and sends one datagram.
    pub async fn send_to_host(
        &self,
        payload: &[u8],
        host: &str,
        port: u16,
    ) -> Result<SocketAddr, TransportError> {
        let target = self.resolve(host, port).await?;
        self.send_to(payload, target).await?;
        Ok(target)
    }

    /// Sends several datagrams (one frame each) to one target, using GSO for
    /// runs of equal-size datagrams where the kernel supports it. Every size
    /// is checked before anything is sent.
    pub async fn send_batch<B: AsRef<[u8]>>(
        &self,
        datagrams: &[B],
        target: SocketAddr,
    ) -> Result<(), TransportError> {
        for d in datagrams {
            self.check(d.as_ref().len(), target)?;
        }
        let max_segments = self.max_gso_segments();
        let mut i = 0;
        let mut joined = Vec::new();
        while i < datagrams.len() {
            let size = datagrams[i].as_ref().len();
            // A run of equal-size datagrams (the last of a run may be shorter).
            let mut j = i + 1;
            let mut total = size;
            if max_segments > 1 && size > 0 {
                while j < datagrams.len()
                    && j - i < max_segments
                    && total + datagrams[j].as_ref().len() <= MAX_GSO_BYTES
                {
                    let len = datagrams[j].as_ref().len();
                    if len > size || len == 0 {
                        break;
                    }
                    total += len;
                    j += 1;
                    if len < size {
                        break;
                    }
                }
            }
            let result = if j - i == 1 {
                self.transmit(target, datagrams[i].as_ref(), None).await
            } else {
                joined.clear();
                for d in &datagrams[i..j] {
                    joined.extend_from_slice(d.as_ref());
                }
                self.transmit(target, &joined, Some(size)).await
            };
            result.map_err(|e| self.send_err(target, size, e))?;
            i = j;
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (truncated if `buf` is too small,
    /// like `recvfrom`).
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr), TransportError> {
        if self.state.is_none() {
            let (n, addr) = self
                .io
                .recv_from(buf)
                .await
                .map_err(|e| TransportError::io("UDP receive", e))?;
            return Ok((n, unmap(addr)));
        }
        let mut scratch = self.scratch.lock().await;
        loop {
            if let Some((data, addr)) = scratch.pending.pop_front() {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                return Ok((n, addr));
            }
            let Scratch { batch, pending } = &mut *scratch;
            let batch = batch.get_or_insert_with(|| RecvBatch::new(1));
            self.recv_into(batch).await?;
            pending.extend(batch.iter().map(|(a, d)| (d.to_vec(), a)));
        }
    }

    /// Receives at least one datagram, and as many as are waiting up to the
    /// batch's capacity (GRO trains are split back into datagrams).
    /// Returns the number of datagrams; read them with [`RecvBatch::iter`].
    pub async fn recv_batch(&self, batch: &mut RecvBatch) -> Result<usize, TransportError> {
        {
            let mut scratch = self.scratch.lock().await;
            if !scratch.pending.is_empty() {
                batch.spans.clear();
                let mut slot = 0;
                while slot < batch.bufs.len() {
                    let Some((data, addr)) = scratch.pending.pop_front() else {
                        break;
                    };
                    let n = data.len().min(SLOT_BYTES);
                    batch.bufs[slot][..n].copy_from_slice(&data[..n]);
                    batch.spans.push((slot, 0, n, addr));
                    slot += 1;
                }
                return Ok(batch.len());
            }
        }
        self.recv_into(batch).await?;
        Ok(batch.len())
    }

    async fn recv_into(&self, batch: &mut RecvBatch) -> Result<(), TransportError> {
        let count = match &self.state {
            Some(state) => {
                let RecvBatch { bufs, metas, .. } = batch;
                self.io
                    .async_io(Interest::READABLE, || {
                        let mut slices: Vec<IoSliceMut<'_>> =
                            bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
                        state.recv((&self.io).into(), &mut slices, metas)
                    })
                    .await
                    .map_err(|e| TransportError::io("UDP receive", e))?
            }
            None => {
                let (n, addr) = self
                    .io
                    .recv_from(&mut batch.bufs[0])
                    .await
                    .map_err(|e| TransportError::io("UDP receive", e))?;
                let mut meta = RecvMeta::default();
                meta.addr = addr;
                meta.len = n;
                meta.stride = n;
                batch.metas[0] = meta;
                1
            }
        };
        for m in batch.metas.iter_mut().take(count) {
            m.addr = unmap(m.addr);
        }
        batch.fill_spans(count);
        Ok(())
    }
}

/// Sets the socket up for `quinn-udp`, keeping IP fragmentation allowed.
///
/// `quinn-udp` forbids fragmentation (QUIC does its own path-MTU discovery),
/// but node-ipc datagrams may be as large as the UDP limit and rely on the IP
/// layer to fragment them. On Linux the kernel default (`IP_PMTUDISC_WANT`)
/// is restored after the setup; elsewhere the option cannot be restored
/// portably, so plain `send_to`/`recv_from` are used.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn batched_state(sock: &std::net::UdpSocket, family: UdpFamily) -> Option<UdpSocketState> {
    use rustix::net::sockopt;
    let state = match UdpSocketState::new(sock.into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "batched UDP I/O unavailable; using plain send/recv");
            return None;
        }
    };
    let restored = match family {
        UdpFamily::V4 => sockopt::set_ip_mtu_discover(sock, sockopt::Ipv4PathMtuDiscovery::WANT),
        UdpFamily::V6 => sockopt::set_ipv6_mtu_discover(sock, sockopt::Ipv6PathMtuDiscovery::WANT),
    };
    // quinn-udp also sets IPV6_DONTFRAG on IPv6 sockets.
    let restored = restored.and_then(|()| match family {
        UdpFamily::V4 => Ok(()),
        UdpFamily::V6 => {
            nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::Ipv6DontFrag, &false)
                .map_err(|e| rustix::io::Errno::from_raw_os_error(e as i32))
        }
    });
    match restored {
        Ok(()) => Some(state),
        Err(e) => {
            tracing::debug!(error = %e, "cannot allow fragmentation on a batched socket; using plain send/recv");
            None
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn batched_state(_sock: &std::net::UdpSocket, _family: UdpFamily) -> Option<UdpSocketState> {
    None
}

async fn resolve(host: &str, port: u16, family: UdpFamily) -> Result<SocketAddr, TransportError> {
    let want_v4 = family == UdpFamily::V4;
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_ipv4() == want_v4 {
            return Ok(SocketAddr::new(ip, port));
        }
        return Err(TransportError::Resolve {
            host: host.to_owned(),
            port,
            reason: format!("address family does not match the {family:?} socket"),
            source: None,
        });
    }
    let addrs =
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| TransportError::Resolve {
                host: host.to_owned(),
                port,
                reason: e.to_string(),
                source: Some(e),
            })?;
    for a in addrs {
        if a.is_ipv4() == want_v4 {
            return Ok(a);
        }
    }
    Err(TransportError::Resolve {
        host: host.to_owned(),
        port,
        reason: format!("no {family:?} address"),
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<UdpSocket>();
    }

    #[test]
    fn gro_trains_split_by_stride() {
        let mut b = RecvBatch::new(2);
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut m = RecvMeta::default();
        m.addr = addr;
        m.len = 10;
        m.stride = 4;
        b.metas[0] = m;
        let mut m2 = RecvMeta::default();
        m2.addr = addr;
        m2.len = 0;
        m2.stride = 0;
        b.metas[1] = m2;
        b.fill_spans(2);
        let lens: Vec<usize> = b.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(lens, vec![4, 4, 2, 0]);
    }
}
