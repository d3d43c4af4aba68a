//! [`ClientConfig`] and [`ClientState`].

use std::time::Duration;

use ipc_conn::HandshakeMode;
use ipc_proto::CodecConfig;
use ipc_transport::ConnectOptions;

use crate::retry::RetryConfig;

/// Everything a [`Client`](crate::Client) is configured with.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Profile, limits and delimiter (node-ipc's `parser`, `delimiter`,
    /// `rawBuffer`, `maxMessageSize`, …).
    pub codec: CodecConfig,
    /// Transport options: TLS material, local interface, timeouts.
    pub connect: ConnectOptions,
    /// The reconnect policy; its `retry`, `max_retries` and `stop_retrying`
    /// can also be changed while the client runs.
    pub retry: RetryConfig,
    /// Bound of the outbound queue in bytes. `emit` waits while it is full;
    /// `try_emit` fails. Default: the codec's `max_pending_bytes` (8 MiB).
    pub queue_bytes: usize,
    /// node-ipc's `sync`: one message in flight, the next one released by
    /// whatever the server sends (`docs/protocol.md` §3.5).
    pub sync: bool,
    /// Release the next sync-mode message after this long without an answer
    /// and report `ERR_IPC_SYNC_TIMEOUT` (default: wait forever, as node-ipc).
    pub sync_timeout: Option<Duration>,
    /// Retry after TLS authentication failures too (default false: a bad
    /// certificate will not get better by retrying).
    pub retry_on_tls_failure: bool,
    /// How many of the client's own events (connect, disconnect, errors)
    /// each [`EventStream`](crate::EventStream) may hold before the client
    /// waits for the application (default 1024).
    pub event_buffer: usize,
    /// Inbound budget in bytes (default 4 MiB): what the server sent that
    /// waits in the event streams, each event counted as its frame plus
    /// 256 bytes. While it is full the client stops reading (the kernel's
    /// buffers fill and slow the server down). Handlers are not charged.
    pub inbound_bytes: usize,
    /// How long [`Client::disconnect`](crate::Client::disconnect) and [`Client::close`](crate::Client::close) wait for
    /// queued messages (and, for `close`, calls in flight) before they give
    /// up on them (and report them).
    pub close_timeout: Duration,
    /// Handle the request/ping/pub-sub extension (`docs/protocol.md` §5): `ipcx.*`
    /// messages are answered and not delivered as events. Default on.
    pub extension: bool,
    /// The extension handshake (default off: plain node-ipc servers never
    /// answer it).
    pub handshake: HandshakeMode,
    /// Payload sent as `extras` in `ipcx.hello` (e.g. an auth token).
    pub hello: serde_json::Value,
    /// How long a required handshake may take.
    pub handshake_timeout: Duration,
    /// TCP keepalive for TCP/TLS connections (default `None`: node-ipc sets
    /// none, and probes are not free on metered or battery-powered links).
    /// Opt in to detect a server that vanished without closing (a dead host,
    /// a cut network): the kernel fails the connection after
    /// [`Keepalive::detection_time`](ipc_transport::Keepalive::detection_time)
    /// and the client reports it and follows its retry policy.
    /// [`Keepalive::default`](ipc_transport::Keepalive::default) detects it
    /// within about two minutes. When set, it replaces `connect.keepalive`.
    pub keepalive: Option<ipc_transport::Keepalive>,
    /// Close an established connection on which nothing has been received
    /// for this long (default: never, as node-ipc). Detects a server that
    /// vanished or hangs without closing (half-open connection): the
    /// connection ends with [`ClientError::Idle`](crate::ClientError::Idle) (`ERR_IPC_MESSAGE_TIMEOUT`)
    /// and the client follows its retry policy. Queued messages stay queued
    /// for the next connection. Only complete messages (raw profile: chunks)
    /// count as traffic; use it with servers that send something (a
    /// heartbeat, `ipcx.ping`) more often than this.
    pub idle_timeout: Option<Duration>,
    /// The wire protocol: node-ipc (default) or net-ipc, to join a net-ipc
    /// server (or ours, which serves both). With net-ipc, `hello` is the
    /// connect payload (`extras`), a reconnect sends the id the server gave
    /// (net-ipc keeps it), and publish/subscribe is not available.
    pub protocol: Protocol,
}

/// The wire protocol of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// node-ipc's delimited JSON frames.
    #[default]
    NodeIpc,
    /// net-ipc's length-prefixed packets ([`ipc_proto::netipc`]).
    NetIpc {
        /// Ask for MessagePack bodies (granted by servers that have it).
        messagepack: bool,
    },
}

impl Default for ClientConfig {
    fn default() -> Self {
        let codec = CodecConfig::fast();
        let queue_bytes = codec.max_pending_bytes;
        ClientConfig {
            codec,
            connect: ConnectOptions::default(),
            retry: RetryConfig::default(),
            queue_bytes,
            sync: false,
            sync_timeout: None,
            retry_on_tls_failure: false,
            event_buffer: 1024,
            inbound_bytes: ipc_conn::DEFAULT_INBOUND_BYTES,
            close_timeout: Duration::from_secs(10),
            extension: true,
            handshake: HandshakeMode::Off,
            hello: serde_json::Value::Null,
            handshake_timeout: Duration::from_secs(10),
            keepalive: None,
            idle_timeout: None,
            protocol: Protocol::NodeIpc,
        }
    }
}

/// Where a client is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Created, not started.
    Idle,
    /// A connection attempt is under way.
    Connecting,
    /// Connected.
    Connected,
    /// Disconnected; a retry is scheduled.
    Disconnected,
    /// Finished: destroyed or disconnected explicitly.
    Destroyed,
}
