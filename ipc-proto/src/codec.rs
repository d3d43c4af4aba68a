//! Thin tokio-util adapters (feature `codec`, on by default).
//!
//! [`FrameCodec`] wraps a [`FrameDecoder`] and a [`FrameEncoder`] so a
//! connection can use `tokio_util::codec::Framed`. It adds no behaviour: the
//! rules and error states are those of the sans-IO types. tokio-util's
//! `Decoder` has no time argument, so the adapter reads the time from a
//! clock function (default [`Instant::now`], replaceable with
//! [`FrameCodec::with_clock`]) only to pass it to [`FrameDecoder::decode`].
//! The partial-frame timer still needs a caller-driven check when no bytes
//! arrive: arm a timer at [`FrameDecoder::deadline`] and call
//! [`FrameDecoder::check_timeout`] through [`FrameCodec::decoder_mut`].

use std::io;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

use crate::{CodecConfig, ErrorCode, FrameDecoder, FrameEncoder, Inbound, ProtocolError};

/// The error type of the tokio-util adapters.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol (or an outbound check failed).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl CodecError {
    /// The `ERR_IPC_*` code of a protocol error, `None` for I/O errors.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CodecError::Io(_) => None,
            CodecError::Protocol(e) => Some(e.code()),
        }
    }
}

/// One event to send through [`FrameCodec`]'s `Encoder`.
#[derive(Debug, Clone, Copy)]
pub struct Emit<'a, T: ?Sized> {
    /// The event name.
    pub event: &'a str,
    /// The payload; `None` is sent as `{}`.
    pub data: Option<&'a T>,
}

impl<'a, T: ?Sized> Emit<'a, T> {
    /// An event with data.
    pub fn new(event: &'a str, data: &'a T) -> Self {
        Emit {
            event,
            data: Some(data),
        }
    }
}

impl<'a> Emit<'a, ()> {
    /// An event without data (sent as `{}`).
    pub fn empty(event: &'a str) -> Self {
        Emit { event, data: None }
    }
}

/// `tokio_util::codec` adapter over [`FrameDecoder`] + [`FrameEncoder`].
///
/// `Decoder::Item` is [`Inbound`]. Encoders: [`Emit`] (serialize an event)
/// and [`Bytes`] (already encoded frames, e.g. a broadcast encoded once, or
/// raw-profile payloads — written verbatim).
#[derive(Debug, Clone)]
pub struct FrameCodec {
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    clock: fn() -> Instant,
}

impl FrameCodec {
    /// Builds the codec; fails with `ERR_IPC_INVALID_CONFIGURATION`.
    pub fn new(config: CodecConfig) -> Result<Self, ProtocolError> {
        Ok(FrameCodec {
            decoder: FrameDecoder::new(config.clone())?,
            encoder: FrameEncoder::new(config)?,
            clock: Instant::now,
        })
    }

    /// Replaces the clock used to timestamp partial frames.
    pub fn with_clock(mut self, clock: fn() -> Instant) -> Self {
        self.clock = clock;
        self
    }

    /// The decoder (for `deadline`).
    pub fn decoder(&self) -> &FrameDecoder {
        &self.decoder
    }

    /// The decoder (for `check_timeout`).
    pub fn decoder_mut(&mut self) -> &mut FrameDecoder {
        &mut self.decoder
    }

    /// The encoder.
    pub fn encoder(&self) -> &FrameEncoder {
        &self.encoder
    }
}

impl Decoder for FrameCodec {
    type Item = Inbound;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        Ok(self.decoder.decode(src, (self.clock)())?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, CodecError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None => {
                self.decoder.finish(src)?;
                Ok(None)
            }
        }
    }
}

impl<T: Serialize + ?Sized> Encoder<Emit<'_, T>> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Emit<'_, T>, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(self.encoder.encode(item.event, item.data, dst)?)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}
