//! net-ipc clients on a node-ipc endpoint.
//!
//! [`sniff`] tells the protocol from the first bytes a client sends (`IPC`
//! or `GET` → net-ipc, anything else → node-ipc; a client silent for
//! [`ServerConfig::net_ipc`](super::ServerConfig::net_ipc) is node-ipc).
//! A net-ipc connection is then served by the same connection machinery as
//! a node-ipc one ([`super::conn::serve`]) through a bridge: an in-memory
//! pipe whose far end this module drives, translating net-ipc packets to
//! the node-ipc frames and `ipcx` messages they mean, and back (the
//! mapping table is in [`ipc_proto::netipc`]). So `message` events,
//! request handlers, ping, server-to-client requests, `broadcast`,
//! `publish`, the hello check and `close(allow_reconnect)` work for both
//! kinds of client without a second code path.
//!
//! The bridge also enforces net-ipc's handshake rules: the preamble (or
//! upgrade request; anything else is answered `418` and closed), then a
//! CONNECTION packet within 10 s (else END and close), and nothing before
//! it (a premature packet is answered with END
//! `"closing orphaned connection"` and closed). Each of these is reported
//! as an `error` event naming the peer.

use std::io::Cursor;
use std::sync::Arc;

use bytes::BytesMut;
use ipc_conn::netipc::{Report, Stop};
use ipc_conn::WriterExit;
use ipc_proto::ext::{self, names, Hello};
use ipc_proto::netipc::{
    self, accept_preamble, BodyFormat, ClientHello, Codec, Detected, EndNotice, Kind, Preamble,
    ServerHello,
};
use ipc_proto::{ErrorCode, Profile, ProtocolError};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Chain};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::error::ServerError;
use crate::socket::{Peer, Socket};

/// Room of the in-memory pipe between the bridge and the connection.
const PIPE_BYTES: usize = 64 * 1024;

/// How long a closing notice (END) may take to write to a peer that is
/// being closed.
const NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What the first bytes of a connection said.
pub(super) enum Sniffed<R> {
    /// node-ipc: the bytes read so far, then the rest of the stream.
    NodeIpc(Chain<Cursor<Vec<u8>>, R>),
    /// net-ipc: the bytes read so far and the stream.
    NetIpc(BytesMut, R),
}

/// Whether this server serves net-ipc clients at all.
fn enabled(inner: &Inner) -> bool {
    inner.config.net_ipc.is_some()
        && inner.config.extension
        && inner.config.codec.profile != Profile::Raw
}

/// Reads until the first bytes tell the protocol, the window passes, the
/// stream ends or the connection is cancelled.
pub(super) async fn sniff<R: AsyncRead + Unpin>(
    inner: &Inner,
    mut rd: R,
    cancel: &CancellationToken,
) -> Sniffed<R> {
    let window = match inner.config.net_ipc {
        Some(w) if enabled(inner) => w,
        _ => return Sniffed::NodeIpc(Cursor::new(Vec::new()).chain(rd)),
    };
    let deadline = Instant::now() + window;
    // Made when the first bytes arrive: a connection that sends nothing
    // holds no buffer.
    let mut buf = BytesMut::new();
    loop {
        match netipc::detect(&buf) {
            Detected::NetIpc => return Sniffed::NetIpc(buf, rd),
            Detected::NodeIpc => break,
            Detected::NeedMore => {}
        }
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => break,
            r = std::future::poll_fn(|cx| {
                ipc_conn::poll_read_via_stack(std::pin::Pin::new(&mut rd), cx, &mut buf, 0)
            }) => r,
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                // The frame reader meets the failed stream again and
                // reports it.
                tracing::debug!(endpoint = %inner.name, "read failed before the protocol was known: {e}");
                break;
            }
        }
    }
    Sniffed::NodeIpc(Cursor::new(buf.to_vec()).chain(rd))
}

/// Serves one net-ipc connection: the bridge plus the ordinary connection
/// machinery on the other end of the pipe.
pub(super) async fn serve<R, W>(
    inner: &Arc<Inner>,
    socket: &Socket,
    cancel: &CancellationToken,
    buf: BytesMut,
    rd: R,
    wr: W,
) -> (
    Option<ServerError>,
    Result<WriterExit, tokio::task::JoinError>,
)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    socket
        .inner
        .net_ipc
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let (near_rd, near_wr) = tokio::io::split(near);
    let bridge = Bridge {
        inner: inner.clone(),
        socket: socket.clone(),
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(bridge.run(buf, rd, wr, far));
    let (mut reader, writer) = super::conn::start(inner, socket, cancel, near_rd, near_wr);
    let out = super::conn::serve(inner, socket, cancel, &mut reader, writer).await;
    // Our end of the pipe is gone: the bridge writes what it still holds
    // and ends; a peer that does not read is given up after stop_timeout.
    if tokio::time::timeout(inner.config.stop_timeout, task)
        .await
        .is_err()
    {
        cancel.cancel();
    }
    out
}

struct Bridge {
    inner: Arc<Inner>,
    socket: Socket,
    cancel: CancellationToken,
}

impl Bridge {
    fn peer(&self) -> Peer {
        Peer::Socket(self.socket.clone())
    }

    fn label(&self) -> String {
        self.socket.label().to_owned()
    }

    async fn report(&self, error: ServerError) {
        self.inner.error(Some(self.peer()), error).await;
    }

    fn limit(&self) -> usize {
        let c = &self.inner.config.codec;
        if c.profile.is_guarded() {
            c.max_message_size
        } else {
            c.max_partial_bytes
        }
    }

    async fn run<R, W>(
        self,
        mut buf: BytesMut,
        mut rd: R,
        mut wr: W,
        mut far: tokio::io::DuplexStream,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut codec = Codec::new(self.limit());
        let hello = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return,
            r = tokio::time::timeout(
                netipc::HANDSHAKE_TIMEOUT,
                self.handshake(&mut buf, &mut rd, &mut wr, &mut codec),
            ) => r,
        };
        let hello = match hello {
            Ok(Ok(hello)) => hello,
            Ok(Err(Stop)) => return,
            Err(_) => {
                let end = EndNotice { m: None, a: false };
                self.end(&mut wr, &codec, &end).await;
                let reason = format!(
                    "no net-ipc handshake within {:?}",
                    netipc::HANDSHAKE_TIMEOUT
                );
                self.report(ServerError::Handshake {
                    peer: self.label(),
                    code: ErrorCode::HandshakeTimeout,
                    reason,
                })
                .await;
                return;
            }
        };
        // Hand the hello to the server as `ipcx.hello`.
        let id = hello.id.as_ref().and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) if n.as_f64() != Some(0.0) => Some(n.to_string()),
            _ => None,
        });
        let ours = Hello {
            v: ext::VERSION,
            id,
            extras: hello.extras.clone().unwrap_or(serde_json::Value::Null),
            features: vec!["request".into(), "ping".into()],
        };
        match self
            .inner
            .encoder
            .encode_to_bytes(names::HELLO, Some(&ours))
        {
            Ok(frame) => {
                if far.write_all(&frame).await.is_err() {
                    return;
                }
            }
            Err(source) => {
                self.report(ServerError::Protocol {
                    peer: self.label(),
                    source,
                })
                .await;
                return;
            }
        }
        if hello.messagepack == Some(true) {
            codec.set_format(BodyFormat::Msgpack);
        }
        let reply = ServerHello {
            id: serde_json::Value::Null,
            // Compression is never granted: the client falls back.
            compress: hello.compress.map(|_| false),
            messagepack: hello.messagepack,
        };
        self.pumps().run(buf, rd, wr, far, codec, Some(reply)).await;
    }

    /// The preamble and the CONNECTION packet.
    async fn handshake<R, W>(
        &self,
        buf: &mut BytesMut,
        rd: &mut R,
        wr: &mut W,
        codec: &mut Codec,
    ) -> Result<ClientHello, Stop>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            match accept_preamble(buf) {
                Ok(Some(Preamble::Direct)) => break,
                Ok(Some(Preamble::Upgrade)) => {
                    if wr.write_all(netipc::UPGRADE_RESPONSE).await.is_err() {
                        return Err(Stop);
                    }
                    break;
                }
                Ok(None) => self.fill(buf, rd).await?,
                Err(source) => {
                    // The refusal is a courtesy (bounded by the handshake's
                    // time limit); the violation is reported below.
                    if wr.write_all(netipc::TEAPOT).await.is_ok() {
                        let _ = wr.shutdown().await;
                    }
                    self.report(ServerError::Protocol {
                        peer: self.label(),
                        source,
                    })
                    .await;
                    return Err(Stop);
                }
            }
        }
        loop {
            let packet = match codec.decode(buf) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.fill(buf, rd).await?;
                    continue;
                }
                Err(source) => {
                    return Err(self.orphan(wr, codec, source).await);
                }
            };
            if packet.kind != Kind::Connection {
                let source =
                    ProtocolError::new(ErrorCode::HandshakeRequired, netipc::PREMATURE_PACKET);
                return Err(self.orphan(wr, codec, source).await);
            }
            return match packet.data_as::<ClientHello>() {
                Ok(hello) => Ok(hello),
                Err(source) => Err(self.orphan(wr, codec, source).await),
            };
        }
    }

    /// net-ipc's answer to a bad first packet: END and close.
    async fn orphan<W: AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
        codec: &Codec,
        source: ProtocolError,
    ) -> Stop {
        let end = EndNotice {
            m: Some(netipc::ORPHAN_CONNECTION.into()),
            a: false,
        };
        self.end(wr, codec, &end).await;
        self.report(ServerError::Protocol {
            peer: self.label(),
            source,
        })
        .await;
        Stop
    }

    async fn end<W: AsyncWrite + Unpin>(&self, wr: &mut W, codec: &Codec, end: &EndNotice) {
        let mut out = Vec::new();
        if codec
            .encode_value(Kind::End, Some(end), None, &mut out)
            .is_ok()
        {
            // A courtesy to a peer being closed, bounded by the connection's
            // cancellation and NOTICE_TIMEOUT (a peer that does not read
            // cannot hold it): the reason is reported by the caller either
            // way, and a peer that is gone needs no notice.
            let notice = async {
                if wr.write_all(&out).await.is_ok() {
                    let _ = wr.shutdown().await;
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => {}
                _ = tokio::time::timeout(NOTICE_TIMEOUT, notice) => {}
            }
        }
    }

    /// Reads more bytes; the end of the stream stops the bridge.
    async fn fill<R: AsyncRead + Unpin>(&self, buf: &mut BytesMut, rd: &mut R) -> Result<(), Stop> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        match rd.read_buf(buf).await {
            Ok(0) => Err(Stop),
            Ok(_) => Ok(()),
            Err(source) => {
                self.report(ServerError::Io {
                    peer: self.label(),
                    source,
                })
                .await;
                Err(Stop)
            }
        }
    }

    /// The pumps, once the handshake is done.
    fn pumps(&self) -> ipc_conn::netipc::Bridge {
        let inner = self.inner.clone();
        let socket = self.socket.clone();
        let report: ipc_conn::netipc::Reporter = Arc::new(move |r| {
            let inner = inner.clone();
            let socket = socket.clone();
            Box::pin(async move {
                let peer = socket.label().to_owned();
                let error = match r {
                    Report::Protocol(source) => ServerError::Protocol { peer, source },
                    Report::Encode(source) => ServerError::Encode { peer, source },
                    Report::Backpressure { queued, capacity } => ServerError::Backpressure {
                        peer,
                        queued,
                        capacity,
                    },
                    Report::Io(source) => ServerError::Io { peer, source },
                    _ => return,
                };
                inner.error(Some(Peer::Socket(socket)), error).await;
            })
        });
        ipc_conn::netipc::Bridge::new(
            self.inner.encoder.clone(),
            self.inner.config.queue_bytes,
            self.cancel.clone(),
            self.socket.label().to_owned(),
            report,
        )
    }
}

impl super::Server {
    /// net-ipc's `survey`: sends one request to every stream connection
    /// (node-ipc clients with the extension and net-ipc clients alike) and
    /// collects every answer, each within `timeout` (zero: none). The
    /// results come in connection order; a client that does not answer in
    /// time, or goes away, has an `Err` in its place.
    pub async fn survey<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: std::time::Duration,
    ) -> Result<Vec<(Socket, Result<ipc_conn::Response, ServerError>)>, ServerError> {
        let raw: Arc<Box<RawValue>> =
            Arc::new(netipc::to_raw(data).map_err(|source| ServerError::Encode {
                peer: "survey".into(),
                source,
            })?);
        let sockets = self.sockets();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, socket) in sockets.iter().enumerate() {
            let socket = socket.clone();
            let raw = raw.clone();
            tasks.spawn(async move { (i, socket.request(&**raw, timeout).await) });
        }
        let mut answers: Vec<Option<Result<ipc_conn::Response, ServerError>>> =
            sockets.iter().map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, r)) = done {
                answers[i] = Some(r);
            }
        }
        Ok(sockets
            .into_iter()
            .zip(answers)
            .map(|(s, a)| {
                let a = a.unwrap_or_else(|| {
                    Err(ServerError::NotConnected {
                        peer: s.label().to_owned(),
                    })
                });
                (s, a)
            })
            .collect())
    }
}
