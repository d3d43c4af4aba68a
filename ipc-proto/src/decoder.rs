//! The stream decoder: delimiter framing, limits and the partial-frame timer.
//!
//! One [`FrameDecoder`] per connection. The caller owns the read buffer (a
//! `BytesMut`), keeps reading into it, and calls [`FrameDecoder::decode`]
//! until it returns `Ok(None)`. Each call takes at most one complete frame
//! off the front of the buffer with `split_to(..).freeze()` — the frame is
//! never copied — and leaves the trailing partial frame in place.
//!
//! ## Scanning
//!
//! The decoder remembers how far it has searched the buffer for the
//! delimiter (`scanned`). A call that finds no delimiter records the
//! position (minus `delimiter.len() - 1` bytes, so a delimiter split across
//! reads is still found), and the next call resumes there: every byte is
//! searched once, however small the reads. One-byte delimiters use
//! `memchr`, longer ones a precomputed `memmem` finder.
//!
//! ## Limits and timer (`docs/protocol.md` §1.5, §4.1)
//!
//! * guarded/assured: a frame longer than `max_message_size` (without
//!   delimiter) fails with `ERR_IPC_FRAME_TOO_LARGE`, and so does a partial
//!   frame as soon as the buffered remainder proves it will be longer.
//! * every framed profile: a frame or partial frame longer than
//!   `max_partial_bytes` fails with `ERR_IPC_FRAME_TOO_LARGE` (fast
//!   included, so a peer that never sends a delimiter cannot grow the
//!   buffer without bound; complete frames get the same cap so that the
//!   outcome never depends on how the stream was chunked).
//! * guarded/assured with a `message_timeout`: the timer starts when a
//!   partial frame first appears in the buffer (after the last complete
//!   frame was taken), is not restarted by later reads of the same frame,
//!   and is cleared when the buffer empties. [`FrameDecoder::deadline`]
//!   tells the caller when to call [`FrameDecoder::check_timeout`];
//!   [`FrameDecoder::decode`] also checks it with its own `now`. Time only
//!   enters as an argument — the crate has no clock.
//!
//! ## State after each error
//!
//! Every `Err` leaves the decoder in its initial state (no partial frame,
//! no timer, scan position 0). Whether the *buffer* is cleared depends on
//! the method:
//!
//! | Method | Error | Buffer afterwards | What the caller must do |
//! |---|---|---|---|
//! | `decode` | any frame error (`INVALID_JSON`, `INVALID_MESSAGE`, `INVALID_EVENT`, `EVENT_TOO_LARGE`, `RESERVED_EVENT`, `EVENT_NOT_ALLOWED`, `FRAME_TOO_LARGE`) | cleared (bytes after the bad frame are discarded) | close the stream (UDP: the peer is reset) and report `error`; frames returned by earlier calls stay delivered |
//! | `decode` | `MESSAGE_TIMEOUT` (deadline passed before this call) | cleared | same |
//! | `check_timeout` | `MESSAGE_TIMEOUT` | untouched (not passed in) | discard the buffer and close the stream |
//! | `finish` | `INCOMPLETE_FRAME` (`strict_eof` only) | cleared | report it; the stream has already ended |
//!
//! After an error a caller *may* keep using the decoder on a fresh buffer;
//! it behaves like a new one.
//!
//! ## Buffer contract
//!
//! Between calls the caller may only *append* to the buffer (that is what a
//! read does). If it clears or replaces the buffer itself, it must call
//! [`FrameDecoder::reset`], because the remembered scan position refers to
//! the old contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use memchr::memmem::Finder;
use smol_str::SmolStr;

use crate::envelope::{self, EventName};
use crate::message::sanitize;
use crate::names::{is_reserved_event, is_unsafe_event, utf16_len_capped};
use crate::{CodecConfig, ErrorCode, Inbound, Message, Profile, ProtocolError};

pub(crate) struct Shared {
    pub(crate) config: CodecConfig,
    /// Unique per `Shared` for the life of the process (what a
    /// [`crate::HeadCache`] was filled by).
    pub(crate) id: u64,
    finder: Finder<'static>,
    single: Option<u8>,
    /// The one-byte delimiter, when it is a byte [`scan::first_special`]
    /// stops at (the default form feed is).
    special: Option<u8>,
    timeout: Option<Duration>,
}

impl Shared {
    pub(crate) fn new(config: CodecConfig) -> Result<Arc<Self>, ProtocolError> {
        config.validate()?;
        let finder = Finder::new(&config.delimiter).into_owned();
        let single = match config.delimiter.as_slice() {
            [b] => Some(*b),
            _ => None,
        };
        let timeout = config.effective_message_timeout();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Arc::new(Shared {
            config,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            finder,
            single,
            special: single.filter(|&b| crate::scan::is_frame_special(b)),
            timeout,
        }))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish()
    }
}

/// Incremental decoder for one connection (see the module docs).
///
/// ```
/// use bytes::BytesMut;
/// use ipc_proto::{CodecConfig, FrameDecoder, Inbound};
/// use std::time::Instant;
///
/// let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
/// let mut buf = BytesMut::from(&b"{\"type\":\"a\",\"data\":1}\x0c{\"type\":\"b\""[..]);
/// let now = Instant::now();
/// let Some(Inbound::Message(m)) = dec.decode(&mut buf, now).unwrap() else { panic!() };
/// assert_eq!((m.event(), m.data::<i32>().unwrap()), ("a", 1));
/// assert!(dec.decode(&mut buf, now).unwrap().is_none()); // partial frame kept
/// buf.extend_from_slice(b",\"data\":2}\x0c");
/// let Some(Inbound::Message(m)) = dec.decode(&mut buf, now).unwrap() else { panic!() };
/// assert_eq!(m.event(), "b");
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    shared: Arc<Shared>,
    scanned: usize,
    partial_since: Option<Instant>,
    /// The last event name decoded (and accepted by the name rules): a run
    /// of messages with the same name reuses it instead of validating it again.
    last_event: Option<SmolStr>,
    /// The buffer up to `scanned` holds no control byte, backslash or
    /// non-ASCII byte (so a frame ending right after it needs no sanitizing).
    plain: bool,
}

impl FrameDecoder {
    /// Builds a decoder; fails with `ERR_IPC_INVALID_CONFIGURATION`.
    pub fn new(config: CodecConfig) -> Result<Self, ProtocolError> {
        Ok(Self::from_shared(Shared::new(config)?))
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        FrameDecoder {
            shared,
            scanned: 0,
            partial_since: None,
            last_event: None,
            plain: true,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &CodecConfig {
        &self.shared.config
    }

    /// Takes the next complete item off the front of `buf`.
    ///
    /// Framed profiles: `Ok(Some(Inbound::Message))` for each complete
    /// frame, `Ok(None)` when only a partial frame (or nothing) is left —
    /// read more and call again. Raw profile: everything in `buf` as one
    /// `Inbound::Raw` (call once per read chunk), `Ok(None)` when empty.
    /// On `Err` see the module docs for the state left behind.
    #[must_use = "decoded items and errors must be handled"]
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Result<Option<Inbound>, ProtocolError> {
        let shared = &*self.shared;
        let cfg = &shared.config;
        if cfg.profile == Profile::Raw {
            if buf.is_empty() {
                return Ok(None);
            }
            return Ok(Some(Inbound::Raw(buf.split().freeze())));
        }
        if let Some(deadline) = self.deadline() {
            if now >= deadline {
                self.fail(buf);
                return Err(timeout_error());
            }
        }
        let dlen = cfg.delimiter.len();
        let hay = buf.get(self.scanned..).unwrap_or_default();
        let found = match (shared.special, shared.single) {
            (Some(d), _) => match crate::scan::first_special(hay) {
                // Nothing special before the delimiter: a plain frame.
                Some(rel) if hay[rel] == d => Some(rel),
                Some(rel) => {
                    self.plain = false;
                    memchr::memchr(d, &hay[rel..]).map(|r| rel + r)
                }
                None => None,
            },
            (None, Some(b)) => {
                self.plain = false;
                memchr::memchr(b, hay)
            }
            (None, None) => {
                self.plain = false;
                shared.finder.find(hay)
            }
        };
        match found {
            Some(rel) => {
                let pos = self.scanned + rel;
                let frame = buf.split_to(pos);
                buf.advance(dlen);
                self.scanned = 0;
                let plain = std::mem::replace(&mut self.plain, true);
                self.partial_since = if buf.is_empty() {
                    None
                } else {
                    shared.timeout.map(|_| now)
                };
                match decode_frame(frame, cfg, Some(&mut self.last_event), plain) {
                    Ok(m) => Ok(Some(Inbound::Message(m))),
                    Err(e) => {
                        self.fail(buf);
                        Err(e)
                    }
                }
            }
            None => {
                let len = buf.len();
                self.scanned = len.saturating_sub(dlen - 1);
                let slack = dlen - 1;
                if cfg.profile.is_guarded() && len > cfg.max_message_size.saturating_add(slack) {
                    self.fail(buf);
                    return Err(ProtocolError::frame_too_large(
                        "partial frame exceeds max_message_size",
                    ));
                }
                if len > cfg.max_partial_bytes.saturating_add(slack) {
                    self.fail(buf);
                    return Err(ProtocolError::frame_too_large(
                        "partial frame exceeds max_partial_bytes",
                    ));
                }
                if len == 0 {
                    self.partial_since = None;
                } else if self.partial_since.is_none() && shared.timeout.is_some() {
                    self.partial_since = Some(now);
                }
                Ok(None)
            }
        }
    }

    /// Decodes every complete item in `buf` into `out`. On error, items
    /// decoded before the bad frame are in `out`.
    pub fn decode_all(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        out: &mut Vec<Inbound>,
    ) -> Result<(), ProtocolError> {
        while let Some(item) = self.decode(buf, now)? {
            out.push(item);
        }
        Ok(())
    }

    /// When the partial-frame timer fires (guarded/assured with a timeout
    /// and a partial frame buffered), else `None`.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        let timeout = self.shared.timeout?;
        self.partial_since.and_then(|t| t.checked_add(timeout))
    }

    /// `ERR_IPC_MESSAGE_TIMEOUT` when the deadline is at or before `now`;
    /// the decoder is then reset and the caller must drop its buffer.
    pub fn check_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.reset();
                Err(timeout_error())
            }
            _ => Ok(()),
        }
    }

    /// At end of stream: discards a partial frame (clearing `buf`), or
    /// reports it as `ERR_IPC_INCOMPLETE_FRAME` when `strict_eof` is set.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        let had_partial = !buf.is_empty();
        self.fail(buf);
        if had_partial && self.shared.config.strict_eof && self.shared.config.profile.is_framed() {
            return Err(ProtocolError::new(
                ErrorCode::IncompleteFrame,
                "stream ended inside a frame",
            ));
        }
        Ok(())
    }

    /// Forgets the scan position and the timer (the caller clears its buffer).
    pub fn reset(&mut self) {
        self.scanned = 0;
        self.plain = true;
        self.partial_since = None;
    }

    /// Whether a partial-frame timer is running.
    pub fn has_partial(&self) -> bool {
        self.partial_since.is_some()
    }

    fn fail(&mut self, buf: &mut BytesMut) {
        buf.clear();
        self.reset();
    }
}

fn timeout_error() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::MessageTimeout,
        "partial frame stayed incomplete longer than message_timeout",
    )
}

/// Size check, UTF-8/surrogate rules, envelope parse, name rules.
/// `last_event`, when given, is the name of the previous message of the
/// stream: an identical name is reused (it passed the name rules already),
/// and a new accepted name replaces it. `plain`: the caller has seen that
/// the frame holds no control byte, backslash or non-ASCII byte (so the
/// UTF-8 and escape rules have nothing to do).
pub(crate) fn decode_frame(
    frame: BytesMut,
    cfg: &CodecConfig,
    last_event: Option<&mut Option<SmolStr>>,
    plain: bool,
) -> Result<Message, ProtocolError> {
    if cfg.profile.is_guarded() && frame.len() > cfg.max_message_size {
        return Err(ProtocolError::frame_too_large(
            "frame exceeds max_message_size",
        ));
    }
    // The partial-frame bound also caps complete frames, so the outcome does
    // not depend on how the stream was chunked.
    if frame.len() > cfg.max_partial_bytes {
        return Err(ProtocolError::frame_too_large(
            "frame exceeds max_partial_bytes",
        ));
    }
    let (frame, clean) = if plain {
        debug_assert!(crate::scan::first_special(&frame).is_none());
        (frame, true)
    } else {
        sanitize(frame, cfg)?
    };
    let frame = frame.freeze();
    let parts = envelope::parse_bytes(&frame, cfg.max_json_depth, clean)?;
    if let (Some(Some(name)), EventName::Span(r)) = (last_event.as_deref(), &parts.event) {
        if frame.get(r.clone()) == Some(name.as_bytes()) {
            let name = name.clone();
            return Ok(Message::from_parts_named(frame, parts, name));
        }
    }
    let message = Message::from_parts(frame, parts);
    check_name(message.event(), cfg, false)?;
    if let Some(last) = last_event {
        *last = Some(message.event_name().clone());
    }
    Ok(message)
}

/// Name rules (`docs/protocol.md` §3.4, §4.1). `outbound` selects the sending rules.
pub(crate) fn check_name(
    name: &str,
    cfg: &CodecConfig,
    outbound: bool,
) -> Result<(), ProtocolError> {
    let guarded = cfg.profile.is_guarded();
    if !guarded {
        if outbound && !cfg.allow_unsafe_names && is_unsafe_event(name) {
            return Err(ProtocolError::new(
                ErrorCode::InvalidEvent,
                "refusing to send an Object.prototype member name (set allow_unsafe_names)",
            ));
        }
        return Ok(());
    }
    if name.is_empty() {
        return Err(ProtocolError::new(
            ErrorCode::InvalidEvent,
            "event name must be a non-empty string",
        ));
    }
    let max = cfg.max_event_name_length;
    if utf16_len_capped(name, max) > max {
        return Err(ProtocolError::new(
            ErrorCode::EventTooLarge,
            "event name exceeds max_event_name_length",
        ));
    }
    if is_unsafe_event(name) {
        return Err(ProtocolError::new(
            ErrorCode::InvalidEvent,
            "event name is an Object.prototype member name",
        ));
    }
    if !cfg.reserved_allowed() && is_reserved_event(name) {
        return Err(ProtocolError::new(
            ErrorCode::ReservedEvent,
            format!("`{name}` is a reserved lifecycle event name"),
        ));
    }
    if cfg.profile == Profile::Assured && !cfg.allowed_events.contains(name) {
        return Err(ProtocolError::new(
            ErrorCode::EventNotAllowed,
            "event name is not in allowed_events",
        ));
    }
    Ok(())
}
