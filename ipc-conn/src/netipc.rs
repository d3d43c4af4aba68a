//! The net-ipc bridge: one connection's net-ipc packets as the node-ipc
//! frames (and `ipcx` extension messages) the rest of this crate handles.
//!
//! A net-ipc connection runs the ordinary machinery — outbox and writer,
//! frame reader, driver — on one end of an in-memory pipe; a [`Bridge`]
//! pumps the other end to and from the real stream, translating each
//! packet to the frame that means the same and back (the table is in
//! [`ipc_proto::netipc`]). The handshake itself (preamble, CONNECTION) is
//! done by the side that owns the connection before the pumps start, since
//! it differs between client and server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipc_proto::ext::{self, names, CallIn, End, ResponseIn};
use ipc_proto::netipc::{BodyFormat, Codec, EndNotice, Kind, Packet, ServerHello};
use ipc_proto::{ErrorCode, FrameDecoder, FrameEncoder, Inbound, Message, Profile, ProtocolError};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Something a bridge reports to its owner (who turns it into an `error`
/// event naming the peer).
#[derive(Debug)]
#[non_exhaustive]
pub enum Report {
    /// The peer sent a packet that could not be read or has no meaning;
    /// `FrameTooLarge` ends the connection, others skip the packet.
    Protocol(ProtocolError),
    /// A frame of ours could not be turned into a packet (it was not sent).
    Encode(ProtocolError),
    /// Frames waiting for the handshake outgrew the queue bound; the
    /// connection ends.
    Backpressure {
        /// Bytes held.
        queued: usize,
        /// The bound.
        capacity: usize,
    },
    /// Reading from the peer failed.
    Io(std::io::Error),
}

/// Where a bridge's reports go.
pub type Reporter = Arc<dyn Fn(Report) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How a bridge read ended (the end of the stream, or a failure already
/// reported).
#[derive(Debug)]
pub struct Stop;

/// The translating pumps of one net-ipc connection.
pub struct Bridge {
    encoder: FrameEncoder,
    queue_bytes: usize,
    cancel: CancellationToken,
    label: String,
    report: Reporter,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("peer", &self.label).finish()
    }
}

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
    /// A bridge writing frames with `encoder` (the connection's), holding at
    /// most `queue_bytes` before the handshake, ended by `cancel`, reporting
    /// to `report`.
    pub fn new(
        encoder: FrameEncoder,
        queue_bytes: usize,
        cancel: CancellationToken,
        label: String,
        report: Reporter,
    ) -> Self {
        Bridge {
            encoder,
            queue_bytes,
            cancel,
            label,
            report,
        }
    }

    async fn report(&self, r: Report) {
        (self.report)(r).await;
    }

    /// Runs both pumps until the connection ends: `buf` holds bytes already
    /// read from `rd`; `codec` is the negotiated codec (its format applies
    /// to packets after the handshake); `pipe` is the far end of the
    /// connection's in-memory pipe. With `reply` (server side) the
    /// CONNECTION reply is written when the server's `ipcx.welcome` comes
    /// by, and the body format switches after it.
    pub async fn run<R, W>(
        &self,
        buf: BytesMut,
        rd: R,
        wr: W,
        pipe: tokio::io::DuplexStream,
        codec: Codec,
        reply: Option<ServerHello>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (mut pipe_rd, pipe_wr) = tokio::io::split(pipe);
        let mut out_codec = codec.clone();
        let switch = reply.is_some() && codec.format() == BodyFormat::Msgpack;
        if switch {
            // The reply itself is JSON; packets after it are not.
            out_codec.set_format(BodyFormat::Json);
        }
        let inbound = self.inbound(buf, rd, pipe_wr, codec);
        let outbound = self.outbound(&mut pipe_rd, wr, out_codec, reply, switch);
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

    /// Reads more bytes; the end of the stream stops the bridge.
    pub async fn fill<R: AsyncRead + Unpin>(
        &self,
        buf: &mut BytesMut,
        rd: &mut R,
    ) -> Result<(), Stop> {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(8192);
        }
        match rd.read_buf(buf).await {
            Ok(0) => Err(Stop),
            Ok(_) => Ok(()),
            Err(source) => {
                if !is_disconnect(&source) {
                    self.report(Report::Io(source)).await;
                }
                Err(Stop)
            }
        }
    }

    /// Peer → us: packets become node-ipc frames on the pipe.
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
                        Err(source) => self.report(Report::Protocol(source)).await,
                    },
                    Ok(None) => break,
                    Err(source) => {
                        let fatal = source.code() == ErrorCode::FrameTooLarge;
                        self.report(Report::Protocol(source)).await;
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
        let enc = &self.encoder;
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

    /// Us → peer: node-ipc frames from the pipe become packets. With
    /// `reply` (server side), frames queued before the server's
    /// `ipcx.welcome` wait for the CONNECTION reply it becomes.
    async fn outbound<P, W>(
        &self,
        mut pipe: P,
        mut wr: W,
        mut codec: Codec,
        reply: Option<ServerHello>,
        msgpack: bool,
    ) where
        P: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let cfg = self
            .encoder
            .config()
            .clone()
            .with_profile(Profile::Fast)
            .with_allow_unsafe_names(true);
        let Ok(mut dec) = FrameDecoder::new(cfg) else {
            return;
        };
        let mut buf = BytesMut::with_capacity(8192);
        let mut held: Vec<Message> = Vec::new();
        let mut held_bytes = 0usize;
        let mut welcomed = reply.is_none();
        let mut reply = reply.unwrap_or_default();
        loop {
            let mut out = Vec::new();
            loop {
                let m = match dec.decode(&mut buf, std::time::Instant::now()) {
                    Ok(Some(Inbound::Message(m))) => m,
                    Ok(Some(Inbound::Raw(_))) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        // Our own frames: this cannot happen short of a bug.
                        tracing::error!(peer = %self.label, "bridge cannot read its own frame: {e}");
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
                            self.report(Report::Protocol(source)).await;
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
                        if held_bytes > self.queue_bytes {
                            self.report(Report::Backpressure {
                                queued: held_bytes,
                                capacity: self.queue_bytes,
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
            // The handshake is the CONNECTION packet's business.
            names::WELCOME | names::HELLO => Ok(()),
            names::SUB | names::UNSUB | names::PUB => Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "net-ipc has no publish/subscribe: the call was not sent",
            )),
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
            self.report(Report::Encode(source)).await;
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
