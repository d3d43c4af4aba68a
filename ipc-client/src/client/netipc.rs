//! A client connection that speaks net-ipc ([`super::Protocol::NetIpc`]).
//!
//! The handshake is done here on the real stream: the `IPC` preamble, then
//! CONNECTION `{"compress":false,"messagepack","extras","id"}` with the
//! configured `hello` as `extras` and the id of the previous connection,
//! answered by the server's CONNECTION (or END when it refuses us). Then the
//! connection runs like a node-ipc one on an in-memory pipe, through the
//! bridge of [`ipc_conn::netipc`]; the server's reply reaches the client as
//! an `ipcx.welcome`, so [`super::Client::session_id`] holds the id the
//! server gave and a required handshake is satisfied.

use std::sync::Arc;

use bytes::BytesMut;
use ipc_conn::netipc::{Bridge, Report, Reporter};
use ipc_proto::ext::{self, names, Welcome};
use ipc_proto::netipc::{BodyFormat, ClientHello, Codec, EndNotice, Kind, ServerHello, PREAMBLE};
use ipc_proto::{ErrorCode, Profile};
use ipc_transport::{ReadHalf, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{lock, Inner};
use crate::error::ClientError;
use crate::retry::RetryState;

/// Room of the in-memory pipe between the bridge and the connection.
const PIPE_BYTES: usize = 64 * 1024;

/// Runs one net-ipc connection until it ends (see [`super::supervisor`]).
pub(super) async fn run(
    inner: &Arc<Inner>,
    mut rd: ReadHalf,
    mut wr: WriteHalf,
    messagepack: bool,
    retry: &mut RetryState,
) -> Option<ClientError> {
    let limit = if inner.config.codec.profile == Profile::Raw {
        return Some(ClientError::Config(ipc_proto::ProtocolError::new(
            ErrorCode::WrongProfile,
            "net-ipc needs a framed profile",
        )));
    } else if inner.config.codec.profile.is_guarded() {
        inner.config.codec.max_message_size
    } else {
        inner.config.codec.max_partial_bytes
    };
    let mut codec = Codec::new(limit);
    let mut buf = BytesMut::new();
    let reply = tokio::time::timeout(
        inner.config.handshake_timeout,
        handshake(inner, &mut rd, &mut wr, &mut codec, &mut buf, messagepack),
    )
    .await;
    let reply = match reply {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Some(e),
        Err(_) => {
            return Some(ClientError::Handshake {
                endpoint: inner.name.clone(),
                code: ErrorCode::HandshakeTimeout,
                reason: format!(
                    "no net-ipc CONNECTION reply within {:?}",
                    inner.config.handshake_timeout
                ),
            })
        }
    };
    if reply.messagepack == Some(true) {
        codec.set_format(BodyFormat::Msgpack);
    }
    let id = match &reply.id {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let (near, mut far) = tokio::io::duplex(PIPE_BYTES);
    // The reply, as our side of the connection understands it.
    let welcome = Welcome {
        v: ext::VERSION,
        id,
        features: vec!["request".into(), "ping".into()],
    };
    match inner
        .link
        .encoder()
        .encode_to_bytes(names::WELCOME, Some(&welcome))
    {
        Ok(frame) => {
            if let Err(source) = far.write_all(&frame).await {
                return Some(ClientError::Io {
                    endpoint: inner.name.clone(),
                    source,
                });
            }
        }
        Err(e) => return Some(ClientError::Config(e)),
    }
    let cancel = inner.explicit.child_token();
    let bridge = Bridge::new(
        inner.link.encoder().clone(),
        inner.config.queue_bytes,
        cancel.clone(),
        inner.name.clone(),
        reporter(inner),
    );
    let pumps = tokio::spawn(async move { bridge.run(buf, rd, wr, far, codec, None).await });
    let (near_rd, near_wr) = tokio::io::split(near);
    let failure = super::supervisor::run_halves(inner, near_rd, near_wr, retry).await;
    // What our side wrote last (an END) still goes out, within bounds.
    if tokio::time::timeout(inner.config.close_timeout, pumps)
        .await
        .is_err()
    {
        cancel.cancel();
    }
    failure
}

/// Preamble and CONNECTION; returns the server's reply.
async fn handshake(
    inner: &Inner,
    rd: &mut ReadHalf,
    wr: &mut WriteHalf,
    codec: &mut Codec,
    buf: &mut BytesMut,
    messagepack: bool,
) -> Result<ServerHello, ClientError> {
    let io = |source| ClientError::Io {
        endpoint: inner.name.clone(),
        source,
    };
    let protocol = |source| ClientError::Protocol {
        endpoint: inner.name.clone(),
        source,
    };
    let previous = lock(&inner.session_id).clone();
    let hello = ClientHello {
        compress: Some(false),
        messagepack: Some(messagepack),
        extras: (!inner.config.hello.is_null()).then(|| inner.config.hello.clone()),
        id: Some(
            previous
                .filter(|s| !s.is_empty())
                .map_or(serde_json::Value::Null, serde_json::Value::String),
        ),
    };
    let mut out = PREAMBLE.to_vec();
    codec
        .encode_value(Kind::Connection, Some(&hello), None, &mut out)
        .map_err(ClientError::Config)?;
    wr.write_all(&out).await.map_err(io)?;
    loop {
        match codec.decode(buf).map_err(protocol)? {
            Some(p) if p.kind == Kind::Connection => return p.data_as().map_err(protocol),
            Some(p) if p.kind == Kind::End => {
                let end: EndNotice = p.data_as().unwrap_or_default();
                if !end.a {
                    // Refused for good: no reconnect after this.
                    inner
                        .refused_reconnect
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let reason = match end.m {
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => "the server ended the connection".into(),
                };
                return Err(ClientError::Handshake {
                    endpoint: inner.name.clone(),
                    code: ErrorCode::HandshakeRequired,
                    reason,
                });
            }
            Some(p) => {
                tracing::debug!(endpoint = %inner.name, kind = ?p.kind, "packet before the CONNECTION reply ignored");
            }
            None => {
                buf.reserve(4096);
                let n = rd.read_buf(buf).await.map_err(io)?;
                if n == 0 {
                    return Err(io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the net-ipc handshake",
                    )));
                }
            }
        }
    }
}

/// The bridge's reports as `error` events.
fn reporter(inner: &Arc<Inner>) -> Reporter {
    let inner = inner.clone();
    Arc::new(move |r| {
        let inner = inner.clone();
        Box::pin(async move {
            let endpoint = inner.name.clone();
            let e = match r {
                Report::Protocol(source) => ClientError::Protocol { endpoint, source },
                Report::Encode(source) => ClientError::Encode { endpoint, source },
                Report::Backpressure { queued, capacity } => ClientError::Backpressure {
                    endpoint,
                    queued,
                    capacity,
                },
                Report::Io(source) => ClientError::Io { endpoint, source },
                _ => return,
            };
            inner.error(e).await;
        })
    })
}

/// net-ipc has no publish/subscribe: topic calls fail at once.
pub(super) fn no_pubsub(inner: &Inner) -> Result<(), ClientError> {
    if let super::Protocol::NetIpc { .. } = inner.config.protocol {
        return Err(ClientError::Encode {
            endpoint: inner.name.clone(),
            source: ipc_proto::ProtocolError::new(
                ErrorCode::InvalidMessage,
                "net-ipc has no publish/subscribe",
            ),
        });
    }
    Ok(())
}
