//! Decoded items: [`Message`] (framed profiles) and [`Inbound`].

use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;

use smol_str::SmolStr;

use crate::envelope::{self, EnvelopeParts};
use crate::{CodecConfig, ProtocolError};

/// One decoded framed message, zero-copy.
///
/// It holds the frame (without delimiter) as [`Bytes`] — usually a slice of
/// the connection's read buffer — plus where the event name and the raw JSON
/// text of `data` are. `data` is parsed only when asked for
/// ([`Message::data`], [`Message::data_value`]), so a router that only looks
/// at [`Message::event`] never pays for it.
///
/// The frame is valid UTF-8 and valid JSON. When the decoder repaired it
/// (invalid UTF-8 or lone surrogate escapes replaced by U+FFFD, `docs/protocol.md` §1.4),
/// [`Message::frame`] returns the repaired text.
#[derive(Clone)]
pub struct Message {
    frame: Bytes,
    /// The name, validated once (inline, no allocation, up to 23 bytes).
    event: SmolStr,
    data: Option<Range<usize>>,
}

impl Message {
    pub(crate) fn from_parts(frame: Bytes, parts: EnvelopeParts) -> Self {
        let event = SmolStr::new(parts.event_str(&frame));
        Self::from_parts_named(frame, parts, event)
    }

    /// `event` must be the name `parts` points at.
    pub(crate) fn from_parts_named(frame: Bytes, parts: EnvelopeParts, event: SmolStr) -> Self {
        Message {
            frame,
            event,
            data: parts.data,
        }
    }

    pub(crate) fn event_name(&self) -> &SmolStr {
        &self.event
    }

    /// Parses one frame (without delimiter) with `config`'s UTF-8, surrogate
    /// and depth rules. Name rules are not applied; use a [`crate::FrameDecoder`]
    /// for a stream.
    pub fn from_frame(
        frame: impl Into<Bytes>,
        config: &CodecConfig,
    ) -> Result<Self, ProtocolError> {
        let frame: Bytes = frame.into();
        let (frame, clean) = sanitize(BytesMut::from(&frame[..]), config)?;
        let frame = frame.freeze();
        let parts = envelope::parse_bytes(&frame, config.max_json_depth, clean)?;
        Ok(Message::from_parts(frame, parts))
    }

    /// The event name (`type`).
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The raw JSON text of `data`; `None` when the frame had no `data`.
    pub fn data_json(&self) -> Option<&[u8]> {
        self.data.as_ref().and_then(|r| self.frame.get(r.clone()))
    }

    /// Whether the frame carried a `data` member.
    pub fn has_data(&self) -> bool {
        self.data.is_some()
    }

    /// Deserializes `data` into `T`; an absent `data` deserializes as JSON
    /// `null` (so `Option<T>` gives `None`, `()` works).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        let text = self.data_json().unwrap_or(b"null");
        let mut de = serde_json::Deserializer::from_slice(text);
        // The decoder already bounded the nesting depth (see `envelope`).
        de.disable_recursion_limit();
        let value = T::deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    /// `data` as a `serde_json::Value` (`Null` when absent). A number
    /// literal outside the `f64` range (e.g. `1e400`, which JavaScript reads
    /// as `Infinity`) cannot be represented by `serde_json::Value`; the whole
    /// value is then `Null` — use [`Message::data`] to see the error.
    pub fn data_value(&self) -> serde_json::Value {
        self.data().unwrap_or(serde_json::Value::Null)
    }

    /// The whole frame without its delimiter.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// Consumes the message, returning the frame.
    pub fn into_frame(self) -> Bytes {
        self.frame
    }
}

impl PartialEq for Message {
    /// Two messages are equal when their event names and raw `data` texts are.
    fn eq(&self, other: &Self) -> bool {
        self.event() == other.event() && self.data_json() == other.data_json()
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("event", &self.event())
            .field("data", &self.data_json().map(String::from_utf8_lossy))
            .finish()
    }
}

/// One item out of a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A framed message (fast, guarded, assured).
    Message(Message),
    /// Raw bytes (raw profile): one item per chunk or datagram given.
    Raw(Bytes),
}

impl Inbound {
    /// The message, if this is one.
    pub fn as_message(&self) -> Option<&Message> {
        match self {
            Inbound::Message(m) => Some(m),
            Inbound::Raw(_) => None,
        }
    }

    /// The message, if this is one.
    pub fn into_message(self) -> Option<Message> {
        match self {
            Inbound::Message(m) => Some(m),
            Inbound::Raw(_) => None,
        }
    }

    /// The raw bytes, if this is a raw item.
    pub fn as_raw(&self) -> Option<&Bytes> {
        match self {
            Inbound::Raw(b) => Some(b),
            Inbound::Message(_) => None,
        }
    }
}

/// Applies the UTF-8 and lone-surrogate rules of `docs/protocol.md` §1.4 to one frame.
/// Also says whether the frame is free of control bytes and backslashes
/// (which the envelope parser's plain-string fast path needs).
pub(crate) fn sanitize(
    mut frame: BytesMut,
    config: &CodecConfig,
) -> Result<(BytesMut, bool), ProtocolError> {
    let classes = crate::scan::classify(&frame);
    if classes.non_ascii && std::str::from_utf8(&frame).is_err() {
        if config.strict_utf8 {
            return Err(ProtocolError::invalid_json("frame is not valid UTF-8"));
        }
        frame = BytesMut::from(String::from_utf8_lossy(&frame).as_bytes());
    }
    if classes.ctrl_or_backslash && memchr::memchr(b'\\', &frame).is_some() {
        envelope::fix_lone_surrogates(&mut frame, config.strict_json)?;
    }
    Ok((frame, !classes.ctrl_or_backslash))
}
