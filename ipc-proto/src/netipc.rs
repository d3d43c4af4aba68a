//! net-ipc's wire protocol, sans I/O: the preamble or HTTP-style upgrade,
//! the length prefix, and `{"t","d","n"}` packets as JSON or MessagePack.
//!
//! [net-ipc](https://www.npmjs.com/package/net-ipc) (2.2.2, the transport
//! under `@isdk/ipc-server`) is not wire-compatible with node-ipc. This
//! module speaks it so one server can serve node-ipc and net-ipc clients on
//! the same socket, and so our client can join a net-ipc server. The facts
//! below were checked against net-ipc 2.2.2's source and against the real
//! package in the interop suite.
//!
//! ## Wire format
//!
//! 1. **Preamble**, client to server, once: the 3 bytes `IPC`, or an upgrade
//!    request `GET / HTTP/1.1\r\nHost: <host>\r\nConnection: Upgrade\r\nUpgrade: net-ipc\r\n\r\n`
//!    answered by [`UPGRADE_RESPONSE`]. A server that sees anything else in
//!    the first 3 bytes writes [`TEAPOT`] and ends the connection
//!    ([`accept_preamble`]). net-ipc itself only checks that the header
//!    block *contains* `Connection: Upgrade` and `Upgrade: net-ipc`; ours
//!    parses the header lines (names case-insensitive) and caps the block
//!    at [`MAX_UPGRADE_HEADER`].
//! 2. **Packet** = length prefix + body. The length is big-endian base 128;
//!    the **last** byte has bit 7 set, earlier bytes have it clear:
//!    5 → `85`, 127 → `ff`, 128 → `01 80`, 300 → `02 ac`, 16384 → `01 00 80`
//!    ([`encode_len`], [`decode_len`]). net-ipc reads a prefix of any length;
//!    ours refuses a length above the decoder's limit as soon as the prefix
//!    shows it, before anything is buffered.
//! 3. **Body** = UTF-8 JSON `{"t":<type>,"d":<data>,"n":<nonce>}` — `d`
//!    absent when the sender's data is `undefined`, `n` only on correlated
//!    packets. After a handshake that negotiated `messagepack`, both sides
//!    switch to MessagePack maps with the same keys (net-ipc uses msgpackr's
//!    default `pack`; `undefined` travels as the extension `d4 00 00`). The
//!    CONNECTION packets of the handshake themselves are always JSON.
//! 4. **Types** ([`Kind`]): `0` CONNECTION, `1` MESSAGE, `2` REQUEST,
//!    `3` RESPONSE, `4` PING, `5` PONG, `6` END.
//!
//! Compression (net-ipc's `compress`, a raw-deflate stream through the
//! optional `fast-zlib` package) is **not** offered: servers answer
//! `compress:false`, and a net-ipc client then falls back to plain packets
//! (it prints a warning). A client of ours never asks for it.
//!
//! ## Mapping onto the node-ipc model of this project
//!
//! A net-ipc connection is served by the same machinery as a node-ipc
//! connection: each packet becomes the node-ipc message (or `ipcx`
//! extension message, [`crate::ext`]) with the same meaning, and back.
//!
//! | net-ipc packet | ours |
//! |---|---|
//! | CONNECTION `{"extras","id","messagepack","compress"}` (client) | `ipcx.hello {"v":1,"id","extras"}`: the server's `hello` event carries `extras` (@isdk's `connect(connection, payload)`), a truthy `id` is kept (reconnecting clients keep their id) |
//! | CONNECTION `{"id","messagepack","compress"}` (server reply) | `ipcx.welcome {"id"}` |
//! | MESSAGE `d` | the event `message` with data `d` (`send`, `broadcast`) |
//! | REQUEST `d`, `n` | `ipcx.request {"n","d"}`: the request handlers (`on_request`), either direction |
//! | RESPONSE `d`, `n` | `ipcx.response {"n","d"}`; an error answer `{"n","e"}` travels as `d = {"error":{"code","message"}}` because net-ipc has no error responses |
//! | PING `d`, `n` / PONG | `ipcx.ping` / `ipcx.pong` |
//! | END `{"m","a"}` | `ipcx.end {"reason":m,"reconnect":a}` (`close(allow_reconnect)`) |
//!
//! Events other than `message` have no net-ipc packet; they are sent as a
//! MESSAGE whose `d` is the node-ipc envelope `{"type":…,"data":…}`, so
//! nothing is lost and a net-ipc program can dispatch on `type`.
//!
//! ## Differences from the description in SPEC §5.2 (the real peer wins)
//!
//! * The server's CONNECTION reply echoes the request's `n` (there is none
//!   in practice) and carries `compress`/`messagepack` only as
//!   `requested && available`; a client that omits them gets them omitted.
//! * A premature packet (anything before CONNECTION) is not just an `error`:
//!   the connection is not yet registered, so net-ipc closes it with
//!   END `{"m":"closing orphaned connection","a":false}`.
//! * The 10 s handshake limit closes with END `{"a":false}` (no reason).
//! * A body that does not parse is reported and skipped; the connection
//!   stays open (net-ipc emits `error` and goes on). Unknown `t` values are
//!   ignored by net-ipc; ours reports them ([`ErrorCode::InvalidMessage`])
//!   and goes on.
//! * net-ipc keeps its request table and drain queue on the prototype,
//!   shared by every connection of a process; correlation still works
//!   because nonces are random.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::{ErrorCode, ProtocolError};

/// The 3-byte preamble of a direct connection.
pub const PREAMBLE: &[u8] = b"IPC";
/// The server's answer to an upgrade request.
pub const UPGRADE_RESPONSE: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: net-ipc\r\n\r\n";
/// What a net-ipc server writes (then ends) on an unknown preamble.
pub const TEAPOT: &[u8] = b"HTTP/1.1 418 I'm a Teapot";
/// The largest upgrade header block ours reads.
pub const MAX_UPGRADE_HEADER: usize = 8 * 1024;
/// net-ipc closes connections that have not finished the handshake after
/// this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The reason net-ipc's `server.close()` sends in its END packets.
pub const SERVER_CLOSED: &str = "Server was shut down";
/// The END reason of a connection closed for a premature packet.
pub const ORPHAN_CONNECTION: &str = "closing orphaned connection";
/// net-ipc's message for a packet that arrives before the handshake.
pub const PREMATURE_PACKET: &str =
    "ignored data packet received before connection finished establishing";
/// net-ipc's client retry step: the k-th retry waits `min(500·k, 10 000)` ms.
pub const RETRY_INCREMENT: Duration = Duration::from_millis(500);
/// The cap of net-ipc's retry delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// net-ipc's default number of client retries.
pub const DEFAULT_RETRIES: u32 = 3;
/// The deepest MessagePack nesting the transcoder follows.
pub const MAX_DEPTH: usize = 128;

/// The delay before the `k`-th reconnect attempt (k ≥ 1) under net-ipc's
/// policy.
pub fn retry_delay(k: u32) -> Duration {
    RETRY_INCREMENT.saturating_mul(k).min(MAX_RETRY_DELAY)
}

/// A packet type (`t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Handshake, both directions.
    Connection = 0,
    /// A one-way message.
    Message = 1,
    /// A correlated request.
    Request = 2,
    /// The answer to a request.
    Response = 3,
    /// A correlated ping.
    Ping = 4,
    /// The answer to a ping (echoes `d`).
    Pong = 5,
    /// Graceful close notice `{"m":reason,"a":allowReconnect}`.
    End = 6,
}

impl Kind {
    /// The type with this number.
    pub fn from_number(t: u64) -> Option<Kind> {
        Some(match t {
            0 => Kind::Connection,
            1 => Kind::Message,
            2 => Kind::Request,
            3 => Kind::Response,
            4 => Kind::Ping,
            5 => Kind::Pong,
            6 => Kind::End,
            _ => return None,
        })
    }

    /// The number on the wire.
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// One decoded packet. `data` is JSON text (whatever the body format was),
/// `None` when the sender's data was `undefined`.
#[derive(Debug, Clone)]
pub struct Packet {
    /// `t`.
    pub kind: Kind,
    /// `d`, as JSON.
    pub data: Option<Box<RawValue>>,
    /// `n`.
    pub nonce: Option<String>,
}

impl Packet {
    /// `d` parsed into `T` (`None` data parses as JSON `null`).
    pub fn data_as<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ProtocolError> {
        let text = self.data.as_deref().map(RawValue::get).unwrap_or("null");
        serde_json::from_str(text)
            .map_err(|e| ProtocolError::new(ErrorCode::InvalidMessage, format!("packet data: {e}")))
    }
}

/// The CONNECTION data a client sends.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct ClientHello {
    /// Asks for compression (ours never grants it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Asks for MessagePack bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messagepack: Option<bool>,
    /// The connect payload (@isdk's `connect(payload)`); absent = `undefined`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<serde_json::Value>,
    /// The id of the previous connection, if any (`null` on the first).
    #[serde(default)]
    pub id: Option<serde_json::Value>,
}

/// The CONNECTION data a server replies with.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct ServerHello {
    /// The connection id (kept from the client's hello when truthy).
    pub id: serde_json::Value,
    /// Compression granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// MessagePack granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messagepack: Option<bool>,
}

/// The END data.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
pub struct EndNotice {
    /// The reason (`undefined` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<serde_json::Value>,
    /// Whether the client may reconnect.
    #[serde(default)]
    pub a: bool,
}

/// What the first bytes of a stream say about its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// `IPC` or `GET`: a net-ipc client.
    NetIpc,
    /// Anything else: a node-ipc peer.
    NodeIpc,
    /// Too few bytes to tell (a prefix of `IPC` or `GET`).
    NeedMore,
}

/// Tells net-ipc from node-ipc by the first bytes a client sent. node-ipc
/// frames start with `{` (or raw bytes in raw mode, where detection must not
/// be used).
pub fn detect(first: &[u8]) -> Detected {
    let n = first.len().min(3);
    let head = &first[..n];
    if head == &PREAMBLE[..n] || head == &b"GET"[..n] {
        if n == 3 {
            Detected::NetIpc
        } else {
            Detected::NeedMore
        }
    } else {
        Detected::NodeIpc
    }
}

/// How a net-ipc client opened its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    /// The `IPC` bytes (consumed).
    Direct,
    /// An upgrade request (consumed); write [`UPGRADE_RESPONSE`] first.
    Upgrade,
}

/// Reads the client's preamble from the front of `buf`, consuming it.
/// `Ok(None)`: need more bytes. An error means the server writes
/// [`TEAPOT`] and ends the connection, as net-ipc does.
pub fn accept_preamble(buf: &mut BytesMut) -> Result<Option<Preamble>, ProtocolError> {
    match detect(buf) {
        Detected::NeedMore => return Ok(None),
        Detected::NodeIpc => {
            return Err(ProtocolError::new(
                ErrorCode::Protocol,
                "not a net-ipc preamble (expected IPC or an upgrade request)",
            ))
        }
        Detected::NetIpc => {}
    }
    if buf.starts_with(PREAMBLE) {
        buf.advance(PREAMBLE.len());
        return Ok(Some(Preamble::Direct));
    }
    let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_UPGRADE_HEADER {
            return Err(ProtocolError::frame_too_large(format!(
                "upgrade request longer than {MAX_UPGRADE_HEADER} bytes"
            )));
        }
        return Ok(None);
    };
    if end + 4 > MAX_UPGRADE_HEADER {
        return Err(ProtocolError::frame_too_large(format!(
            "upgrade request longer than {MAX_UPGRADE_HEADER} bytes"
        )));
    }
    let head = buf.split_to(end + 4);
    let text = String::from_utf8_lossy(&head[..end]);
    let mut connection = false;
    let mut upgrade = false;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("connection") {
            connection |= value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
        } else if name.trim().eq_ignore_ascii_case("upgrade") {
            upgrade |= value.eq_ignore_ascii_case("net-ipc");
        }
    }
    if connection && upgrade {
        Ok(Some(Preamble::Upgrade))
    } else {
        Err(ProtocolError::new(
            ErrorCode::Protocol,
            "upgrade request without `Connection: Upgrade` and `Upgrade: net-ipc`",
        ))
    }
}

/// The upgrade request a client sends instead of [`PREAMBLE`] (net-ipc's
/// `handshake: true`); `host` defaults to `net-ipc` there.
pub fn upgrade_request(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: net-ipc\r\n\r\n")
        .into_bytes()
}

/// Reads the server's answer to an upgrade request from the front of
/// `buf`, consuming it. `Ok(None)`: need more bytes.
pub fn accept_upgrade_response(buf: &mut BytesMut) -> Result<Option<()>, ProtocolError> {
    const STATUS: &[u8] = b"HTTP/1.1 101 Switching Protocols";
    let n = buf.len().min(STATUS.len());
    if buf[..n] != STATUS[..n] {
        let line_end = memchr::memmem::find(buf, b"\r\n").unwrap_or(buf.len().min(64));
        let line = String::from_utf8_lossy(&buf[..line_end.min(64)]).into_owned();
        return Err(ProtocolError::new(
            ErrorCode::Protocol,
            format!("upgrade refused: {line}"),
        ));
    }
    match memchr::memmem::find(buf, b"\r\n\r\n") {
        Some(end) => {
            buf.advance(end + 4);
            Ok(Some(()))
        }
        None if buf.len() > MAX_UPGRADE_HEADER => Err(ProtocolError::frame_too_large(
            "upgrade response header too long",
        )),
        None => Ok(None),
    }
}

/// Appends the length prefix of a `len`-byte body.
pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 10];
    let mut i = digits.len() - 1;
    let mut size = len;
    digits[i] = (size & 127) as u8 | 0x80;
    size >>= 7;
    while size > 0 {
        i -= 1;
        digits[i] = (size & 127) as u8;
        size >>= 7;
    }
    out.extend_from_slice(&digits[i..]);
}

/// Reads a length prefix from the front of `buf` without consuming it:
/// `Ok(Some((prefix_len, body_len)))`, or `Ok(None)` when the prefix is
/// incomplete. A length above `limit` is refused as soon as it shows.
pub fn decode_len(buf: &[u8], limit: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut num: usize = 0;
    for (i, &byte) in buf.iter().enumerate() {
        let next = num
            .checked_mul(128)
            .and_then(|n| n.checked_add(usize::from(byte & 127)));
        match next {
            Some(n) if n <= limit => num = n,
            _ => {
                return Err(ProtocolError::frame_too_large(format!(
                    "net-ipc packet longer than the limit of {limit} bytes"
                )))
            }
        }
        if byte & 0x80 != 0 {
            return Ok(Some((i + 1, num)));
        }
        // More digits follow: the length is at least `num · 128`.
        if num.checked_mul(128).is_none_or(|min| min > limit) {
            return Err(ProtocolError::frame_too_large(format!(
                "net-ipc packet longer than the limit of {limit} bytes"
            )));
        }
    }
    Ok(None)
}

/// Body format of a connection after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFormat {
    /// JSON text (always used for the handshake).
    #[default]
    Json,
    /// MessagePack maps (negotiated with `messagepack: true`).
    Msgpack,
}

/// Sans-IO packet codec for one connection (both directions).
///
/// Decoding: [`Codec::decode`] takes complete packets off the front of the
/// caller's buffer. A packet whose length is above the limit is refused
/// from its prefix ([`ErrorCode::FrameTooLarge`]); that error is fatal —
/// the buffer is cleared and the connection must close. A body that does
/// not parse ([`ErrorCode::InvalidJson`], [`ErrorCode::InvalidMessage`]) is
/// consumed and reported; decoding may go on with the next packet, as
/// net-ipc does.
#[derive(Debug, Clone)]
pub struct Codec {
    limit: usize,
    format: BodyFormat,
}

impl Codec {
    /// A JSON codec whose packets may be at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Codec {
            limit,
            format: BodyFormat::Json,
        }
    }

    /// The body format (after the handshake, both sides switch together).
    pub fn set_format(&mut self, format: BodyFormat) {
        self.format = format;
    }

    /// The current body format.
    pub fn format(&self) -> BodyFormat {
        self.format
    }

    /// The packet size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The next complete packet at the front of `buf`, if any.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, ProtocolError> {
        let (prefix, len) = match decode_len(buf, self.limit) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => {
                buf.clear();
                return Err(e);
            }
        };
        if buf.len() < prefix + len {
            buf.reserve(prefix + len - buf.len());
            return Ok(None);
        }
        buf.advance(prefix);
        let body = buf.split_to(len);
        match self.format {
            BodyFormat::Json => parse_json_body(&body),
            BodyFormat::Msgpack => {
                let json = msgpack_to_json(&body)?;
                parse_json_body(&json)
            }
        }
        .map(Some)
    }

    /// Appends one packet; `data` is JSON text (`None` = `undefined`).
    pub fn encode(
        &self,
        kind: Kind,
        data: Option<&RawValue>,
        nonce: Option<&str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        self.encode_json_text(kind, data.map(|d| d.get().as_bytes()), nonce, dst)
    }

    /// [`Codec::encode`] with `data` as JSON text that is known to be valid
    /// (e.g. the `data` of a decoded node-ipc frame). In JSON mode it is
    /// copied unchecked; in MessagePack mode invalid text is refused.
    pub fn encode_json_text(
        &self,
        kind: Kind,
        data: Option<&[u8]>,
        nonce: Option<&str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let body = match self.format {
            BodyFormat::Json => json_body(kind, data, nonce)?,
            BodyFormat::Msgpack => msgpack_body(kind, data, nonce)?,
        };
        if body.len() > self.limit {
            return Err(ProtocolError::frame_too_large(format!(
                "net-ipc packet of {} bytes is above the limit of {} bytes",
                body.len(),
                self.limit
            )));
        }
        encode_len(body.len(), dst);
        dst.extend_from_slice(&body);
        Ok(())
    }

    /// [`Codec::encode`] of a serializable value.
    pub fn encode_value<T: serde::Serialize + ?Sized>(
        &self,
        kind: Kind,
        data: Option<&T>,
        nonce: Option<&str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let raw = match data {
            Some(d) => Some(to_raw(d)?),
            None => None,
        };
        self.encode(kind, raw.as_deref(), nonce, dst)
    }
}

/// Serializes `value` as JavaScript would into a [`RawValue`].
pub fn to_raw<T: serde::Serialize + ?Sized>(value: &T) -> Result<Box<RawValue>, ProtocolError> {
    let text = crate::to_js_string(value).map_err(|e| {
        ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("data cannot be serialized: {e}"),
        )
    })?;
    RawValue::from_string(text)
        .map_err(|e| ProtocolError::invalid_json(format!("data is not JSON: {e}")))
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct InBody {
    t: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    d: Option<Box<RawValue>>,
    n: Option<serde_json::Value>,
}

fn parse_json_body(body: &[u8]) -> Result<Packet, ProtocolError> {
    let parsed: InBody = serde_json::from_slice(body)
        .map_err(|e| ProtocolError::invalid_json(format!("net-ipc packet body: {e}")))?;
    let kind = match &parsed.t {
        Some(serde_json::Value::Number(t)) => t.as_u64().and_then(Kind::from_number),
        _ => None,
    };
    let Some(kind) = kind else {
        let t = parsed
            .t
            .map(|t| t.to_string())
            .unwrap_or_else(|| "none".into());
        let t: String = t.chars().take(32).collect();
        return Err(ProtocolError::new(
            ErrorCode::InvalidMessage,
            format!("net-ipc packet with unknown type {t}"),
        ));
    };
    let nonce = match parsed.n {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(ProtocolError::new(
                ErrorCode::InvalidMessage,
                "net-ipc packet nonce is neither a string nor a number",
            ))
        }
    };
    Ok(Packet {
        kind,
        data: parsed.d,
        nonce,
    })
}

fn json_body(
    kind: Kind,
    data: Option<&[u8]>,
    nonce: Option<&str>,
) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(16 + data.map_or(0, <[u8]>::len));
    out.extend_from_slice(b"{\"t\":");
    out.push(b'0' + kind.number());
    if let Some(d) = data {
        out.extend_from_slice(b",\"d\":");
        out.extend_from_slice(d);
    }
    if let Some(n) = nonce {
        out.extend_from_slice(b",\"n\":");
        serde_json::to_writer(&mut out, n)
            .map_err(|e| ProtocolError::invalid_json(e.to_string()))?;
    }
    out.push(b'}');
    Ok(out)
}

fn msgpack_body(
    kind: Kind,
    data: Option<&[u8]>,
    nonce: Option<&str>,
) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::with_capacity(16 + data.map_or(0, <[u8]>::len));
    let entries = 1 + u8::from(data.is_some()) + u8::from(nonce.is_some());
    out.extend_from_slice(&[0xde, 0, entries]);
    mp_str(&mut out, "t");
    out.push(kind.number());
    if let Some(d) = data {
        mp_str(&mut out, "d");
        json_to_msgpack(d, &mut out)?;
    }
    if let Some(n) = nonce {
        mp_str(&mut out, "n");
        mp_str(&mut out, n);
    }
    Ok(out)
}

// ---- MessagePack <-> JSON transcoding -------------------------------------

fn mp_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.push(0xd9);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn mp_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
    if n <= fix_max && fix_max > 0 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(m16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// An integer the way msgpackr writes a JavaScript number: 32-bit values
/// as integers, others up to 2^53 as float64; beyond that (not a JavaScript
/// number anyway) as 64-bit integers so no digit is lost.
fn mp_number(out: &mut Vec<u8>, v: i64) {
    const SAFE: i64 = 1 << 53;
    if (-0x8000_0000..=0xffff_ffff).contains(&v) || !(-SAFE..=SAFE).contains(&v) {
        mp_int(out, v);
    } else {
        out.push(0xcb);
        out.extend_from_slice(&(v as f64).to_be_bytes());
    }
}

fn mp_int(out: &mut Vec<u8>, v: i64) {
    if (0..128).contains(&v) {
        out.push(v as u8);
    } else if (-32..0).contains(&v) {
        out.push(v as i8 as u8);
    } else if v >= 0 {
        if v <= 0xff {
            out.push(0xcc);
            out.push(v as u8);
        } else if v <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(v as u64).to_be_bytes());
        }
    } else if v >= -0x80 {
        out.push(0xd0);
        out.push(v as i8 as u8);
    } else if v >= -0x8000 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= -0x8000_0000 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// MessagePack bytes of one JSON value, built bottom-up by a serde visitor
/// (the JSON parser's own recursion limit bounds the depth).
struct Mp(Vec<u8>);

impl<'de> Deserialize<'de> for Mp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mp, D::Error> {
        d.deserialize_any(MpVisitor)
    }
}

struct MpVisitor;

impl<'de> serde::de::Visitor<'de> for MpVisitor {
    type Value = Mp;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Mp, E> {
        Ok(Mp(vec![0xc0]))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Mp, E> {
        Ok(Mp(vec![if v { 0xc3 } else { 0xc2 }]))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Mp, E> {
        let mut out = Vec::with_capacity(9);
        mp_number(&mut out, v);
        Ok(Mp(out))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Mp, E> {
        let mut out = Vec::with_capacity(9);
        match i64::try_from(v) {
            Ok(i) => mp_number(&mut out, i),
            Err(_) => {
                out.push(0xcf);
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Ok(Mp(out))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Mp, E> {
        let mut out = Vec::with_capacity(9);
        // Like msgpackr: integral values within 32 bits are integers.
        if v.fract() == 0.0 && (-2_147_483_648.0..=4_294_967_295.0).contains(&v) {
            mp_int(&mut out, v as i64);
        } else {
            out.push(0xcb);
            out.extend_from_slice(&v.to_be_bytes());
        }
        Ok(Mp(out))
    }

    fn visit_str<E>(self, v: &str) -> Result<Mp, E> {
        let mut out = Vec::with_capacity(v.len() + 5);
        mp_str(&mut out, v);
        Ok(Mp(out))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Mp, A::Error> {
        let mut body = Vec::new();
        let mut n = 0usize;
        while let Some(Mp(item)) = seq.next_element()? {
            body.extend_from_slice(&item);
            n += 1;
        }
        let mut out = Vec::with_capacity(body.len() + 5);
        mp_len(&mut out, n, 0x90, 15, 0xdc, 0xdd);
        out.extend_from_slice(&body);
        Ok(Mp(out))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Mp, A::Error> {
        let mut body = Vec::new();
        let mut n = 0usize;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            mp_str(&mut body, &key);
            let Mp(value) = map.next_value()?;
            body.extend_from_slice(&value);
            n += 1;
        }
        let mut out = Vec::with_capacity(body.len() + 5);
        // msgpackr writes every object as a map16 (map32 when larger).
        mp_len(&mut out, n, 0x80, 0, 0xde, 0xdf);
        out.extend_from_slice(&body);
        Ok(Mp(out))
    }
}

/// Transcodes JSON text to MessagePack (object keys keep their order).
pub fn json_to_msgpack(json: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let Mp(bytes) = serde_json::from_slice(json)
        .map_err(|e| ProtocolError::invalid_json(format!("data is not JSON: {e}")))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Transcodes one MessagePack value (the whole of `src`) to JSON text, the
/// way `JSON.stringify(msgpackr.unpack(src))` would: msgpackr's `undefined`
/// (`d4 00 00`) drops an object member and is `null` in an array; integer
/// map keys become strings. Binary data, other extension types and
/// non-finite floats in keys are refused ([`ErrorCode::InvalidMessage`]).
pub fn msgpack_to_json(src: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut r = MpReader { src, pos: 0 };
    let mut out = Vec::with_capacity(src.len() + src.len() / 2);
    let v = r.value(&mut out, 0)?;
    if v == Written::Undefined {
        return Err(bad_mp("the packet is `undefined`"));
    }
    if r.pos != src.len() {
        return Err(bad_mp("trailing bytes after the packet"));
    }
    Ok(out)
}

fn bad_mp(why: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidMessage,
        format!("net-ipc MessagePack body: {why}"),
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Written {
    Value,
    Undefined,
}

struct MpReader<'a> {
    src: &'a [u8],
    pos: usize,
}

impl MpReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtocolError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.src.len())
            .ok_or_else(|| bad_mp("truncated"))?;
        let s = &self.src[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, ProtocolError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn string(&mut self, n: usize, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| bad_mp("a string is not UTF-8"))?;
        serde_json::to_writer(&mut *out, s).map_err(|e| bad_mp(&e.to_string()))
    }

    fn float(out: &mut Vec<u8>, v: f64) {
        if v.is_finite() {
            let mut b = ryu_js::Buffer::new();
            out.extend_from_slice(b.format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }

    /// A map key as a JSON string.
    fn key(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let mark = out.len();
        let start = self.pos;
        match self.value(out, MAX_DEPTH)? {
            Written::Undefined => Err(bad_mp("an `undefined` map key")),
            Written::Value => {
                let first = self.src[start];
                let is_str = matches!(first, 0xa0..=0xbf | 0xd9..=0xdb);
                let is_num = matches!(first, 0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3);
                if is_str {
                    Ok(())
                } else if is_num {
                    let text = out.split_off(mark);
                    out.push(b'"');
                    out.extend_from_slice(&text);
                    out.push(b'"');
                    Ok(())
                } else {
                    Err(bad_mp("a map key is neither a string nor an integer"))
                }
            }
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<Written, ProtocolError> {
        if depth > MAX_DEPTH {
            return Err(bad_mp("nested too deeply"));
        }
        let b = self.byte()?;
        match b {
            0x00..=0x7f => out.extend_from_slice(itoa::Buffer::new().format(b).as_bytes()),
            0xe0..=0xff => out.extend_from_slice(itoa::Buffer::new().format(b as i8).as_bytes()),
            0xc0 => out.extend_from_slice(b"null"),
            0xc2 => out.extend_from_slice(b"false"),
            0xc3 => out.extend_from_slice(b"true"),
            0xcc..=0xcf => {
                let v = self.be(1 << (b - 0xcc))?;
                // Beyond 2^53 JavaScript holds the nearest double; all the
                // digits are kept here, like the JSON side does.
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            }
            0xd0..=0xd3 => {
                let n = 1usize << (b - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let v = ((raw << shift) as i64) >> shift;
                out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
            }
            0xca => {
                let v = f32::from_bits(self.be(4)? as u32);
                Self::float(out, f64::from(v));
            }
            0xcb => Self::float(out, f64::from_bits(self.be(8)?)),
            0xa0..=0xbf => self.string(usize::from(b & 0x1f), out)?,
            0xd9 => {
                let n = self.be(1)? as usize;
                self.string(n, out)?
            }
            0xda => {
                let n = self.be(2)? as usize;
                self.string(n, out)?
            }
            0xdb => {
                let n = self.be(4)? as usize;
                self.string(n, out)?
            }
            0x90..=0x9f => self.array(usize::from(b & 0x0f), out, depth)?,
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(n, out, depth)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(n, out, depth)?
            }
            0x80..=0x8f => self.map(usize::from(b & 0x0f), out, depth)?,
            0xde => {
                let n = self.be(2)? as usize;
                self.map(n, out, depth)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(n, out, depth)?
            }
            0xd4 => {
                let ty = self.byte()?;
                let data = self.byte()?;
                if ty == 0 && data == 0 {
                    return Ok(Written::Undefined);
                }
                return Err(bad_mp("MessagePack extension types are not JSON"));
            }
            0xc4..=0xc6 => return Err(bad_mp("binary data is not JSON")),
            _ => return Err(bad_mp("MessagePack extension types are not JSON")),
        }
        Ok(Written::Value)
    }

    fn array(&mut self, n: usize, out: &mut Vec<u8>, depth: usize) -> Result<(), ProtocolError> {
        // Every element takes at least one byte: no huge up-front counts.
        if n > self.src.len() - self.pos {
            return Err(bad_mp("truncated"));
        }
        out.push(b'[');
        for i in 0..n {
            if i > 0 {
                out.push(b',');
            }
            if self.value(out, depth + 1)? == Written::Undefined {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b']');
        Ok(())
    }

    fn map(&mut self, n: usize, out: &mut Vec<u8>, depth: usize) -> Result<(), ProtocolError> {
        if n > (self.src.len() - self.pos) / 2 {
            return Err(bad_mp("truncated"));
        }
        out.push(b'{');
        let mut first = true;
        for _ in 0..n {
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            self.key(out)?;
            out.push(b':');
            if self.value(out, depth + 1)? == Written::Undefined {
                out.truncate(mark);
            } else {
                first = false;
            }
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn length_prefix_vectors_of_the_spec() {
        for (len, expect) in [
            (5usize, "85"),
            (127, "ff"),
            (128, "0180"),
            (300, "02ac"),
            (16384, "010080"),
            (0, "80"),
        ] {
            let mut out = Vec::new();
            encode_len(len, &mut out);
            assert_eq!(hex(&out), expect, "{len}");
            assert_eq!(
                decode_len(&out, usize::MAX).unwrap(),
                Some((out.len(), len))
            );
            assert_eq!(decode_len(&out[..out.len() - 1], usize::MAX).unwrap(), None);
        }
    }

    #[test]
    fn length_above_the_limit_is_refused_from_the_prefix() {
        let mut out = Vec::new();
        encode_len(1 << 20, &mut out);
        let e = decode_len(&out[..1], 1000).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        // Endless continuation bytes cannot overflow.
        let e = decode_len(&[0x7f; 20], usize::MAX).unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    }

    #[test]
    fn spec_example_message_and_ping() {
        let c = Codec::new(1024);
        let mut out = Vec::new();
        c.encode(Kind::Message, Some(&raw("\"hello\"")), None, &mut out)
            .unwrap();
        assert_eq!(out[0], 0x93);
        assert_eq!(&out[1..], br#"{"t":1,"d":"hello"}"#);
        let mut out = Vec::new();
        c.encode(Kind::Ping, None, Some("p1"), &mut out).unwrap();
        assert_eq!(hex(&out), "907b2274223a342c226e223a227031227d");
    }

    #[test]
    fn decode_round_trip_in_pieces() {
        let mut c = Codec::new(1024);
        let mut wire = Vec::new();
        c.encode(
            Kind::Request,
            Some(&raw(r#"{"a":[1,null]}"#)),
            Some("x1"),
            &mut wire,
        )
        .unwrap();
        c.encode(Kind::Message, Some(&raw("null")), None, &mut wire)
            .unwrap();
        c.encode(Kind::Response, None, Some("x1"), &mut wire)
            .unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(p) = c.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].kind, Kind::Request);
        assert_eq!(got[0].data.as_ref().unwrap().get(), r#"{"a":[1,null]}"#);
        assert_eq!(got[0].nonce.as_deref(), Some("x1"));
        assert_eq!(got[1].data.as_ref().unwrap().get(), "null");
        assert!(got[2].data.is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_bodies_are_skipped_and_reported() {
        let mut c = Codec::new(1024);
        let mut buf = BytesMut::new();
        for body in [
            &b"{nope"[..],
            br#"{"t":9}"#,
            br#"{"d":1}"#,
            br#"{"t":1,"n":[]}"#,
        ] {
            let mut p = Vec::new();
            encode_len(body.len(), &mut p);
            p.extend_from_slice(body);
            buf.extend_from_slice(&p);
        }
        let mut ok = Vec::new();
        c.encode(Kind::Pong, Some(&raw("1")), Some("n"), &mut ok)
            .unwrap();
        buf.extend_from_slice(&ok);
        let codes: Vec<_> = (0..4)
            .map(|_| c.decode(&mut buf).unwrap_err().code())
            .collect();
        assert_eq!(
            codes,
            [
                ErrorCode::InvalidJson,
                ErrorCode::InvalidMessage,
                ErrorCode::InvalidMessage,
                ErrorCode::InvalidMessage
            ]
        );
        assert_eq!(c.decode(&mut buf).unwrap().unwrap().kind, Kind::Pong);
    }

    #[test]
    fn oversized_packet_is_fatal() {
        let mut c = Codec::new(10);
        let mut buf = BytesMut::from(&b"\x01\x80rest"[..]);
        assert_eq!(
            c.decode(&mut buf).unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
        assert!(buf.is_empty());
        let big = raw(&format!("\"{}\"", "x".repeat(20)));
        let e = c
            .encode(Kind::Message, Some(&big), None, &mut Vec::new())
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    }

    #[test]
    fn preambles() {
        let mut b = BytesMut::from(&b"IP"[..]);
        assert_eq!(accept_preamble(&mut b).unwrap(), None);
        b.extend_from_slice(b"C\x90");
        assert_eq!(accept_preamble(&mut b).unwrap(), Some(Preamble::Direct));
        assert_eq!(&b[..], b"\x90");

        let mut b = BytesMut::from(&upgrade_request("net-ipc")[..40]);
        assert_eq!(accept_preamble(&mut b).unwrap(), None);
        let mut b = BytesMut::from(&upgrade_request("net-ipc")[..]);
        b.extend_from_slice(b"\x85");
        assert_eq!(accept_preamble(&mut b).unwrap(), Some(Preamble::Upgrade));
        assert_eq!(&b[..], b"\x85");

        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        assert_eq!(
            accept_preamble(&mut b).unwrap_err().code(),
            ErrorCode::Protocol
        );
        let mut b = BytesMut::from(&b"{\"type\""[..]);
        assert!(accept_preamble(&mut b).is_err());
        let mut b = BytesMut::from(&b"GET "[..]);
        b.extend_from_slice(&vec![b'a'; MAX_UPGRADE_HEADER + 1]);
        assert_eq!(
            accept_preamble(&mut b).unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn detection() {
        assert_eq!(detect(b""), Detected::NeedMore);
        assert_eq!(detect(b"I"), Detected::NeedMore);
        assert_eq!(detect(b"GE"), Detected::NeedMore);
        assert_eq!(detect(b"IPC"), Detected::NetIpc);
        assert_eq!(detect(b"GET /"), Detected::NetIpc);
        assert_eq!(detect(b"{\"type\""), Detected::NodeIpc);
        assert_eq!(detect(b"IX"), Detected::NodeIpc);
    }

    #[test]
    fn upgrade_response() {
        let mut b = BytesMut::from(UPGRADE_RESPONSE);
        b.extend_from_slice(b"\x85");
        assert_eq!(accept_upgrade_response(&mut b).unwrap(), Some(()));
        assert_eq!(&b[..], b"\x85");
        let mut b = BytesMut::from(TEAPOT);
        assert!(accept_upgrade_response(&mut b)
            .unwrap_err()
            .message()
            .contains("418"));
    }

    #[test]
    fn msgpack_matches_msgpackr_bytes() {
        // Checked against msgpackr 1.11.5: pack({t:1,d:"hello"}) and
        // pack({t:2,d:{a:1.5,b:[true,null,-1,300]},n:"x"}), after the prefix.
        let mut c = Codec::new(1024);
        c.set_format(BodyFormat::Msgpack);
        let mut out = Vec::new();
        c.encode(Kind::Message, Some(&raw("\"hello\"")), None, &mut out)
            .unwrap();
        assert_eq!(hex(&out), "8ede0002a17401a164a568656c6c6f");
        let mut out = Vec::new();
        c.encode(
            Kind::Request,
            Some(&raw(r#"{"a":1.5,"b":[true,null,-1,300]}"#)),
            Some("x"),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            hex(&out),
            "a3de0003a17402a164de0002a161cb3ff8000000000000a16294c3c0ffcd012ca16ea178"
        );
        let mut buf = BytesMut::from(&out[..]);
        let p = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(p.kind, Kind::Request);
        assert_eq!(p.data.unwrap().get(), r#"{"a":1.5,"b":[true,null,-1,300]}"#);
    }

    #[test]
    fn msgpackr_undefined_and_keys() {
        // {t:3, d:undefined, n:"q"} as msgpackr packs it.
        let body = [
            0xde, 0x00, 0x03, 0xa1, b't', 0x03, 0xa1, b'd', 0xd4, 0x00, 0x00, 0xa1, b'n', 0xa1,
            b'q',
        ];
        let json = msgpack_to_json(&body).unwrap();
        assert_eq!(json, br#"{"t":3,"n":"q"}"#);
        // [undefined] and {1: true}
        assert_eq!(msgpack_to_json(&[0x91, 0xd4, 0, 0]).unwrap(), b"[null]");
        assert_eq!(
            msgpack_to_json(&[0x81, 0x01, 0xc3]).unwrap(),
            br#"{"1":true}"#
        );
        for bad in [
            &[0xc4, 0x01, 0x00][..],
            &[0xd4, 0x01, 0x00],
            &[0x92, 0x01],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xa2, 0xff, 0xfe],
            &[0x01, 0x02],
            &[0xc1],
        ] {
            assert_eq!(
                msgpack_to_json(bad).unwrap_err().code(),
                ErrorCode::InvalidMessage,
                "{bad:?}"
            );
        }
        let deep = vec![0x91u8; MAX_DEPTH + 5];
        assert!(msgpack_to_json(&deep).is_err());
    }

    #[test]
    fn msgpack_numbers_like_javascript() {
        // msgpackr 1.11.5: pack([0,-33,4294967296,1e21,-0.5])
        let mut out = Vec::new();
        json_to_msgpack(b"[0,-33,4294967296,1e21,-0.5]", &mut out).unwrap();
        assert_eq!(
            hex(&out),
            "9500d0dfcb41f0000000000000cb444b1ae4d6e2ef50cbbfe0000000000000"
        );
        let mut out = Vec::new();
        json_to_msgpack(
            b"[0,-33,4294967296,1e21,-0.5,18446744073709551615]",
            &mut out,
        )
        .unwrap();
        let back = msgpack_to_json(&out).unwrap();
        assert_eq!(
            std::str::from_utf8(&back).unwrap(),
            "[0,-33,4294967296,1e+21,-0.5,18446744073709551615]"
        );
    }

    #[test]
    fn msgpack_floats_survive_json_both_ways() {
        // Found by the fuzz target: a float whose shortest text needs a
        // correctly rounding parser on the way back.
        for bits in [
            0x20f8_0000_003f_0000u64,
            0x3ff0_0000_0000_0001,
            0x0000_0000_0000_0001,
        ] {
            let mut mp = vec![0xcb];
            mp.extend_from_slice(&bits.to_be_bytes());
            let json = msgpack_to_json(&mp).unwrap();
            let mut back = Vec::new();
            json_to_msgpack(&json, &mut back).unwrap();
            assert_eq!(back, mp, "{}", String::from_utf8_lossy(&json));
        }
    }

    #[test]
    fn handshake_shapes() {
        let hello: ClientHello = serde_json::from_str(
            r#"{"compress":false,"messagepack":true,"extras":{"k":1},"id":null}"#,
        )
        .unwrap();
        assert_eq!(hello.messagepack, Some(true));
        assert_eq!(hello.extras, Some(serde_json::json!({"k":1})));
        let reply = ServerHello {
            id: "abc".into(),
            compress: Some(false),
            messagepack: Some(true),
        };
        assert_eq!(
            crate::to_js_string(&reply).unwrap(),
            r#"{"id":"abc","compress":false,"messagepack":true}"#
        );
        let end: EndNotice = serde_json::from_str(r#"{"m":"bye","a":true}"#).unwrap();
        assert!(end.a);
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(30), Duration::from_secs(10));
    }
}
