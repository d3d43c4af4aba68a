//! The bounded outbound queue of one endpoint and the writer that drains it.
//!
//! Frames reach the queue two ways: [`Outbox::emit`] encodes an event
//! straight into the queue's own buffer (no allocation and no copy per
//! frame), and [`Outbox::send`] queues an already encoded frame ([`Bytes`],
//! e.g. one broadcast frame shared by every connection). The queue is bounded
//! in **bytes**: `emit` and `send` wait for room (backpressure), `try_emit`
//! and `try_send` fail with [`SendError::Full`] instead. Nothing is ever
//! dropped silently: a frame is either written to the transport, or handed
//! back to the caller, or counted in what [`Outbox::abort`] returns.
//!
//! [`write_loop`] is the writer task's body: it takes *everything* queued at
//! once — frames encoded in place come as one buffer and are written from it
//! directly; runs of small separate frames are coalesced — writes with as few
//! syscalls as the kernel allows and flushes only when the queue is empty.
//! The queue knows where every frame ends, so when the transport fails the
//! frames that were not completely written go back to the front of the
//! queue, in order, and a client sends them on its next connection exactly
//! once (a peer discards a partial frame at EOF).
//!
//! The same type serves a server (one outbox per connection) and a client
//! (one outbox per client, surviving reconnects). Whether a frame may be
//! replayed on a new connection is recorded when it is queued
//! ([`Outbox::send_call`]), never guessed from its bytes.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use ipc_proto::{FrameEncoder, HeadCache, ProtocolError};
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;

/// Chunks up to this size are copied into the coalescing buffer; larger ones
/// are written straight from their own memory.
const COALESCE_MAX_FRAME: usize = 16 * 1024;
/// Target size of one coalesced write.
const COALESCE_TARGET: usize = 256 * 1024;
/// The in-place buffer starts at this size and grows by doubling…
const TAIL_MIN: usize = 4 * 1024;
/// …up to this size; then a new buffer starts.
const TAIL_CHUNK: usize = 64 * 1024;
/// [`Outbox::try_send_copy`] copies frames up to this size and shares
/// larger ones (a fan-out to many connections then never multiplies a
/// large frame in memory).
const COPY_MAX_FRAME: usize = 1024;
/// At most this many chunks go into one vectored write.
const MAX_IOVECS: usize = 64;
/// An in-place buffer larger than this is let go once the writer has taken
/// its frames, so one burst of large frames does not pin memory.
const TAIL_KEEP_MAX: usize = 256 * 1024;

/// Why a frame was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The queue holds `capacity` bytes already (only from `try_send` and
    /// `try_emit`).
    #[error("outbound queue full ({queued} of {capacity} bytes queued)")]
    Full {
        /// The frame that was not queued.
        frame: Bytes,
        /// Bytes queued when the frame was refused.
        queued: usize,
        /// The queue's capacity in bytes.
        capacity: usize,
    },
    /// The outbox was closed (the endpoint is stopping or destroyed).
    #[error("outbound queue closed")]
    Closed {
        /// The frame that was not queued.
        frame: Bytes,
    },
}

impl SendError {
    /// The frame that was refused.
    pub fn into_frame(self) -> Bytes {
        match self {
            SendError::Full { frame, .. } | SendError::Closed { frame } => frame,
        }
    }
}

/// Why [`Outbox::emit`] or [`Outbox::try_emit`] did not queue an event.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The event could not be encoded (name refused, data not JSON, frame
    /// too large); nothing was queued.
    #[error(transparent)]
    Encode(#[from] ProtocolError),
    /// The frame was encoded but not queued.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// One queued frame's length, and whether it may be written again on a
/// new connection (set when the frame is queued: calls are never
/// replayed, their answer would go to a call that failed with the old
/// connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameLen(usize);

/// The bit of a [`FrameLen`] that marks a frame never to be replayed.
const NO_REPLAY: usize = 1 << (usize::BITS - 1);

impl FrameLen {
    fn new(len: usize, replay: bool) -> FrameLen {
        debug_assert!(len & NO_REPLAY == 0);
        FrameLen(if replay { len } else { len | NO_REPLAY })
    }

    fn get(self) -> usize {
        self.0 & !NO_REPLAY
    }

    fn replay(self) -> bool {
        self.0 & NO_REPLAY == 0
    }
}

#[derive(Debug, Default)]
struct State {
    /// Queued frames not taken by the writer, oldest first, as buffers of
    /// one or more whole frames; the frames in `tail` come after them.
    chunks: VecDeque<Bytes>,
    /// Frames encoded in place by `emit`, after every chunk.
    tail: BytesMut,
    /// The length of every queued frame (chunks, then tail), oldest first,
    /// with its replay flag.
    lens: VecDeque<FrameLen>,
    /// The checked frame head of the last event name emitted.
    heads: HeadCache,
    queued_bytes: usize,
    /// Frames taken by the writer and not yet written or returned.
    in_flight: usize,
    closed: bool,
    /// The writer, when it found the queue empty and waits for a frame (or
    /// the close). Whoever queues next takes it and wakes it.
    writer: Option<Waker>,
    /// Callers waiting in [`Outbox::flushed`]: only then does the writer
    /// signal that the queue went idle.
    flush_waiters: usize,
}

impl State {
    /// Makes room for at least `n` more bytes in `tail`. A small tail grows
    /// by doubling; a full-size one becomes a chunk and a fresh buffer of
    /// the same size starts, so a long run is never copied to regrow.
    fn make_room(&mut self, n: usize) {
        let len = self.tail.len();
        if self.tail.capacity() - len >= n {
            return;
        }
        if len >= TAIL_CHUNK {
            self.seal();
            self.tail.reserve(n.max(TAIL_CHUNK));
        } else {
            self.tail.reserve(len.max(TAIL_MIN).max(n));
        }
    }

    /// Moves the frames encoded in place into a chunk of their own.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            let chunk = self.tail.split().freeze();
            self.chunks.push_back(chunk);
        }
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    space: Semaphore,
    capacity: usize,
    idle: Notify,
}

/// A bounded, byte-counted queue of encoded frames. Cloning gives another
/// handle to the same queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

fn cost(len: usize, capacity: usize) -> u32 {
    // A frame larger than the whole queue takes all of it (it waits until the
    // queue is empty) instead of never fitting.
    len.clamp(1, capacity).min(u32::MAX as usize) as u32
}

/// What [`Outbox::encode_now`] did with a frame.
enum Encoded {
    Queued,
    /// No room now: the frame, and the room it needs.
    Wait(Bytes, u32),
    Closed(Bytes),
}

impl Outbox {
    /// A queue holding at most `capacity_bytes` bytes (at least 1).
    pub fn new(capacity_bytes: usize) -> Outbox {
        let capacity = capacity_bytes.clamp(1, (u32::MAX as usize).min(Semaphore::MAX_PERMITS));
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                space: Semaphore::new(capacity),
                capacity,
                idle: Notify::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.state().queued_bytes
    }

    /// Frames queued and not yet written (including those being written).
    pub fn queued_frames(&self) -> usize {
        let s = self.state();
        s.lens.len() + s.in_flight
    }

    /// Whether [`Outbox::close`] or [`Outbox::abort`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    fn push(&self, frame: Bytes, permits: u32, replay: bool) -> Result<(), SendError> {
        let mut s = self.state();
        if s.closed {
            drop(s);
            self.shared.space.add_permits(permits as usize);
            return Err(SendError::Closed { frame });
        }
        s.seal();
        s.queued_bytes += frame.len();
        s.lens.push_back(FrameLen::new(frame.len(), replay));
        if !frame.is_empty() {
            s.chunks.push_back(frame);
        }
        wake(s);
        Ok(())
    }

    /// Queues `frame`, waiting while the queue is full. Like a tokio
    /// channel's `send`, it spends the task's cooperative budget, so a loop
    /// of sends yields now and then and the writer (and anything else on
    /// the same thread) runs while the queue still has room.
    pub async fn send(&self, frame: Bytes) -> Result<(), SendError> {
        self.send_as(frame, true).await
    }

    /// [`Outbox::send`] of a call frame (request, ping, subscription
    /// change): [`Outbox::discard_calls`] drops it if it is still queued
    /// when its connection ends, so it is never written on the next one.
    pub async fn send_call(&self, frame: Bytes) -> Result<(), SendError> {
        self.send_as(frame, false).await
    }

    async fn send_as(&self, frame: Bytes, replay: bool) -> Result<(), SendError> {
        let n = cost(frame.len(), self.shared.capacity);
        // Room now (the usual case): no future to build and poll.
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => {
                p.forget();
                self.push(frame, n, replay)?;
                tokio::task::coop::consume_budget().await;
                return Ok(());
            }
            Err(TryAcquireError::Closed) => return Err(SendError::Closed { frame }),
            Err(TryAcquireError::NoPermits) => {}
        }
        self.send_when_room(frame, n, replay).await
    }

    async fn send_when_room(&self, frame: Bytes, n: u32, replay: bool) -> Result<(), SendError> {
        match self.shared.space.acquire_many(n).await {
            Ok(p) => p.forget(),
            Err(_) => return Err(SendError::Closed { frame }),
        }
        self.push(frame, n, replay)
    }

    /// Queues `frame` if there is room now.
    pub fn try_send(&self, frame: Bytes) -> Result<(), SendError> {
        let n = cost(frame.len(), self.shared.capacity);
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => return Err(SendError::Closed { frame }),
            Err(TryAcquireError::NoPermits) => return Err(self.full(frame)),
        }
        self.push(frame, n, true)
    }

    /// Queues `frame` if there is room now, like [`Outbox::try_send`], but
    /// a small frame (up to 1 KiB) is copied in with the emitted frames
    /// rather than shared: a broadcast to many connections then costs each of them one
    /// copy and no reference counting, and their writers send it along
    /// with their other frames.
    pub fn try_send_copy(&self, frame: &Bytes) -> Result<(), SendError> {
        if frame.len() > COPY_MAX_FRAME {
            return self.try_send(frame.clone());
        }
        let n = cost(frame.len(), self.shared.capacity);
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => {
                return Err(SendError::Closed {
                    frame: frame.clone(),
                })
            }
            Err(TryAcquireError::NoPermits) => return Err(self.full(frame.clone())),
        }
        let mut s = self.state();
        if s.closed {
            drop(s);
            self.shared.space.add_permits(n as usize);
            return Err(SendError::Closed {
                frame: frame.clone(),
            });
        }
        s.make_room(frame.len());
        s.tail.extend_from_slice(frame);
        s.lens.push_back(FrameLen::new(frame.len(), true));
        s.queued_bytes += frame.len();
        wake(s);
        Ok(())
    }

    fn full(&self, frame: Bytes) -> SendError {
        SendError::Full {
            frame,
            queued: self.queued_bytes(),
            capacity: self.shared.capacity,
        }
    }

    /// Encodes `{"type":event,"data":data}` with `encoder` into the queue's
    /// own buffer and queues it if there is room; otherwise hands the frame
    /// back. `encoder` should be the same on every call: the last event
    /// name's checked head is remembered (see [`FrameEncoder::encode_cached`]).
    fn encode_now<T: Serialize + ?Sized>(
        &self,
        encoder: &FrameEncoder,
        event: &str,
        data: Option<&T>,
    ) -> Result<Encoded, ProtocolError> {
        let mut guard = self.state();
        let s = &mut *guard;
        // (Making room may move what the tail holds into a chunk.)
        s.make_room(512);
        let start = s.tail.len();
        encoder.encode_cached(&mut s.heads, event, data, &mut s.tail)?;
        let len = s.tail.len() - start;
        if s.closed {
            return Ok(Encoded::Closed(s.tail.split_off(start).freeze()));
        }
        let n = cost(len, self.shared.capacity);
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::Closed) => {
                return Ok(Encoded::Closed(s.tail.split_off(start).freeze()))
            }
            Err(TryAcquireError::NoPermits) => {
                return Ok(Encoded::Wait(s.tail.split_off(start).freeze(), n))
            }
        }
        s.lens.push_back(FrameLen::new(len, true));
        s.queued_bytes += len;
        wake(guard);
        Ok(Encoded::Queued)
    }

    /// Encodes `{"type":event,"data":data}` (`data: None` sends `{}`) with
    /// `encoder` straight into the queue and queues it, waiting while the
    /// queue is full. Use one encoder per outbox: the checked head of the
    /// last event name is kept for the next frame. Spends the cooperative
    /// budget like [`Outbox::send`].
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        encoder: &FrameEncoder,
        event: &str,
        data: Option<&T>,
    ) -> Result<(), EmitError> {
        match self.encode_now(encoder, event, data)? {
            Encoded::Queued => {
                tokio::task::coop::consume_budget().await;
                Ok(())
            }
            Encoded::Closed(frame) => Err(SendError::Closed { frame }.into()),
            Encoded::Wait(frame, n) => Ok(self.send_when_room(frame, n, true).await?),
        }
    }

    /// Like [`Outbox::emit`] but fails with [`SendError::Full`] (holding the
    /// encoded frame) instead of waiting.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        encoder: &FrameEncoder,
        event: &str,
        data: Option<&T>,
    ) -> Result<(), EmitError> {
        match self.encode_now(encoder, event, data)? {
            Encoded::Queued => Ok(()),
            Encoded::Closed(frame) => Err(SendError::Closed { frame }.into()),
            Encoded::Wait(frame, _) => Err(self.full(frame).into()),
        }
    }

    /// Refuses new frames; what is queued is still written by the writer,
    /// which then finishes.
    pub fn close(&self) {
        let mut s = self.state();
        s.closed = true;
        wake(s);
        self.shared.space.close();
    }

    /// Closes and drops everything still queued; returns how many frames (and
    /// bytes) were dropped, so the caller can report them as not delivered.
    pub fn abort(&self) -> (usize, usize) {
        let mut s = self.state();
        s.closed = true;
        let frames = s.lens.len();
        let bytes = s.queued_bytes;
        s.chunks.clear();
        s.lens.clear();
        s.tail = BytesMut::new();
        s.queued_bytes = 0;
        wake(s);
        self.shared.space.close();
        self.shared.idle.notify_waiters();
        (frames, bytes)
    }

    /// Drops the queued call frames ([`Outbox::send_call`]) that the writer
    /// has not taken; returns how many were dropped. A client calls it when
    /// a connection ended: the calls failed with it and must not be sent on
    /// the next one.
    pub fn discard_calls(&self) -> usize {
        self.retain(|_, replay| replay)
    }

    /// Drops the queued frames (not those being written) for which `keep`
    /// (given the frame and whether it may be replayed) returns false;
    /// returns how many were dropped.
    pub fn retain(&self, mut keep: impl FnMut(&Bytes, bool) -> bool) -> usize {
        let mut s = self.state();
        s.seal();
        let lens = std::mem::take(&mut s.lens);
        let mut chunks = std::mem::take(&mut s.chunks).into_iter();
        let mut current = Bytes::new();
        let mut dropped = 0;
        let mut freed_bytes = 0;
        let mut permits = 0usize;
        let capacity = self.shared.capacity;
        for flen in lens {
            let len = flen.get();
            if current.is_empty() && len > 0 {
                // Frames never straddle chunks.
                current = chunks.next().unwrap_or_default();
            }
            let frame = current.split_to(len.min(current.len()));
            if keep(&frame, flen.replay()) {
                s.lens.push_back(flen);
                if !frame.is_empty() {
                    s.chunks.push_back(frame);
                }
            } else {
                dropped += 1;
                freed_bytes += len;
                permits += cost(len, capacity) as usize;
            }
        }
        s.queued_bytes = s.queued_bytes.saturating_sub(freed_bytes);
        let idle = s.lens.is_empty() && s.in_flight == 0 && s.flush_waiters > 0;
        drop(s);
        if permits > 0 && !self.shared.space.is_closed() {
            self.shared.space.add_permits(permits);
        }
        if idle {
            self.shared.idle.notify_waiters();
        }
        dropped
    }

    /// Waits until everything queued so far has been written (or the queue
    /// was aborted).
    pub async fn flushed(&self) {
        /// Counts one waiter in while alive (also if the wait is dropped).
        struct Waiting<'a>(&'a Outbox);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                let mut s = self.0.state();
                s.flush_waiters = s.flush_waiters.saturating_sub(1);
            }
        }
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let mut s = self.state();
                if s.lens.is_empty() && s.in_flight == 0 {
                    return;
                }
                s.flush_waiters += 1;
            }
            let _waiting = Waiting(self);
            idle.await;
        }
    }

    /// Ready once something is queued or the queue is closed; until then
    /// the writer's waker is kept for the next producer to wake.
    pub(crate) fn poll_queued(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.state();
        if !s.lens.is_empty() || s.closed {
            return Poll::Ready(());
        }
        match &s.writer {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.writer = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Takes up to `max` queued frames for writing.
    fn take(&self, into: &mut Batch, max: usize) -> Taken {
        let mut s = self.state();
        if s.lens.is_empty() {
            return if s.closed {
                Taken::Closed
            } else {
                Taken::Empty
            };
        }
        s.seal();
        if s.tail.capacity() > TAIL_KEEP_MAX {
            s.tail = BytesMut::new();
        }
        if max >= s.lens.len() {
            into.chunks.extend(s.chunks.drain(..));
            into.lens.extend(s.lens.drain(..));
        } else {
            let mut need: usize = s.lens.iter().take(max).map(|l| l.get()).sum();
            into.lens.extend(s.lens.drain(..max));
            while need > 0 {
                let Some(front) = s.chunks.front_mut() else {
                    break;
                };
                if front.len() <= need {
                    need -= front.len();
                    if let Some(c) = s.chunks.pop_front() {
                        into.chunks.push(c);
                    }
                } else {
                    into.chunks.push(front.split_to(need));
                    need = 0;
                }
            }
        }
        s.in_flight = into.lens.len();
        Taken::Some
    }

    /// `frames` frames of the taken batch, `bytes` long and holding
    /// `permits` of room, were written completely.
    fn written(&self, frames: usize, bytes: usize, permits: usize) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(frames);
        s.queued_bytes = s.queued_bytes.saturating_sub(bytes);
        let idle = s.lens.is_empty() && s.in_flight == 0 && s.flush_waiters > 0;
        drop(s);
        if permits > 0 && !self.shared.space.is_closed() {
            self.shared.space.add_permits(permits);
        }
        if idle {
            self.shared.idle.notify_waiters();
        }
    }

    /// Puts frames that were taken but not written back at the front.
    fn requeue(&self, batch: &mut Batch) {
        let mut s = self.state();
        s.in_flight = 0;
        for c in batch.chunks.drain(..).rev() {
            s.chunks.push_front(c);
        }
        for l in batch.lens.drain(..).rev() {
            s.lens.push_front(l);
        }
        let idle = s.lens.is_empty() && s.flush_waiters > 0;
        drop(s);
        if idle {
            self.shared.idle.notify_waiters();
        }
    }
}

/// Releases the queue's lock, then wakes the writer if it was waiting for
/// a frame.
fn wake(mut s: MutexGuard<'_, State>) {
    let writer = s.writer.take();
    drop(s);
    if let Some(w) = writer {
        w.wake();
    }
}

/// Whole frames taken by the writer: `chunks` hold exactly the frames whose
/// lengths `lens` lists, back to back.
#[derive(Debug, Default)]
struct Batch {
    chunks: Vec<Bytes>,
    lens: Vec<FrameLen>,
}

impl Batch {
    fn clear(&mut self) {
        self.chunks.clear();
        self.lens.clear();
    }

    /// Removes the first `frames` frames, `bytes` long in all.
    fn drop_front(&mut self, frames: usize, mut bytes: usize) {
        self.lens.drain(..frames);
        let mut whole = 0;
        for c in &mut self.chunks {
            if bytes == 0 {
                break;
            }
            if c.len() <= bytes {
                bytes -= c.len();
                whole += 1;
            } else {
                c.advance(bytes);
                bytes = 0;
            }
        }
        self.chunks.drain(..whole);
    }
}

enum Taken {
    Some,
    Empty,
    Closed,
}

/// How [`write_loop`] ended.
#[derive(Debug)]
pub enum WriterExit {
    /// The outbox was closed and everything queued was written and flushed.
    Drained,
    /// The transport failed; unwritten frames are back in the queue.
    Failed(io::Error),
    /// The cancellation token fired; unwritten frames are back in the queue.
    Cancelled,
}

/// Sync mode's one-message-in-flight gate (`docs/protocol.md` §3.5): the writer sends one
/// frame, then waits until the reader [`SyncGate::release`]s it because
/// something was received.
#[derive(Debug)]
pub struct SyncGate {
    ready: Mutex<bool>,
    notify: Notify,
}

impl Default for SyncGate {
    fn default() -> Self {
        SyncGate {
            ready: Mutex::new(true),
            notify: Notify::new(),
        }
    }
}

impl SyncGate {
    /// Lets the next queued frame go (a release with nothing queued makes
    /// the queue idle, so the next emit is written at once).
    pub fn release(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.notify.notify_one();
    }

    /// Whether the next frame may be written now.
    pub fn is_ready(&self) -> bool {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn try_take(&self) -> bool {
        let mut r = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *r, false)
    }

    fn put_back(&self) {
        self.release();
    }
}

/// Writes everything the outbox receives to `w` until the outbox is closed
/// and drained, the transport fails, or `cancel` fires. Shuts the write half
/// down after a clean drain when `shutdown` is set. With a `sync` gate, one
/// frame is written per release of the gate.
pub async fn write_loop<W>(
    outbox: &Outbox,
    w: &mut W,
    shutdown: bool,
    cancel: &CancellationToken,
    sync: Option<&SyncGate>,
) -> WriterExit
where
    W: AsyncWrite + Unpin,
{
    let mut batch = Batch::default();
    // Grown on first use: an idle connection holds no write buffer.
    let mut buf = BytesMut::new();
    // Registered with the token once; polled only while the writer waits,
    // and the token is checked before every batch.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    loop {
        if cancel.is_cancelled() {
            return WriterExit::Cancelled;
        }
        let taken = match sync {
            None => outbox.take(&mut batch, usize::MAX),
            Some(gate) => {
                if !gate.try_take() {
                    // The previous frame is still waiting for its answer.
                    tokio::select! {
                        biased;
                        _ = gate.notify.notified() => continue,
                        _ = &mut cancelled => return WriterExit::Cancelled,
                    }
                }
                let t = outbox.take(&mut batch, 1);
                if !matches!(t, Taken::Some) {
                    // Nothing to send: the gate stays open for the next emit.
                    gate.put_back();
                }
                t
            }
        };
        match taken {
            Taken::Some => {}
            Taken::Empty => {
                if let Err(e) = w.flush().await {
                    return WriterExit::Failed(e);
                }
                tokio::select! {
                    biased;
                    _ = std::future::poll_fn(|cx| outbox.poll_queued(cx)) => continue,
                    _ = &mut cancelled => return WriterExit::Cancelled,
                }
            }
            Taken::Closed => {
                if let Err(e) = w.flush().await {
                    return WriterExit::Failed(e);
                }
                if shutdown {
                    let _ = w.shutdown().await;
                }
                return WriterExit::Drained;
            }
        }
        let mut progress = Progress::new(outbox);
        let result = tokio::select! {
            biased;
            r = write_batch(w, &batch, &mut buf, &mut progress) => r.map_err(Some),
            _ = &mut cancelled => Err(None),
        };
        match result {
            Ok(()) => batch.clear(),
            Err(e) => {
                // What is left was not (completely) written.
                batch.drop_front(progress.frames, progress.end);
                outbox.requeue(&mut batch);
                if let Some(g) = sync {
                    // The frame in flight was not delivered: let it go again.
                    g.put_back();
                }
                return match e {
                    Some(e) => WriterExit::Failed(e),
                    None => WriterExit::Cancelled,
                };
            }
        }
    }
}

/// How much of a batch is written, reported to the outbox frame by frame.
struct Progress<'a> {
    outbox: &'a Outbox,
    /// Bytes of the batch written.
    pos: usize,
    /// Frames of the batch completely written, and where the last one ends.
    frames: usize,
    end: usize,
}

impl<'a> Progress<'a> {
    fn new(outbox: &'a Outbox) -> Self {
        Progress {
            outbox,
            pos: 0,
            frames: 0,
            end: 0,
        }
    }

    /// `n` more bytes of the batch (frame lengths `lens`) were written.
    fn advance(&mut self, lens: &[FrameLen], n: usize) {
        self.pos += n;
        let capacity = self.outbox.shared.capacity;
        let (mut frames, mut bytes, mut permits) = (0, 0, 0);
        while let Some(len) = lens.get(self.frames).map(|l| l.get()) {
            if self.end + len > self.pos {
                break;
            }
            self.end += len;
            self.frames += 1;
            frames += 1;
            bytes += len;
            permits += cost(len, capacity) as usize;
        }
        if frames > 0 {
            self.outbox.written(frames, bytes, permits);
        }
    }
}

/// Writes `batch`, reporting each completed frame through `progress`.
async fn write_batch<W>(
    w: &mut W,
    batch: &Batch,
    buf: &mut BytesMut,
    progress: &mut Progress<'_>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let lens = &batch.lens[..];
    // Empty frames at the front are complete already.
    progress.advance(lens, 0);
    let chunks = &batch.chunks[..];
    let mut i = 0;
    while i < chunks.len() {
        let small = |c: &Bytes| c.len() <= COALESCE_MAX_FRAME;
        if small(&chunks[i]) && chunks.get(i + 1).is_some_and(small) {
            // Coalesce a run of small chunks into one write.
            buf.clear();
            while i < chunks.len()
                && small(&chunks[i])
                && (buf.is_empty() || buf.len() + chunks[i].len() <= COALESCE_TARGET)
            {
                buf.extend_from_slice(&chunks[i]);
                i += 1;
            }
            write_all(w, buf, lens, progress).await?;
        } else if w.is_write_vectored()
            && !small(&chunks[i])
            && chunks.get(i + 1).is_some_and(|c| !small(c))
        {
            // A run of large chunks, written from their own memory together.
            let end = (i + MAX_IOVECS).min(chunks.len());
            let run = chunks[i..end].iter().take_while(|c| !small(c)).count();
            write_all_vectored(w, &chunks[i..i + run], lens, progress).await?;
            i += run;
        } else {
            // One chunk, written from its own memory.
            write_all(w, &chunks[i], lens, progress).await?;
            i += 1;
        }
    }
    Ok(())
}

async fn write_all_vectored<W>(
    w: &mut W,
    chunks: &[Bytes],
    lens: &[FrameLen],
    progress: &mut Progress<'_>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut first = 0; // the first chunk not completely written
    let mut skip = 0; // bytes of it already written
    while first < chunks.len() {
        let slices: Vec<io::IoSlice<'_>> =
            std::iter::once(io::IoSlice::new(&chunks[first][skip..]))
                .chain(chunks[first + 1..].iter().map(|c| io::IoSlice::new(c)))
                .collect();
        let mut n = match w.write_vectored(&slices).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => n,
        };
        progress.advance(lens, n);
        while n > 0 {
            let left = chunks[first].len() - skip;
            if n >= left {
                n -= left;
                first += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
    }
    Ok(())
}

async fn write_all<W>(
    w: &mut W,
    mut data: &[u8],
    lens: &[FrameLen],
    progress: &mut Progress<'_>,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while !data.is_empty() {
        match w.write(data).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => {
                data = &data[n..];
                progress.advance(lens, n);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(i: usize) -> Bytes {
        Bytes::from(emitted(i))
    }

    /// A writer task draining `outbox` into one end of a `pipe`-byte duplex
    /// pipe; returns the task and the other end.
    fn spawn_writer(
        outbox: &Outbox,
        pipe: usize,
        shutdown: bool,
    ) -> (tokio::task::JoinHandle<WriterExit>, tokio::io::DuplexStream) {
        let (mut a, b) = tokio::io::duplex(pipe);
        let o = outbox.clone();
        let writer = tokio::spawn(async move {
            write_loop(&o, &mut a, shutdown, &CancellationToken::new(), None).await
        });
        (writer, b)
    }

    #[tokio::test]
    async fn writes_everything_in_order_and_drains_on_close() {
        let outbox = Outbox::new(64 * 1024);
        let (writer, mut b) = spawn_writer(&outbox, 1024, true);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut expected = Vec::new();
        for i in 0..5000 {
            let f = frame(i);
            expected.extend_from_slice(&f);
            outbox.send(f).await.unwrap();
        }
        outbox.close();
        let got = reader.await.unwrap();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        assert_eq!(got, expected);
        assert_eq!(outbox.queued_bytes(), 0);
        assert!(matches!(
            outbox.try_send(frame(1)),
            Err(SendError::Closed { .. })
        ));
    }

    #[tokio::test]
    async fn try_send_reports_full_and_send_waits_for_room() {
        let outbox = Outbox::new(100);
        let f = Bytes::from(vec![b'x'; 60]);
        outbox.try_send(f.clone()).unwrap();
        match outbox.try_send(f.clone()) {
            Err(SendError::Full {
                queued, capacity, ..
            }) => {
                assert_eq!(queued, 60);
                assert_eq!(capacity, 100);
            }
            other => panic!("expected Full, got {other:?}"),
        }
        // A writer frees room; the waiting send then completes.
        let o2 = outbox.clone();
        let pending = tokio::spawn(async move { o2.send(Bytes::from(vec![b'y'; 60])).await });
        let (writer, mut b) = spawn_writer(&outbox, 4096, false);
        pending.await.unwrap().unwrap();
        outbox.flushed().await;
        outbox.close();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        let mut got = vec![0u8; 120];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..60], &[b'x'; 60][..]);
        assert_eq!(&got[60..], &[b'y'; 60][..]);
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_queue_still_goes_through() {
        let outbox = Outbox::new(16);
        let big = Bytes::from(vec![7u8; 100_000]);
        outbox.send(big.clone()).await.unwrap();
        let (writer, mut b) = spawn_writer(&outbox, 8192, true);
        outbox.close();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        assert_eq!(got, big);
    }

    /// A writer that accepts `limit` bytes, at most `per_call` per call,
    /// and then fails; `vectored` ones take several buffers per call.
    struct Failing {
        limit: usize,
        per_call: usize,
        vectored: bool,
        written: Vec<u8>,
        vectored_calls: usize,
    }

    impl Failing {
        fn new(limit: usize) -> Self {
            Failing {
                limit,
                per_call: 7,
                vectored: false,
                written: Vec::new(),
                vectored_calls: 0,
            }
        }

        fn vectored(limit: usize, per_call: usize) -> Self {
            Failing {
                per_call,
                vectored: true,
                ..Failing::new(limit)
            }
        }
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let room = self.limit - self.written.len();
            if room == 0 {
                return std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if bufs.len() > 1 {
                self.vectored_calls += 1;
            }
            let mut take = room.min(self.per_call);
            let mut n = 0;
            for b in bufs {
                let k = take.min(b.len());
                self.written.extend_from_slice(&b[..k]);
                take -= k;
                n += k;
                if take == 0 || !self.vectored {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn unwritten_frames_are_requeued_in_order_after_a_failure() {
        let outbox = Outbox::new(1 << 20);
        let frames: Vec<Bytes> = (0..50).map(frame).collect();
        for f in &frames {
            outbox.send(f.clone()).await.unwrap();
        }
        // Fail in the middle of frame 3.
        let cut = frames[..3].iter().map(|f| f.len()).sum::<usize>() + 5;
        let mut w = Failing::new(cut);
        assert!(matches!(
            write_loop(&outbox, &mut w, false, &CancellationToken::new(), None).await,
            WriterExit::Failed(_)
        ));
        assert_eq!(outbox.queued_frames(), 47);
        // The next connection gets frames 3.. exactly once, in order.
        let got = drain(&outbox).await;
        let expected: Vec<u8> = frames[3..].iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn abort_reports_what_was_not_delivered() {
        let outbox = Outbox::new(1 << 20);
        for i in 0..10 {
            outbox.send(frame(i)).await.unwrap();
        }
        let (n, bytes) = outbox.abort();
        assert_eq!(n, 10);
        assert!(bytes > 0);
        assert!(outbox.is_closed());
        outbox.flushed().await;
    }

    /// Closes `outbox` and writes what it holds to a pipe: the bytes a
    /// peer receives (the writer must drain cleanly).
    async fn drain(outbox: &Outbox) -> Vec<u8> {
        outbox.close();
        let (writer, mut b) = spawn_writer(outbox, 1 << 14, true);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        got
    }

    fn encoder() -> FrameEncoder {
        FrameEncoder::new(ipc_proto::CodecConfig::fast()).unwrap()
    }

    /// Frame `i` the way `emit` encodes it.
    fn emitted(i: usize) -> Vec<u8> {
        format!("{{\"type\":\"m\",\"data\":{i}}}\x0c").into_bytes()
    }

    /// Queues frames 0..n, every third one as a ready `Bytes` frame and the
    /// others encoded in place; returns the bytes a peer must receive.
    async fn queue_mixed(outbox: &Outbox, enc: &FrameEncoder, n: usize) -> Vec<Vec<u8>> {
        queue_some(outbox, enc, n, 3).await
    }

    /// Queues frames 0..n, every `every`th one (none for 0) as a ready
    /// `Bytes` frame and the others encoded in place.
    async fn queue_some(
        outbox: &Outbox,
        enc: &FrameEncoder,
        n: usize,
        every: usize,
    ) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        for i in 0..n {
            if every > 0 && i % every == 0 {
                outbox.send(frame(i)).await.unwrap();
            } else {
                outbox.emit(enc, "m", Some(&i)).await.unwrap();
            }
            frames.push(emitted(i));
        }
        frames
    }

    #[tokio::test]
    async fn emitted_and_sent_frames_keep_their_order() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 20);
        let frames = queue_mixed(&outbox, &enc, 1000).await;
        assert_eq!(outbox.queued_frames(), 1000);
        let total: usize = frames.iter().map(Vec::len).sum();
        assert_eq!(outbox.queued_bytes(), total);
        let got = drain(&outbox).await;
        assert_eq!(got, frames.concat());
        assert_eq!(outbox.queued_bytes(), 0);
        assert_eq!(outbox.queued_frames(), 0);
    }

    #[tokio::test]
    async fn a_failure_inside_an_emitted_run_requeues_exactly_the_unwritten_frames() {
        let enc = encoder();
        for (cut_frame, every) in [
            (0usize, 3),
            (1, 3),
            (2, 3),
            (4, 3),
            (5, 3),
            (37, 3),
            (0, 0),
            (23, 0),
        ] {
            let outbox = Outbox::new(1 << 20);
            let frames = queue_some(&outbox, &enc, 60, every).await;
            // Fail in the middle of frame `cut_frame`.
            let cut = frames[..cut_frame].iter().map(Vec::len).sum::<usize>() + 3;
            let mut w = Failing::new(cut);
            assert!(matches!(
                write_loop(&outbox, &mut w, false, &CancellationToken::new(), None).await,
                WriterExit::Failed(_)
            ));
            assert_eq!(outbox.queued_frames(), 60 - cut_frame, "cut in {cut_frame}");
            let rest: usize = frames[cut_frame..].iter().map(Vec::len).sum();
            assert_eq!(outbox.queued_bytes(), rest);
            // More frames after the failure go behind the requeued ones.
            outbox.emit(&enc, "m", Some(&60)).await.unwrap();
            let got = drain(&outbox).await;
            let mut expected = frames[cut_frame..].concat();
            expected.extend_from_slice(&emitted(60));
            assert_eq!(got, expected, "cut in {cut_frame}");
        }
    }

    #[tokio::test]
    async fn sync_gate_takes_one_frame_at_a_time_out_of_an_emitted_run() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 20);
        let frames = queue_mixed(&outbox, &enc, 7).await;
        let gate = Arc::new(SyncGate::default());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let (o2, g2) = (outbox.clone(), gate.clone());
        let writer = tokio::spawn(async move {
            write_loop(&o2, &mut a, true, &CancellationToken::new(), Some(&g2)).await
        });
        for (i, f) in frames.iter().enumerate() {
            let mut got = vec![0u8; f.len()];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, f, "frame {i}");
            assert_eq!(outbox.queued_frames(), frames.len() - i - 1);
            gate.release();
        }
        outbox.close();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn retain_sees_every_frame_of_an_emitted_run() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 20);
        let frames = queue_mixed(&outbox, &enc, 30).await;
        let mut seen = Vec::new();
        let dropped = outbox.retain(|f, replay| {
            assert!(replay);
            seen.push(f.to_vec());
            seen.len() % 2 == 0
        });
        assert_eq!(seen, frames);
        assert_eq!(dropped, 15);
        let kept: Vec<Vec<u8>> = frames.iter().skip(1).step_by(2).cloned().collect();
        assert_eq!(outbox.queued_frames(), 15);
        assert_eq!(
            outbox.queued_bytes(),
            kept.iter().map(Vec::len).sum::<usize>()
        );
        assert_eq!(drain(&outbox).await, kept.concat());
    }

    #[tokio::test]
    async fn call_frames_are_discarded_by_their_flag_not_their_bytes() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 20);
        // A call frame, and an ordinary message whose bytes look like one.
        let call = enc.encode_to_bytes("ipcx.request", Some(&1)).unwrap();
        let lookalike = enc.encode_to_bytes("ipcx.request", Some(&2)).unwrap();
        outbox.emit(&enc, "a", Some(&1)).await.unwrap();
        outbox.send_call(call.clone()).await.unwrap();
        outbox.send(lookalike.clone()).await.unwrap();
        outbox.try_send_copy(&Bytes::from_static(b"x\x0c")).unwrap();
        outbox.send_call(call).await.unwrap();
        assert_eq!(outbox.queued_frames(), 5);
        assert_eq!(outbox.discard_calls(), 2);
        assert_eq!(outbox.queued_frames(), 3);
        let mut expected = enc.encode_to_bytes("a", Some(&1)).unwrap().to_vec();
        expected.extend_from_slice(&lookalike);
        expected.extend_from_slice(b"x\x0c");
        assert_eq!(outbox.queued_bytes(), expected.len());
        assert_eq!(drain(&outbox).await, expected);
    }

    #[tokio::test]
    async fn a_requeued_call_keeps_its_flag() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 20);
        let call = enc.encode_to_bytes("ipcx.ping", Some(&1)).unwrap();
        outbox.send_call(call).await.unwrap();
        outbox.emit(&enc, "after", Some(&2)).await.unwrap();
        // The writer takes both frames, fails before writing any: both go back.
        let mut batch = Batch::default();
        assert!(matches!(outbox.take(&mut batch, usize::MAX), Taken::Some));
        outbox.requeue(&mut batch);
        assert_eq!(outbox.discard_calls(), 1);
        assert_eq!(
            drain(&outbox).await,
            enc.encode_to_bytes("after", Some(&2)).unwrap().to_vec()
        );
    }

    #[tokio::test]
    async fn emit_applies_backpressure_and_reports_what_it_could_not_queue() {
        let enc = encoder();
        let one = emitted(1).len();
        let outbox = Outbox::new(2 * one);
        outbox.emit(&enc, "m", Some(&1)).await.unwrap();
        outbox.try_emit(&enc, "m", Some(&1)).unwrap();
        match outbox.try_emit(&enc, "m", Some(&1)) {
            Err(EmitError::Send(SendError::Full {
                frame,
                queued,
                capacity,
            })) => {
                assert_eq!(&frame[..], &emitted(1)[..]);
                assert_eq!((queued, capacity), (2 * one, 2 * one));
            }
            other => panic!("expected Full, got {other:?}"),
        }
        // A name the encoder refuses queues nothing.
        assert!(matches!(
            outbox.try_emit(&enc, "__proto__", Some(&1)),
            Err(EmitError::Encode(_))
        ));
        assert_eq!(outbox.queued_frames(), 2);
        // `emit` waits until the writer frees room, then goes behind the rest.
        let o2 = outbox.clone();
        let e2 = enc.clone();
        let waiting = tokio::spawn(async move { o2.emit(&e2, "m", Some(&2)).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let (writer, mut b) = spawn_writer(&outbox, 1 << 16, true);
        waiting.await.unwrap().unwrap();
        outbox.flushed().await;
        outbox.close();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [emitted(1), emitted(1), emitted(2)].concat());
        // Closed: the frame comes back; abort counts emitted frames.
        match outbox.emit(&enc, "m", Some(&3)).await {
            Err(EmitError::Send(SendError::Closed { frame })) => {
                assert_eq!(&frame[..], &emitted(3)[..])
            }
            other => panic!("expected Closed, got {other:?}"),
        }
        let other = Outbox::new(1 << 20);
        queue_mixed(&other, &enc, 10).await;
        assert_eq!(other.abort().0, 10);
        assert_eq!(other.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn empty_frames_are_accounted_for() {
        let enc = encoder();
        let outbox = Outbox::new(1 << 10);
        outbox.send(Bytes::new()).await.unwrap();
        outbox.emit(&enc, "m", Some(&1)).await.unwrap();
        outbox.send(Bytes::new()).await.unwrap();
        assert_eq!(outbox.queued_frames(), 3);
        let (writer, mut b) = spawn_writer(&outbox, 1 << 10, true);
        tokio::time::timeout(std::time::Duration::from_secs(10), outbox.flushed())
            .await
            .unwrap();
        assert_eq!(outbox.queued_frames(), 0);
        outbox.close();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, emitted(1));
    }

    #[tokio::test]
    async fn flushed_wakes_when_retain_empties_the_queue_and_forgets_dropped_waits() {
        let outbox = Outbox::new(1 << 10);
        outbox.send(frame(1)).await.unwrap();
        // A wait given up before the queue drains leaves no waiter behind.
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(20), outbox.flushed()).await;
        assert!(gave_up.is_err());
        assert_eq!(outbox.state().flush_waiters, 0);
        // No writer runs: only `retain` can make the queue idle.
        let o2 = outbox.clone();
        let waiter = tokio::spawn(async move { o2.flushed().await });
        while outbox.state().flush_waiters == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(outbox.retain(|_, _| false), 1);
        tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("flushed() woke up")
            .unwrap();
        assert_eq!(outbox.state().flush_waiters, 0);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn a_loop_of_emits_and_sends_lets_other_tasks_run_before_the_queue_fills() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let enc = encoder();
        for emit in [true, false] {
            let outbox = Outbox::new(64 << 20);
            let ran = Arc::new(AtomicBool::new(false));
            let r2 = ran.clone();
            // On this current-thread runtime the task runs only if the loop
            // below yields.
            tokio::spawn(async move { r2.store(true, Ordering::Release) });
            let mut seen_at = None;
            for i in 0..10_000 {
                if emit {
                    outbox.emit(&enc, "m", Some(&i)).await.unwrap();
                } else {
                    outbox.send(frame(i)).await.unwrap();
                }
                if seen_at.is_none() && ran.load(Ordering::Acquire) {
                    seen_at = Some(i);
                }
            }
            assert_eq!(outbox.queued_frames(), 10_000, "nothing was refused");
            let at = seen_at.expect("the other task ran during the loop");
            assert!(at < 1_000, "yielded only after {at} frames (emit: {emit})");
        }
    }

    #[tokio::test]
    async fn copied_frames_queue_in_order_and_are_bounded_like_shared_ones() {
        let enc = encoder();
        let outbox = Outbox::new(4 << 20);
        let big = Bytes::from(vec![b'b'; COPY_MAX_FRAME + 1]);
        let mut expected = Vec::new();
        for i in 0..300 {
            match i % 4 {
                0 => outbox.try_send_copy(&frame(i)).unwrap(),
                1 => outbox.emit(&enc, "m", Some(&i)).await.unwrap(),
                2 => outbox.send(frame(i)).await.unwrap(),
                _ => outbox.try_send_copy(&big).unwrap(),
            }
            expected.push(if i % 4 == 3 { big.to_vec() } else { emitted(i) });
        }
        assert_eq!(outbox.queued_frames(), 300);
        let total: usize = expected.iter().map(Vec::len).sum();
        assert_eq!(outbox.queued_bytes(), total);
        let (writer, mut b) = spawn_writer(&outbox, 1 << 14, true);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        outbox.close();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        assert_eq!(reader.await.unwrap(), expected.concat());
        match outbox.try_send_copy(&frame(1)) {
            Err(SendError::Closed { frame: f }) => assert_eq!(f, frame(1)),
            other => panic!("expected Closed, got {other:?}"),
        }
        // Full: the frame comes back and nothing is queued.
        let small = Outbox::new(frame(1).len());
        small.try_send_copy(&frame(1)).unwrap();
        match small.try_send_copy(&frame(2)) {
            Err(SendError::Full { frame: f, .. }) => assert_eq!(f, frame(2)),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(small.queued_frames(), 1);
    }

    #[tokio::test]
    async fn long_emitted_runs_go_out_in_vectored_writes_and_requeue_exactly() {
        let enc = encoder();
        // Enough frames for several full-size in-place buffers.
        let n = 3 * TAIL_CHUNK / 20;
        for cut_frame in [None, Some(0), Some(n / 3), Some(n - 1)] {
            let outbox = Outbox::new(16 << 20);
            // A small separate frame first: a small chunk before large ones.
            outbox.send(frame(7)).await.unwrap();
            let mut frames = vec![emitted(7)];
            frames.extend(queue_some(&outbox, &enc, n - 1, 0).await);
            let total: usize = frames.iter().map(Vec::len).sum();
            let limit = match cut_frame {
                None => usize::MAX,
                Some(k) => frames[..k].iter().map(Vec::len).sum::<usize>() + 1,
            };
            let mut w = Failing::vectored(limit, 50_000);
            if cut_frame.is_none() {
                outbox.close();
            }
            let exit = write_loop(&outbox, &mut w, false, &CancellationToken::new(), None).await;
            match cut_frame {
                None => {
                    assert!(matches!(exit, WriterExit::Drained));
                    assert_eq!(w.written.len(), total);
                    assert_eq!(w.written, frames.concat());
                    assert!(w.vectored_calls > 0, "no vectored write");
                }
                Some(k) => {
                    assert!(matches!(exit, WriterExit::Failed(_)));
                    assert_eq!(outbox.queued_frames(), n - k);
                    let got = drain(&outbox).await;
                    assert_eq!(got, frames[k..].concat(), "cut in {k}");
                }
            }
        }
    }
}
