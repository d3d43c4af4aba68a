//! Shared pieces of the matrix tests that put this project's crates
//! (`ipc-server`, `ipc-client`) on the Rust side: endpoints, TLS material,
//! event taps, `docs/protocol.md` §7 expectations and the concurrent cell runner.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_interop::{CellStatus, Flavor, Matrix, Transport};
use ipc_proto::{CodecConfig, FrameEncoder, Message, RawEncoding};
use ipc_server::{Peer, Server, ServerConfig, ServerEvent, Socket};
use ipc_transport::{Endpoint, NodeTlsOptions, TlsClientConfig, TlsServerConfig, UdpFamily};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::common::{check_bytes, EncodeVector, T};

/// Messages of the burst cells (a burst of 10,000).
pub const BURST: u64 = 10_000;
/// Frame size of the 1 MiB cells: the whole frame without its delimiter.
pub const BIG_FRAME: usize = 1 << 20;
/// How many cell groups run at once.
pub const PARALLEL: usize = 4;

/// Data length that makes `{"type":"big","data":"…"}` exactly [`BIG_FRAME`].
pub fn big_data_len() -> usize {
    BIG_FRAME - r#"{"type":"big","data":""}"#.len()
}

/// The peer script's `bigPattern`: "0123456789abcdef" repeated.
pub fn big_pattern(len: usize) -> String {
    "0123456789abcdef".chars().cycle().take(len).collect()
}

// ---------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------

/// Stream transports of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Unix,
    Tcp4,
    Tcp6,
    /// TLS over 127.0.0.1, server authentication.
    Tls,
    /// TLS over 127.0.0.1, both sides authenticated.
    Mtls,
}

impl Via {
    pub const ALL: [Via; 5] = [Via::Unix, Via::Tcp4, Via::Tcp6, Via::Tls, Via::Mtls];

    pub fn label(self) -> &'static str {
        match self {
            Via::Unix => "unix",
            Via::Tcp4 => "tcp4",
            Via::Tcp6 => "tcp6",
            Via::Tls => "tls",
            Via::Mtls => "mtls",
        }
    }

    pub fn host(self) -> IpAddr {
        match self {
            Via::Tcp6 => crate::common::V6,
            _ => crate::common::V4,
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Via::Tls | Via::Mtls)
    }

    /// Our server's endpoint: port 0, the OS picks a free port; the real
    /// endpoint is what `Server::start` returns.
    pub fn our_endpoint(self, dir: &Path) -> Endpoint {
        let port = 0;
        let host = self.host().to_string();
        match self {
            Via::Unix => Endpoint::Unix(dir.join("ours.sock")),
            Via::Tcp4 | Via::Tcp6 => Endpoint::Tcp { host, port },
            Via::Tls | Via::Mtls => Endpoint::Tls { host, port },
        }
    }

    /// A Node server's transport: a path in `dir`, or a network address
    /// whose port is chosen when the server starts (`spawn_server`).
    pub fn node_transport(self, dir: &Path, name: &str) -> Transport {
        let host = self.host();
        match self {
            Via::Unix => Transport::Unix {
                path: dir.join(name),
            },
            Via::Tcp4 | Via::Tcp6 => Transport::Tcp { host, port: 0 },
            Via::Tls | Via::Mtls => Transport::Tls { host, port: 0 },
        }
    }
}

/// The Node transport that reaches `ep`.
pub fn transport_of(ep: &Endpoint) -> Transport {
    match ep {
        Endpoint::Unix(path) => Transport::Unix { path: path.clone() },
        Endpoint::Tcp { host, port } => Transport::Tcp {
            host: host.parse().unwrap(),
            port: *port,
        },
        Endpoint::Tls { host, port } => Transport::Tls {
            host: host.parse().unwrap(),
            port: *port,
        },
        Endpoint::Udp { family, host, port } => {
            let host = host.parse().unwrap();
            match family {
                UdpFamily::V4 => Transport::Udp4 { host, port: *port },
                UdpFamily::V6 => Transport::Udp6 { host, port: *port },
            }
        }
        other => panic!("no Node transport for {other}"),
    }
}

/// Our endpoint that reaches a Node transport.
pub fn endpoint_of(t: &Transport) -> Endpoint {
    match t {
        Transport::Unix { path } => Endpoint::Unix(path.clone()),
        Transport::Tcp { host, port } => Endpoint::Tcp {
            host: host.to_string(),
            port: *port,
        },
        Transport::Tls { host, port } => Endpoint::Tls {
            host: host.to_string(),
            port: *port,
        },
        Transport::Udp4 { host, port } => Endpoint::Udp {
            family: UdpFamily::V4,
            host: host.to_string(),
            port: *port,
        },
        Transport::Udp6 { host, port } => Endpoint::Udp {
            family: UdpFamily::V6,
            host: host.to_string(),
            port: *port,
        },
    }
}

/// Our profile against a flavor: `guarded` against v14-guarded, else `fast`.
pub fn codec(flavor: Flavor) -> CodecConfig {
    match flavor {
        Flavor::V14Guarded => CodecConfig::guarded(),
        _ => CodecConfig::fast(),
    }
}

// ---------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------

/// Run-time PKI as PEM files: a CA, a server leaf (SANs localhost,
/// 127.0.0.1, ::1) and a client leaf.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn pki() -> Arc<Pki> {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ipc interop matrix CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "ipc interop server",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["interop-client".into()],
        "ipc interop client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Arc::new(Pki {
        ca: write("ca.pem", ca_cert.pem()),
        server_cert: write("server.pem", server_cert.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        _dir: dir,
    })
}

fn p(path: &Path) -> Value {
    json!(path.to_string_lossy())
}

/// `config.tls` of a Node server on `via` (`None` without TLS).
pub fn node_server_tls(via: Via, pki: &Pki) -> Option<Value> {
    let mut v = json!({"private": p(&pki.server_key), "public": p(&pki.server_cert)});
    match via {
        Via::Tls => Some(v),
        Via::Mtls => {
            v["trustedConnections"] = json!([p(&pki.ca)]);
            v["requestCert"] = json!(true);
            v["rejectUnauthorized"] = json!(true);
            Some(v)
        }
        _ => None,
    }
}

/// `config.tls` of a Node client on `via`; `with_cert` presents the client
/// certificate (mTLS).
pub fn node_client_tls(via: Via, pki: &Pki, with_cert: bool) -> Option<Value> {
    if !via.is_tls() {
        return None;
    }
    let mut v = json!({"trustedConnections": [p(&pki.ca)], "rejectUnauthorized": true});
    if with_cert {
        v["private"] = p(&pki.client_key);
        v["public"] = p(&pki.client_cert);
    }
    Some(v)
}

/// Our server's configuration for `via` and `flavor`.
pub fn our_server_config(flavor: Flavor, via: Via, pki: &Pki, codec: CodecConfig) -> ServerConfig {
    let mut cfg = ServerConfig {
        codec,
        ..ServerConfig::default()
    };
    if via.is_tls() {
        let mut o = NodeTlsOptions {
            public: Some(pki.server_cert.clone()),
            private: Some(pki.server_key.clone()),
            ..NodeTlsOptions::default()
        };
        if via == Via::Mtls {
            o.trusted_connections = vec![pki.ca.clone()];
            o.request_cert = Some(true);
            o.reject_unauthorized = Some(true);
        }
        cfg.listen.tls = Some(TlsServerConfig::from_node_options(&o).unwrap());
    }
    let _ = flavor;
    cfg
}

/// Our client's configuration: quick unlimited retries, TLS per `via`.
pub fn our_client_config(via: Via, pki: &Pki, codec: CodecConfig, with_cert: bool) -> ClientConfig {
    let mut cfg = ClientConfig {
        codec,
        retry: RetryConfig {
            retry: Duration::from_millis(50),
            max_retries: MaxRetries::Unlimited,
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    };
    if via.is_tls() {
        let mut o = NodeTlsOptions {
            trusted_connections: vec![pki.ca.clone()],
            reject_unauthorized: Some(true),
            ..NodeTlsOptions::default()
        };
        if with_cert {
            o.public = Some(pki.client_cert.clone());
            o.private = Some(pki.client_key.clone());
        }
        cfg.connect.tls = Some(TlsClientConfig::from_node_options(&o).unwrap());
    }
    cfg
}

// ---------------------------------------------------------------------------
// Event taps
// ---------------------------------------------------------------------------

/// Every event of a server or client, copied by a wildcard handler into an
/// unbounded channel (so a slow test never slows the endpoint down).
pub type Rx<E> = mpsc::UnboundedReceiver<E>;

pub fn tap_server(s: &Server) -> Rx<ServerEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    s.on("*", move |ev| {
        let _ = tx.send(ev.clone());
    });
    rx
}

pub fn tap_client(c: &Client) -> Rx<ClientEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    c.on("*", move |ev| {
        let _ = tx.send(ev.clone());
    });
    rx
}

/// Waits (bounded by `T`) for the first event `f` maps to `Some`, skipping
/// the others; the skipped ones are named in the timeout message.
pub async fn wait_for<E: std::fmt::Debug, R>(
    rx: &mut Rx<E>,
    what: &str,
    mut f: impl FnMut(&E) -> Option<R>,
) -> Result<R, String> {
    let deadline = tokio::time::Instant::now() + T;
    let mut skipped: Vec<String> = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => {
                return Err(format!(
                    "timed out after {T:?} waiting for {what}; skipped: {}",
                    skipped.join(", ")
                ))
            }
            Ok(None) => return Err(format!("event channel closed waiting for {what}")),
            Ok(Some(ev)) => {
                if let Some(r) = f(&ev) {
                    return Ok(r);
                }
                if skipped.len() == 12 {
                    skipped.remove(0);
                }
                let mut text = format!("{ev:?}");
                text.truncate(160);
                skipped.push(text);
            }
        }
    }
}

pub fn srv_connect(ev: &ServerEvent) -> Option<Socket> {
    match ev {
        ServerEvent::Connect(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn srv_msg<'a>(ty: &'a str) -> impl FnMut(&ServerEvent) -> Option<(Message, Peer)> + 'a {
    move |ev| match ev {
        ServerEvent::Message { from, message } if message.event() == ty => {
            Some((message.clone(), from.clone()))
        }
        _ => None,
    }
}

pub fn srv_data(ev: &ServerEvent) -> Option<(Vec<u8>, Peer)> {
    match ev {
        ServerEvent::Data { from, bytes } => Some((bytes.to_vec(), from.clone())),
        _ => None,
    }
}

pub fn cli_msg<'a>(ty: &'a str) -> impl FnMut(&ClientEvent) -> Option<Message> + 'a {
    move |ev| match ev {
        ClientEvent::Message(m) if m.event() == ty => Some(m.clone()),
        _ => None,
    }
}

pub fn cli_connect(ev: &ClientEvent) -> Option<()> {
    matches!(ev, ClientEvent::Connect).then_some(())
}

/// Reads raw chunks until `want.len()` bytes arrived, then compares.
pub async fn raw_bytes<E: std::fmt::Debug>(
    rx: &mut Rx<E>,
    want: &[u8],
    mut chunk: impl FnMut(&E) -> Option<Vec<u8>>,
) -> Result<(), String> {
    let mut got = Vec::new();
    while got.len() < want.len() {
        let c = wait_for(rx, "raw data", &mut chunk).await?;
        got.extend(c);
    }
    check_bytes("raw bytes", &got, want)
}

/// The wire form of a received message: its frame plus the delimiter.
pub fn wire(m: &Message, delimiter: &[u8]) -> Vec<u8> {
    let mut b = m.frame().to_vec();
    b.extend_from_slice(delimiter);
    b
}

// ---------------------------------------------------------------------------
// `docs/protocol.md` §7 expectations
// ---------------------------------------------------------------------------

/// A Node `Buffer`'s JSON form with its members in Node's order
/// (`serde_json::Value` objects sort their keys).
#[derive(serde::Serialize)]
pub struct NodeBuffer {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: Vec<u8>,
}

/// A value our side sends.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub enum OurData {
    Json(Value),
    Buffer(NodeBuffer),
}

/// The value our side passes for a vector (`None`: no data, F7).
pub fn our_data(v: &EncodeVector) -> Option<OurData> {
    match v.kind {
        "undefined" => None,
        "buffer" => Some(OurData::Buffer(NodeBuffer {
            kind: "Buffer",
            data: ipc_interop::hex_decode(v.data.as_str().unwrap_or("")).unwrap_or_default(),
        })),
        _ => Some(OurData::Json(v.data.clone())),
    }
}

/// Our encoder's bytes for a vector.
pub fn our_frame(v: &EncodeVector, codec: &CodecConfig) -> Result<bytes::Bytes, String> {
    let enc = FrameEncoder::new(codec.clone()).map_err(|e| e.to_string())?;
    match our_data(v) {
        Some(d) => enc.encode_to_bytes(v.ty, Some(&d)),
        None => enc.encode_to_bytes::<Value>(v.ty, None),
    }
    .map_err(|e| e.to_string())
}

/// Our encoder's bytes for a vector equal the reference hex (`docs/protocol.md` §7) (the v14 form).
pub fn check_our_encoder(v: &EncodeVector, codec: &CodecConfig) -> Result<(), String> {
    let got = our_frame(v, codec)?;
    check_bytes(
        &format!("{} from our encoder", v.id),
        &got,
        &v.expected(false),
    )
}

/// What a Node receiver reports for a vector of ours: the next `type` event
/// and its first argument.
pub async fn node_got(node: &mut ipc_interop::NodePeer, v: &EncodeVector) -> Result<(), String> {
    let ev = node
        .expect(|e| e.is_event(v.ty), T)
        .await
        .map_err(|e| e.to_string())?;
    if ev.arg(0) == Some(&v.decoded) {
        Ok(())
    } else {
        Err(format!(
            "{}: the Node peer received {:?}, want {}",
            v.id,
            ev.arg(0),
            v.decoded
        ))
    }
}

/// Raw vectors per encoding: (encoding, string the Node peer writes,
/// `docs/protocol.md` §7.2 bytes).
pub fn raw_vectors() -> Vec<(RawEncoding, &'static str, &'static str)> {
    vec![
        (RawEncoding::Utf8, "hello", "68656c6c6f"),
        (RawEncoding::Utf16le, "hi", "68006900"),
        (RawEncoding::Hex, "0a0b", "0a0b"),
        (RawEncoding::Base64, "aGVsbG8=", "68656c6c6f"),
        (RawEncoding::Ascii, "é€", "e9ac"),
        (RawEncoding::Latin1, "é€", "e9ac"),
    ]
}

/// Bytes our side writes to a raw Node receiver: invalid UTF-8, a NUL, bit
/// 7 set, and a length that is a multiple of 2 and 3 (so base64 and
/// utf16le receivers deliver it whole).
pub const RAW_IN: [u8; 6] = [0xff, 0xfe, 0x00, 0x80, 0x41, 0x42];

/// What a raw Node stream receiver reports for `bytes` (`docs/protocol.md` §1.7): v14 is
/// lossless; v9/v12 decode with `encoding` and encode again.
pub fn raw_stream_expect(flavor: Flavor, enc: RawEncoding, bytes: &[u8]) -> Vec<u8> {
    if !flavor.is_legacy() {
        return bytes.to_vec();
    }
    match enc {
        RawEncoding::Utf8 => String::from_utf8_lossy(bytes).as_bytes().to_vec(),
        RawEncoding::Ascii => bytes.iter().map(|b| b & 0x7f).collect(),
        RawEncoding::Base64 => bytes[..bytes.len() / 3 * 3].to_vec(),
        RawEncoding::Utf16le => bytes[..bytes.len() / 2 * 2].to_vec(),
        RawEncoding::Hex | RawEncoding::Latin1 => bytes.to_vec(),
    }
}

/// What a raw Node UDP receiver reports for a datagram (`docs/protocol.md` §1.7, §2.5):
/// v9/v12 decode it as UTF-8, then encode the text with `encoding`.
pub fn raw_udp_expect(flavor: Flavor, enc: RawEncoding, bytes: &[u8]) -> Vec<u8> {
    if !flavor.is_legacy() {
        return bytes.to_vec();
    }
    enc.encode_str(&String::from_utf8_lossy(bytes))
}

// ---------------------------------------------------------------------------
// Cells and the concurrent runner
// ---------------------------------------------------------------------------

/// The cells of one group (suite × flavor × transport).
pub struct Group {
    pub suite: &'static str,
    pub flavor: Flavor,
    pub transport: &'static str,
    pub cells: Vec<(String, CellStatus)>,
    /// When the previous cell ended (for `IPC_INTEROP_TIMING`).
    pub last: Option<std::time::Instant>,
}

impl Group {
    pub fn new(suite: &'static str, flavor: Flavor, transport: &'static str) -> Self {
        Group {
            suite,
            flavor,
            transport,
            cells: Vec::new(),
            last: Some(std::time::Instant::now()),
        }
    }

    pub fn put(&mut self, case: &str, res: Result<(), String>) {
        if std::env::var_os("IPC_INTEROP_TIMING").is_some() {
            let now = std::time::Instant::now();
            let took = now.duration_since(self.last.unwrap_or(now));
            self.last = Some(now);
            let _ = writeln!(
                std::io::stderr(),
                "TIMING {} {} {} {case} {took:?}",
                self.suite,
                self.flavor,
                self.transport
            );
        }
        self.cells.push((case.into(), CellStatus::from(res)));
    }

    pub fn na(&mut self, case: &str, why: &str) {
        self.cells
            .push((case.into(), CellStatus::NotApplicable(why.into())));
    }

    pub fn fail_all(&mut self, cases: &[&str], why: &str) {
        for c in cases {
            self.put(c, Err(format!("setup failed: {why}")));
        }
    }
}

pub type Job = Pin<Box<dyn Future<Output = Vec<Group>> + Send>>;

/// Runs the jobs, at most [`PARALLEL`] at a time, and records every cell
/// in the suite's matrix, in job order (a panicking job is a failed cell).
pub async fn run_jobs(matrices: &mut [Matrix], suites: &[&str], jobs: Vec<(String, Job)>) {
    let sem = Arc::new(Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    let labels: Vec<String> = jobs.iter().map(|(l, _)| l.clone()).collect();
    for (i, (_, job)) in jobs.into_iter().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, job.await)
        });
    }
    let mut done: Vec<Option<Vec<Group>>> = labels.iter().map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, groups)) => done[i] = Some(groups),
            Err(e) => matrices[0].record(
                "*",
                "*",
                "job",
                CellStatus::Failed(format!("a cell group panicked: {e}")),
            ),
        }
    }
    for (label, groups) in labels.iter().zip(done) {
        let Some(groups) = groups else {
            matrices[0].record(
                "*",
                "*",
                label,
                CellStatus::Failed("the cell group did not finish".into()),
            );
            continue;
        };
        for g in groups {
            let i = suites.iter().position(|s| *s == g.suite).unwrap();
            for (case, status) in g.cells {
                matrices[i].record(g.flavor.label(), g.transport, &case, status);
            }
        }
    }
}
