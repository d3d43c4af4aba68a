//! Shared pieces of the interop tests: the raw Rust endpoints, the `docs/protocol.md` §7
//! vectors and small expectation helpers.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ipc_interop::{hex_decode, Event, Transport};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, BufReader, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Bound for one wait (spawn + ready, an event, a read).
pub const T: Duration = Duration::from_secs(20);
/// Bound for one whole matrix cell.
pub const CELL: Duration = Duration::from_secs(60);

pub const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Stream transports of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Unix,
    Tcp4,
    Tcp6,
}

impl Net {
    pub const ALL: [Net; 3] = [Net::Unix, Net::Tcp4, Net::Tcp6];

    pub fn label(self) -> &'static str {
        match self {
            Net::Unix => "unix",
            Net::Tcp4 => "tcp4",
            Net::Tcp6 => "tcp6",
        }
    }

    fn host(self) -> IpAddr {
        if self == Net::Tcp6 {
            V6
        } else {
            V4
        }
    }

    /// A transport for a Node server: a socket path in `dir`, or an address
    /// whose port `ipc_interop::spawn_server_ready` chooses when it starts.
    pub fn server_transport(self, dir: &Path) -> Transport {
        match self {
            Net::Unix => Transport::Unix {
                path: dir.join("node.sock"),
            },
            Net::Tcp4 | Net::Tcp6 => Transport::Tcp {
                host: self.host(),
                port: 0,
            },
        }
    }
}

/// A raw byte stream over any of the transports.
pub enum RawStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl AsyncRead for RawStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            RawStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RawStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RawStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            RawStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Unix(s) => Pin::new(s).poll_flush(cx),
            RawStream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RawStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            RawStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A raw Rust listener the Node client connects to.
pub enum RawListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl RawListener {
    /// Binds on `net` (socket file in `dir`) and returns the transport the
    /// Node client must connect to.
    pub async fn bind(net: Net, dir: &Path) -> (RawListener, Transport) {
        match net {
            Net::Unix => {
                let path = dir.join("rust.sock");
                let l = UnixListener::bind(&path).unwrap();
                (RawListener::Unix(l), Transport::Unix { path })
            }
            Net::Tcp4 | Net::Tcp6 => {
                let l = TcpListener::bind((net.host(), 0)).await.unwrap();
                let port = l.local_addr().unwrap().port();
                (
                    RawListener::Tcp(l),
                    Transport::Tcp {
                        host: net.host(),
                        port,
                    },
                )
            }
        }
    }

    pub async fn accept(&self) -> Result<RawStream, String> {
        let fut = async {
            match self {
                RawListener::Unix(l) => l.accept().await.map(|(s, _)| RawStream::Unix(s)),
                RawListener::Tcp(l) => l.accept().await.map(|(s, _)| RawStream::Tcp(s)),
            }
        };
        match tokio::time::timeout(T, fut).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(format!("accept failed: {e}")),
            Err(_) => Err("no connection from the Node client".into()),
        }
    }
}

/// Connects a raw stream to a Node server's transport.
pub async fn connect(t: &Transport) -> Result<RawStream, String> {
    let fut = async {
        match t {
            Transport::Unix { path } => UnixStream::connect(path).await.map(RawStream::Unix),
            Transport::Tcp { host, port } => {
                TcpStream::connect((*host, *port)).await.map(RawStream::Tcp)
            }
            other => panic!("not a stream transport: {other:?}"),
        }
    };
    match tokio::time::timeout(T, fut).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Reads one frame up to and including `delim` (bounded in time).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    delim: u8,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(T, r.read_until(delim, &mut buf)).await {
        Ok(Ok(0)) => Err("stream closed before a frame".into()),
        Ok(Ok(_)) if buf.last() == Some(&delim) => Ok(buf),
        Ok(Ok(_)) => Err(format!(
            "stream closed inside a frame: {}",
            String::from_utf8_lossy(&buf)
        )),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!(
            "no complete frame within {T:?} (got {:?})",
            String::from_utf8_lossy(&buf)
        )),
    }
}

/// Waits until the peer closes the stream (EOF or reset), bounded.
pub async fn expect_closed<R: AsyncRead + Unpin>(r: &mut R) -> Result<(), String> {
    let mut buf = [0u8; 256];
    let fut = async {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => Ok(()),
            Ok(n) => Err(format!(
                "expected the connection to close, got data {:?}",
                String::from_utf8_lossy(&buf[..n])
            )),
        }
    };
    match tokio::time::timeout(T, fut).await {
        Ok(r) => r,
        Err(_) => Err("connection still open".into()),
    }
}

/// One framed encode vector of `docs/protocol.md` §7.1.
pub struct EncodeVector {
    pub id: &'static str,
    pub ty: &'static str,
    /// `json` (data as JSON), `undefined` (no data argument), `buffer`
    /// (data = hex for a Node Buffer).
    pub kind: &'static str,
    pub data: Value,
    /// Wire bytes from v14 (and every version unless `legacy` is set).
    pub hex: &'static str,
    /// Wire bytes from v9/v12 when they differ (F6, F8, F12).
    pub legacy: Option<&'static str>,
    /// The (type, data) a receiver dispatches for `hex`.
    pub decoded: Value,
}

pub fn encode_vectors() -> Vec<EncodeVector> {
    const Z_EMPTY: &str = "7b2274797065223a227a222c2264617461223a7b7d7d0c";
    vec![
        EncodeVector { id: "F1", ty: "message", kind: "json", data: json!("hello"),
            hex: "7b2274797065223a226d657373616765222c2264617461223a2268656c6c6f227d0c", legacy: None, decoded: json!("hello") },
        EncodeVector { id: "F2", ty: "message", kind: "json", data: json!({"a":1,"b":[true,null]}),
            hex: "7b2274797065223a226d657373616765222c2264617461223a7b2261223a312c2262223a5b747275652c6e756c6c5d7d7d0c", legacy: None, decoded: json!({"a":1,"b":[true,null]}) },
        EncodeVector { id: "F3", ty: "n", kind: "json", data: json!(42),
            hex: "7b2274797065223a226e222c2264617461223a34327d0c", legacy: None, decoded: json!(42) },
        EncodeVector { id: "F4", ty: "n", kind: "json", data: json!(0),
            hex: "7b2274797065223a226e222c2264617461223a307d0c", legacy: None, decoded: json!(0) },
        EncodeVector { id: "F5", ty: "n", kind: "json", data: json!(1e21),
            hex: "7b2274797065223a226e222c2264617461223a31652b32317d0c", legacy: None, decoded: json!(1e21) },
        EncodeVector { id: "F6", ty: "z", kind: "json", data: Value::Null,
            hex: "7b2274797065223a227a222c2264617461223a6e756c6c7d0c", legacy: Some(Z_EMPTY), decoded: Value::Null },
        EncodeVector { id: "F7", ty: "z", kind: "undefined", data: Value::Null,
            hex: Z_EMPTY, legacy: None, decoded: json!({}) },
        EncodeVector { id: "F8", ty: "z", kind: "json", data: json!(""),
            hex: "7b2274797065223a227a222c2264617461223a22227d0c", legacy: Some(Z_EMPTY), decoded: json!("") },
        EncodeVector { id: "F9", ty: "z", kind: "json", data: json!(false),
            hex: "7b2274797065223a227a222c2264617461223a66616c73657d0c", legacy: None, decoded: json!(false) },
        EncodeVector { id: "F10", ty: "u", kind: "json", data: json!("héllo 🌍"),
            hex: "7b2274797065223a2275222c2264617461223a2268c3a96c6c6f20f09f8c8d227d0c", legacy: None, decoded: json!("héllo 🌍") },
        EncodeVector { id: "F11", ty: "c", kind: "json", data: json!("a\u{c}b\u{1}\n\"\\/"),
            hex: "7b2274797065223a2263222c2264617461223a22615c66625c75303030315c6e5c225c5c2f227d0c", legacy: None, decoded: json!("a\u{c}b\u{1}\n\"\\/") },
        EncodeVector { id: "F12", ty: "e", kind: "json", data: json!({"_maxListeners":10,"x":1}),
            hex: "7b2274797065223a2265222c2264617461223a7b225f6d61784c697374656e657273223a31302c2278223a317d7d0c",
            legacy: Some("7b2274797065223a2265222c2264617461223a7b7d7d0c"), decoded: json!({"_maxListeners":10,"x":1}) },
        EncodeVector { id: "F13", ty: "b", kind: "buffer", data: json!("0102ff"),
            hex: "7b2274797065223a2262222c2264617461223a7b2274797065223a22427566666572222c2264617461223a5b312c322c3235355d7d7d0c",
            legacy: None, decoded: json!({"type":"Buffer","data":[1,2,255]}) },
        EncodeVector { id: "F14", ty: "s", kind: "json", data: json!("\u{2028}"),
            hex: "7b2274797065223a2273222c2264617461223a22e280a8227d0c", legacy: None, decoded: json!("\u{2028}") },
    ]
}

/// F15: F1's type with data "hi" and `delimiter = "\n"`.
pub const F15_HEX: &str = "7b2274797065223a226d657373616765222c2264617461223a226869227d0a";

impl EncodeVector {
    /// The expected bytes for a producer of the given flavor.
    pub fn expected(&self, legacy: bool) -> Vec<u8> {
        let h = if legacy {
            self.legacy.unwrap_or(self.hex)
        } else {
            self.hex
        };
        hex_decode(h).unwrap()
    }

    /// The peer command that produces this vector.
    pub fn command(&self) -> Value {
        json!({"cmd": "emit", "type": self.ty, "data": self.data, "dataKind": self.kind})
    }
}

/// `true` for a listener call `ty(data)` (application event with that data).
pub fn is_msg(e: &Event, ty: &str, data: &Value) -> bool {
    e.is_event(ty) && e.arg(0) == Some(data)
}

/// Compares bytes and explains a mismatch.
pub fn check_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: bytes differ\n  got  {} ({:?})\n  want {} ({:?})",
            ipc_interop::hex(got),
            String::from_utf8_lossy(got),
            ipc_interop::hex(want),
            String::from_utf8_lossy(want)
        ))
    }
}

/// Runs one cell body with the overall cell bound.
pub async fn bounded<F>(fut: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(CELL, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("cell exceeded {CELL:?}")),
    }
}

/// Maps a harness error to the cell's failure text.
pub fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Runs a setup step with the overall cell bound.
pub async fn bounded_setup<T, F>(fut: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    match tokio::time::timeout(CELL, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("setup exceeded {CELL:?}")),
    }
}
