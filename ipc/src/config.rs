//! [`Config`]: every key of node-ipc's `ipc.config` with node-ipc 14's
//! defaults, plus this library's extras (`docs/protocol.md` §3.1).
//!
//! A `Config` is plain data. It can be built in Rust
//! (`Config { retry: Duration::from_millis(100), ..Config::default() }` or
//! [`Ipc::configure`](crate::Ipc::configure)), or read from the JSON a
//! node-ipc user would write ([`Config::from_json`]): the keys are
//! node-ipc's camelCase names (`socketRoot`, `networkHost`, `IPType`,
//! `rawBuffer`, `maxRetries`, …), the extras are camelCase too
//! (`unlinkMode`, `strictEof`, `retryBackoff`, …). Unknown keys are an
//! error, never silently ignored. Durations are milliseconds in JSON, as in
//! node-ipc.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipc_client::{Backoff, ClientConfig, HandshakeMode, MaxRetries, RetryConfig};
use ipc_proto::{CodecConfig, Profile, RawEncoding, UdpLimits};
use ipc_server::ServerConfig;
use ipc_transport::{AddressFamily, ConnectOptions, ListenOptions, LocalPaths, UnlinkMode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::IpcError;

/// node's `lookup(hostname)` for [`Config::lookup`]: an address for a host
/// name, or why there is none.
pub type Lookup = Arc<dyn Fn(&str) -> std::io::Result<IpAddr> + Send + Sync>;

/// node-ipc's `config.logger`: receives each formatted `log()` line.
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// node-ipc's `parser` key: which v14 profile frames and checks messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parser {
    /// No framing (`rawBuffer` implies it).
    Raw,
    /// Framing and JSON, no limits (the default).
    #[default]
    Fast,
    /// Fast plus size, name and timeout limits.
    Guarded,
    /// Guarded plus a mandatory `allowedEvents` list.
    Assured,
}

impl From<Parser> for Profile {
    fn from(p: Parser) -> Profile {
        match p {
            Parser::Raw => Profile::Raw,
            Parser::Fast => Profile::Fast,
            Parser::Guarded => Profile::Guarded,
            Parser::Assured => Profile::Assured,
        }
    }
}

/// `unlinkMode`: what `unlink=true` does with a socket file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnlinkPolicy {
    /// Probe first; a live server keeps its socket (the default).
    #[default]
    Probe,
    /// Remove any socket file without probing (node-ipc's behaviour).
    Force,
}

/// `retryBackoff`: the delay between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum RetryBackoff {
    /// node-ipc's fixed `retry` delay (the default).
    #[default]
    Fixed,
    /// `retry · 2^k` capped at `maxMs`, with ±`jitter` (fraction).
    Exponential {
        /// Cap in milliseconds (default 30 000).
        #[serde(default = "default_backoff_max", rename = "maxMs")]
        max_ms: u64,
        /// Relative jitter (default 0.2).
        #[serde(default = "default_jitter")]
        jitter: f64,
    },
}

fn default_backoff_max() -> u64 {
    30_000
}
fn default_jitter() -> f64 {
    0.2
}

/// `ext.handshake` (`docs/protocol.md` §5.2 rule 5): the client's and server's
/// [`HandshakeMode`] under its configuration name; in JSON `"off"`,
/// `"announce"` or `"required"`.
pub type Handshake = HandshakeMode;

mod handshake_json {
    use super::HandshakeMode;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(h: &HandshakeMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match h {
            HandshakeMode::Off => "off",
            HandshakeMode::Announce => "announce",
            HandshakeMode::Required => "required",
        })
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HandshakeMode, D::Error> {
        match String::deserialize(d)?.as_str() {
            "off" => Ok(HandshakeMode::Off),
            "announce" => Ok(HandshakeMode::Announce),
            "required" => Ok(HandshakeMode::Required),
            other => Err(D::Error::unknown_variant(
                other,
                &["off", "announce", "required"],
            )),
        }
    }
}

/// `ext`: settings of the request/ping/pub-sub extension (`docs/protocol.md` §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExtConfig {
    /// Handle `ipcx.*` frames (requests, ping, pub/sub; default true).
    pub enabled: bool,
    /// Handshake mode.
    #[serde(with = "handshake_json")]
    pub handshake: Handshake,
    /// How long a required handshake may take, ms (default 10 000).
    pub handshake_timeout: u64,
    /// Default request/ping timeout in ms for callers that take it from
    /// the configuration (`0` = none; default 10 000).
    pub request_timeout: u64,
    /// Do not deliver a publication to its own publisher.
    pub no_local: bool,
    /// Graceful-close bound in ms (default 10 000).
    pub close_timeout: u64,
    /// The client's handshake payload (isdk's connect payload, e.g. an
    /// auth token): sent as `extras` in `ipcx.hello`, which a server sees
    /// in its `hello` event and [`Server::on_hello`](ipc_server::Server::on_hello)
    /// check. Setting one with `handshake` off announces it (`announce`).
    /// Default `null` (none).
    pub payload: serde_json::Value,
}

impl Default for ExtConfig {
    fn default() -> Self {
        ExtConfig {
            enabled: true,
            handshake: Handshake::Off,
            handshake_timeout: 10_000,
            request_timeout: 10_000,
            no_local: false,
            close_timeout: 10_000,
            payload: serde_json::Value::Null,
        }
    }
}

/// `interface`: client connect options (node's `socket.connect` options).
/// Falsy values (`false`, `null`) mean "not set", as in node-ipc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Interface {
    /// Local address to connect from.
    #[serde(deserialize_with = "falsy_or")]
    pub local_address: Option<IpAddr>,
    /// Local port to connect from.
    #[serde(deserialize_with = "falsy_or")]
    pub local_port: Option<u16>,
    /// Address family: `4` or `6`.
    #[serde(deserialize_with = "falsy_or")]
    pub family: Option<u8>,
    /// node's `dns.lookup` hints: only `0`/unset is accepted (the system
    /// resolver is called without flags; see [`Config::validate`]).
    #[serde(deserialize_with = "falsy_or")]
    pub hints: Option<u32>,
    /// node's custom `lookup` function: in JSON only `false`; the function
    /// itself is [`Config::lookup`].
    #[serde(deserialize_with = "falsy_or")]
    pub lookup: Option<bool>,
}

/// `tls`: node-ipc's TLS options object (`docs/protocol.md` §2.4). Paths are read when a
/// server or client is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsOptions {
    /// `public`: path of the PEM certificate chain.
    pub public: Option<PathBuf>,
    /// `private`: path of the PEM private key.
    pub private: Option<PathBuf>,
    /// `key`: inline PEM private key.
    pub key: Option<String>,
    /// `cert`: inline PEM certificate chain.
    pub cert: Option<String>,
    /// `ca`: inline PEM certificates to trust (a string or a list).
    #[serde(deserialize_with = "one_or_many")]
    pub ca: Vec<String>,
    /// `trustedConnections`: paths of PEM certificates to trust.
    #[serde(deserialize_with = "one_or_many")]
    pub trusted_connections: Vec<PathBuf>,
    /// `requestCert` (server; default true when a CA is configured).
    pub request_cert: Option<bool>,
    /// `rejectUnauthorized` (default true).
    pub reject_unauthorized: Option<bool>,
    /// `servername`: the name the client verifies.
    pub servername: Option<String>,
    /// `dhparam`: accepted and ignored (rustls has no finite-field DHE).
    pub dhparam: Option<String>,
}

impl TlsOptions {
    /// The transport's view of these options.
    #[cfg(feature = "tls")]
    pub fn to_node(&self) -> ipc_transport::NodeTlsOptions {
        ipc_transport::NodeTlsOptions {
            public: self.public.clone(),
            private: self.private.clone(),
            key: self.key.clone(),
            cert: self.cert.clone(),
            ca: self.ca.clone(),
            trusted_connections: self.trusted_connections.clone(),
            request_cert: self.request_cert,
            reject_unauthorized: self.reject_unauthorized,
            servername: self.servername.clone(),
            dhparam: self.dhparam.clone(),
        }
    }
}

/// node-ipc's `ipc.config`, with node-ipc 14's defaults.
///
/// The keys node-ipc reads at run time (`retry`, `maxRetries`,
/// `stopRetrying`, `silent`, `logger`) take effect on later connects and on
/// [`Ipc::configure`](crate::Ipc::configure) for live clients; everything
/// else is read when a client or server is created.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// `appspace`: local path namespace (default `app.`).
    pub appspace: String,
    /// `socketRoot`: directory of local sockets, ending with a separator
    /// (default: node-ipc 14's per-user root; `/tmp/` for 9/12).
    pub socket_root: PathBuf,
    /// `id`: this endpoint's service id (default: the host name).
    pub id: String,
    /// `networkHost`: default TCP/TLS/UDP host (default `127.0.0.1`).
    pub network_host: String,
    /// `networkPort`: default port (default 8000).
    pub network_port: u16,
    /// `IPType`: informational address family (`IPv4`).
    #[serde(rename = "IPType")]
    pub ip_type: String,
    /// `encoding`: raw-mode string encoding (default `utf8`).
    #[serde(serialize_with = "ser_display", deserialize_with = "de_from_str")]
    pub encoding: RawEncoding,
    /// `rawBuffer`: raw mode, no framing (default false).
    pub raw_buffer: bool,
    /// `parser`: the v14 profile (default `fast`).
    pub parser: Parser,
    /// `delimiter`: frame delimiter, non-empty (default `"\f"`).
    pub delimiter: String,
    /// `sync`: one message in flight per client (default false).
    pub sync: bool,
    /// `unlink`: remove a stale socket file before binding (default true).
    pub unlink: bool,
    /// `identifyPeer`: remember a received `data.id` as the socket's id
    /// (default false).
    pub identify_peer: bool,
    /// `maxMessageSize` in bytes (guarded/assured; default 1 MiB).
    pub max_message_size: usize,
    /// `maxPendingBytes`: bound of each outbound queue (default 8 MiB).
    pub max_pending_bytes: usize,
    /// `maxEventNameLength` in UTF-16 units (default 256).
    pub max_event_name_length: usize,
    /// `messageTimeout` in ms for incomplete frames (guarded/assured;
    /// default 30 000, 0 disables).
    pub message_timeout: u64,
    /// `allowReservedEvents` (guarded; default false).
    pub allow_reserved_events: bool,
    /// `allowedEvents` (assured; `false` = none, default).
    #[serde(deserialize_with = "falsy_or")]
    pub allowed_events: Option<Vec<String>>,
    /// `silent`: no output from [`Ipc::log`](crate::Ipc::log) (default false).
    pub silent: bool,
    /// `logPayloads`: include payloads in logs (default false).
    pub log_payloads: bool,
    /// `logDepth`: nesting shown by `log` (default 5).
    pub log_depth: usize,
    /// `logInColor`: colour `log` output (default true).
    pub log_in_color: bool,
    /// `logger`: where `log` lines go (default: standard output, as
    /// node-ipc's `console.log`). Not representable in JSON.
    #[serde(skip)]
    pub logger: Option<Logger>,
    /// `interface.lookup` as a function: resolves the host of
    /// `connect_to_net` to an address (node's `lookup(hostname, cb)`).
    /// Called once per `connect_to_net`, not per retry; with TLS the host
    /// name stays the server name checked against the certificate unless
    /// `tls.servername` is set. Not representable in JSON.
    #[serde(skip)]
    pub lookup: Option<Lookup>,
    /// `maxConnections` per stream server (default 100).
    pub max_connections: usize,
    /// `retry`: delay between reconnect attempts, ms in JSON (default 500).
    #[serde(with = "millis")]
    pub retry: Duration,
    /// `maxRetries`: attempts after each disconnect (default `Infinity`).
    #[serde(
        serialize_with = "ser_max_retries",
        deserialize_with = "de_max_retries"
    )]
    pub max_retries: MaxRetries,
    /// `stopRetrying`: the next close is final (default false).
    #[serde(deserialize_with = "truthy")]
    pub stop_retrying: bool,
    /// `tls`: TLS options for network endpoints (`false` = plain, default).
    #[serde(deserialize_with = "falsy_or")]
    pub tls: Option<TlsOptions>,
    /// `readableAll`: socket file readable by everyone (default false).
    pub readable_all: bool,
    /// `writableAll`: socket file writable by everyone (default false).
    pub writable_all: bool,
    /// `secureSocketRoot`: create/secure the socket root (default true).
    pub secure_socket_root: bool,
    /// `interface`: client connect options (`interfaces` is accepted as
    /// the v9 README's spelling).
    #[serde(alias = "interfaces")]
    pub interface: Interface,
    /// Extra `unlinkMode` (default `probe`).
    pub unlink_mode: UnlinkPolicy,
    /// Extra `strictEof`: report a stream ending inside a frame.
    pub strict_eof: bool,
    /// Extra `strictUtf8`: reject invalid UTF-8.
    pub strict_utf8: bool,
    /// Extra `strictJson`: reject lone surrogate escapes.
    pub strict_json: bool,
    /// Extra `maxJsonDepth` (default 256).
    pub max_json_depth: usize,
    /// Extra `udpMaxPeers`: peers with a partial UDP frame (default 1024).
    pub udp_max_peers: usize,
    /// Extra `udpMaxFragmentBytes`: retained UDP bytes (default 8 MiB).
    pub udp_max_fragment_bytes: usize,
    /// Extra `retryBackoff` (default fixed).
    pub retry_backoff: RetryBackoff,
    /// Extra `retryOnTlsFailure` (default false).
    pub retry_on_tls_failure: bool,
    /// Extra `syncTimeout` in ms (default none).
    #[serde(with = "opt_millis")]
    pub sync_timeout: Option<Duration>,
    /// Extra `legacyV9Payloads`: encode payloads as node-ipc 9/12 did.
    pub legacy_v9_payloads: bool,
    /// Extra `ext`: request/ping/pub-sub extension settings.
    pub ext: ExtConfig,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "logger".into(),
                serde_json::Value::Bool(self.logger.is_some()),
            );
            o.insert(
                "lookup".into(),
                serde_json::Value::Bool(self.lookup.is_some()),
            );
        }
        write!(f, "Config {v}")
    }
}

impl Default for Config {
    fn default() -> Self {
        let codec = CodecConfig::default();
        Config {
            appspace: "app.".into(),
            socket_root: LocalPaths::default_socket_root(),
            id: hostname(),
            network_host: "127.0.0.1".into(),
            network_port: 8000,
            ip_type: "IPv4".into(),
            encoding: RawEncoding::Utf8,
            raw_buffer: false,
            parser: Parser::Fast,
            delimiter: "\u{c}".into(),
            sync: false,
            unlink: true,
            identify_peer: false,
            max_message_size: codec.max_message_size,
            max_pending_bytes: codec.max_pending_bytes,
            max_event_name_length: codec.max_event_name_length,
            message_timeout: 30_000,
            allow_reserved_events: false,
            allowed_events: None,
            silent: false,
            log_payloads: false,
            log_depth: 5,
            log_in_color: true,
            logger: None,
            lookup: None,
            max_connections: 100,
            retry: Duration::from_millis(500),
            max_retries: MaxRetries::Unlimited,
            stop_retrying: false,
            tls: None,
            readable_all: false,
            writable_all: false,
            secure_socket_root: true,
            interface: Interface::default(),
            unlink_mode: UnlinkPolicy::Probe,
            strict_eof: false,
            strict_utf8: false,
            strict_json: false,
            max_json_depth: codec.max_json_depth,
            udp_max_peers: 1024,
            udp_max_fragment_bytes: 8 * 1024 * 1024,
            retry_backoff: RetryBackoff::Fixed,
            retry_on_tls_failure: false,
            sync_timeout: None,
            legacy_v9_payloads: false,
            ext: ExtConfig::default(),
        }
    }
}

/// The host name (node's `os.hostname()`), or `localhost` when unknown.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        })
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Config {
    /// node-ipc 9/12's defaults where they differ from 14's: socket root
    /// `/tmp/`, no secure socket root, `identifyPeer` on.
    pub fn legacy() -> Config {
        Config {
            socket_root: PathBuf::from("/tmp/"),
            secure_socket_root: false,
            identify_peer: true,
            ip_type: String::new(),
            ..Config::default()
        }
    }

    /// Reads a configuration from node-ipc-style JSON; keys not given keep
    /// their defaults, unknown keys are an error.
    ///
    /// ```
    /// let c = ipc::Config::from_json(r#"{"appspace":"demo.","retry":100,"maxRetries":3}"#).unwrap();
    /// assert_eq!(c.appspace, "demo.");
    /// assert!(ipc::Config::from_json(r#"{"retyr":100}"#).is_err());
    /// ```
    pub fn from_json(json: &str) -> Result<Config, IpcError> {
        let c: Config = serde_json::from_str(json).map_err(IpcError::ConfigJson)?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration as node-ipc-style JSON (without `logger`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks what node-ipc checks at construction (non-empty delimiter,
    /// an `allowedEvents` list for the assured parser, codec limits).
    pub fn validate(&self) -> Result<(), IpcError> {
        if self.delimiter.is_empty() {
            return Err(IpcError::InvalidConfig(
                "delimiter must be a non-empty string".into(),
            ));
        }
        if let Some(f) = self.interface.family {
            if f != 4 && f != 6 {
                return Err(IpcError::InvalidConfig(format!(
                    "interface.family must be 4 or 6, not {f}"
                )));
            }
        }
        if self.interface.lookup == Some(true) {
            return Err(IpcError::InvalidConfig(
                "interface.lookup must be a function: set Config::lookup to a resolver closure"
                    .into(),
            ));
        }
        if self.interface.hints.is_some_and(|h| h != 0) {
            return Err(IpcError::InvalidConfig(
                "interface.hints (dns.lookup flags) cannot be applied: host names go to the \
                 system resolver without flags; use interface.family to choose IPv4 or IPv6, \
                 or Config::lookup to resolve yourself"
                    .into(),
            ));
        }
        if self.tls.as_ref().is_some_and(|t| t.dhparam.is_some()) {
            return Err(IpcError::InvalidConfig(
                "tls.dhparam cannot be applied: rustls negotiates only elliptic-curve \
                 Diffie-Hellman (ECDHE), never finite-field DH parameters; remove the key"
                    .into(),
            ));
        }
        self.codec().validate().map_err(IpcError::Codec)
    }

    /// The local path layout (`socketRoot`, `appspace`, `secureSocketRoot`).
    pub fn local_paths(&self) -> LocalPaths {
        LocalPaths {
            socket_root: self.socket_root.clone(),
            appspace: self.appspace.clone(),
            secure_socket_root: self.secure_socket_root,
        }
    }

    /// The codec configuration: profile, delimiter and limits.
    pub fn codec(&self) -> CodecConfig {
        let profile = if self.raw_buffer {
            Profile::Raw
        } else {
            self.parser.into()
        };
        let timeout =
            (self.message_timeout > 0).then(|| Duration::from_millis(self.message_timeout));
        let mut c = CodecConfig::for_profile(profile)
            .with_delimiter(self.delimiter.as_bytes().to_vec())
            .with_max_message_size(self.max_message_size)
            .with_max_pending_bytes(self.max_pending_bytes)
            .with_max_event_name_length(self.max_event_name_length)
            .with_message_timeout(timeout)
            .with_allow_reserved_events(self.allow_reserved_events)
            .with_strict_eof(self.strict_eof)
            .with_strict_utf8(self.strict_utf8)
            .with_strict_json(self.strict_json)
            .with_max_json_depth(self.max_json_depth)
            .with_legacy_v9_payloads(self.legacy_v9_payloads);
        if let Some(events) = &self.allowed_events {
            c = c.with_allowed_events(events.iter().cloned());
        }
        c
    }

    /// The reconnect policy (`retry`, `maxRetries`, `stopRetrying`,
    /// `retryBackoff`).
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig {
            retry: self.retry,
            max_retries: self.max_retries,
            stop_retrying: self.stop_retrying,
            backoff: match self.retry_backoff {
                RetryBackoff::Fixed => Backoff::Fixed,
                RetryBackoff::Exponential { max_ms, jitter } => Backoff::Exponential {
                    max: Duration::from_millis(max_ms),
                    jitter,
                },
            },
        }
    }

    /// Transport options of a server.
    pub fn listen_options(&self) -> ListenOptions {
        ListenOptions {
            unlink: self.unlink,
            unlink_mode: match self.unlink_mode {
                UnlinkPolicy::Probe => UnlinkMode::Probe,
                UnlinkPolicy::Force => UnlinkMode::Force,
            },
            readable_all: self.readable_all,
            writable_all: self.writable_all,
            secure_socket_root: self.secure_socket_root,
            socket_root: Some(self.socket_root.clone()),
            ..ListenOptions::default()
        }
    }

    /// Transport options of a client (`interface`).
    pub fn connect_options(&self) -> ConnectOptions {
        ConnectOptions {
            local_address: self.interface.local_address,
            local_port: self.interface.local_port,
            family: match self.interface.family {
                Some(4) => Some(AddressFamily::V4),
                Some(6) => Some(AddressFamily::V6),
                _ => None,
            },
            ..ConnectOptions::default()
        }
    }

    /// A complete client configuration.
    pub fn client_config(&self) -> ClientConfig {
        let codec = self.codec();
        ClientConfig {
            queue_bytes: self.max_pending_bytes,
            codec,
            connect: self.connect_options(),
            retry: self.retry_config(),
            sync: self.sync,
            sync_timeout: self.sync_timeout,
            retry_on_tls_failure: self.retry_on_tls_failure,
            close_timeout: Duration::from_millis(self.ext.close_timeout),
            extension: self.ext.enabled,
            handshake: match self.ext.handshake {
                Handshake::Off if !self.ext.payload.is_null() => HandshakeMode::Announce,
                h => h,
            },
            hello: self.ext.payload.clone(),
            handshake_timeout: Duration::from_millis(self.ext.handshake_timeout),
            ..ClientConfig::default()
        }
    }

    /// A complete server configuration.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            codec: self.codec(),
            listen: self.listen_options(),
            max_connections: self.max_connections,
            identify_peer: self.identify_peer,
            queue_bytes: self.max_pending_bytes,
            udp_limits: UdpLimits {
                max_peers: self.udp_max_peers,
                max_retained_bytes: self.udp_max_fragment_bytes,
                ..UdpLimits::default()
            },
            extension: self.ext.enabled,
            handshake: self.ext.handshake,
            handshake_timeout: Duration::from_millis(self.ext.handshake_timeout),
            no_local: self.ext.no_local,
            ..ServerConfig::default()
        }
    }
}

fn falsy_or<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Flag(bool),
        Value(T),
    }
    match Option::<Either<T>>::deserialize(d)? {
        None | Some(Either::Flag(false)) => Ok(None),
        Some(Either::Flag(true)) => Err(serde::de::Error::custom(
            "`true` is not a valid value here (use false or a value)",
        )),
        Some(Either::Value(v)) => Ok(Some(v)),
    }
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(v)) => vec![v],
        Some(OneOrMany::Many(v)) => v,
    })
}

fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    })
}

fn de_max_retries<'de, D: Deserializer<'de>>(d: D) -> Result<MaxRetries, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(MaxRetries::from_js(&v))
}

fn ser_max_retries<S: Serializer>(v: &MaxRetries, s: S) -> Result<S::Ok, S::Error> {
    match v {
        MaxRetries::Unlimited => s.serialize_str("Infinity"),
        MaxRetries::Limited(n) => s.serialize_u64(*n),
    }
}

fn ser_display<S: Serializer, T: fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn de_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

mod millis {
    use super::*;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_millis {
    use super::*;
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(falsy_or::<D, u64>(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_node_ipc_14() {
        let c = Config::default();
        assert_eq!(c.appspace, "app.");
        assert_eq!(c.network_host, "127.0.0.1");
        assert_eq!(c.network_port, 8000);
        assert_eq!(c.delimiter, "\u{c}");
        assert_eq!(c.retry, Duration::from_millis(500));
        assert_eq!(c.max_retries, MaxRetries::Unlimited);
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.max_message_size, 1_048_576);
        assert_eq!(c.max_pending_bytes, 8_388_608);
        assert_eq!(c.max_event_name_length, 256);
        assert_eq!(c.message_timeout, 30_000);
        assert_eq!(c.log_depth, 5);
        assert!(c.log_in_color && c.unlink && c.secure_socket_root);
        assert!(!c.sync && !c.raw_buffer && !c.silent && !c.identify_peer);
        assert!(c.tls.is_none() && c.allowed_events.is_none());
        assert_eq!(c.parser, Parser::Fast);
        assert_eq!(c.socket_root, LocalPaths::default_socket_root());
        assert_eq!(c.max_json_depth, 256);
        assert_eq!(c.udp_max_peers, 1024);
        assert_eq!(c.udp_max_fragment_bytes, 8 * 1024 * 1024);
        assert!(!c.id.is_empty());
    }

    #[test]
    fn json_uses_node_names_and_rejects_unknown_keys() {
        let c = Config::from_json(
            r#"{"socketRoot":"/tmp/","IPType":"IPv6","rawBuffer":true,"encoding":"hex",
                "maxRetries":2.5,"stopRetrying":1,"tls":false,"interfaces":{"localPort":false},
                "allowedEvents":false,"syncTimeout":250,"retryBackoff":{"kind":"exponential"}}"#,
        )
        .unwrap();
        assert_eq!(c.socket_root, PathBuf::from("/tmp/"));
        assert_eq!(c.ip_type, "IPv6");
        assert!(c.raw_buffer);
        assert_eq!(c.encoding, RawEncoding::Hex);
        assert_eq!(c.max_retries, MaxRetries::Limited(2));
        assert!(c.stop_retrying);
        assert_eq!(c.sync_timeout, Some(Duration::from_millis(250)));
        assert!(matches!(
            c.retry_backoff,
            RetryBackoff::Exponential { max_ms: 30_000, .. }
        ));
        let e = Config::from_json(r#"{"retyr":100}"#).unwrap_err();
        assert!(e.to_string().contains("retyr"), "{e}");
        assert!(Config::from_json(r#"{"tls":{"bogus":1}}"#).is_err());
        assert!(Config::from_json(r#"{"delimiter":""}"#).is_err());
        assert!(Config::from_json(r#"{"maxRetries":"Infinity"}"#).is_ok());
    }

    #[test]
    fn json_round_trip() {
        let c = Config {
            id: "world".into(),
            max_retries: MaxRetries::Limited(3),
            ..Config::default()
        };
        let back = Config::from_json(&c.to_json()).unwrap();
        assert_eq!(back.id, "world");
        assert_eq!(back.max_retries, MaxRetries::Limited(3));
        assert_eq!(back.to_json(), c.to_json());
    }

    #[test]
    fn raw_buffer_selects_the_raw_profile() {
        let c = Config {
            raw_buffer: true,
            ..Config::default()
        };
        assert_eq!(c.codec().profile, Profile::Raw);
        assert_eq!(Config::default().codec().profile, Profile::Fast);
    }
}
