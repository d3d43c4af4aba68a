//! The read side of one connection: a reusable read buffer feeding an
//! `ipc_proto::FrameDecoder`, with the partial-frame timer and cancellation.
//!
//! The connection [`crate::driver`] reads with [`FrameReader::next`], on
//! either side.

use std::io;
use std::pin::Pin;
use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{FrameDecoder, Inbound, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The read buffer's room for the first read; it grows while reads fill it,
/// up to [`READ_CHUNK_MAX`], so idle connections stay small.
pub const READ_CHUNK: usize = 4 * 1024;
/// The largest room the read buffer keeps for one read.
pub const READ_CHUNK_MAX: usize = 256 * 1024;

/// What [`FrameReader::next`] produced.
#[derive(Debug)]
pub enum ReadEvent {
    /// A decoded message or a raw chunk.
    Item(Inbound),
    /// The peer closed the stream. A partial frame was discarded (or, with
    /// `strict_eof`, reported as [`ReadEvent::Protocol`] first).
    Eof,
    /// The peer sent something the profile refuses; the decoder was reset and
    /// the connection must be closed (`docs/protocol.md` §1.4).
    Protocol(ProtocolError),
    /// The transport failed.
    Io(io::Error),
    /// The cancellation token fired.
    Cancelled,
}

/// A connection's read half plus its decoder, ended by a cancellation token.
#[derive(Debug)]
pub struct FrameReader<R> {
    rd: R,
    cancel: CancellationToken,
    /// Waits for `cancel` across calls to [`FrameReader::next`]: it registers
    /// with the token once, not once per read.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    buf: BytesMut,
    dec: FrameDecoder,
    eof: bool,
    chunk: usize,
    /// When the last read returned: frames decoded from one chunk share it
    /// (the partial-frame timer needs no finer clock).
    now: Instant,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a read half; [`FrameReader::next`] returns
    /// [`ReadEvent::Cancelled`] once `cancel` fires.
    pub fn new(rd: R, dec: FrameDecoder, cancel: CancellationToken) -> Self {
        FrameReader {
            rd,
            cancelled: Box::pin(cancel.clone().cancelled_owned()),
            cancel,
            buf: BytesMut::new(),
            dec,
            eof: false,
            chunk: READ_CHUNK,
            now: Instant::now(),
        }
    }

    /// The token that ends this reader (and its connection).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The decoder (for its configuration).
    pub fn decoder(&self) -> &FrameDecoder {
        &self.dec
    }

    /// The next item, reading from the transport only when the buffer holds
    /// no complete frame. Cancel-safe: nothing is lost if the future is
    /// dropped before it completes.
    pub async fn next(&mut self) -> ReadEvent {
        loop {
            if self.eof {
                return ReadEvent::Eof;
            }
            match self.dec.decode(&mut self.buf, self.now) {
                Ok(Some(item)) => return ReadEvent::Item(item),
                Ok(None) => {}
                Err(e) => return ReadEvent::Protocol(e),
            }
            if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
                self.buf.reserve(self.chunk);
            }
            let room = self.buf.capacity() - self.buf.len();
            // Checked once per read, not per frame: a peer that keeps the
            // socket readable cannot hold off a cancellation, and a read that
            // completes at once never polls the cancellation future.
            if self.cancel.is_cancelled() {
                return ReadEvent::Cancelled;
            }
            let deadline = self.dec.deadline().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                r = self.rd.read_buf(&mut self.buf) => match r {
                    Ok(0) => {
                        self.eof = true;
                        if let Err(e) = self.dec.finish(&mut self.buf) {
                            return ReadEvent::Protocol(e);
                        }
                        return ReadEvent::Eof;
                    }
                    Ok(n) => {
                        self.now = Instant::now();
                        if n == room && self.chunk < READ_CHUNK_MAX {
                            // The peer sends faster than we read: read more at once.
                            self.chunk *= 2;
                        }
                    }
                    Err(e) => return ReadEvent::Io(e),
                },
                _ = self.cancelled.as_mut() => return ReadEvent::Cancelled,
                _ = sleep_until_opt(deadline) => {
                    self.now = Instant::now();
                    if let Err(e) = self.dec.check_timeout(self.now) {
                        return ReadEvent::Protocol(e);
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
