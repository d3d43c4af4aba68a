//! The client's background task: connect, run one connection through the
//! shared driver with the client's [`Role`], follow the retry policy,
//! repeat.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipc_conn::{
    drive, spawn_writer, Budget, CallError, Dispatcher, FrameReader, Link, OnWriteFailure,
    ReadEvent, RequestHandlers, Role, Step, WriterExit,
};
use ipc_proto::ext::{self, names, End, Hello, Welcome};
use ipc_proto::{ErrorCode, FrameDecoder, Inbound, Message, ProtocolError};
use ipc_transport::{Endpoint, Stream};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::{lock, ClientState, Inner};
use crate::error::ClientError;
use crate::event::ClientEvent;
use crate::retry::{OnClose, OnTimer, RetryState};

pub(super) async fn supervise(inner: Arc<Inner>) {
    let mut retry = RetryState::new(&inner.retry_config());
    loop {
        inner.set_state(ClientState::Connecting);
        let attempt = tokio::select! {
            biased;
            _ = inner.explicit.cancelled() => break,
            r = crate::assured::connect(&inner.endpoint, &inner.config.connect, inner.config.codec.profile) => r,
        };
        let violation = match attempt {
            Ok(stream) => {
                let failure = run_connection(&inner, stream, &mut retry).await;
                // Calls never outlive their connection, nor are replayed.
                inner.link.calls().fail_all(CallError::NotConnected);
                inner.link.outbox().discard_calls();
                let refused = inner.refused_reconnect.swap(false, Ordering::SeqCst);
                match failure {
                    Some(e) => {
                        let tls_retry = inner.config.retry_on_tls_failure
                            && matches!(e, ClientError::TlsRejected { .. });
                        let violation = !e.is_retryable() && !tls_retry;
                        if !inner.explicit() {
                            inner.error(e).await;
                        }
                        violation || refused
                    }
                    None => refused,
                }
            }
            Err(source) => {
                let tls_retry = inner.config.retry_on_tls_failure
                    && matches!(inner.endpoint, Endpoint::Tls { .. });
                let e = ClientError::Connect {
                    endpoint: inner.name.clone(),
                    source,
                };
                let violation = !e.is_retryable() && !tls_retry;
                if !inner.explicit() {
                    inner.error(e).await;
                }
                violation
            }
        };
        if inner.explicit() {
            break;
        }
        let cfg = inner.retry_config();
        inner.set_state(ClientState::Disconnected);
        match retry.on_close(&cfg, false, violation) {
            OnClose::Destroy => {
                // The queue closes before anyone can see the client
                // destroyed: an emit from then on is an error.
                let undelivered = close_queue(&inner);
                inner.deliver(ClientEvent::Disconnect).await;
                inner.set_state(ClientState::Destroyed);
                inner.deliver(ClientEvent::Destroy).await;
                report_undelivered(&inner, undelivered).await;
                return;
            }
            OnClose::RetryAfter(delay) => {
                inner.deliver(ClientEvent::Disconnect).await;
                tokio::select! {
                    biased;
                    _ = inner.explicit.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
                match retry.on_timer(&inner.retry_config(), inner.explicit()) {
                    OnTimer::Stop => break,
                    OnTimer::Destroy => {
                        let undelivered = close_queue(&inner);
                        inner.set_state(ClientState::Destroyed);
                        inner.deliver(ClientEvent::Destroy).await;
                        report_undelivered(&inner, undelivered).await;
                        return;
                    }
                    OnTimer::Reconnect => {}
                }
            }
        }
    }
    inner.set_state(ClientState::Destroyed);
}

/// The client is finished: its queue refuses new messages, and what it
/// still holds (frames, bytes) will never be written.
fn close_queue(inner: &Inner) -> (usize, usize) {
    inner.link.outbox().abort()
}

/// Reports what [`close_queue`] dropped.
async fn report_undelivered(inner: &Inner, (frames, bytes): (usize, usize)) {
    if frames > 0 {
        inner
            .error(ClientError::Undelivered {
                endpoint: inner.name.clone(),
                frames,
                bytes,
            })
            .await;
    }
}

/// Runs one connection until it ends; returns the error that ended it, if
/// any (`None` = the peer closed cleanly, or the client was stopped).
async fn run_connection(
    inner: &Arc<Inner>,
    stream: Stream,
    retry: &mut RetryState,
) -> Option<ClientError> {
    let (rd, wr) = stream.into_split();
    if let super::Protocol::NetIpc { messagepack } = inner.config.protocol {
        return super::netipc::run(inner, rd, wr, messagepack, retry).await;
    }
    run_halves(inner, rd, wr, retry).await
}

/// [`run_connection`] on the halves of a node-ipc stream (or of the pipe of
/// a net-ipc bridge).
pub(super) async fn run_halves<R, W>(
    inner: &Arc<Inner>,
    rd: R,
    mut wr: W,
    retry: &mut RetryState,
) -> Option<ClientError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let decoder = match FrameDecoder::new(inner.config.codec.clone()) {
        Ok(d) => d,
        Err(e) => return Some(ClientError::Config(e)),
    };
    let conn = inner.explicit.child_token();
    let mut reader = FrameReader::new(rd, decoder, conn.clone());
    // What must precede every queued message on a new connection: the hello
    // and the renewal of subscriptions.
    let preface = preface(inner);
    if !preface.is_empty() {
        if let Err(source) = wr.write_all(&preface).await {
            return Some(ClientError::Io {
                endpoint: inner.name.clone(),
                source,
            });
        }
    }
    if inner.config.handshake == ipc_conn::HandshakeMode::Required {
        if let Err(e) = await_welcome(inner, &mut reader).await {
            return Some(e);
        }
    }
    retry.on_connect(&inner.retry_config());
    inner.set_state(ClientState::Connected);
    inner.deliver(ClientEvent::Connect).await;
    let writer = spawn_writer(
        &inner.link,
        wr,
        conn.clone(),
        inner.sync_gate.clone(),
        OnWriteFailure::KeepQueue,
    );
    let mut role = ClientRole { inner };
    let mut failure = drive(&mut role, &mut reader).await;
    // The outbox outlives the connection: stop the writer, and what it did
    // not write goes back to the queue for the next connection.
    conn.cancel();
    match writer.await {
        Ok(WriterExit::Failed(source)) if failure.is_none() && !inner.explicit() => {
            failure = Some(io_failure(inner, source));
        }
        _ => {}
    }
    failure
}

/// The client's side of the connection driver.
struct ClientRole<'a> {
    inner: &'a Arc<Inner>,
}

impl Role for ClientRole<'_> {
    type Event = ClientEvent;
    type Peer = ();
    type Error = ClientError;

    #[inline]
    fn link(&self) -> &Link {
        &self.inner.link
    }

    #[inline]
    fn events(&self) -> &Dispatcher<ClientEvent> {
        &self.inner.events
    }

    #[inline]
    fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    fn error_event(&self, error: ClientError) -> ClientEvent {
        ClientEvent::Error(Arc::new(error))
    }

    fn answers_unsent(&self, count: u64) -> ClientError {
        ClientError::AnswersUnsent {
            endpoint: self.inner.name.clone(),
            count,
        }
    }

    #[inline]
    fn label(&self) -> &str {
        &self.inner.name
    }

    #[inline]
    fn extension(&self) -> bool {
        self.inner.config.extension
    }

    fn requests(&self) -> (&RequestHandlers<()>, ()) {
        (&self.inner.requests, ())
    }

    fn closed_call_error(&self) -> CallError {
        CallError::Destroyed
    }

    fn request_panicked(&self, message: String) -> ClientEvent {
        ClientEvent::Error(Arc::new(ClientError::Handler {
            event: names::REQUEST.into(),
            message,
        }))
    }

    fn idle_timeout(&self) -> Option<Duration> {
        self.inner.config.idle_timeout
    }

    fn idle_error(&self) -> ClientError {
        ClientError::Idle {
            endpoint: self.inner.name.clone(),
            after: self.inner.config.idle_timeout.unwrap_or_default(),
        }
    }

    /// Sync mode with a timeout: the next message is released after this
    /// long without an answer.
    #[inline]
    fn deadline(&self) -> Option<Instant> {
        match (&self.inner.sync_gate, self.inner.config.sync_timeout) {
            (Some(gate), Some(limit)) if !gate.is_ready() => Some(Instant::now() + limit),
            _ => None,
        }
    }

    async fn timed_out(&mut self) -> Step<ClientError> {
        if let Some(gate) = &self.inner.sync_gate {
            gate.release();
        }
        self.inner
            .error(ClientError::SyncTimeout {
                endpoint: self.inner.name.clone(),
            })
            .await;
        Step::Continue
    }

    #[inline]
    fn received(&mut self) {
        // Whatever the server sends answers the message in flight (sync).
        if let Some(g) = &self.inner.sync_gate {
            g.release();
        }
    }

    async fn extension_message(&mut self, m: &Message) -> Step<ClientError> {
        match m.event() {
            names::END => {
                let end = ext::decode::<End>(m).ok();
                tracing::debug!(endpoint = %self.inner.name, ?end, "server announced a close");
                self.inner.note_end(end.as_ref());
                if end.is_some_and(|e| !e.reconnect) {
                    self.inner.refused_reconnect.store(true, Ordering::SeqCst);
                }
            }
            names::WELCOME => {
                if let Ok(w) = ext::decode::<Welcome>(m) {
                    *lock(&self.inner.session_id) = Some(w.id);
                }
            }
            other => {
                tracing::debug!(endpoint = %self.inner.name, event = other, "unexpected extension message ignored")
            }
        }
        Step::Continue
    }

    #[inline]
    fn event(&mut self, item: Inbound) -> ClientEvent {
        match item {
            Inbound::Message(m) => ClientEvent::Message(m),
            Inbound::Raw(b) => ClientEvent::Data(b),
        }
    }

    fn protocol_error(&self, source: ProtocolError) -> ClientError {
        ClientError::Protocol {
            endpoint: self.inner.name.clone(),
            source,
        }
    }

    fn io_error(&self, source: std::io::Error) -> ClientError {
        io_failure(self.inner, source)
    }
}

/// Classifies a transport failure of an established connection.
fn io_failure(inner: &Inner, source: std::io::Error) -> ClientError {
    if ipc_transport::is_tls_auth_failure(&source) {
        ClientError::TlsRejected {
            endpoint: inner.name.clone(),
            source,
        }
    } else {
        ClientError::Io {
            endpoint: inner.name.clone(),
            source,
        }
    }
}

/// The frames written before anything queued on a new connection.
fn preface(inner: &Inner) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = inner.link.encoder();
    if inner.config.handshake != ipc_conn::HandshakeMode::Off {
        let hello = Hello {
            v: ext::VERSION,
            id: lock(&inner.session_id).clone(),
            extras: inner.config.hello.clone(),
            features: ext::features(),
        };
        match encoder.encode_to_bytes(names::HELLO, Some(&hello)) {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => tracing::warn!(endpoint = %inner.name, "cannot encode the hello: {e}"),
        }
    }
    let topics: Vec<String> = lock(&inner.topics).iter().cloned().collect();
    if inner.config.extension && !topics.is_empty() {
        // Nobody waits for this acknowledgement: its id is not registered,
        // so the answer is ignored.
        let body = ext::TopicsOut {
            n: ext::RESUBSCRIBE_ID,
            topics: &topics,
        };
        match encoder.encode_to_bytes(names::SUB, Some(&body)) {
            Ok(f) => out.extend_from_slice(&f),
            Err(e) => tracing::warn!(endpoint = %inner.name, "cannot renew subscriptions: {e}"),
        }
    }
    out
}

/// Required handshake: the first thing the server sends must be
/// `ipcx.welcome` (an `ipcx.end` means it refused us).
async fn await_welcome<R: tokio::io::AsyncRead + Unpin>(
    inner: &Inner,
    reader: &mut FrameReader<R>,
) -> Result<(), ClientError> {
    let fail = |code, reason: String| ClientError::Handshake {
        endpoint: inner.name.clone(),
        code,
        reason,
    };
    let limit = inner.config.handshake_timeout;
    let ev = match tokio::time::timeout(limit, reader.next()).await {
        Ok(ev) => ev,
        Err(_) => {
            return Err(fail(
                ErrorCode::HandshakeTimeout,
                format!("no ipcx.welcome within {limit:?}"),
            ))
        }
    };
    match ev {
        ReadEvent::Item(Inbound::Message(m)) if m.event() == names::WELCOME => {
            if let Ok(w) = ext::decode::<Welcome>(&m) {
                *lock(&inner.session_id) = Some(w.id);
            }
            Ok(())
        }
        ReadEvent::Item(Inbound::Message(m)) if m.event() == names::END => {
            let end = ext::decode::<End>(&m).ok();
            if end.as_ref().is_some_and(|e| !e.reconnect) {
                inner.refused_reconnect.store(true, Ordering::SeqCst);
            }
            let reason = end.map(|e| e.reason_text()).unwrap_or_default();
            Err(fail(
                ErrorCode::HandshakeRequired,
                format!("the server refused the handshake: {reason}"),
            ))
        }
        ReadEvent::Item(_) => Err(fail(
            ErrorCode::HandshakeRequired,
            "the server sent something else before ipcx.welcome".into(),
        )),
        ReadEvent::Protocol(source) => Err(ClientError::Protocol {
            endpoint: inner.name.clone(),
            source,
        }),
        ReadEvent::Io(source) => Err(ClientError::Io {
            endpoint: inner.name.clone(),
            source,
        }),
        ReadEvent::Eof | ReadEvent::Cancelled => Err(fail(
            ErrorCode::HandshakeRequired,
            "the connection closed before ipcx.welcome".into(),
        )),
    }
}
