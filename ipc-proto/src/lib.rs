#![doc = include_str!("../README.md")]
//! ## ipc-proto — node-ipc's wire protocol, sans I/O
//!
//! **Owns:** every protocol decision of the workspace: the `{"type":…,"data":…}`
//! envelope and its byte-exact JSON encoding, delimiter framing, the `raw`,
//! `fast`, `guarded` and `assured` profiles with their limits, the
//! `ERR_IPC_*` error codes, raw-mode string encodings, the optional
//! MessagePack framing, the bounded per-peer UDP reassembly, and the
//! message shapes of the `ipcx` extension (requests, ping, pub/sub,
//! handshake, graceful close; [`ext`]).
//!
//! **Does not own:** sockets, files, clocks or a runtime. Bytes go in and
//! messages come out; messages go in and bytes come out. Time enters only as a
//! `now: Instant` argument. Transports live in `ipc-transport`, behaviour
//! (queues, dispatch, call correlation) in `ipc-conn`, lifecycle and retry
//! in `ipc-client` and `ipc-server`.
//!
//! ## Map
//!
//! | Need | Use |
//! |---|---|
//! | decode a stream | [`FrameDecoder::decode`] on the connection's `BytesMut` |
//! | encode an event | [`FrameEncoder::encode`] (any `T: Serialize`) |
//! | a decoded event | [`Message`]: [`Message::event`], [`Message::data`], [`Message::data_json`] |
//! | profiles and limits | [`CodecConfig`], [`Profile`] |
//! | errors | [`ProtocolError`] with an [`ErrorCode`] |
//! | UDP | [`UdpReassembler`] |
//! | the `ipcx` extension's messages | [`ext`] |
//! | net-ipc's wire protocol (preamble, packets, MessagePack bodies) | [`netipc`] |
//! | raw-mode strings | [`RawEncoding`] |
//! | `tokio_util::codec::Framed` | [`FrameCodec`] (feature `codec`, default) |
//! | Rust-to-Rust MessagePack | `MsgpackCodec` (feature `msgpack`) |
//!
//! ```
//! use bytes::BytesMut;
//! use ipc_proto::{CodecConfig, FrameDecoder, FrameEncoder, Inbound};
//! use std::time::Instant;
//!
//! let enc = FrameEncoder::new(CodecConfig::guarded()).unwrap();
//! let mut wire = BytesMut::new();
//! enc.encode("message", Some(&serde_json::json!({"n": 1.0})), &mut wire).unwrap();
//! assert_eq!(&wire[..], b"{\"type\":\"message\",\"data\":{\"n\":1}}\x0c");
//!
//! let mut dec = FrameDecoder::new(CodecConfig::guarded()).unwrap();
//! let Some(Inbound::Message(msg)) = dec.decode(&mut wire, Instant::now()).unwrap() else { panic!() };
//! assert_eq!(msg.event(), "message");
//! assert_eq!(msg.data_json(), Some(&b"{\"n\":1}"[..]));
//! ```
//!
//! The design notes are in [`design`].
#![forbid(unsafe_code)]

pub mod code;
mod config;
mod decoder;
mod encoder;
pub mod envelope;
mod error;
pub mod ext;
pub mod json;
mod message;
mod names;
pub mod netipc;
pub mod raw;
mod scan;
pub mod udp;

#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "msgpack")]
pub mod msgpack;

pub use code::ErrorCode;
pub use config::{
    CodecConfig, Profile, DEFAULT_DELIMITER, DEFAULT_MAX_EVENT_NAME_LENGTH, DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PARTIAL_BYTES, DEFAULT_MAX_PENDING_BYTES,
    DEFAULT_MESSAGE_TIMEOUT, MAX_JSON_DEPTH_CEILING,
};
pub use decoder::FrameDecoder;
pub use encoder::{FrameEncoder, HeadCache};
pub use error::ProtocolError;
pub use json::{to_js_json, to_js_string, to_js_vec, JsFormatter};
pub use message::{Inbound, Message};
pub use names::{is_reserved_event, is_unsafe_event, RESERVED_EVENTS, UNSAFE_EVENTS};
pub use raw::RawEncoding;
pub use udp::{UdpLimits, UdpReassembler};

#[cfg(feature = "codec")]
pub use codec::{CodecError, Emit, FrameCodec};
#[cfg(feature = "msgpack")]
pub use msgpack::MsgpackCodec;

pub mod design {
    //! # Design notes
    //!
    //! ## Sans-IO
    //!
    //! Like `quinn-proto` and `rustls`, this crate never touches a socket or
    //! reads a clock. A transport owns a `BytesMut` read buffer, reads into
    //! it, and asks [`crate::FrameDecoder`] for messages; time is passed in
    //! as `now`, and [`crate::FrameDecoder::deadline`] tells the caller when
    //! to come back. That makes every rule testable with plain byte slices
    //! and deterministic time, and fuzzable.
    //!
    //! ## Receive path
    //!
    //! 1. *Delimiter search* with `memchr` (one byte) or a `memmem` finder,
    //!    resuming where the previous search stopped — no byte is scanned
    //!    twice however the stream is chunked.
    //! 2. *Split*: `split_to(pos).freeze()` — the frame shares the read
    //!    buffer's allocation; nothing is copied. Only the trailing partial
    //!    frame stays in the buffer.
    //! 3. *Sanitise*: UTF-8 check (`std::str::from_utf8`); invalid input is
    //!    replaced with U+FFFD (node-ipc parity) or rejected (`strict_utf8`).
    //!    If the frame contains a backslash, lone surrogate escapes are
    //!    rewritten in place to `\ufffd` (same length) or rejected
    //!    (`strict_json`).
    //! 4. *Envelope*: see [`crate::envelope`] — a fast recogniser for the
    //!    exact JS shape that validates `data` with a skip-parse, and a full
    //!    `serde_json` parse for everything else; both yield byte ranges.
    //! 5. *Name rules* of the profile.
    //!
    //! The resulting [`crate::Message`] holds the frame and two ranges; the
    //! `data` JSON is parsed only when the application asks for it.
    //!
    //! ## Send path
    //!
    //! [`crate::FrameEncoder::encode`] writes `{"type":`, the name,
    //! `,"data":`, the value, `}` and the delimiter directly into the
    //! caller's `BytesMut`, serializing `T` with `serde_json`'s serializer
    //! and [`crate::JsFormatter`] (JavaScript number formatting). No
    //! intermediate `Value`, one pass, no allocation beyond growing `dst`.
    //! Checks that can fail after bytes were written (serialization errors,
    //! `max_message_size`) truncate `dst` back, so a failed encode never
    //! leaves half a frame.
    //!
    //! ## Deviations from node-ipc, on purpose
    //!
    //! * `fast` fails closed on frames that crash node-ipc 12/14 (non-object
    //!   root, missing or non-string `type`) — `docs/protocol.md` §8 item 3.
    //! * Every framed profile bounds the partial frame (`max_partial_bytes`,
    //!   64 MiB), node-ipc fast does not.
    //! * Integers beyond 2^53 are written with all their digits (see
    //!   [`crate::json`]).
    //! * UDP fragments time out in every framed profile (see [`crate::udp`]).
}
