//! [`Link`]: what an application does with one connection — emit, send,
//! request, ping — the same for a client and for a server's socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipc_proto::ext::{self, names};
use ipc_proto::{FrameEncoder, ProtocolError};
use serde::Serialize;

use crate::calls::{CallError, CallFailure, Calls, Response, Sink};
use crate::outbox::{EmitError, Outbox, SendError};

/// Why a [`Link`] operation failed. Each side maps it to its own error
/// type, adding which endpoint or peer it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The event could not be encoded (name refused, data not JSON, frame
    /// too large); nothing was queued.
    #[error(transparent)]
    Encode(ProtocolError),
    /// The outbound queue is full (only from the `try_` operations).
    #[error("outbound queue full ({queued} of {capacity} bytes queued)")]
    Full {
        /// Bytes queued when the frame was refused.
        queued: usize,
        /// The queue's capacity in bytes.
        capacity: usize,
    },
    /// The outbound queue is closed: the connection (or the client) is
    /// stopping or gone.
    #[error("outbound queue closed")]
    Closed,
    /// A call (request, ping) failed.
    #[error(transparent)]
    Call(CallError),
}

impl From<SendError> for LinkError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Full {
                queued, capacity, ..
            } => LinkError::Full { queued, capacity },
            SendError::Closed { .. } => LinkError::Closed,
        }
    }
}

impl From<EmitError> for LinkError {
    fn from(e: EmitError) -> Self {
        match e {
            EmitError::Encode(e) => LinkError::Encode(e),
            EmitError::Send(e) => e.into(),
        }
    }
}

/// One connection's sending side: its outbound queue, its encoder and its
/// calls in flight. Cheap to clone (all clones are the same link).
#[derive(Debug, Clone)]
pub struct Link {
    outbox: Outbox,
    encoder: FrameEncoder,
    calls: Arc<Calls>,
}

impl Link {
    /// A link with an outbound queue of `queue_bytes` bytes.
    pub fn new(encoder: FrameEncoder, queue_bytes: usize) -> Link {
        Link {
            outbox: Outbox::new(queue_bytes),
            encoder,
            calls: Arc::new(Calls::default()),
        }
    }

    /// How many answers to the peer (responses, pongs, acknowledgements)
    /// could not be queued since the last call; the driver reports them as
    /// an error event, so none is lost silently.
    pub fn take_unsent_answers(&self) -> u64 {
        self.calls.unsent_answers.swap(0, Ordering::AcqRel)
    }

    /// The outbound queue.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The encoder every frame of this link is made with.
    pub fn encoder(&self) -> &FrameEncoder {
        &self.encoder
    }

    /// The calls in flight.
    pub fn calls(&self) -> &Arc<Calls> {
        &self.calls
    }

    /// Queues `{"type":event,"data":data}` (`data: None` sends `{}`),
    /// waiting while the queue is full; spends the task's cooperative
    /// budget like a channel's `send`.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
    ) -> Result<(), LinkError> {
        Ok(self.outbox.emit(&self.encoder, event, data).await?)
    }

    /// Like [`Link::emit`], failing with [`LinkError::Full`] instead of
    /// waiting.
    pub fn try_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: Option<&T>,
    ) -> Result<(), LinkError> {
        Ok(self.outbox.try_emit(&self.encoder, event, data)?)
    }

    /// Raw profile: encodes `bytes` as they are (with the raw encoding)
    /// and queues them, waiting for room.
    pub async fn emit_raw(&self, bytes: &[u8]) -> Result<(), LinkError> {
        let mut dst = BytesMut::with_capacity(bytes.len());
        self.encoder
            .encode_raw(bytes, &mut dst)
            .map_err(LinkError::Encode)?;
        self.send_frame(dst.freeze()).await
    }

    /// Queues an already encoded frame (delimiter included), waiting for
    /// room.
    pub async fn send_frame(&self, frame: Bytes) -> Result<(), LinkError> {
        Ok(self.outbox.send(frame).await?)
    }

    /// Queues an already encoded frame if there is room now.
    pub fn try_send_frame(&self, frame: Bytes) -> Result<(), LinkError> {
        Ok(self.outbox.try_send(frame)?)
    }

    /// Registers a call, queues the frame `build` makes for its id (marked
    /// never to be replayed on another connection), and waits for the
    /// answer (`timeout` zero: no timeout). Dropping the future forgets the
    /// call; a late answer is ignored.
    pub async fn call_with(
        &self,
        build: impl FnOnce(&str) -> Result<Bytes, ProtocolError>,
        timeout: Duration,
    ) -> Result<Response, LinkError> {
        self.calls
            .call(build, |frame| self.outbox.send_call(frame), timeout)
            .await
            .map_err(|e| match e {
                CallFailure::Encode(e) => LinkError::Encode(e),
                CallFailure::Send(e) => e.into(),
                CallFailure::Call(e) => LinkError::Call(e),
            })
    }

    /// Sends `ipcx.request` with `data` and waits for the answer.
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        data: &T,
        timeout: Duration,
    ) -> Result<Response, LinkError> {
        let encoder = &self.encoder;
        self.call_with(
            |n| ext::encode_call(encoder, names::REQUEST, n, Some(data)),
            timeout,
        )
        .await
    }

    /// Sends `ipcx.ping` and returns the round-trip time.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, LinkError> {
        let t0 = tokio::time::Instant::now();
        let encoder = &self.encoder;
        self.call_with(
            |n| ext::encode_call::<()>(encoder, names::PING, n, None),
            timeout,
        )
        .await?;
        Ok(t0.elapsed())
    }

    /// Where answers to the peer's requests go: a try-send into this
    /// link's queue. A closed queue fails the answer with `closed`. Every
    /// answer that fails is also counted for
    /// [`Link::take_unsent_answers`].
    pub fn sink(&self, closed: CallError) -> Sink {
        let outbox = self.outbox.clone();
        let calls = self.calls.clone();
        Arc::new(move |frame| {
            outbox.try_send(frame).map_err(|e| {
                calls.unsent_answers.fetch_add(1, Ordering::AcqRel);
                match e {
                    SendError::Full { .. } => CallError::Backpressure,
                    SendError::Closed { .. } => closed.clone(),
                }
            })
        })
    }
}
