//! [`Ipc`]: one node-ipc instance (`config`, `of`, `server`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use ipc_client::{Client, ClientState};
use ipc_server::Server;
use ipc_transport::{Endpoint, UdpFamily};
use serde::Serialize;

use crate::config::Config;
use crate::error::IpcError;

/// The options of node-ipc's `serveNet(host?, port?, udpType?)`, as a
/// builder. Unset values take `networkHost` / `networkPort`; unlike
/// node-ipc, port `0` asks for an ephemeral port (see
/// [`Server::start`]'s returned endpoint).
///
/// ```
/// use ipc::ServeNet;
/// let tcp = ServeNet::tcp().port(0);
/// let udp = ServeNet::udp4().host("127.0.0.1").port(8001);
/// # let _ = (tcp, udp);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeNet {
    host: Option<String>,
    port: Option<u16>,
    udp: Option<UdpFamily>,
}

impl ServeNet {
    /// A TCP server (TLS when `config.tls` is set): `serveNet()`.
    pub fn tcp() -> ServeNet {
        ServeNet::default()
    }

    /// A UDP over IPv4 endpoint: `serveNet('udp4')`.
    pub fn udp4() -> ServeNet {
        ServeNet {
            udp: Some(UdpFamily::V4),
            ..ServeNet::default()
        }
    }

    /// A UDP over IPv6 endpoint: `serveNet('::1', 'udp6')`.
    pub fn udp6() -> ServeNet {
        ServeNet {
            udp: Some(UdpFamily::V6),
            ..ServeNet::default()
        }
    }

    /// The host to bind (default `networkHost`).
    pub fn host(mut self, host: impl Into<String>) -> ServeNet {
        self.host = Some(host.into());
        self
    }

    /// The port to bind (default `networkPort`; `0` = any free port).
    pub fn port(mut self, port: u16) -> ServeNet {
        self.port = Some(port);
        self
    }

    /// The UDP family, if this is a UDP endpoint.
    pub fn udp_type(&self) -> Option<UdpFamily> {
        self.udp
    }
}

/// One argument of node-ipc's dynamic `serveNet(...)` call, for
/// [`ServeNet::from_js_args`].
#[derive(Debug, Clone, PartialEq)]
pub enum JsArg {
    /// A string (a host, or a UDP type).
    Str(String),
    /// A number (a port).
    Num(f64),
    /// A function (the callback; register it as a `start` handler).
    Callback,
}

impl ServeNet {
    /// Resolves node-ipc's `serveNet(host?, port?, udpType?, cb?)`
    /// arguments exactly as every node-ipc version does (`docs/protocol.md` §3.2): a
    /// leading number is the port, `'udp4'`/`'udp6'` in the host position
    /// means UDP on the defaults, a string second argument is the UDP
    /// type, a falsy port means `networkPort`. Callbacks are skipped.
    ///
    /// ```
    /// use ipc::{JsArg, ServeNet};
    /// let s = ServeNet::from_js_args(&[JsArg::Num(8001.0), JsArg::Str("udp4".into())]).unwrap();
    /// assert_eq!(s, ServeNet::udp4().port(8001));
    /// ```
    pub fn from_js_args(args: &[JsArg]) -> Result<ServeNet, IpcError> {
        let (host, port, udp) = match args {
            [] | [JsArg::Callback, ..] => (None, None, None),
            // Rule 1: a leading number is the port; everything shifts.
            [JsArg::Num(p), rest @ ..] => (None, Some(*p), rest.first()),
            [JsArg::Str(h), rest @ ..] => {
                if h.eq_ignore_ascii_case("udp4") || h.eq_ignore_ascii_case("udp6") {
                    // Rule 3: UDP on the default host and port.
                    (None, None, args.first())
                } else {
                    match rest {
                        // Rule 4: a string second argument is the UDP type.
                        [JsArg::Str(_), ..] => (Some(h.clone()), None, rest.first()),
                        [JsArg::Num(p), more @ ..] => (Some(h.clone()), Some(*p), more.first()),
                        _ => (Some(h.clone()), None, None),
                    }
                }
            }
        };
        let mut out = ServeNet {
            host,
            ..ServeNet::default()
        };
        // Rule 6: a falsy port (0, NaN) means the default port.
        if let Some(p) = port.filter(|p| *p != 0.0 && !p.is_nan()) {
            if p.fract() != 0.0 || !(1.0..=65535.0).contains(&p) {
                return Err(IpcError::InvalidConfig(format!(
                    "serveNet: {p} is not a port number"
                )));
            }
            out.port = Some(p as u16);
        }
        if let Some(JsArg::Str(t)) = udp {
            out.udp = Some(match t.to_ascii_lowercase().as_str() {
                "udp4" => UdpFamily::V4,
                "udp6" => UdpFamily::V6,
                _ => {
                    return Err(IpcError::InvalidConfig(format!(
                        "serveNet: UDP type must be 'udp4' or 'udp6', not {t:?}"
                    )))
                }
            });
        }
        Ok(out)
    }
}

struct Inner {
    config: Arc<RwLock<Config>>,
    of: Mutex<HashMap<String, Client>>,
    server: Mutex<Option<Server>>,
}

/// One node-ipc instance: its own [`Config`], its own `of` registry of
/// clients and its own server. Instances share nothing, so several can live
/// in one process (node-ipc's `new IPCModule()`). Cheap to clone (clones
/// are the same instance).
///
/// Methods that create clients or servers must run inside a tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), ipc::IpcError> {
/// use ipc::prelude::*;
/// let ipc = Ipc::new();
/// ipc.configure(|c| {
///     c.id = "world".into();
///     c.retry = std::time::Duration::from_millis(1500);
/// });
/// let server = ipc.serve(None)?;
/// server.handle("message", |text: String, socket, server| {
///     server.send(socket, "message", &format!("{text} world!"))
/// });
/// server.start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ipc {
    inner: Arc<Inner>,
}

impl Default for Ipc {
    fn default() -> Self {
        Ipc::new()
    }
}

impl fmt::Debug for Ipc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipc")
            .field("id", &self.config().id)
            .field("of", &self.of_ids())
            .field("server", &self.server())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ipc {
    /// A new instance with node-ipc 14's defaults.
    pub fn new() -> Ipc {
        Ipc::with_config(Config::default())
    }

    /// A new instance with `config`.
    pub fn with_config(config: Config) -> Ipc {
        Ipc {
            inner: Arc::new(Inner {
                config: Arc::new(RwLock::new(config)),
                of: Mutex::new(HashMap::new()),
                server: Mutex::new(None),
            }),
        }
    }

    /// A copy of the current configuration (`ipc.config`).
    pub fn config(&self) -> Config {
        self.inner
            .config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the configuration (`ipc.config.x = …`). The run-time keys
    /// `retry`, `maxRetries`, `stopRetrying` and `retryBackoff` also reach
    /// every client in `of` at once, as in node-ipc; other keys apply to
    /// clients and servers created afterwards.
    pub fn configure(&self, f: impl FnOnce(&mut Config)) {
        let retry = {
            let mut c = self.inner.config.write().unwrap_or_else(|p| p.into_inner());
            f(&mut c);
            c.retry_config()
        };
        for client in lock(&self.inner.of).values() {
            client.set_retry(retry);
        }
    }

    /// `ipc.serve(path?)`: creates (does not start) a local server at
    /// `path`, or at `socketRoot + appspace + id`; it replaces
    /// [`Ipc::server`] (a previous server keeps running until stopped).
    /// Register handlers, then call [`Server::start`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ipc::IpcError> {
    /// use ipc::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ipc = Ipc::new();
    /// ipc.configure(|c| c.id = "world".into());
    /// # ipc.configure(|c| c.socket_root = format!("{}/", dir.path().display()).into());
    /// let server = ipc.serve(None)?;
    /// server.on_start(|endpoint, _| println!("serving on {endpoint}"));
    /// let endpoint = server.start().await?;
    /// assert!(endpoint.to_string().ends_with("app.world"));
    /// server.stop().await;
    /// # Ok(()) }
    /// ```
    pub fn serve(&self, path: Option<&Path>) -> Result<Server, IpcError> {
        let config = self.config();
        config.validate()?;
        let endpoint = match path {
            Some(p) => local_endpoint(p.to_path_buf()),
            None => config.local_paths().endpoint_for(&config.id),
        };
        self.install_server(endpoint, &config)
    }

    /// `ipc.serveNet(host?, port?, udpType?)`: creates (does not start) a
    /// TCP server, a TLS server when `config.tls` is set, or a UDP
    /// endpoint; it replaces [`Ipc::server`].
    pub fn serve_net(&self, opts: ServeNet) -> Result<Server, IpcError> {
        let config = self.config();
        config.validate()?;
        let mut host = opts.host.unwrap_or_else(|| config.network_host.clone());
        let port = opts.port.unwrap_or(config.network_port);
        let endpoint = match opts.udp {
            Some(family) => {
                if family == UdpFamily::V4 && host == "::1" {
                    // node-ipc rebinds udp4 on ::1 to 127.0.0.1 (`docs/protocol.md` §2.5).
                    host = "127.0.0.1".into();
                }
                Endpoint::Udp { family, host, port }
            }
            None if config.tls.is_some() => Endpoint::Tls { host, port },
            None => Endpoint::Tcp { host, port },
        };
        self.install_server(endpoint, &config)
    }

    /// Creates a server on any endpoint with this instance's configuration
    /// (what `nipc serve` uses); it replaces [`Ipc::server`].
    pub fn serve_endpoint(&self, endpoint: Endpoint) -> Result<Server, IpcError> {
        let config = self.config();
        config.validate()?;
        self.install_server(endpoint, &config)
    }

    /// A server on a listener bound elsewhere, with this instance's
    /// configuration (node's `server.listen(handle)`): the cluster pattern,
    /// where workers share one socket bound once
    /// ([`Listener::from_std_unix`](ipc_transport::Listener::from_std_unix)).
    /// The path is never unlinked by this server. It replaces
    /// [`Ipc::server`].
    pub fn serve_listener(&self, listener: ipc_transport::Listener) -> Result<Server, IpcError> {
        let config = self.config();
        config.validate()?;
        let mut sc = config.server_config();
        sc.listen.socket_root = None;
        let server = Server::from_listener(listener, sc)?;
        server.set_raw_encoding(config.encoding);
        *lock(&self.inner.server) = Some(server.clone());
        Ok(server)
    }

    fn install_server(&self, endpoint: Endpoint, config: &Config) -> Result<Server, IpcError> {
        #[allow(unused_mut)]
        let mut sc = config.server_config();
        if !endpoint.is_local() {
            // Socket-root handling only concerns local servers.
            sc.listen.socket_root = None;
        }
        #[cfg(feature = "tls")]
        if let (Endpoint::Tls { .. }, Some(tls)) = (&endpoint, &config.tls) {
            sc.listen.tls = Some(ipc_transport::TlsServerConfig::from_node_options(
                &tls.to_node(),
            )?);
        }
        let server = Server::new(endpoint, sc)?;
        server.set_raw_encoding(config.encoding);
        *lock(&self.inner.server) = Some(server.clone());
        Ok(server)
    }

    /// `ipc.server`: the server made by the last `serve`/`serve_net`.
    pub fn server(&self) -> Option<Server> {
        lock(&self.inner.server).clone()
    }

    /// `ipc.connectTo(id, path?)`: a local client stored at `of(id)`,
    /// connecting to `path` or to `socketRoot + appspace + id`, started at
    /// once. It is in `of(id)` before it starts, so the callback of
    /// [`Ipc::connect_to_with`] and every handler find it there. An id whose
    /// client is still alive returns that client (node-ipc's rule, logged
    /// as node-ipc does); if that client connects elsewhere, the call fails
    /// with [`IpcError::IdInUse`]: two clients need two ids.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ipc::IpcError> {
    /// use ipc::prelude::*;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let ipc = Ipc::new();
    /// # ipc.configure(|c| c.socket_root = format!("{}/", dir.path().display()).into());
    /// ipc.configure(|c| c.max_retries = MaxRetries::Limited(1));
    /// let world = ipc.connect_to("world", None)?; // nobody serves `world`
    /// let e = world.connected().await.unwrap_err();
    /// assert_eq!(e.io_kind(), Some(std::io::ErrorKind::NotFound)); // ENOENT
    /// # Ok(()) }
    /// ```
    pub fn connect_to(&self, id: &str, path: Option<&Path>) -> Result<Client, IpcError> {
        self.connect_to_with(id, path, |_| {})
    }

    /// [`Ipc::connect_to`] with node-ipc's callback: `setup` runs before
    /// the first connection attempt, so handlers registered there see the
    /// first `connect`. When `id` already has a live client, `setup` runs
    /// with that client (node-ipc calls the callback then too), so avoid
    /// registering the same handlers twice.
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), ipc::IpcError> {
    /// use ipc::prelude::*;
    /// let ipc = Ipc::new();
    /// let log = ipc.logger();
    /// ipc.connect_to_with("world", None, |world| {
    ///     world.on_connect(|world| {
    ///         let _ = world.try_emit("message", "hello");
    ///     });
    ///     world.handle("message", move |data: String, _| {
    ///         ipc::log!(log, "got a message from world :", data);
    ///     });
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn connect_to_with(
        &self,
        id: &str,
        path: Option<&Path>,
        setup: impl FnOnce(&Client),
    ) -> Result<Client, IpcError> {
        let config = self.config();
        let endpoint = match path {
            Some(p) => local_endpoint(p.to_path_buf()),
            None => config.local_paths().endpoint_for(id),
        };
        self.connect_endpoint_with(id, endpoint, setup)
    }

    /// `ipc.connectToNet(id, host?, port?)`: a TCP client (TLS when
    /// `config.tls` is set) stored at `of(id)`, started at once. Unset
    /// values (and port 0) take `networkHost` / `networkPort`.
    pub fn connect_to_net(
        &self,
        id: &str,
        host: Option<&str>,
        port: Option<u16>,
    ) -> Result<Client, IpcError> {
        self.connect_to_net_with(id, host, port, |_| {})
    }

    /// [`Ipc::connect_to_net`] with node-ipc's callback (runs before the
    /// first connection attempt).
    pub fn connect_to_net_with(
        &self,
        id: &str,
        host: Option<&str>,
        port: Option<u16>,
        setup: impl FnOnce(&Client),
    ) -> Result<Client, IpcError> {
        let mut config = self.config();
        let mut host = host.map_or_else(|| config.network_host.clone(), str::to_owned);
        let port = port.filter(|p| *p != 0).unwrap_or(config.network_port);
        if let Some(lookup) = &config.lookup {
            if host.parse::<std::net::IpAddr>().is_err() {
                let addr = lookup(&host).map_err(|e| {
                    IpcError::InvalidConfig(format!("interface.lookup of {host:?} failed: {e}"))
                })?;
                if let Some(tls) = config.tls.as_mut() {
                    tls.servername.get_or_insert_with(|| host.clone());
                }
                host = addr.to_string();
            }
        }
        let endpoint = if config.tls.is_some() {
            Endpoint::Tls { host, port }
        } else {
            Endpoint::Tcp { host, port }
        };
        self.connect_with_config(id, endpoint, config, setup)
    }

    /// Connects to any endpoint and stores the client at `of(id)` (what
    /// `nipc emit/listen` use). `setup` runs before the first attempt.
    pub fn connect_endpoint_with(
        &self,
        id: &str,
        endpoint: Endpoint,
        setup: impl FnOnce(&Client),
    ) -> Result<Client, IpcError> {
        self.connect_with_config(id, endpoint, self.config(), setup)
    }

    fn connect_with_config(
        &self,
        id: &str,
        endpoint: Endpoint,
        config: Config,
        setup: impl FnOnce(&Client),
    ) -> Result<Client, IpcError> {
        if id.is_empty() {
            return Err(IpcError::MissingId("connect"));
        }
        config.validate()?;
        // One lock for the look-up and the insertion: a concurrent
        // connect_to of the same id cannot create a second client.
        let mut of = lock(&self.inner.of);
        if let Some(existing) = of.get(id) {
            if existing.state() != ClientState::Destroyed {
                if *existing.endpoint() != endpoint {
                    return Err(IpcError::IdInUse {
                        id: id.to_owned(),
                        endpoint: existing.endpoint().to_string(),
                    });
                }
                let existing = existing.clone();
                drop(of);
                // node-ipc's rule: a live id is reused (and says so).
                self.log(format_args!(
                    "Already Connected to {id} - So executing success without connection"
                ));
                setup(&existing);
                return Ok(existing);
            }
        }
        #[allow(unused_mut)]
        let mut cc = config.client_config();
        #[cfg(feature = "tls")]
        if let (Endpoint::Tls { .. }, Some(tls)) = (&endpoint, &config.tls) {
            cc.connect.tls = Some(ipc_transport::TlsClientConfig::from_node_options(
                &tls.to_node(),
            )?);
        }
        let client = Client::new(endpoint, cc)?;
        client.set_request_timeout(Duration::from_millis(config.ext.request_timeout));
        client.set_raw_encoding(config.encoding);
        // Stored before it starts: a `connect` handler that looks itself
        // up in `of` always finds it. A destroyed client under the same id
        // is simply replaced: it has no retry left to cancel.
        of.insert(id.to_owned(), client.clone());
        drop(of);
        setup(&client);
        client.start();
        Ok(client)
    }

    /// `ipc.of[id]`.
    pub fn of(&self, id: &str) -> Option<Client> {
        lock(&self.inner.of).get(id).cloned()
    }

    /// The ids in `ipc.of`, sorted.
    pub fn of_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.inner.of).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// `ipc.disconnect(id)`: removes `of(id)` at once, removes its handlers
    /// (no further events, as node-ipc 14), cancels any pending retry and
    /// closes the connection after writing what is queued. Returns `false`
    /// for an unknown id (a no-op, as in node-ipc); an error when queued
    /// messages could not be delivered.
    pub async fn disconnect(&self, id: &str) -> Result<bool, IpcError> {
        let client = lock(&self.inner.of).remove(id);
        match client {
            None => Ok(false),
            Some(c) => {
                c.disconnect().await?;
                Ok(true)
            }
        }
    }

    /// One line through `config.logger` (default: standard output),
    /// nothing when `config.silent`. For node-ipc's `ipc.log(a, b, c)`
    /// use [`log!`](crate::log!).
    pub fn log(&self, line: impl fmt::Display) {
        self.logger().log(line)
    }

    /// node-ipc's `ipc.log(...args)` (what [`log!`](crate::log!) calls); see
    /// [`IpcLog::log_parts`].
    pub fn log_parts(&self, parts: &[crate::LogPart]) {
        self.logger().log_parts(parts)
    }

    /// `ipc.log(label, object)`: [`Ipc::log_parts`] with two parts.
    pub fn log_value<T: Serialize + ?Sized>(&self, label: &str, value: &T) {
        self.logger().log_value(label, value)
    }

    /// This instance's `log`, on its own: it follows the instance's
    /// configuration but holds nothing else, so a handler may keep it
    /// without keeping the instance (its servers and clients) alive.
    ///
    /// ```
    /// # fn demo(server: &ipc::Server) {
    /// use ipc::prelude::*;
    /// let ipc = Ipc::new();
    /// let log = ipc.logger();
    /// server.handle("message", move |data: String, _, _| {
    ///     ipc::log!(log, "got a message :", data);
    /// });
    /// # }
    /// ```
    pub fn logger(&self) -> IpcLog {
        IpcLog {
            config: self.inner.config.clone(),
        }
    }
}

/// An instance's `ipc.log` ([`Ipc::logger`]).
#[derive(Clone)]
pub struct IpcLog {
    config: Arc<RwLock<Config>>,
}

impl fmt::Debug for IpcLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpcLog").finish_non_exhaustive()
    }
}

impl IpcLog {
    /// One line through `config.logger` (default: standard output),
    /// nothing when `config.silent`.
    pub fn log(&self, line: impl fmt::Display) {
        let config = self.config.read().unwrap_or_else(|p| p.into_inner());
        if config.silent {
            return;
        }
        let line = line.to_string();
        match &config.logger {
            Some(logger) => logger(&line),
            None => println!("{line}"),
        }
    }

    /// node-ipc's `ipc.log(...args)`: strings and numbers as they are,
    /// objects as node's `util.inspect` shows them, to `logDepth` levels and
    /// coloured when `logInColor` and standard output is a terminal; joined
    /// by spaces.
    pub fn log_parts(&self, parts: &[crate::LogPart]) {
        let (silent, depth, color) = {
            let c = self.config.read().unwrap_or_else(|p| p.into_inner());
            (c.silent, c.log_depth, crate::log::use_color(c.log_in_color))
        };
        if !silent {
            self.log(crate::log::line(parts, depth, color));
        }
    }

    /// `log(label, object)`: [`IpcLog::log_parts`] with two parts.
    pub fn log_value<T: Serialize + ?Sized>(&self, label: &str, value: &T) {
        self.log_parts(&[crate::LogPart::new(label), crate::LogPart::new(value)]);
    }
}

fn local_endpoint(path: PathBuf) -> Endpoint {
    if cfg!(windows) {
        Endpoint::NamedPipe(ipc_transport::pipe_name(&path.to_string_lossy()))
    } else {
        Endpoint::Unix(path)
    }
}

/// Installs a global `tracing` subscriber that follows `config`: nothing
/// when `silent`, colours when `logInColor`; `RUST_LOG` overrides the
/// level (default `info`). Returns `false` if a subscriber was already set.
/// Needs the `logging` feature.
#[cfg(feature = "logging")]
pub fn init_logging(config: &Config) -> bool {
    use tracing_subscriber::EnvFilter;
    let filter = if config.silent {
        EnvFilter::new("off")
    } else {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(config.log_in_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serve_net_js_overloads() {
        use JsArg::{Callback as F, Num as N, Str as S};
        let s = |x: &str| S(x.to_owned());
        let ok = |a: &[JsArg]| ServeNet::from_js_args(a).unwrap();
        assert_eq!(ok(&[]), ServeNet::tcp());
        assert_eq!(ok(&[F]), ServeNet::tcp());
        assert_eq!(ok(&[N(8001.0)]), ServeNet::tcp().port(8001));
        assert_eq!(ok(&[N(8001.0), F]), ServeNet::tcp().port(8001));
        assert_eq!(ok(&[N(8001.0), s("udp4")]), ServeNet::udp4().port(8001));
        assert_eq!(ok(&[N(8001.0), s("udp4"), F]), ServeNet::udp4().port(8001));
        assert_eq!(ok(&[s("udp4")]), ServeNet::udp4());
        assert_eq!(ok(&[s("UDP6"), F]), ServeNet::udp6());
        assert_eq!(ok(&[s("h")]), ServeNet::tcp().host("h"));
        assert_eq!(ok(&[s("h"), F]), ServeNet::tcp().host("h"));
        assert_eq!(ok(&[s("::1"), s("udp6"), F]), ServeNet::udp6().host("::1"));
        assert_eq!(ok(&[s("h"), N(9.0)]), ServeNet::tcp().host("h").port(9));
        assert_eq!(ok(&[s("h"), N(9.0), F]), ServeNet::tcp().host("h").port(9));
        assert_eq!(
            ok(&[s("h"), N(9.0), s("udp4"), F]),
            ServeNet::udp4().host("h").port(9)
        );
        // A falsy port means the default port.
        assert_eq!(ok(&[s("h"), N(0.0)]), ServeNet::tcp().host("h"));
        // ('udp4', port, cb) is not a valid form: the port is ignored.
        assert_eq!(ok(&[s("udp4"), N(9.0), F]), ServeNet::udp4());
        assert!(ServeNet::from_js_args(&[N(70000.0)]).is_err());
        assert!(ServeNet::from_js_args(&[s("h"), s("tcp")]).is_err());
    }

    #[test]
    fn log_goes_to_the_logger_unless_silent() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let ipc = Ipc::new();
        ipc.configure(|c| {
            c.logger = Some(Arc::new(move |l: &str| lock(&sink).push(l.to_owned())));
        });
        ipc.log("hello");
        ipc.log_value("obj", &json!({"x":{"y":{"z":{"w":{"v":{"u":{"t":1}}}}}}}));
        ipc.configure(|c| c.silent = true);
        ipc.log("hidden");
        let lines = lock(&lines);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "hello");
        assert!(lines[1].starts_with("obj { x: {"), "{}", lines[1]);
        assert!(lines[1].contains("[Object]"), "{}", lines[1]);
    }
}
