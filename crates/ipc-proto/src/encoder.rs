//! The encoder: `{"type":…,"data":…}` + delimiter, straight into a `BytesMut`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Serialize;

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
    /// byte-identical to node-ipc's `JSON.stringify` output (SPEC §1.2).
    /// `data: None` writes `{}` (SPEC §1.3).
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
        let cfg = &self.shared.config;
        if cfg.profile == Profile::Raw {
            return Err(ProtocolError::new(
                ErrorCode::WrongProfile,
                "the raw profile sends bytes, not events (use encode_raw)",
            ));
        }
        check_name(event, cfg, true)?;
        let start = dst.len();
        match self.write_frame(event, data, dst) {
            Ok(()) => Ok(()),
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }

    /// [`FrameEncoder::encode`] into a fresh `Bytes` (encode once, send to many).
    pub fn encode_to_bytes<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
    ) -> Result<Bytes, ProtocolError> {
        let mut dst = BytesMut::with_capacity(64 + event.len());
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

    fn write_frame<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        let cfg = &self.shared.config;
        let start = dst.len();
        dst.reserve(event.len() + 48 + cfg.delimiter.len());
        dst.extend_from_slice(b"{\"type\":");
        if event.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            dst.extend_from_slice(b"\"");
            dst.extend_from_slice(event.as_bytes());
            dst.extend_from_slice(b"\"");
        } else {
            let mut ser = serde_json::Serializer::with_formatter(BytesWriter(dst), JsFormatter);
            event.serialize(&mut ser).map_err(ser_error)?;
        }
        dst.extend_from_slice(b",\"data\":");
        match data {
            None => dst.extend_from_slice(b"{}"),
            Some(value) => {
                let data_start = dst.len();
                let mut ser = serde_json::Serializer::with_formatter(BytesWriter(dst), JsFormatter);
                value.serialize(&mut ser).map_err(ser_error)?;
                if cfg.legacy_v9_payloads && legacy_blank(&dst[data_start..]) {
                    dst.truncate(data_start);
                    dst.extend_from_slice(b"{}");
                }
            }
        }
        dst.extend_from_slice(b"}");
        if cfg.profile.is_guarded() && dst.len() - start > cfg.max_message_size {
            return Err(ProtocolError::frame_too_large(
                "encoded frame exceeds max_message_size",
            ));
        }
        dst.extend_from_slice(&cfg.delimiter);
        Ok(())
    }
}

fn ser_error(e: serde_json::Error) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidMessage,
        format!("data cannot be serialized as JSON: {e}"),
    )
}

/// node-ipc 9/12 rule (SPEC §1.3): falsy data other than `false`/`0`
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
