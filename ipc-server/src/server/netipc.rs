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

use bytes::{Bytes, BytesMut};
use ipc_conn::WriterExit;
use ipc_proto::ext::{self, names, CallIn, End, Hello, ResponseIn};
use ipc_proto::netipc::{
    self, accept_preamble, BodyFormat, ClientHello, Codec, Detected, EndNotice, Kind, Packet,
    Preamble, ServerHello,
};
use ipc_proto::{ErrorCode, FrameDecoder, Inbound, Message, Profile, ProtocolError};
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
    let mut buf = BytesMut::with_capacity(512);
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
            r = rd.read_buf(&mut buf) => r,
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
    decoder: FrameDecoder,
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
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let (near_rd, near_wr) = tokio::io::split(near);
    let bridge = Bridge {
        inner: inner.clone(),
        socket: socket.clone(),
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(bridge.run(buf, rd, wr, far));
    let out = super::conn::serve(inner, socket, cancel, decoder, near_rd, near_wr).await;
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

/// How a bridge direction ended badly (already reported).
struct Stop;

/// An `ipcx.request`/`response`/`ping`/`pong` as the bridge writes it.
#[derive(Serialize)]
struct CallOut<'a> {
    n: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    d: Option<&'a RawValue>,
}

/// A node-ipc event that has no net-ipc packet, carried as MESSAGE data.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    data: &'a RawValue,
}

/// The error answer of an `ipcx.response`, carried as RESPONSE data.
#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: &'a ext::ErrorBody<'static>,
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

    async fn run<R, W>(self, mut buf: BytesMut, mut rd: R, mut wr: W, far: tokio::io::DuplexStream)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (mut far_rd, mut far_wr) = tokio::io::split(far);
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
                if far_wr.write_all(&frame).await.is_err() {
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
        let msgpack = hello.messagepack == Some(true);
        let reply = ServerHello {
            id: serde_json::Value::Null,
            // Compression is never granted: the client falls back.
            compress: hello.compress.map(|_| false),
            messagepack: hello.messagepack,
        };
        let mut in_codec = codec.clone();
        if msgpack {
            in_codec.set_format(BodyFormat::Msgpack);
        }
        let inbound = self.inbound(buf, rd, far_wr, in_codec);
        let outbound = self.outbound(&mut far_rd, wr, codec, reply, msgpack);
        tokio::pin!(inbound, outbound);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {}
            _ = &mut outbound => {}
            _ = &mut inbound => {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => {}
                    _ = &mut outbound => {}
                }
            }
        }
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
                    let _ = wr.write_all(netipc::TEAPOT).await;
                    let _ = wr.shutdown().await;
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
            let _ = wr.write_all(&out).await;
        }
        let _ = wr.shutdown().await;
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
                if !is_disconnect(&source) {
                    self.report(ServerError::Io {
                        peer: self.label(),
                        source,
                    })
                    .await;
                }
                Err(Stop)
            }
        }
    }

    /// Peer → server: packets become node-ipc frames on the pipe.
    async fn inbound<R, P>(&self, mut buf: BytesMut, mut rd: R, mut pipe: P, mut codec: Codec)
    where
        R: AsyncRead + Unpin,
        P: AsyncWrite + Unpin,
    {
        loop {
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(packet)) => match self.to_frame(&packet) {
                        Ok(Some(frame)) => {
                            if pipe.write_all(&frame).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(source) => {
                            self.report(ServerError::Protocol {
                                peer: self.label(),
                                source,
                            })
                            .await
                        }
                    },
                    Ok(None) => break,
                    Err(source) => {
                        let fatal = source.code() == ErrorCode::FrameTooLarge;
                        self.report(ServerError::Protocol {
                            peer: self.label(),
                            source,
                        })
                        .await;
                        if fatal {
                            self.cancel.cancel();
                            return;
                        }
                    }
                }
            }
            if self.fill(&mut buf, &mut rd).await.is_err() {
                // The peer is done sending: so is the pipe.
                let _ = pipe.shutdown().await;
                return;
            }
        }
    }

    /// One packet as the node-ipc frame that means the same.
    fn to_frame(&self, p: &Packet) -> Result<Option<Bytes>, ProtocolError> {
        let enc = &self.inner.encoder;
        let data = p.data.as_deref();
        let call = |event: &str| -> Result<Option<Bytes>, ProtocolError> {
            let Some(n) = p.nonce.as_deref() else {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidMessage,
                    format!("net-ipc {:?} packet without a nonce", p.kind),
                ));
            };
            enc.encode_to_bytes(event, Some(&CallOut { n, d: data }))
                .map(Some)
        };
        match p.kind {
            Kind::Message => enc.encode_to_bytes("message", data).map(Some),
            Kind::Request => call(names::REQUEST),
            Kind::Response => call(names::RESPONSE),
            Kind::Ping => call(names::PING),
            Kind::Pong => call(names::PONG),
            Kind::End => {
                let notice: EndNotice = p.data_as().unwrap_or_default();
                let end = End {
                    reason: notice.m.unwrap_or(serde_json::Value::Null),
                    reconnect: notice.a,
                };
                enc.encode_to_bytes(names::END, Some(&end)).map(Some)
            }
            Kind::Connection => Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "a second net-ipc CONNECTION packet was ignored",
            )),
        }
    }

    /// Server → peer: node-ipc frames from the pipe become packets. Frames
    /// queued before the server's welcome wait for the CONNECTION reply.
    async fn outbound<P, W>(
        &self,
        mut pipe: P,
        mut wr: W,
        mut codec: Codec,
        mut reply: ServerHello,
        msgpack: bool,
    ) where
        P: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let cfg = self
            .inner
            .config
            .codec
            .clone()
            .with_profile(Profile::Fast)
            .with_allow_unsafe_names(true);
        let Ok(mut dec) = FrameDecoder::new(cfg) else {
            return;
        };
        let mut buf = BytesMut::with_capacity(8192);
        let mut held: Vec<Message> = Vec::new();
        let mut held_bytes = 0usize;
        let mut welcomed = false;
        loop {
            let mut out = Vec::new();
            loop {
                let m = match dec.decode(&mut buf, std::time::Instant::now()) {
                    Ok(Some(Inbound::Message(m))) => m,
                    Ok(Some(Inbound::Raw(_))) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        // Our own frames: this cannot happen short of a bug.
                        tracing::error!(peer = %self.socket.label(), "bridge cannot read its own frame: {e}");
                        self.cancel.cancel();
                        return;
                    }
                };
                if !welcomed {
                    if m.event() == names::WELCOME {
                        welcomed = true;
                        let id = m.data::<ext::Welcome>().map(|w| w.id).unwrap_or_default();
                        reply.id = serde_json::Value::String(id);
                        if let Err(source) =
                            codec.encode_value(Kind::Connection, Some(&reply), None, &mut out)
                        {
                            self.report(ServerError::Protocol {
                                peer: self.label(),
                                source,
                            })
                            .await;
                        }
                        if msgpack {
                            codec.set_format(BodyFormat::Msgpack);
                        }
                        for m in std::mem::take(&mut held) {
                            self.to_packet(&m, &codec, &mut out).await;
                        }
                    } else if m.event() == names::END {
                        // A refused hello: the END goes out at once.
                        self.to_packet(&m, &codec, &mut out).await;
                    } else {
                        held_bytes += m.frame().len();
                        held.push(m);
                        if held_bytes > self.inner.config.queue_bytes {
                            self.report(ServerError::Backpressure {
                                peer: self.label(),
                                queued: held_bytes,
                                capacity: self.inner.config.queue_bytes,
                            })
                            .await;
                            self.cancel.cancel();
                            return;
                        }
                    }
                    continue;
                }
                self.to_packet(&m, &codec, &mut out).await;
            }
            if !out.is_empty() && wr.write_all(&out).await.is_err() {
                return;
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            match pipe.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = wr.flush().await;
                    let _ = wr.shutdown().await;
                    return;
                }
                Ok(_) => {}
            }
        }
    }

    /// Appends the packet that means the same as frame `m`.
    async fn to_packet(&self, m: &Message, codec: &Codec, out: &mut Vec<u8>) {
        let result = match m.event() {
            "message" => codec.encode_json_text(Kind::Message, m.data_json(), None, out),
            names::REQUEST | names::PING | names::PONG => match m.data::<CallIn>() {
                Ok(c) => {
                    let kind = match m.event() {
                        names::REQUEST => Kind::Request,
                        names::PING => Kind::Ping,
                        _ => Kind::Pong,
                    };
                    codec.encode(kind, c.d.as_deref(), Some(&c.n), out)
                }
                Err(e) => Err(invalid(e)),
            },
            names::RESPONSE => match m.data::<ResponseIn>() {
                Ok(r) => match &r.e {
                    Some(e) => codec.encode_value(
                        Kind::Response,
                        Some(&ErrorAnswer { error: e }),
                        Some(&r.n),
                        out,
                    ),
                    None => codec.encode(Kind::Response, r.d.as_deref(), Some(&r.n), out),
                },
                Err(e) => Err(invalid(e)),
            },
            names::END => match m.data::<End>() {
                Ok(end) => {
                    let notice = EndNotice {
                        m: (!end.reason.is_null()).then_some(end.reason),
                        a: end.reconnect,
                    };
                    codec.encode_value(Kind::End, Some(&notice), None, out)
                }
                Err(e) => Err(invalid(e)),
            },
            names::WELCOME => Ok(()),
            event => {
                let null = RawValue::NULL;
                let data = match m.data_json() {
                    Some(d) => serde_json::from_slice::<&RawValue>(d).unwrap_or(null),
                    None => null,
                };
                codec.encode_value(
                    Kind::Message,
                    Some(&Envelope { ty: event, data }),
                    None,
                    out,
                )
            }
        };
        if let Err(source) = result {
            // Nothing queued disappears silently.
            self.report(ServerError::Encode {
                peer: self.label(),
                source,
            })
            .await;
        }
    }
}

fn invalid(e: serde_json::Error) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidMessage, e.to_string())
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
    )
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
