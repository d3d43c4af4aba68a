//! The bounded outbound queue of one endpoint and the writer that drains it.
//!
//! Senders push complete, already encoded frames ([`Bytes`]); the queue is
//! bounded in **bytes**. [`Outbox::send`] waits for room (backpressure),
//! [`Outbox::try_send`] fails with [`SendError::Full`] instead. Nothing is
//! ever dropped silently: a frame is either written to the transport, or
//! handed back to the caller, or counted in what [`Outbox::abort`] returns.
//!
//! [`write_loop`] is the writer task's body: it takes *everything* queued at
//! once, coalesces small frames into one buffer, writes with as few syscalls
//! as the kernel allows and flushes only when the queue is empty. When the
//! transport fails, the frames that were not completely written go back to the
//! front of the queue, in order, so a client can send them on its next
//! connection exactly once (a peer discards a partial frame at EOF).
//!
//! The same type serves `ipc-server` (one outbox per connection) and
//! `ipc-client` (one outbox per client, surviving reconnects).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Frames up to this size are copied into the coalescing buffer; larger ones
/// are written straight from their own memory.
const COALESCE_MAX_FRAME: usize = 16 * 1024;
/// Target size of one coalesced write.
const COALESCE_TARGET: usize = 256 * 1024;

/// A shared encode buffer: frames are split off one large allocation
/// instead of costing an allocation each (the allocation is freed when the
/// last frame cut from it has been written).
#[derive(Debug, Default)]
pub struct Arena {
    buf: Mutex<BytesMut>,
}

/// How much a refill of an [`Arena`] reserves.
const ARENA_CHUNK: usize = 64 * 1024;

impl Arena {
    /// Encodes one frame with `encoder` and returns it as its own `Bytes`.
    pub fn encode<T: serde::Serialize + ?Sized>(
        &self,
        encoder: &ipc_proto::FrameEncoder,
        event: &str,
        data: Option<&T>,
    ) -> Result<Bytes, ipc_proto::ProtocolError> {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(ARENA_CHUNK);
        }
        encoder.encode(event, data, &mut buf)?;
        Ok(buf.split().freeze())
    }
}

/// Why a frame was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The queue holds `capacity` bytes already (only from `try_send`).
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

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Bytes>,
    queued_bytes: usize,
    /// Frames taken by the writer and not yet written or returned.
    in_flight: usize,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    space: Semaphore,
    capacity: usize,
    wake: Notify,
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

impl Outbox {
    /// A queue holding at most `capacity_bytes` bytes (at least 1).
    pub fn new(capacity_bytes: usize) -> Outbox {
        let capacity = capacity_bytes.clamp(1, (u32::MAX as usize).min(Semaphore::MAX_PERMITS));
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                space: Semaphore::new(capacity),
                capacity,
                wake: Notify::new(),
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
        s.frames.len() + s.in_flight
    }

    /// Whether [`Outbox::close`] or [`Outbox::abort`] was called.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    fn push(&self, frame: Bytes, permits: u32) -> Result<(), SendError> {
        let mut s = self.state();
        if s.closed {
            drop(s);
            self.shared.space.add_permits(permits as usize);
            return Err(SendError::Closed { frame });
        }
        s.queued_bytes += frame.len();
        let was_empty = s.frames.is_empty();
        s.frames.push_back(frame);
        drop(s);
        // A non-empty queue has not been taken by the writer yet: it takes
        // this frame with the others, so only the first frame needs a wake-up.
        if was_empty {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Queues `frame`, waiting while the queue is full.
    pub async fn send(&self, frame: Bytes) -> Result<(), SendError> {
        let n = cost(frame.len(), self.shared.capacity);
        // Room now (the usual case): no future to build and poll.
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => {
                p.forget();
                return self.push(frame, n);
            }
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed { frame }),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        match self.shared.space.acquire_many(n).await {
            Ok(p) => p.forget(),
            Err(_) => return Err(SendError::Closed { frame }),
        }
        self.push(frame, n)
    }

    /// Queues `frame` if there is room now.
    pub fn try_send(&self, frame: Bytes) -> Result<(), SendError> {
        let n = cost(frame.len(), self.shared.capacity);
        match self.shared.space.try_acquire_many(n) {
            Ok(p) => p.forget(),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(SendError::Closed { frame }),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let queued = self.queued_bytes();
                return Err(SendError::Full {
                    frame,
                    queued,
                    capacity: self.shared.capacity,
                });
            }
        }
        self.push(frame, n)
    }

    /// Refuses new frames; what is queued is still written by the writer,
    /// which then finishes.
    pub fn close(&self) {
        self.state().closed = true;
        self.shared.space.close();
        self.shared.wake.notify_one();
    }

    /// Closes and drops everything still queued; returns how many frames (and
    /// bytes) were dropped, so the caller can report them as not delivered.
    pub fn abort(&self) -> (usize, usize) {
        let mut s = self.state();
        s.closed = true;
        let frames = s.frames.len();
        let bytes = s.queued_bytes;
        s.frames.clear();
        s.queued_bytes = 0;
        drop(s);
        self.shared.space.close();
        self.shared.wake.notify_one();
        self.shared.idle.notify_waiters();
        (frames, bytes)
    }

    /// Drops the queued frames (not those being written) for which `keep`
    /// returns false; returns how many were dropped.
    pub fn retain(&self, mut keep: impl FnMut(&Bytes) -> bool) -> usize {
        let mut s = self.state();
        let mut dropped = 0;
        let mut freed_bytes = 0;
        let mut permits = 0usize;
        let capacity = self.shared.capacity;
        s.frames.retain(|f| {
            if keep(f) {
                true
            } else {
                dropped += 1;
                freed_bytes += f.len();
                permits += cost(f.len(), capacity) as usize;
                false
            }
        });
        s.queued_bytes = s.queued_bytes.saturating_sub(freed_bytes);
        drop(s);
        if permits > 0 && !self.shared.space.is_closed() {
            self.shared.space.add_permits(permits);
        }
        dropped
    }

    /// Waits until everything queued so far has been written (or the queue
    /// was aborted).
    pub async fn flushed(&self) {
        loop {
            let idle = self.shared.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            {
                let s = self.state();
                if s.frames.is_empty() && s.in_flight == 0 {
                    return;
                }
            }
            idle.await;
        }
    }

    /// Takes up to `max` queued frames for writing.
    fn take(&self, into: &mut Vec<Bytes>, max: usize) -> Taken {
        let mut s = self.state();
        if s.frames.is_empty() {
            return if s.closed {
                Taken::Closed
            } else {
                Taken::Empty
            };
        }
        let n = s.frames.len().min(max);
        into.extend(s.frames.drain(..n));
        s.in_flight = into.len();
        Taken::Some
    }

    /// These frames of the taken batch were written completely.
    fn written(&self, frames: &[Bytes]) {
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        let permits: usize = frames
            .iter()
            .map(|f| cost(f.len(), self.shared.capacity) as usize)
            .sum();
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(frames.len());
        s.queued_bytes = s.queued_bytes.saturating_sub(bytes);
        let idle = s.frames.is_empty() && s.in_flight == 0;
        drop(s);
        if permits > 0 && !self.shared.space.is_closed() {
            self.shared.space.add_permits(permits);
        }
        if idle {
            self.shared.idle.notify_waiters();
        }
    }

    /// Puts frames that were taken but not written back at the front.
    fn requeue(&self, frames: Vec<Bytes>) {
        let mut s = self.state();
        s.in_flight = 0;
        for f in frames.into_iter().rev() {
            s.frames.push_front(f);
        }
        let idle = s.frames.is_empty();
        drop(s);
        if idle {
            self.shared.idle.notify_waiters();
        }
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

/// Sync mode's one-message-in-flight gate (SPEC §3.5): the writer sends one
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
    let mut batch: Vec<Bytes> = Vec::with_capacity(64);
    // Grown on first use: an idle connection holds no write buffer.
    let mut buf = BytesMut::new();
    loop {
        let wake = outbox.shared.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let taken = match sync {
            None => outbox.take(&mut batch, usize::MAX),
            Some(gate) => {
                if !gate.try_take() {
                    // The previous frame is still waiting for its answer.
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return WriterExit::Cancelled,
                        _ = gate.notify.notified() => continue,
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
                    _ = cancel.cancelled() => return WriterExit::Cancelled,
                    _ = &mut wake => continue,
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
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(None),
            r = write_batch(outbox, w, &mut batch, &mut buf) => r.map_err(Some),
        };
        match result {
            Ok(()) => batch.clear(),
            Err(e) => {
                // `write_batch` removed the frames it completed; what is left
                // was not (completely) written.
                outbox.requeue(std::mem::take(&mut batch));
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

/// Writes `batch`; on error, `batch` holds exactly the frames not completely
/// written (completed ones were removed and accounted for).
async fn write_batch<W>(
    outbox: &Outbox,
    w: &mut W,
    batch: &mut Vec<Bytes>,
    buf: &mut BytesMut,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut done = 0; // frames of `batch` completely written
    let mut i = 0;
    while i < batch.len() {
        // Coalesce a run of small frames.
        buf.clear();
        let start = i;
        while i < batch.len()
            && batch[i].len() <= COALESCE_MAX_FRAME
            && (buf.is_empty() || buf.len() + batch[i].len() <= COALESCE_TARGET)
        {
            buf.extend_from_slice(&batch[i]);
            i += 1;
        }
        if i > start {
            let ends: Vec<usize> = batch[start..i]
                .iter()
                .scan(0usize, |acc, f| {
                    *acc += f.len();
                    Some(*acc)
                })
                .collect();
            let mut pos = 0;
            let mut reported = 0;
            while pos < buf.len() {
                match w.write(&buf[pos..]).await {
                    Ok(0) => {
                        batch.drain(..done);
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    Ok(n) => {
                        pos += n;
                        // Account for the frames that are now complete.
                        let complete = ends.partition_point(|&e| e <= pos);
                        if complete > reported {
                            outbox.written(&batch[start + reported..start + complete]);
                            done += complete - reported;
                            reported = complete;
                        }
                    }
                    Err(e) => {
                        batch.drain(..done);
                        return Err(e);
                    }
                }
            }
        } else {
            // One large frame, written from its own memory.
            let frame = batch[i].clone();
            if let Err(e) = w.write_all(&frame).await {
                batch.drain(..done);
                return Err(e);
            }
            outbox.written(std::slice::from_ref(&frame));
            done += 1;
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(i: usize) -> Bytes {
        Bytes::from(format!("{{\"type\":\"m\",\"data\":{i}}}\x0c"))
    }

    #[tokio::test]
    async fn writes_everything_in_order_and_drains_on_close() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let outbox = Outbox::new(64 * 1024);
        let o2 = outbox.clone();
        let writer = tokio::spawn(async move {
            write_loop(&o2, &mut a, true, &CancellationToken::new(), None).await
        });
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
        let (mut a, mut b) = tokio::io::duplex(4096);
        let o2 = outbox.clone();
        let pending = tokio::spawn(async move { o2.send(Bytes::from(vec![b'y'; 60])).await });
        let o3 = outbox.clone();
        let writer = tokio::spawn(async move {
            write_loop(&o3, &mut a, false, &CancellationToken::new(), None).await
        });
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
        let (mut a, mut b) = tokio::io::duplex(8192);
        let o2 = outbox.clone();
        let writer = tokio::spawn(async move {
            write_loop(&o2, &mut a, true, &CancellationToken::new(), None).await
        });
        outbox.close();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(matches!(writer.await.unwrap(), WriterExit::Drained));
        assert_eq!(got, big);
    }

    /// A writer that accepts `limit` bytes and then fails.
    struct Failing {
        limit: usize,
        written: Vec<u8>,
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let room = self.limit - self.written.len();
            if room == 0 {
                return std::task::Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let n = room.min(buf.len()).min(7);
            self.written.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
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
        let mut w = Failing {
            limit: cut,
            written: Vec::new(),
        };
        assert!(matches!(
            write_loop(&outbox, &mut w, false, &CancellationToken::new(), None).await,
            WriterExit::Failed(_)
        ));
        assert_eq!(outbox.queued_frames(), 47);
        // The next connection gets frames 3.. exactly once, in order.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        outbox.close();
        assert!(matches!(
            write_loop(&outbox, &mut a, true, &CancellationToken::new(), None).await,
            WriterExit::Drained
        ));
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
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
}
