//! Raw-mode string encodings (`docs/protocol.md` §1.7): how node-ipc turns a string
//! payload into bytes with Node's `Buffer.from(string, encoding)`.
//!
//! Raw mode itself is lossless for bytes: [`crate::FrameDecoder`] in the raw
//! profile hands every chunk over untouched, and
//! [`crate::FrameEncoder::encode_raw`] writes bytes unchanged.

use std::fmt;
use std::str::FromStr;

use crate::ProtocolError;

/// A Node.js buffer encoding usable for raw-mode string payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RawEncoding {
    /// `utf8` / `utf-8` (default).
    #[default]
    Utf8,
    /// `ascii`: each UTF-16 code unit `& 0xFF` (Node writes it like latin1).
    Ascii,
    /// `utf16le` / `ucs2`: UTF-16 little-endian code units.
    Utf16le,
    /// `base64` (and `base64url`): lenient decoding.
    Base64,
    /// `hex`: pairs of hex digits up to the first invalid pair.
    Hex,
    /// `latin1` / `binary`: each UTF-16 code unit `& 0xFF`.
    Latin1,
}

impl RawEncoding {
    /// Node's canonical name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RawEncoding::Utf8 => "utf8",
            RawEncoding::Ascii => "ascii",
            RawEncoding::Utf16le => "utf16le",
            RawEncoding::Base64 => "base64",
            RawEncoding::Hex => "hex",
            RawEncoding::Latin1 => "latin1",
        }
    }

    /// The bytes `Buffer.from(s, encoding)` produces.
    pub fn encode_str(&self, s: &str) -> Vec<u8> {
        match self {
            RawEncoding::Utf8 => s.as_bytes().to_vec(),
            RawEncoding::Ascii | RawEncoding::Latin1 => {
                s.encode_utf16().map(|u| (u & 0xFF) as u8).collect()
            }
            RawEncoding::Utf16le => s.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            RawEncoding::Hex => decode_hex(s.as_bytes()),
            RawEncoding::Base64 => decode_base64(s.as_bytes()),
        }
    }

    /// The bytes `Buffer.from(array)` produces for an array of numbers:
    /// each element `& 0xFF` (the encoding plays no part).
    pub fn bytes_from_numbers(numbers: &[i64]) -> Vec<u8> {
        numbers.iter().map(|&n| (n & 0xFF) as u8).collect()
    }
}

impl fmt::Display for RawEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RawEncoding {
    type Err = ProtocolError;

    /// Accepts Node's names, case-insensitively: `utf8`, `utf-8`, `ascii`,
    /// `utf16le`, `utf-16le`, `ucs2`, `ucs-2`, `base64`, `base64url`, `hex`,
    /// `latin1`, `binary`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => RawEncoding::Utf8,
            "ascii" => RawEncoding::Ascii,
            "utf16le" | "utf-16le" | "ucs2" | "ucs-2" => RawEncoding::Utf16le,
            "base64" | "base64url" => RawEncoding::Base64,
            "hex" => RawEncoding::Hex,
            "latin1" | "binary" => RawEncoding::Latin1,
            _ => return Err(ProtocolError::config(format!("unknown encoding `{s}`"))),
        })
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Node: decode pairs until the first invalid pair; an odd trailing nibble
/// is dropped.
fn decode_hex(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.chunks_exact(2) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => break,
        }
    }
    out
}

fn b64_val(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Node's lenient base64: both alphabets, characters outside the alphabet
/// (whitespace included) are skipped, `=` ends the input, padding optional.
fn decode_base64(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in s {
        if c == b'=' {
            break;
        }
        let Some(v) = b64_val(c) else { continue };
        acc = acc << 6 | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (n, e) in [
            ("utf8", RawEncoding::Utf8),
            ("UTF-8", RawEncoding::Utf8),
            ("ucs2", RawEncoding::Utf16le),
            ("utf16le", RawEncoding::Utf16le),
            ("binary", RawEncoding::Latin1),
            ("latin1", RawEncoding::Latin1),
            ("ascii", RawEncoding::Ascii),
            ("hex", RawEncoding::Hex),
            ("base64", RawEncoding::Base64),
        ] {
            assert_eq!(n.parse::<RawEncoding>().unwrap(), e, "{n}");
        }
        assert!("utf32".parse::<RawEncoding>().is_err());
        assert_eq!(RawEncoding::default(), RawEncoding::Utf8);
    }

    #[test]
    fn node_rules() {
        assert_eq!(RawEncoding::Hex.encode_str("0a0bzz"), [0x0a, 0x0b]);
        assert_eq!(RawEncoding::Hex.encode_str("abc"), [0xab]);
        assert!(RawEncoding::Hex.encode_str("hello").is_empty());
        assert_eq!(RawEncoding::Base64.encode_str("aGVsbG8"), b"hello");
        assert_eq!(RawEncoding::Base64.encode_str("aGVs bG8=\n"), b"hello");
        assert_eq!(RawEncoding::Base64.encode_str("-_8"), [0xfb, 0xff]);
        assert_eq!(RawEncoding::Latin1.encode_str("é€"), [0xe9, 0xac]);
        assert_eq!(
            RawEncoding::Utf16le.encode_str("🌍"),
            [0x3c, 0xd8, 0x0d, 0xdf]
        );
        assert_eq!(
            RawEncoding::bytes_from_numbers(&[10, 20, 300, -1]),
            [0x0a, 0x14, 0x2c, 0xff]
        );
    }
}
