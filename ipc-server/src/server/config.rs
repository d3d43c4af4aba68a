//! [`ServerConfig`] and [`ServerState`].

use std::time::Duration;

use ipc_conn::HandshakeMode;
use ipc_proto::{CodecConfig, UdpLimits};
use ipc_transport::ListenOptions;

use crate::authorize::Authorizer;

/// Everything a [`Server`](crate::Server) is configured with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Profile, limits and delimiter.
    pub codec: CodecConfig,
    /// Transport options: unlink, permissions, TLS.
    pub listen: ListenOptions,
    /// node-ipc's `maxConnections` (default 100): connections beyond it are
    /// closed at once and reported in an `error` event.
    pub max_connections: usize,
    /// node-ipc's `identifyPeer`: remember a truthy string `data.id` of any
    /// received message as the socket's peer id.
    pub identify_peer: bool,
    /// Per-connection outbound queue bound in bytes (default: the codec's
    /// `max_pending_bytes`, 8 MiB).
    pub queue_bytes: usize,
    /// How many of the server's own events (start, connect, close, errors)
    /// each [`EventStream`](crate::EventStream) may hold before the
    /// connection tasks that raise them wait for the application (default
    /// 1024). What peers send is bounded by `inbound_bytes` instead.
    pub event_buffer: usize,
    /// Per-peer inbound budget in bytes (default 4 MiB): what one peer has
    /// sent that waits in the event streams, each event counted as its
    /// frame plus 256 bytes. While a peer's budget is full the server stops
    /// reading from that peer only (the kernel's buffers fill and slow it
    /// down). Handlers run as frames arrive and are not charged.
    pub inbound_bytes: usize,
    /// How long [`Server::stop`](crate::Server::stop) waits for queues to flush before it drops
    /// what is left (and reports it).
    pub stop_timeout: Duration,
    /// UDP: bounded per-peer reassembly (peers, retained bytes, timeout).
    pub udp_limits: UdpLimits,
    /// UDP: known peers are forgotten after this long without a datagram.
    pub udp_peer_idle: Duration,
    /// Checked for every accepted stream connection (after the TLS
    /// handshake, before `connect`); a refusal closes the connection and
    /// emits an `error` event naming the peer and the reason. Default: none.
    pub authorize: Option<Authorizer>,
    /// Handle the request/ping/pub-sub extension (`docs/protocol.md` §5): `ipcx.*`
    /// messages are answered and not delivered as events. Default on.
    pub extension: bool,
    /// `Required`: the first message of every connection must be
    /// `ipcx.hello`, within `handshake_timeout`. Otherwise a hello is
    /// answered whenever it arrives.
    pub handshake: HandshakeMode,
    /// How long a required handshake may take.
    pub handshake_timeout: Duration,
    /// Do not deliver a client's publication back to itself.
    pub no_local: bool,
    /// Close a stream connection that sends nothing for this long (default:
    /// never, as node-ipc). Detects half-open peers (a vanished host, a cut
    /// network) that would otherwise hold their slot forever; the
    /// connection ends with an `ERR_IPC_MESSAGE_TIMEOUT` error event.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive for accepted TCP/TLS connections (default `None`:
    /// node-ipc sets none, and probes are not free on metered or
    /// battery-powered links). Opt in to detect clients that vanished
    /// without closing even when they are expected to stay silent for long
    /// (unlike `idle_timeout`, which closes any silent peer): the kernel
    /// fails the connection after
    /// [`Keepalive::detection_time`](ipc_transport::Keepalive::detection_time)
    /// and the server reports and closes it.
    /// [`Keepalive::default`](ipc_transport::Keepalive::default) detects it
    /// within about two minutes. When set, it replaces `listen.keepalive`;
    /// it also applies to a listener given to [`Server::from_listener`](crate::Server::from_listener)
    /// that has no keepalive of its own.
    pub keepalive: Option<ipc_transport::Keepalive>,
    /// Serve [net-ipc](ipc_proto::netipc) clients on the same endpoint as
    /// node-ipc clients (stream transports, framed profiles, with the
    /// extension on). A connection whose first bytes are `IPC` or `GET`
    /// speaks net-ipc; anything else is node-ipc. `Some(window)` (default
    /// 250 ms): how long a connection that has sent nothing yet is waited
    /// for before it is taken for node-ipc — its `connect` event is not
    /// delayed, only what the server writes to it. `None`: node-ipc only.
    pub net_ipc: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let codec = CodecConfig::fast();
        ServerConfig {
            queue_bytes: codec.max_pending_bytes,
            codec,
            listen: ListenOptions::default(),
            max_connections: 100,
            identify_peer: false,
            event_buffer: 1024,
            inbound_bytes: ipc_conn::DEFAULT_INBOUND_BYTES,
            stop_timeout: Duration::from_secs(10),
            udp_limits: UdpLimits::default(),
            udp_peer_idle: Duration::from_secs(300),
            authorize: None,
            extension: true,
            handshake: HandshakeMode::Off,
            handshake_timeout: Duration::from_secs(10),
            no_local: false,
            idle_timeout: None,
            keepalive: None,
            net_ipc: Some(Duration::from_millis(250)),
        }
    }
}

/// Where a server is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Created, not started.
    Idle,
    /// Listening.
    Running,
    /// Stopped (it can be started again).
    Stopped,
}
