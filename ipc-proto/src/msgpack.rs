//! Length-prefixed MessagePack framing for Rust-to-Rust links (feature
//! `msgpack`). **Not** understood by node-ipc.
//!
//! Frame = 4-byte big-endian body length + body; body = the MessagePack
//! map `{"type": <string>, "data": <value>}` (rmp-serde, named fields).
//! Because the length comes first, payload bytes can never be mistaken for a
//! delimiter. Decoded frames are transcoded to the JSON envelope so handlers
//! see the same [`Message`] type as on JSON links; every rule of the profile
//! applies (names, allow-list, depth). Size limit: `max_message_size` in
//! guarded/assured, `max_partial_bytes` otherwise — checked on the length
//! prefix, before anything is buffered. MessagePack binary values are not
//! representable in JSON and are rejected (`ERR_IPC_INVALID_MESSAGE`).
//!
//! State after an error is the same as for [`crate::FrameDecoder`]: the
//! buffer is cleared, the decoder reset, the caller closes the link.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Serialize};

use crate::decoder::{check_name, decode_frame};
use crate::json::BytesWriter;
use crate::{CodecConfig, ErrorCode, FrameEncoder, Message, Profile, ProtocolError};

const PREFIX: usize = 4;

#[derive(Serialize)]
struct OutEnvelope<'a, T: ?Sized> {
    #[serde(rename = "type")]
    ty: &'a str,
    data: &'a T,
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Deserialize)]
struct InEnvelope {
    #[serde(rename = "type")]
    ty: Option<serde_json::Value>,
    data: Option<serde_json::Value>,
}

/// Sans-IO MessagePack codec for one connection.
#[derive(Debug, Clone)]
pub struct MsgpackCodec {
    config: CodecConfig,
    json: FrameEncoder,
    timeout: Option<Duration>,
    partial_since: Option<Instant>,
}

impl MsgpackCodec {
    /// Builds the codec (framed profiles only; the delimiter is unused).
    pub fn new(config: CodecConfig) -> Result<Self, ProtocolError> {
        if config.profile == Profile::Raw {
            return Err(ProtocolError::new(
                ErrorCode::WrongProfile,
                "MessagePack framing needs a framed profile",
            ));
        }
        let json_cfg = config
            .clone()
            .with_max_message_size(usize::MAX)
            .with_allow_unsafe_names(true);
        Ok(MsgpackCodec {
            timeout: config.effective_message_timeout(),
            json: FrameEncoder::new(json_cfg.with_profile(Profile::Fast))?,
            config,
            partial_since: None,
        })
    }

    fn limit(&self) -> usize {
        if self.config.profile.is_guarded() {
            self.config.max_message_size
        } else {
            self.config.max_partial_bytes
        }
    }

    /// Appends one frame. `data: None` is sent as an empty map (like `{}`
    /// on JSON links). On error `dst` is unchanged.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        check_name(event, &self.config, true)?;
        let start = dst.len();
        dst.extend_from_slice(&[0; PREFIX]);
        let result = match data {
            Some(d) => rmp_serde::encode::write_named(
                &mut BytesWriter(dst),
                &OutEnvelope { ty: event, data: d },
            ),
            None => rmp_serde::encode::write_named(
                &mut BytesWriter(dst),
                &OutEnvelope {
                    ty: event,
                    data: &EmptyObject {},
                },
            ),
        };
        if let Err(e) = result {
            dst.truncate(start);
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                format!("data cannot be serialized as MessagePack: {e}"),
            ));
        }
        let len = dst.len() - start - PREFIX;
        match u32::try_from(len) {
            Ok(n) if len <= self.limit() => {
                dst[start..start + PREFIX].copy_from_slice(&n.to_be_bytes());
                Ok(())
            }
            _ => {
                dst.truncate(start);
                Err(ProtocolError::frame_too_large(
                    "encoded frame exceeds the size limit",
                ))
            }
        }
    }

    /// Takes the next complete frame off `buf` (see [`crate::FrameDecoder::decode`]).
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Result<Option<Message>, ProtocolError> {
        if let Some(deadline) = self.deadline() {
            if now >= deadline {
                self.fail(buf);
                return Err(ProtocolError::new(
                    ErrorCode::MessageTimeout,
                    "partial frame stayed incomplete longer than message_timeout",
                ));
            }
        }
        if buf.len() < PREFIX {
            self.track(buf, now);
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.limit() {
            self.fail(buf);
            return Err(ProtocolError::frame_too_large(
                "frame length exceeds the size limit",
            ));
        }
        if buf.len() < PREFIX + len {
            self.track(buf, now);
            return Ok(None);
        }
        buf.advance(PREFIX);
        let body = buf.split_to(len);
        self.partial_since = if buf.is_empty() {
            None
        } else {
            self.timeout.map(|_| now)
        };
        match self.body_to_message(&body) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                self.fail(buf);
                Err(e)
            }
        }
    }

    fn body_to_message(&self, body: &[u8]) -> Result<Message, ProtocolError> {
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(body));
        de.set_max_depth(self.config.max_json_depth);
        let env = InEnvelope::deserialize(&mut de).map_err(|e| {
            ProtocolError::new(
                ErrorCode::InvalidMessage,
                format!("invalid MessagePack envelope: {e}"),
            )
        })?;
        if (de.position() as usize) != body.len() {
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "trailing bytes after the MessagePack envelope",
            ));
        }
        let Some(serde_json::Value::String(name)) = env.ty else {
            return Err(ProtocolError::new(
                ErrorCode::InvalidEvent,
                "`type` missing or not a string",
            ));
        };
        let mut frame = BytesMut::new();
        self.json.encode(&name, env.data.as_ref(), &mut frame)?;
        let delim = self.config.delimiter.len();
        frame.truncate(frame.len() - delim);
        decode_frame(frame, &self.config, None, false)
    }

    /// When the partial-frame timer fires, if armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.partial_since
            .zip(self.timeout)
            .and_then(|(t, d)| t.checked_add(d))
    }

    /// At end of stream (`strict_eof` → `ERR_IPC_INCOMPLETE_FRAME`).
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        let partial = !buf.is_empty();
        self.fail(buf);
        if partial && self.config.strict_eof {
            return Err(ProtocolError::new(
                ErrorCode::IncompleteFrame,
                "stream ended inside a frame",
            ));
        }
        Ok(())
    }

    fn track(&mut self, buf: &BytesMut, now: Instant) {
        if buf.is_empty() {
            self.partial_since = None;
        } else if self.partial_since.is_none() {
            self.partial_since = self.timeout.map(|_| now);
        }
    }

    fn fail(&mut self, buf: &mut BytesMut) {
        buf.clear();
        self.partial_since = None;
    }
}

#[cfg(feature = "codec")]
mod adapters {
    use super::*;
    use crate::codec::{CodecError, Emit};
    use tokio_util::codec::{Decoder, Encoder};

    impl Decoder for MsgpackCodec {
        type Item = Message;
        type Error = CodecError;
        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
            Ok(MsgpackCodec::decode(self, src, Instant::now())?)
        }
        fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, CodecError> {
            match Decoder::decode(self, src)? {
                Some(m) => Ok(Some(m)),
                None => {
                    self.finish(src)?;
                    Ok(None)
                }
            }
        }
    }

    impl<T: Serialize + ?Sized> Encoder<Emit<'_, T>> for MsgpackCodec {
        type Error = CodecError;
        fn encode(&mut self, item: Emit<'_, T>, dst: &mut BytesMut) -> Result<(), CodecError> {
            Ok(MsgpackCodec::encode(self, item.event, item.data, dst)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_limits() {
        let mut c = MsgpackCodec::new(CodecConfig::guarded().with_max_message_size(200)).unwrap();
        let mut buf = BytesMut::new();
        let payload = json!({"a":[1,2.5,"x\u{c}y"],"b":null});
        c.encode("m", Some(&payload), &mut buf).unwrap();
        c.encode::<()>("n", None, &mut buf).unwrap();
        let now = Instant::now();
        // Byte-by-byte delivery.
        let all = buf.split();
        let mut rx = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            rx.extend_from_slice(&[*b]);
            while let Some(m) = c.decode(&mut rx, now).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].event(), "m");
        assert_eq!(got[0].data_value(), payload);
        assert_eq!(got[1].data_json(), Some(&b"{}"[..]));
        // Too large on encode and on decode (length prefix alone).
        let big = "x".repeat(300);
        assert_eq!(
            c.encode("m", Some(&big), &mut buf).unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
        assert!(buf.is_empty());
        let mut rx = BytesMut::from(&[0u8, 0, 1, 0][..]);
        assert_eq!(
            c.decode(&mut rx, now).unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
        // Reserved name refused both ways.
        assert_eq!(
            c.encode::<()>("connect", None, &mut buf)
                .unwrap_err()
                .code(),
            ErrorCode::ReservedEvent
        );
        let fast = MsgpackCodec::new(CodecConfig::fast()).unwrap();
        fast.encode::<()>("connect", None, &mut buf).unwrap();
        assert_eq!(
            c.decode(&mut buf, now).unwrap_err().code(),
            ErrorCode::ReservedEvent
        );
        // Garbage body.
        let mut rx = BytesMut::from(&[0u8, 0, 0, 1, 0xc1][..]);
        assert_eq!(
            c.decode(&mut rx, now).unwrap_err().code(),
            ErrorCode::InvalidMessage
        );
    }
}
