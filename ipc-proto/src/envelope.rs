//! Envelope parsing: the fast shape recogniser and the full-parse fallback.
//!
//! Every JS peer writes `{"type":"<name>","data":<value>}`. [`parse_envelope_fast`]
//! recognises exactly that byte shape (and `{"type":"<name>"}`), takes the
//! name straight from the frame when it has no escapes, and validates the
//! `data` slice with a skip-parse (`serde::de::IgnoredAny`) instead of
//! building values. Anything else — whitespace, other members, reordered
//! or duplicated keys, escaped names, non-object roots — goes to
//! [`parse_envelope_full`], a complete `serde_json` parse that captures
//! `type` and `data` as raw slices (last duplicate wins, other members are
//! validated and ignored). [`parse_envelope`] runs the nesting-depth check,
//! then the fast path, then the fallback; a property test and a fuzz target
//! check that whenever the fast path answers, the full parse gives the same
//! answer.
//!
//! ## Nesting depth
//!
//! `serde_json` refuses to recurse deeper than 128 levels, below our
//! default limit of 256. Instead of silently lowering the limit, the frame
//! is first measured by a linear bracket scan ([`json_depth_exceeds`]);
//! frames within `max_json_depth` are then parsed with `serde_json`'s own
//! limit disabled (`unbounded_depth` feature). The scan is skipped when the
//! frame is shorter than the limit (it cannot be deeper than its length),
//! so ordinary frames never pay for it. `max_json_depth` is capped at 1024
//! so that parsing stays well inside a 2 MiB thread stack.

use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::{ErrorCode, ProtocolError};

const PREFIX: &[u8] = b"{\"type\":\"";
const DATA_SEP: &[u8] = b",\"data\":";

/// Where an envelope's event name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventName {
    /// The name is the frame's bytes in this range (no escapes in the JSON string).
    Span(Range<usize>),
    /// The name had escapes; this is the unescaped text.
    Owned(Box<str>),
}

/// The result of parsing an envelope: where the name and the data are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeParts {
    /// The event name.
    pub event: EventName,
    /// Byte range of the raw JSON text of `data`, `None` when absent.
    pub data: Option<Range<usize>>,
}

impl EnvelopeParts {
    /// The event name, resolved against `frame`.
    pub fn event_str<'a>(&'a self, frame: &'a [u8]) -> &'a str {
        match &self.event {
            EventName::Span(r) => frame
                .get(r.clone())
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or(""),
            EventName::Owned(s) => s,
        }
    }
}

/// Parses one frame (without delimiter): depth check, fast path, fallback.
///
/// Errors: `ERR_IPC_INVALID_JSON` (not JSON, or nested deeper than
/// `max_depth`), `ERR_IPC_INVALID_MESSAGE` (root is not an object),
/// `ERR_IPC_INVALID_EVENT` (`type` missing or not a string). Name *rules*
/// (length, reserved, unsafe, allow-list) are the decoder's business.
pub fn parse_envelope(frame: &str, max_depth: usize) -> Result<EnvelopeParts, ProtocolError> {
    parse_bytes(frame.as_bytes(), max_depth, false)
}

/// The fast shape recogniser alone: `Some` only for the exact JS shape with
/// valid `data`, `None` when the frame needs the full parse. It does not
/// check nesting depth beyond `serde_json`'s own limit of 128.
pub fn parse_envelope_fast(frame: &str) -> Option<EnvelopeParts> {
    fast_bytes(frame.as_bytes())
}

/// The full parse alone (depth check included).
pub fn parse_envelope_full(frame: &str, max_depth: usize) -> Result<EnvelopeParts, ProtocolError> {
    if json_depth_exceeds(frame.as_bytes(), max_depth) {
        return Err(depth_error(max_depth));
    }
    full_bytes(frame.as_bytes())
}

/// `frame` must be valid UTF-8. `clean` says it holds no control byte and
/// no backslash (see `scan::classify`), which allows the plain-string fast
/// path.
pub(crate) fn parse_bytes(
    frame: &[u8],
    max_depth: usize,
    clean: bool,
) -> Result<EnvelopeParts, ProtocolError> {
    if clean && max_depth >= 1 {
        if let Some(parts) = plain_string_bytes(frame) {
            return Ok(parts);
        }
    }
    if frame.len() > max_depth && json_depth_exceeds(frame, max_depth) {
        return Err(depth_error(max_depth));
    }
    if let Some(parts) = fast_bytes(frame) {
        return Ok(parts);
    }
    full_bytes(frame)
}

fn depth_error(max_depth: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidJson,
        format!("JSON nesting deeper than {max_depth} levels"),
    )
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The most common frame of all, `{"type":"<name>","data":"<text>"}`, in a
/// frame with no control byte and no backslash: both strings end at their
/// next quote, so no JSON parser is needed (depth 1).
#[inline]
fn plain_string_bytes(frame: &[u8]) -> Option<EnvelopeParts> {
    let rest = frame.strip_prefix(PREFIX)?;
    let name_len = memchr::memchr(b'"', rest)?;
    let after = rest[name_len + 1..]
        .strip_prefix(DATA_SEP)?
        .strip_prefix(b"\"")?;
    let text_len = memchr::memchr(b'"', after)?;
    if &after[text_len + 1..] != b"}" {
        return None;
    }
    let name = PREFIX.len()..PREFIX.len() + name_len;
    let start = name.end + 1 + DATA_SEP.len();
    Some(EnvelopeParts {
        event: EventName::Span(name),
        data: Some(start..start + text_len + 2),
    })
}

#[inline]
fn fast_bytes(frame: &[u8]) -> Option<EnvelopeParts> {
    let rest = frame.strip_prefix(PREFIX)?;
    let name_len = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[name_len] != b'"' || rest[..name_len].iter().any(|&b| b < 0x20) {
        return None;
    }
    let name = PREFIX.len()..PREFIX.len() + name_len;
    let after = &rest[name_len + 1..];
    if after == b"}" {
        return Some(EnvelopeParts {
            event: EventName::Span(name),
            data: None,
        });
    }
    let value = after.strip_prefix(DATA_SEP)?.strip_suffix(b"}")?;
    let mut start = PREFIX.len() + name_len + 1 + DATA_SEP.len();
    let mut end = start + value.len();
    while start < end && is_ws(frame[start]) {
        start += 1;
    }
    while end > start && is_ws(frame[end - 1]) {
        end -= 1;
    }
    let value = &frame[start..end];
    if value.is_empty() {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(value);
    IgnoredAny::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(EnvelopeParts {
        event: EventName::Span(name),
        data: Some(start..end),
    })
}

/// Which envelope member a key names.
enum Key {
    Type,
    Data,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "type" => Key::Type,
                    "data" => Key::Data,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

type RawPair<'de> = (Option<&'de RawValue>, Option<&'de RawValue>);

/// Visits the root: `Some((type, data))` for an object, `None` for any
/// other (valid) JSON value.
struct RootVisitor;

impl<'de> Visitor<'de> for RootVisitor {
    type Value = Option<RawPair<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ty = None;
        let mut data = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => ty = Some(map.next_value::<&'de RawValue>()?),
                Key::Data => data = Some(map.next_value::<&'de RawValue>()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some((ty, data)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn offset_in(frame: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= frame.len()).then_some(start..end)
}

/// Full parse; the depth must already have been checked.
fn full_bytes(frame: &[u8]) -> Result<EnvelopeParts, ProtocolError> {
    let mut de = serde_json::Deserializer::from_slice(frame);
    de.disable_recursion_limit();
    let root = de
        .deserialize_any(RootVisitor)
        .and_then(|root| de.end().map(|()| root))
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}")))?;
    let Some((ty, data)) = root else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            "message must be a JSON object",
        ));
    };
    let Some(ty) = ty else {
        return Err(ProtocolError::new(
            ErrorCode::InvalidEvent,
            "message has no `type` member",
        ));
    };
    let text = ty.get();
    if !text.starts_with('"') {
        return Err(ProtocolError::new(
            ErrorCode::InvalidEvent,
            "`type` must be a string",
        ));
    }
    let internal = || ProtocolError::new(ErrorCode::InvalidJson, "envelope outside its frame");
    let event = if text.contains('\\') {
        let s: String = serde_json::from_str(text).map_err(|e| {
            ProtocolError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
        })?;
        EventName::Owned(s.into_boxed_str())
    } else {
        let r = offset_in(frame, text).ok_or_else(internal)?;
        EventName::Span(r.start + 1..r.end - 1)
    };
    let data = match data {
        Some(d) => Some(offset_in(frame, d.get()).ok_or_else(internal)?),
        None => None,
    };
    Ok(EnvelopeParts { event, data })
}

/// Whether `bytes` nests arrays/objects deeper than `max` (a linear scan
/// that skips string contents; it never under-counts the depth the JSON
/// parser would reach before its first syntax error).
pub fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
                        None => return false,
                        Some(p) => {
                            i += p;
                            if bytes[i] == b'\\' {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                    }
                }
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// Finds lone UTF-16 surrogate escapes (`\ud800` without a low half, or a
/// lone `\udc00`) and either rewrites each in place to `\ufffd` (same
/// length) or, with `strict`, reports `ERR_IPC_INVALID_JSON`. Returns
/// whether anything was rewritten. Only escapes are looked at; a frame that
/// is not JSON fails later anyway.
pub(crate) fn fix_lone_surrogates(bytes: &mut [u8], strict: bool) -> Result<bool, ProtocolError> {
    let mut changed = false;
    let mut i = 0;
    while let Some(p) = bytes.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        i += p;
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(bytes, i + 2) else {
            i += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => {
                let low = (bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u'))
                    .then(|| hex4(bytes, i + 8))
                    .flatten();
                if matches!(low, Some(0xDC00..=0xDFFF)) {
                    i += 12;
                    continue;
                }
                true
            }
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            if strict {
                return Err(ProtocolError::new(
                    ErrorCode::InvalidJson,
                    "lone UTF-16 surrogate escape",
                ));
            }
            bytes[i + 2..i + 6].copy_from_slice(b"fffd");
            changed = true;
        }
        i += 6;
    }
    Ok(changed)
}

fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    let mut v = 0u16;
    for &d in digits {
        let n = (d as char).to_digit(16)? as u16;
        v = (v << 4) | n;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(frame: &str) -> Result<(String, Option<String>), ErrorCode> {
        parse_envelope(frame, 256)
            .map(|p| {
                (
                    p.event_str(frame.as_bytes()).to_string(),
                    p.data.map(|r| frame[r].to_string()),
                )
            })
            .map_err(|e| e.code())
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parts(r#"{"type":"a","data":1}"#),
            Ok(("a".into(), Some("1".into())))
        );
        assert_eq!(parts(r#"{"type":"t"}"#), Ok(("t".into(), None)));
        assert_eq!(
            parts(r#"{"type":"t","data":1,"data":2}"#),
            Ok(("t".into(), Some("2".into())))
        );
        assert_eq!(
            parts(r#" { "data" : [1, 2] , "type" : "x\u0041" } "#),
            Ok(("xA".into(), Some("[1, 2]".into())))
        );
        assert_eq!(
            parts(r#"{"type":"a","data": {"k":"v"} }"#),
            Ok(("a".into(), Some(r#"{"k":"v"}"#.into())))
        );
        assert_eq!(parts(r#"{"data":1}"#), Err(ErrorCode::InvalidEvent));
        assert_eq!(
            parts(r#"{"type":5,"data":1}"#),
            Err(ErrorCode::InvalidEvent)
        );
        assert_eq!(parts(r#"{"type":null}"#), Err(ErrorCode::InvalidEvent));
        for s in ["null", "42", "\"s\"", "[1]", "true", "[]"] {
            assert_eq!(parts(s), Err(ErrorCode::InvalidMessage), "{s}");
        }
        for s in [
            "",
            "not-json",
            "{bad",
            "[1",
            r#"{"type":"a","data":1}}"#,
            r#"{"type":"a","data":}"#,
            "{\"type\":\"a\u{1}\",\"data\":1}",
        ] {
            assert_eq!(parts(s), Err(ErrorCode::InvalidJson), "{s:?}");
        }
        assert_eq!(
            parts(r#"{"type":"","data":1}"#),
            Ok(("".into(), Some("1".into())))
        );
    }

    #[test]
    fn fast_path_taken_for_the_js_shape() {
        assert!(parse_envelope_fast(r#"{"type":"message","data":"hello"}"#).is_some());
        assert!(parse_envelope_fast(r#"{"type":"t"}"#).is_some());
        assert!(parse_envelope_fast(r#"{"type":"t","data":1,"data":2}"#).is_none());
        assert!(parse_envelope_fast(r#"{"type":"a\"b","data":1}"#).is_none());
        assert!(parse_envelope_fast(r#"{"type":"a","data":1} "#).is_none());
    }

    #[test]
    fn depth_limit_beyond_serde_json_default() {
        let nest = |n: usize| {
            format!(
                r#"{{"type":"a","data":{}1{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // 200 levels of data + the envelope: deeper than serde_json's 128.
        assert!(parse_envelope(&nest(200), 256).is_ok());
        assert!(parse_envelope(&nest(255), 256).is_ok());
        assert_eq!(
            parse_envelope(&nest(256), 256).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_envelope(&nest(20), 10).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
        assert!(parse_envelope(&nest(9), 10).is_ok());
        // Brackets inside strings do not count.
        let s = format!(r#"{{"type":"a","data":"{}"}}"#, "[".repeat(1000));
        assert!(parse_envelope(&s, 256).is_ok());
    }

    #[test]
    fn lone_surrogates() {
        let mut b = br#"{"type":"a","data":"\ud800 \udc00 \ud83c\udf0d \\ud800"}"#.to_vec();
        assert!(fix_lone_surrogates(&mut b, false).unwrap());
        assert_eq!(
            &b[..],
            br#"{"type":"a","data":"\ufffd \ufffd \ud83c\udf0d \\ud800"}"#
        );
        let mut b = br#"{"type":"a","data":"\ud800"}"#.to_vec();
        assert_eq!(
            fix_lone_surrogates(&mut b, true).unwrap_err().code(),
            ErrorCode::InvalidJson
        );
        let mut b = br#"{"type":"a","data":"\ud83c\udf0d\n"}"#.to_vec();
        assert!(!fix_lone_surrogates(&mut b, true).unwrap());
        let mut b = br"\ud8".to_vec();
        assert!(!fix_lone_surrogates(&mut b, true).unwrap());
        // Regression: a backslash as the last byte used to index past the end.
        for tail in [&br"x\"[..], br"\", br"\\", br"\ud800", br"\ud800\"] {
            let mut b = tail.to_vec();
            let _ = fix_lone_surrogates(&mut b, false);
        }
    }
}
