//! JSON text exactly as JavaScript's `JSON.stringify` writes it (`docs/protocol.md` §1.2).
//!
//! `serde_json`'s compact serializer already matches `JSON.stringify` for
//! strings: it escapes `"`, `\`, `\b`, `\t`, `\n`, `\f`, `\r`, writes every
//! other U+0000–U+001F as `\u00xx` with lowercase hex, and writes everything
//! else (`/`, U+007F, U+2028, U+2029, all non-ASCII) literally as UTF-8. Lone
//! surrogates cannot occur in a Rust `str`. The tests below pin all of this.
//!
//! Numbers are where the two differ, so [`JsFormatter`] replaces the float
//! formatting with JavaScript's `Number.prototype.toString` (via `ryu-js`):
//! `1.0` → `1`, `1e21` → `1e+21`, `1e-7` → `1e-7`, `-0` → `0`. `serde_json`
//! already writes NaN and ±Infinity as `null`, as `JSON.stringify` does.
//!
//! Integers (`i64`, `u64`, `i128`, `u128`) are written exactly. JavaScript
//! would round integers beyond ±(2^53−1) to the nearest double before
//! printing; we keep the exact digits (a JS receiver parses them to the same
//! double, a Rust receiver keeps full precision). `f32` values are written
//! with the shortest digits that round-trip as `f32` (`0.1f32` → `0.1`),
//! formatted the JavaScript way.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// A `serde_json` formatter that writes numbers like JavaScript.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsFormatter;

impl Formatter for JsFormatter {
    #[inline]
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value.is_finite() {
            let mut buf = ryu_js::Buffer::new();
            writer.write_all(buf.format_finite(value).as_bytes())
        } else {
            writer.write_all(b"null")
        }
    }

    #[inline]
    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        if value.is_finite() {
            let mut buf = ryu_js::Buffer::new();
            writer.write_all(buf.format_finite(value).as_bytes())
        } else {
            writer.write_all(b"null")
        }
    }
}

/// Serializes `value` as `JSON.stringify(value)` would, into `writer`
/// (`&mut Vec<u8>`, `BytesMut::writer()`, a file…).
pub fn to_js_json<T, W>(value: &T, writer: W) -> Result<(), serde_json::Error>
where
    T: Serialize + ?Sized,
    W: io::Write,
{
    let mut ser = serde_json::Serializer::with_formatter(writer, JsFormatter);
    value.serialize(&mut ser)
}

/// [`to_js_json`] into a new `Vec<u8>`.
pub fn to_js_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(64);
    to_js_json(value, &mut out)?;
    Ok(out)
}

/// [`to_js_json`] into a new `String`.
pub fn to_js_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let bytes = to_js_vec(value)?;
    // The serializer only ever writes UTF-8.
    String::from_utf8(bytes).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// Writes bytes into a `BytesMut` without the `BufMut::writer` indirection.
pub(crate) struct BytesWriter<'a>(pub(crate) &'a mut bytes::BytesMut);

impl io::Write for BytesWriter<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.extend_from_slice(buf);
        Ok(())
    }
    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn js<T: Serialize + ?Sized>(v: &T) -> String {
        to_js_string(v).unwrap()
    }

    #[test]
    fn numbers_like_javascript() {
        assert_eq!(js(&42), "42");
        assert_eq!(js(&1.5f64), "1.5");
        assert_eq!(js(&1.0f64), "1");
        assert_eq!(js(&(0.1f64 + 0.2)), "0.30000000000000004");
        assert_eq!(js(&1e21f64), "1e+21");
        assert_eq!(js(&1e-7f64), "1e-7");
        assert_eq!(js(&123456789012345680000f64), "123456789012345680000");
        assert_eq!(js(&-0.0f64), "0");
        assert_eq!(js(&f64::NAN), "null");
        assert_eq!(js(&f64::INFINITY), "null");
        assert_eq!(js(&f64::NEG_INFINITY), "null");
        assert_eq!(js(&0.1f32), "0.1");
        assert_eq!(js(&f32::NAN), "null");
        assert_eq!(js(&-1.5e300f64), "-1.5e+300");
        assert_eq!(js(&5e-324f64), "5e-324");
        assert_eq!(js(&json!(1e21)), "1e+21");
        assert_eq!(js(&u64::MAX), "18446744073709551615");
    }

    #[test]
    fn string_escapes_like_javascript() {
        // Every control character.
        for c in 0u32..0x20 {
            let ch = char::from_u32(c).unwrap();
            let expected = match ch {
                '\u{8}' => "\"\\b\"".to_string(),
                '\t' => "\"\\t\"".to_string(),
                '\n' => "\"\\n\"".to_string(),
                '\u{c}' => "\"\\f\"".to_string(),
                '\r' => "\"\\r\"".to_string(),
                _ => format!("\"\\u{c:04x}\""),
            };
            assert_eq!(js(&ch.to_string()), expected, "U+{c:04X}");
        }
        assert_eq!(js("\u{1f}"), "\"\\u001f\"");
        assert_eq!(js("\""), "\"\\\"\"");
        assert_eq!(js("\\"), "\"\\\\\"");
        // Not escaped.
        assert_eq!(js("/"), "\"/\"");
        assert_eq!(js("\u{7f}"), "\"\u{7f}\"");
        assert_eq!(js("\u{2028}\u{2029}"), "\"\u{2028}\u{2029}\"");
        assert_eq!(js("héllo 🌍"), "\"héllo 🌍\"");
        // Every non-control ASCII character is literal except `"` and `\`.
        for b in 0x20u8..0x80 {
            let s = (b as char).to_string();
            let out = js(&s);
            if b == b'"' || b == b'\\' {
                assert_eq!(out.len(), 4);
            } else {
                assert_eq!(out, format!("\"{s}\""));
            }
        }
    }

    #[test]
    fn compact_structures() {
        assert_eq!(
            js(&json!({"a":1,"b":[true,null]})),
            r#"{"a":1,"b":[true,null]}"#
        );
        assert_eq!(js(&Vec::<u8>::new()), "[]");
        assert_eq!(js(&()), "null");
    }
}
