//! The `ipcx` extension's wire format: request/response, ping,
//! publish/subscribe, handshake and graceful close, carried inside ordinary
//! node-ipc frames.
//!
//! Every extension message is a plain `{"type":…,"data":…}` frame with one
//! of the [`names`] below, so a node-ipc peer of any version parses it;
//! only peers that implement the extension act on it. This module holds
//! the message shapes, how they are encoded and decoded, and the topic
//! rules; what an endpoint *does* with them (correlating calls, running
//! request handlers, the broker) belongs to the runtime crates.
//!
//! | `type` | direction | `data` |
//! |---|---|---|
//! | `ipcx.hello` | C→S | [`Hello`]: `{"v":1,"id":string\|null,"extras":any,"features":[…]}` |
//! | `ipcx.welcome` | S→C | [`Welcome`]: `{"v":1,"id":string,"features":[…]}` |
//! | `ipcx.request` | both | [`CallIn`]: `{"n":string,"d":any}` |
//! | `ipcx.response` | both | [`ResponseIn`]: `{"n":string,"d":any}`, `{"n":string}` (no handler) or `{"n":string,"e":{"code":string,"message":string}}` |
//! | `ipcx.ping` / `ipcx.pong` | both | [`CallIn`]: `{"n":string,"d":any?}` (the pong echoes it) |
//! | `ipcx.sub` / `ipcx.unsub` | C→S | [`TopicsIn`]: `{"n":string,"topics":[string]}`, acknowledged by `ipcx.response {"n","d":{"topics":[…]}}` ([`TopicsAck`]) |
//! | `ipcx.pub` | C→S | [`PubIn`]: `{"n":string?,"pub":string,"message":any}`, acknowledged only when `n` is present ([`PubAck`]) |
//! | *topic* | S→C | the published `message`, as a plain event named after the topic |
//! | `ipcx.end` | both | [`End`]: `{"reason":any,"reconnect":bool}` before a graceful close |
//!
//! Correlation ids (`n`) are unique among a requester's calls in flight on
//! one connection; responses with an unknown `n` are ignored. Calls are
//! never replayed on a new connection ([`is_call`]).
//!
//! ```
//! use ipc_proto::{ext, CodecConfig, FrameEncoder};
//! let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
//! let frame = ext::encode_call(&enc, ext::names::REQUEST, "k3x9", Some("what time is it?")).unwrap();
//! assert_eq!(
//!     &frame[..],
//!     b"{\"type\":\"ipcx.request\",\"data\":{\"n\":\"k3x9\",\"d\":\"what time is it?\"}}\x0c"
//! );
//! ```

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ErrorCode, FrameEncoder, Message, ProtocolError};

/// Extension event names.
pub mod names {
    /// Handshake request.
    pub const HELLO: &str = "ipcx.hello";
    /// Handshake reply.
    pub const WELCOME: &str = "ipcx.welcome";
    /// Correlated request.
    pub const REQUEST: &str = "ipcx.request";
    /// Reply to a request, a subscription or an acknowledged publication.
    pub const RESPONSE: &str = "ipcx.response";
    /// Liveness probe.
    pub const PING: &str = "ipcx.ping";
    /// Reply to a ping.
    pub const PONG: &str = "ipcx.pong";
    /// Subscribe to topics.
    pub const SUB: &str = "ipcx.sub";
    /// Unsubscribe from topics.
    pub const UNSUB: &str = "ipcx.unsub";
    /// Publish through the server.
    pub const PUB: &str = "ipcx.pub";
    /// Graceful-close notice.
    pub const END: &str = "ipcx.end";
    /// The prefix every extension name starts with.
    pub const PREFIX: &str = "ipcx.";
}

/// The extension's protocol version, sent in [`Hello`] and [`Welcome`].
pub const VERSION: u32 = 1;

/// The features this implementation announces in the handshake.
pub const FEATURES: &[&str] = &["request", "ping", "pubsub"];

/// The correlation id a client uses to renew its subscriptions after a
/// reconnect; nobody waits for its acknowledgement.
pub const RESUBSCRIBE_ID: &str = "resubscribe";

/// Whether `event` is an extension name (starts with `ipcx.`).
pub fn is_extension(event: &str) -> bool {
    event.starts_with(names::PREFIX)
}

/// Whether a frame of this event is a call that must not be replayed on a
/// new connection: its answer would go to a call that failed with the old
/// connection (request, ping, subscription change).
pub fn is_call(event: &str) -> bool {
    matches!(
        event,
        names::REQUEST | names::PING | names::SUB | names::UNSUB
    )
}

/// The features list for a [`Hello`] or [`Welcome`].
pub fn features() -> Vec<String> {
    FEATURES.iter().map(|f| (*f).to_owned()).collect()
}

/// The `ipcx.end` notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct End {
    /// Why the connection closes.
    #[serde(default)]
    pub reason: serde_json::Value,
    /// Whether the receiver may reconnect.
    #[serde(default = "yes")]
    pub reconnect: bool,
}

impl End {
    /// An end notice with a text reason.
    pub fn new(reason: &str, reconnect: bool) -> End {
        End {
            reason: serde_json::Value::String(reason.to_owned()),
            reconnect,
        }
    }

    /// The reason as text (a string as it is, anything else as JSON).
    pub fn reason_text(&self) -> String {
        match &self.reason {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

fn yes() -> bool {
    true
}

/// The `ipcx.hello` handshake message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// The id the client had before (reconnecting clients keep it), or none.
    #[serde(default)]
    pub id: Option<String>,
    /// Application payload (e.g. an auth token).
    #[serde(default)]
    pub extras: serde_json::Value,
    /// Features the client implements.
    #[serde(default)]
    pub features: Vec<String>,
}

/// The `ipcx.welcome` handshake reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// Protocol version ([`VERSION`]).
    pub v: u32,
    /// The connection id the server assigned (or kept).
    pub id: String,
    /// Features the server implements.
    #[serde(default)]
    pub features: Vec<String>,
}

/// A received request, ping or pong: the correlation id and the raw data.
#[derive(Debug, Deserialize)]
pub struct CallIn {
    /// Correlation id.
    pub n: String,
    /// The data, as raw JSON (absent: none).
    pub d: Option<Box<RawValue>>,
}

/// A received `ipcx.response`.
#[derive(Debug, Deserialize)]
pub struct ResponseIn {
    /// Correlation id of the call it answers.
    pub n: String,
    /// The answer's data, as raw JSON (absent: none).
    pub d: Option<Box<RawValue>>,
    /// The error, when the responder failed.
    pub e: Option<ErrorBody<'static>>,
}

/// The error of a failed call: an `ERR_IPC_*` (or application) code and a
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    /// The error code (e.g. `ERR_IPC_HANDLER`).
    pub code: Cow<'a, str>,
    /// What went wrong.
    pub message: Cow<'a, str>,
}

/// A received `ipcx.sub` or `ipcx.unsub`.
#[derive(Debug, Deserialize)]
pub struct TopicsIn {
    /// Correlation id of the acknowledgement.
    pub n: String,
    /// The topics.
    #[serde(default)]
    pub topics: Vec<String>,
}

/// The `ipcx.sub`/`ipcx.unsub` a client sends.
#[derive(Debug, Serialize)]
pub struct TopicsOut<'a, S: AsRef<str> + Serialize> {
    /// Correlation id.
    pub n: &'a str,
    /// The topics.
    pub topics: &'a [S],
}

/// The acknowledgement of a subscription change: every topic the
/// subscriber holds now.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TopicsAck {
    /// The subscriber's topics after the change.
    #[serde(default)]
    pub topics: Vec<String>,
}

/// A received `ipcx.pub`.
#[derive(Debug, Deserialize)]
pub struct PubIn {
    /// Correlation id of the acknowledgement, when one is wanted.
    #[serde(default)]
    pub n: Option<String>,
    /// The topic.
    #[serde(rename = "pub")]
    pub topic: String,
    /// The message, as raw JSON.
    pub message: Option<Box<RawValue>>,
}

/// The `ipcx.pub` a client sends (fire and forget: no `n`).
#[derive(Debug, Serialize)]
pub struct PubOut<'a, T: ?Sized + Serialize> {
    /// The topic.
    #[serde(rename = "pub")]
    pub topic: &'a str,
    /// The message.
    pub message: &'a T,
}

/// The acknowledgement of a publication: how many subscribers it was
/// queued to.
#[derive(Debug, Serialize, Deserialize)]
pub struct PubAck {
    /// Subscribers the publication was queued to.
    pub delivered: usize,
}

#[derive(Serialize)]
struct WithData<'a, T: ?Sized> {
    n: &'a str,
    d: &'a T,
}

#[derive(Serialize)]
struct NoData<'a> {
    n: &'a str,
}

#[derive(Serialize)]
struct WithError<'a> {
    n: &'a str,
    e: ErrorBody<'a>,
}

/// Decodes the data of an extension message as `T`; a malformed body is an
/// `ERR_IPC_INVALID_MESSAGE` naming the event.
pub fn decode<T: serde::de::DeserializeOwned>(msg: &Message) -> Result<T, ProtocolError> {
    msg.data::<T>().map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("malformed {}: {e}", msg.event()),
        )
    })
}

/// The call id (`data.n`, a string) of an extension message whose body is
/// otherwise malformed, so the requester can still be answered with an
/// error. `None` when there is no usable id.
pub fn call_id(msg: &Message) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        n: Option<serde_json::Value>,
    }
    match msg.data::<Id>().ok()?.n? {
        serde_json::Value::String(n) if !n.is_empty() => Some(n),
        _ => None,
    }
}

/// Encodes `{"n":…,"d":…}` (`d` omitted when `None`) under `event`.
pub fn encode_call<T: Serialize + ?Sized>(
    encoder: &FrameEncoder,
    event: &str,
    n: &str,
    data: Option<&T>,
) -> Result<Bytes, ProtocolError> {
    match data {
        Some(d) => encoder.encode_to_bytes(event, Some(&WithData { n, d })),
        None => encoder.encode_to_bytes(event, Some(&NoData { n })),
    }
}

/// Encodes the `ipcx.response` answering call `n` with `data` (`None`:
/// an answer without data).
pub fn encode_response<T: Serialize + ?Sized>(
    encoder: &FrameEncoder,
    n: &str,
    data: Option<&T>,
) -> Result<Bytes, ProtocolError> {
    encode_call(encoder, names::RESPONSE, n, data)
}

/// Encodes the `ipcx.response` failing call `n` with `code` and `message`.
pub fn encode_error(
    encoder: &FrameEncoder,
    n: &str,
    code: &str,
    message: &str,
) -> Result<Bytes, ProtocolError> {
    let e = ErrorBody {
        code: code.into(),
        message: message.into(),
    };
    encoder.encode_to_bytes(names::RESPONSE, Some(&WithError { n, e }))
}

/// Answers an `ipcx.ping` with an `ipcx.pong` echoing `n` and `d`.
pub fn pong_for(msg: &Message, encoder: &FrameEncoder) -> Result<Bytes, ProtocolError> {
    let c: CallIn = decode(msg)?;
    encode_call(encoder, names::PONG, &c.n, c.d.as_deref())
}

/// Checks a pub/sub topic like an event name: non-empty, not reserved,
/// not a prototype name, not an extension name, at most `max_len` UTF-16
/// units.
pub fn validate_topic(topic: &str, max_len: usize) -> Result<(), ProtocolError> {
    let bad = |m: &str| {
        Err(ProtocolError::new(
            ErrorCode::InvalidEvent,
            format!("topic `{topic}` {m}"),
        ))
    };
    if topic.is_empty() {
        return bad("is empty");
    }
    if crate::is_reserved_event(topic) {
        return Err(ProtocolError::new(
            ErrorCode::ReservedEvent,
            format!("topic `{topic}` is a reserved event name"),
        ));
    }
    if crate::is_unsafe_event(topic) {
        return bad("is an unsafe (prototype) name");
    }
    if is_extension(topic) {
        return bad("uses the extension prefix `ipcx.`");
    }
    if topic.encode_utf16().count() > max_len {
        return Err(ProtocolError::new(
            ErrorCode::EventTooLarge,
            format!("topic is longer than {max_len} UTF-16 units"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CodecConfig, FrameDecoder, Inbound};

    fn enc() -> FrameEncoder {
        FrameEncoder::new(CodecConfig::fast()).unwrap()
    }

    fn decode_frame(frame: &Bytes) -> Message {
        let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
        let mut buf = bytes::BytesMut::from(&frame[..]);
        match dec.decode(&mut buf, std::time::Instant::now()).unwrap() {
            Some(Inbound::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    /// The extension's test vectors: requests, answers with and without
    /// data, errors.
    #[test]
    fn extension_vectors() {
        let enc = enc();
        let f = encode_call(&enc, names::REQUEST, "k3x9", Some("what time is it?")).unwrap();
        assert_eq!(
            &f[..],
            b"{\"type\":\"ipcx.request\",\"data\":{\"n\":\"k3x9\",\"d\":\"what time is it?\"}}\x0c"
        );
        let f = encode_response::<()>(&enc, "k3x9", None).unwrap();
        assert_eq!(
            &f[..],
            b"{\"type\":\"ipcx.response\",\"data\":{\"n\":\"k3x9\"}}\x0c"
        );
        let f = encode_error(&enc, "n1", "ERR_IPC_HANDLER", "nope").unwrap();
        assert_eq!(
            &f[..],
            &b"{\"type\":\"ipcx.response\",\"data\":{\"n\":\"n1\",\"e\":{\"code\":\"ERR_IPC_HANDLER\",\"message\":\"nope\"}}}\x0c"[..]
        );
        let r: ResponseIn = decode(&decode_frame(&f)).unwrap();
        assert_eq!(r.n, "n1");
        assert_eq!(r.e.unwrap().code, "ERR_IPC_HANDLER");
    }

    #[test]
    fn pong_echoes_the_ping() {
        let enc = enc();
        let ping = decode_frame(&encode_call(&enc, names::PING, "p1", Some(&[1, 2])).unwrap());
        assert_eq!(
            &pong_for(&ping, &enc).unwrap()[..],
            b"{\"type\":\"ipcx.pong\",\"data\":{\"n\":\"p1\",\"d\":[1,2]}}\x0c"
        );
        let bad = decode_frame(&enc.encode_to_bytes(names::PING, Some(&7)).unwrap());
        assert_eq!(
            pong_for(&bad, &enc).unwrap_err().code(),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn handshake_and_end_shapes() {
        let enc = enc();
        let hello = Hello {
            v: VERSION,
            id: None,
            extras: serde_json::json!({"token": "t"}),
            features: features(),
        };
        let m = decode_frame(&enc.encode_to_bytes(names::HELLO, Some(&hello)).unwrap());
        assert_eq!(decode::<Hello>(&m).unwrap(), hello);
        let m = decode_frame(&enc.encode_to_bytes(names::END, Some(&7)).unwrap());
        assert!(decode::<End>(&m).is_err());
        let m = decode_frame(
            &enc.encode_to_bytes(names::END, Some(&serde_json::json!({})))
                .unwrap(),
        );
        let end: End = decode(&m).unwrap();
        assert!(end.reconnect, "reconnect defaults to true");
        assert_eq!(End::new("bye", false).reason_text(), "bye");
    }

    #[test]
    fn topics_are_validated_like_event_names() {
        assert!(validate_topic("news", 256).is_ok());
        let code = |t: &str, max| validate_topic(t, max).unwrap_err().code();
        assert_eq!(code("", 256), ErrorCode::InvalidEvent);
        assert_eq!(code("connect", 256), ErrorCode::ReservedEvent);
        assert_eq!(code("__proto__", 256), ErrorCode::InvalidEvent);
        assert_eq!(code("ipcx.request", 256), ErrorCode::InvalidEvent);
        assert_eq!(code("abc", 2), ErrorCode::EventTooLarge);
    }

    #[test]
    fn calls_are_recognised_by_name() {
        for n in [names::REQUEST, names::PING, names::SUB, names::UNSUB] {
            assert!(is_call(n), "{n}");
        }
        for n in [
            names::RESPONSE,
            names::PONG,
            names::PUB,
            names::END,
            "message",
        ] {
            assert!(!is_call(n), "{n}");
        }
    }
}
