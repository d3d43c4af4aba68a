//! The encoder: `{"type":…,"data":…}` + delimiter, straight into a `BytesMut`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::ser::Impossible;
use serde::Serialize;
use smol_str::SmolStr;

use crate::decoder::{check_name, Shared};
use crate::json::{BytesWriter, JsFormatter};
use crate::{CodecConfig, ErrorCode, Profile, ProtocolError};

/// Encodes events for one endpoint (cheap to clone; one can serve every
/// connection of a server).
///
/// ```
/// use bytes::BytesMut;
/// use ipc_proto::{CodecConfig, FrameEncoder};
/// let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
/// let mut dst = BytesMut::new();
/// enc.encode("message", Some("hello"), &mut dst).unwrap();
/// assert_eq!(&dst[..], b"{\"type\":\"message\",\"data\":\"hello\"}\x0c");
/// enc.encode::<()>("z", None, &mut dst).unwrap();
/// assert!(dst.ends_with(b"{\"type\":\"z\",\"data\":{}}\x0c"));
/// ```
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    shared: Arc<Shared>,
}

impl FrameEncoder {
    /// Builds an encoder; fails with `ERR_IPC_INVALID_CONFIGURATION`.
    pub fn new(config: CodecConfig) -> Result<Self, ProtocolError> {
        Ok(FrameEncoder {
            shared: Shared::new(config)?,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &CodecConfig {
        &self.shared.config
    }

    /// Appends one frame to `dst`: `{"type":<event>,"data":<data>}` + delimiter,
    /// byte-identical to node-ipc's `JSON.stringify` output (`docs/protocol.md` §1.2).
    /// `data: None` writes `{}` (`docs/protocol.md` §1.3).
    ///
    /// Checks the outbound name rules: unsafe names are refused unless
    /// `allow_unsafe_names` (fast) — guarded/assured always refuse them —
    /// and guarded/assured also check empty names, `max_event_name_length`,
    /// reserved names, the assured allow-list and `max_message_size`.
    /// On error `dst` is left exactly as it was.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.check_profile()?;
        check_name(event, &self.shared.config, true)?;
        let start = dst.len();
        if let Err(e) = write_head(event, dst) {
            dst.truncate(start);
            return Err(e);
        }
        self.finish_frame(start, data, dst)
    }

    /// [`FrameEncoder::encode`] for a sender that emits runs of one event
    /// name: `cache` keeps the checked and encoded start of the frame
    /// (`{"type":<event>,"data":`) for the last name, so the next frame with
    /// that name skips the name rules and the escaping. The output and the
    /// errors are those of `encode`. A cache filled by another encoder is
    /// never trusted: it is refilled.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use ipc_proto::{CodecConfig, FrameEncoder, HeadCache};
    /// let enc = FrameEncoder::new(CodecConfig::guarded()).unwrap();
    /// let mut cache = HeadCache::default();
    /// let mut dst = BytesMut::new();
    /// enc.encode_cached(&mut cache, "tick", Some(&1), &mut dst).unwrap();
    /// enc.encode_cached(&mut cache, "tick", Some(&2), &mut dst).unwrap();
    /// assert_eq!(&dst[..], b"{\"type\":\"tick\",\"data\":1}\x0c{\"type\":\"tick\",\"data\":2}\x0c");
    /// assert!(enc.encode_cached::<()>(&mut cache, "", None, &mut dst).is_err());
    /// ```
    pub fn encode_cached<T: Serialize + ?Sized>(
        &self,
        cache: &mut HeadCache,
        event: &str,
        data: Option<&T>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        self.check_profile()?;
        if cache.owner != self.shared.id || cache.event != event {
            check_name(event, &self.shared.config, true)?;
            let mut head = BytesMut::with_capacity(event.len() + 20);
            write_head(event, &mut head)?;
            *cache = HeadCache {
                owner: self.shared.id,
                event: event.into(),
                head,
            };
        }
        let start = dst.len();
        dst.extend_from_slice(&cache.head);
        self.finish_frame(start, data, dst)
    }

    fn check_profile(&self) -> Result<(), ProtocolError> {
        if self.shared.config.profile == Profile::Raw {
            return Err(ProtocolError::new(
                ErrorCode::WrongProfile,
                "the raw profile sends bytes, not events (use encode_raw)",
            ));
        }
        Ok(())
    }

    /// [`FrameEncoder::encode`] into a fresh `Bytes` (encode once, send to many).
    pub fn encode_to_bytes<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
    ) -> Result<Bytes, ProtocolError> {
        let mut dst = BytesMut::with_capacity(128 + event.len());
        self.encode(event, data, &mut dst)?;
        Ok(dst.freeze())
    }

    /// Raw profile: appends `bytes` unchanged. Framed profiles:
    /// `ERR_IPC_WRONG_PROFILE`.
    pub fn encode_raw(&self, bytes: &[u8], dst: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.shared.config.profile != Profile::Raw {
            return Err(ProtocolError::new(
                ErrorCode::WrongProfile,
                "raw bytes can only be sent with the raw profile",
            ));
        }
        dst.extend_from_slice(bytes);
        Ok(())
    }

    /// Writes `data` and the end of the frame after its head (which starts
    /// at `start`); on error `dst` is cut back to `start`.
    fn finish_frame<T: Serialize + ?Sized>(
        &self,
        start: usize,
        data: Option<&T>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let cfg = &self.shared.config;
        let r = write_data(data, cfg.legacy_v9_payloads, dst).and_then(|()| {
            dst.extend_from_slice(b"}");
            if cfg.profile.is_guarded() && dst.len() - start > cfg.max_message_size {
                return Err(ProtocolError::frame_too_large(
                    "encoded frame exceeds max_message_size",
                ));
            }
            dst.extend_from_slice(&cfg.delimiter);
            Ok(())
        });
        if r.is_err() {
            dst.truncate(start);
        }
        r
    }
}

/// The checked, encoded start of a frame (`{"type":<event>,"data":`) for the
/// last event name one sender used; see [`FrameEncoder::encode_cached`].
/// Empty by default.
#[derive(Debug, Default, Clone)]
pub struct HeadCache {
    /// `Shared::id` of the encoder that filled it (0: none).
    owner: u64,
    event: SmolStr,
    head: BytesMut,
}

/// `{"type":<event as a JSON string>,"data":`
fn write_head(event: &str, dst: &mut BytesMut) -> Result<(), ProtocolError> {
    dst.reserve(event.len() + 48);
    dst.extend_from_slice(b"{\"type\":");
    if !crate::scan::needs_escape(event.as_bytes()) {
        dst.extend_from_slice(b"\"");
        dst.extend_from_slice(event.as_bytes());
        dst.extend_from_slice(b"\"");
    } else {
        let mut ser = serde_json::Serializer::with_formatter(BytesWriter(dst), JsFormatter);
        event.serialize(&mut ser).map_err(ser_error)?;
    }
    dst.extend_from_slice(b",\"data\":");
    Ok(())
}

/// The `data` member's value (`{}` for none; the v9 legacy rule applied).
fn write_data<T: Serialize + ?Sized>(
    data: Option<&T>,
    legacy_v9: bool,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    match data {
        None => dst.extend_from_slice(b"{}"),
        Some(value) if value.serialize(PlainStr(dst, legacy_v9)).is_ok() => {}
        Some(value) => {
            let data_start = dst.len();
            let mut ser = serde_json::Serializer::with_formatter(BytesWriter(dst), JsFormatter);
            value.serialize(&mut ser).map_err(ser_error)?;
            if legacy_v9 && legacy_blank(&dst[data_start..]) {
                dst.truncate(data_start);
                dst.extend_from_slice(b"{}");
            }
        }
    }
    Ok(())
}

/// Writes a value that serializes as a string needing no escape (the
/// commonest `data` of all) straight into the buffer, without a JSON
/// serializer; anything else is refused (nothing written) and goes through
/// `serde_json`. The output is the same either way.
/// The flag is the v9 legacy rule, under which `""` is sent as `{}`.
struct PlainStr<'a>(&'a mut BytesMut, bool);

/// Not a plain string: use the JSON serializer.
#[derive(Debug)]
struct NotPlain;

impl std::fmt::Display for NotPlain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a plain string")
    }
}

impl std::error::Error for NotPlain {}

impl serde::ser::Error for NotPlain {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotPlain
    }
}

macro_rules! not_plain {
    ($($f:ident($($t:ty),*);)*) => {
        $(fn $f(self, $(_: $t),*) -> Result<(), NotPlain> { Err(NotPlain) })*
    };
}

impl serde::Serializer for PlainStr<'_> {
    type Ok = ();
    type Error = NotPlain;
    type SerializeSeq = Impossible<(), NotPlain>;
    type SerializeTuple = Impossible<(), NotPlain>;
    type SerializeTupleStruct = Impossible<(), NotPlain>;
    type SerializeTupleVariant = Impossible<(), NotPlain>;
    type SerializeMap = Impossible<(), NotPlain>;
    type SerializeStruct = Impossible<(), NotPlain>;
    type SerializeStructVariant = Impossible<(), NotPlain>;

    fn serialize_str(self, v: &str) -> Result<(), NotPlain> {
        if crate::scan::needs_escape(v.as_bytes()) || (self.1 && v.is_empty()) {
            return Err(NotPlain);
        }
        self.0.reserve(v.len() + 2);
        self.0.extend_from_slice(b"\"");
        self.0.extend_from_slice(v.as_bytes());
        self.0.extend_from_slice(b"\"");
        Ok(())
    }

    not_plain! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotPlain> {
        Err(NotPlain)
    }
    // Not delegated: `serde_json`'s `RawValue` is a newtype whose inner
    // string is JSON text, not a string value.
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotPlain> {
        Err(NotPlain)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotPlain> {
        Err(NotPlain)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotPlain> {
        Err(NotPlain)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotPlain> {
        Err(NotPlain)
    }
}

fn ser_error(e: serde_json::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidMessage,
        format!("data cannot be serialized as JSON: {e}"),
    )
}

/// node-ipc 9/12 rule (`docs/protocol.md` §1.3): falsy data other than `false`/`0`
/// (i.e. `null`, `""`; NaN is already `null`) and objects with a truthy
/// `_maxListeners` member are sent as `{}`.
fn legacy_blank(json: &[u8]) -> bool {
    if json == b"null" || json == b"\"\"" {
        return true;
    }
    if json.first() != Some(&b'{') {
        return false;
    }
    let Ok(map) = serde_json::from_slice::<
        std::collections::HashMap<String, Box<serde_json::value::RawValue>>,
    >(json) else {
        return false;
    };
    match map.get("_maxListeners") {
        None => false,
        Some(v) => {
            let t = v.get();
            let falsy = t == "false"
                || t == "null"
                || t == "\"\""
                || t.parse::<f64>().map(|n| n == 0.0).unwrap_or(false);
            !falsy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_rules() {
        assert!(legacy_blank(b"null"));
        assert!(legacy_blank(b"\"\""));
        assert!(!legacy_blank(b"false"));
        assert!(!legacy_blank(b"0"));
        assert!(legacy_blank(br#"{"_maxListeners":10,"x":1}"#));
        assert!(!legacy_blank(br#"{"_maxListeners":0,"x":1}"#));
        assert!(!legacy_blank(br#"{"x":1}"#));
    }

    #[test]
    fn errors_leave_dst_untouched() {
        let enc = FrameEncoder::new(CodecConfig::guarded().with_max_message_size(40)).unwrap();
        let mut dst = BytesMut::from(&b"keep"[..]);
        let big = "x".repeat(100);
        let e = enc.encode("m", Some(&big), &mut dst).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        assert_eq!(&dst[..], b"keep");
        // A map with non-string keys cannot be JSON.
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let e = enc.encode("m", Some(&bad), &mut dst).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidMessage);
        assert_eq!(&dst[..], b"keep");
    }
}
