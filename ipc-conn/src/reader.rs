//! The read side of one connection: a reusable read buffer feeding an
//! `ipc_proto::FrameDecoder`, with the partial-frame timer and cancellation.
//!
//! The connection [`crate::driver`] reads with [`FrameReader::next`], on
//! either side.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
use ipc_proto::{FrameDecoder, Inbound, ProtocolError};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The read buffer's room for the first read; it grows while reads fill it,
/// up to [`READ_CHUNK_MAX`].
pub const READ_CHUNK: usize = 4 * 1024;
/// The largest room the read buffer keeps for one read.
pub const READ_CHUNK_MAX: usize = 256 * 1024;
/// What a connection that holds no read buffer reads at once (into the
/// stack, copied into a new buffer only when something arrived).
const IDLE_READ: usize = 2 * 1024;
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
///
/// The read buffer is made when the first bytes arrive, so a connection
/// that has sent nothing holds none, and a buffer grown by a burst is given
/// back once everything read is decoded and the peer is quiet: only a
/// connection that talked keeps a small one ([`READ_CHUNK`]).
#[derive(Debug)]
pub struct FrameReader<R> {
    rd: R,
    cancel: CancellationToken,
    /// Waits for `cancel` across calls to [`FrameReader::next`]: it registers
    /// with the token once, not once per read.
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The partial-frame timer (`message_timeout`), made the first time a
    /// frame is left partial and reset after that.
    timer: Option<Pin<Box<Sleep>>>,
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
            timer: None,
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

    /// The read buffer's capacity: 0 while nothing is buffered and the
    /// peer is quiet.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The decoder (for its configuration).
    pub fn decoder(&self) -> &FrameDecoder {
        &self.dec
    }

    /// The next item, reading from the transport only when the buffer holds
    /// no complete frame. Cancel-safe: nothing is lost if the future is
    /// dropped before it completes.
    pub async fn next(&mut self) -> ReadEvent {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`FrameReader::next`] as a poll function.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<ReadEvent> {
        loop {
            if self.eof {
                return Poll::Ready(ReadEvent::Eof);
            }
            match self.dec.decode(&mut self.buf, self.now) {
                Ok(Some(item)) => return Poll::Ready(ReadEvent::Item(item)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(ReadEvent::Protocol(e)),
            }
            // Checked once per read, not per frame: a peer that keeps the
            // socket readable cannot hold off a cancellation, and a read that
            // completes at once never polls the cancellation future.
            if self.cancel.is_cancelled() {
                return Poll::Ready(ReadEvent::Cancelled);
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    if let Err(e) = self.dec.finish(&mut self.buf) {
                        return Poll::Ready(ReadEvent::Protocol(e));
                    }
                    return Poll::Ready(ReadEvent::Eof);
                }
                Poll::Ready(Ok(_)) => {
                    self.now = Instant::now();
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(ReadEvent::Io(e)),
                Poll::Pending => {}
            }
            // Nothing to read: wait for the cancellation and the
            // partial-frame deadline too.
            if self.cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(ReadEvent::Cancelled);
            }
            let Some(deadline) = self.dec.deadline() else {
                return Poll::Pending;
            };
            let deadline = tokio::time::Instant::from_std(deadline);
            let timer = match &mut self.timer {
                Some(t) => {
                    if t.deadline() != deadline {
                        t.as_mut().reset(deadline);
                    }
                    t
                }
                None => self
                    .timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            ready!(timer.as_mut().poll(cx));
            self.now = Instant::now();
            if let Err(e) = self.dec.check_timeout(self.now) {
                return Poll::Ready(ReadEvent::Protocol(e));
            }
        }
    }

    /// One read from the transport into the buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 {
            // No buffer yet (or given back): read into the stack, and make
            // the buffer only when something arrived. A connection that
            // never sends, or whose last read is its end, costs none.
            return poll_read_via_stack(Pin::new(&mut self.rd), cx, &mut self.buf, self.chunk);
        }
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.rd), cx, &mut self.buf) {
            Poll::Ready(Ok(n)) => {
                if n == room && self.chunk < READ_CHUNK_MAX {
                    // The peer sends faster than we read: read more at once.
                    self.chunk *= 2;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if self.buf.is_empty() && self.buf.capacity() > READ_CHUNK {
                    // A burst is over (everything read is decoded and the
                    // peer is quiet): give its large buffer back while
                    // waiting. A small one is kept, so a peer that sends a
                    // message now and then costs no allocation per message.
                    self.buf = BytesMut::new();
                }
                Poll::Pending
            }
            r => r,
        }
    }
}

/// One read appended to `buf` through a small buffer on the stack, so that
/// `buf` takes memory only when bytes arrive (it reserves `reserve` bytes,
/// at least what arrived, when it was empty). Returns how many bytes came.
pub fn poll_read_via_stack<R: AsyncRead + ?Sized>(
    rd: Pin<&mut R>,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    reserve: usize,
) -> Poll<io::Result<usize>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); IDLE_READ];
    let mut rb = ReadBuf::uninit(&mut stack);
    ready!(rd.poll_read(cx, &mut rb))?;
    let got = rb.filled();
    if !got.is_empty() {
        buf.reserve(reserve.max(got.len()));
        buf.extend_from_slice(got);
    }
    Poll::Ready(Ok(got.len()))
}
