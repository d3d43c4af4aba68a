//! Windows named pipes on tokio's named-pipe support (byte mode), with a
//! shutdown that closes the pipe (see [`PipeStream`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};

use crate::TransportError;

/// `ERROR_PIPE_BUSY`: every instance of the pipe is in use.
const ERROR_PIPE_BUSY: i32 = 231;

pub(crate) fn create_first(name: &str) -> Result<NamedPipeServer, TransportError> {
    ServerOptions::new()
        .first_pipe_instance(true)
        .create(name)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                TransportError::AddressInUse {
                    endpoint: format!("pipe:{name}"),
                    reason: "another server already owns this pipe".into(),
                    source: Some(e),
                }
            } else {
                TransportError::Bind {
                    endpoint: format!("pipe:{name}"),
                    source: e,
                }
            }
        })
}

pub(crate) fn create_next(name: &str) -> Result<NamedPipeServer, TransportError> {
    ServerOptions::new()
        .create(name)
        .map_err(|e| TransportError::Accept {
            endpoint: format!("pipe:{name}"),
            source: e,
        })
}

pub(crate) async fn connect(
    name: &str,
    limit: Option<Duration>,
) -> Result<NamedPipeClient, TransportError> {
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        match ClientOptions::new().open(name) {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                if let (Some(d), Some(l)) = (deadline, limit) {
                    if tokio::time::Instant::now() >= d {
                        return Err(TransportError::Timeout {
                            endpoint: format!("pipe:{name}"),
                            operation: "connect",
                            after: l,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(TransportError::Connect {
                    endpoint: format!("pipe:{name}"),
                    source: e,
                })
            }
        }
    }
}

/// One end of a connected pipe, client or server.
#[derive(Debug)]
enum End {
    Client(NamedPipeClient),
    Server(NamedPipeServer),
}

macro_rules! on_end {
    ($end:expr, $p:ident => $e:expr) => {
        match $end {
            End::Client($p) => $e,
            End::Server($p) => $e,
        }
    };
}

/// What the handles of one pipe end share.
#[derive(Debug)]
struct Shared {
    end: End,
    /// Set when a handle shuts the pipe down: every handle lets go of the
    /// pipe, and once the last one has, it is closed.
    closed: AtomicBool,
    /// The task waiting to read, woken when the pipe is shut down.
    reader: Mutex<Option<Waker>>,
}

/// A connected named pipe (either end), or one half of one.
///
/// A pipe has no half-close: shutting the write side down closes the pipe
/// for both directions once everything written so far has gone out, so the
/// peer reads it and then end-of-stream, and reads on this side end too.
/// Without that a peer waiting for the end of the stream (as a graceful
/// server stop does) would wait until its time limit.
#[derive(Debug)]
pub struct PipeStream {
    shared: Option<Arc<Shared>>,
}

impl PipeStream {
    pub(crate) fn client(pipe: NamedPipeClient) -> Self {
        Self::new(End::Client(pipe))
    }

    pub(crate) fn server(pipe: NamedPipeServer) -> Self {
        Self::new(End::Server(pipe))
    }

    fn new(end: End) -> Self {
        PipeStream {
            shared: Some(Arc::new(Shared {
                end,
                closed: AtomicBool::new(false),
                reader: Mutex::new(None),
            })),
        }
    }

    /// A second handle on the same pipe end (used to split a stream into
    /// its read and write halves without a lock).
    pub(crate) fn handle(&self) -> Self {
        PipeStream {
            shared: self.shared.clone(),
        }
    }

    /// The pipe, unless this handle or another has shut it down (then this
    /// handle lets go of it).
    fn open(&mut self) -> Option<&Shared> {
        if self
            .shared
            .as_ref()
            .is_some_and(|s| s.closed.load(Ordering::Acquire))
        {
            self.shared = None;
        }
        self.shared.as_deref()
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the pipe was shut down")
}

impl AsyncRead for PipeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(s) = &this.shared {
            *s.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        }
        // Checked after the waker is stored, so a shutdown in between is
        // not missed. A shut-down pipe reads as end-of-stream.
        let Some(s) = this.open() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            ready!(on_end!(&s.end, p => p.poll_read_ready(cx)))?;
            match on_end!(&s.end, p => p.try_read(buf.initialize_unfilled())) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The readiness was stale; tokio has cleared it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for PipeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(s) = self.get_mut().open() else {
            return Poll::Ready(Err(closed_error()));
        };
        loop {
            ready!(on_end!(&s.end, p => p.poll_write_ready(cx)))?;
            match on_end!(&s.end, p => p.try_write(buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(s) = self.get_mut().open() else {
            return Poll::Ready(Err(closed_error()));
        };
        loop {
            ready!(on_end!(&s.end, p => p.poll_write_ready(cx)))?;
            match on_end!(&s.end, p => p.try_write_vectored(bufs)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A write hands its bytes to the system before it returns.
        Poll::Ready(Ok(()))
    }

    /// Closes the pipe: what was written is still delivered (a pipe's
    /// pending writes outlive its handle), then the peer reads
    /// end-of-stream. Reads on this pipe end end as well.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(s) = self.get_mut().shared.take() {
            s.closed.store(true, Ordering::Release);
            let reader = s.reader.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(w) = reader {
                w.wake();
            }
        }
        Poll::Ready(Ok(()))
    }
}
