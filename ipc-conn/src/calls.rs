//! Calls over the `ipcx` extension, at run time: correlating requests and
//! pings with their answers ([`Calls`]), answering the peer's requests
//! ([`RequestHandlers`], [`Responder`]), and the handshake mode.
//!
//! The message shapes themselves are `ipc_proto::ext`'s. On disconnect
//! every pending call fails at once with `ERR_IPC_NOT_CONNECTED`; calls are
//! never replayed after a reconnect (the outbox drops queued call frames,
//! which it knows by the flag they were queued with).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipc_proto::ext::{self, CallIn, ResponseIn};
use ipc_proto::{ErrorCode, FrameEncoder, Message, ProtocolError};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

/// The default per-call timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake mode (`docs/protocol.md` §5.2 rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeMode {
    /// No handshake (plain node-ipc peers never answer one). Servers still
    /// answer a hello that arrives.
    #[default]
    Off,
    /// The client sends `ipcx.hello` first and does not wait.
    Announce,
    /// Client: ready only after `ipcx.welcome`. Server: the first message
    /// must be `ipcx.hello`.
    Required,
}

/// Why a call (request, ping, subscription) failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection ended (or there was none) before the answer came.
    #[error("not connected")]
    NotConnected,
    /// The endpoint was destroyed.
    #[error("destroyed")]
    Destroyed,
    /// The outbound queue is full.
    #[error("outbound queue full")]
    Backpressure,
    /// The peer answered with an error.
    #[error("{code}: {message}")]
    Remote {
        /// The peer's error code (e.g. `ERR_IPC_HANDLER`).
        code: String,
        /// The peer's message.
        message: String,
    },
}

impl CallError {
    /// The `ERR_IPC_*` code.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CallError::Timeout(_) => Some(ErrorCode::RequestTimeout),
            CallError::NotConnected => Some(ErrorCode::NotConnected),
            CallError::Destroyed => Some(ErrorCode::Destroyed),
            CallError::Backpressure => Some(ErrorCode::Backpressure),
            CallError::Remote { code, .. } => ErrorCode::from_code_str(code),
        }
    }
}

/// The answer to a request: the responder's `d`, kept as raw JSON until
/// asked for.
#[derive(Debug, Clone, Default)]
pub struct Response {
    data: Option<Box<RawValue>>,
}

impl Response {
    /// Whether the peer answered without data (e.g. no request handler).
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
    }

    /// The raw JSON text of the answer.
    pub fn raw(&self) -> Option<&str> {
        self.data.as_deref().map(RawValue::get)
    }

    /// The answer as `T` (`None` when the answer had no data).
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        self.data
            .as_deref()
            .map(|r| serde_json::from_str(r.get()))
            .transpose()
    }

    /// The answer as a JSON value (`Null` when it had no data).
    pub fn value(&self) -> serde_json::Value {
        self.data::<serde_json::Value>()
            .ok()
            .flatten()
            .unwrap_or(serde_json::Value::Null)
    }
}

impl Response {
    /// The outcome an `ipcx.response` or `ipcx.pong` carries, with the id
    /// of the call it answers (for endpoints that track their calls
    /// themselves, such as the blocking client).
    pub fn from_answer(r: ResponseIn) -> (String, Result<Response, CallError>) {
        let result = match r.e {
            Some(e) => Err(CallError::Remote {
                code: e.code.into_owned(),
                message: e.message.into_owned(),
            }),
            None => Ok(Response { data: r.d }),
        };
        (r.n, result)
    }
}

type Waiter = oneshot::Sender<Result<Response, CallError>>;

/// The calls one endpoint has in flight on one connection.
#[derive(Debug)]
pub struct Calls {
    /// Random, so ids differ between connections (written in base 36
    /// before the sequence number).
    prefix: u64,
    next: AtomicU64,
    pending: Mutex<HashMap<String, Waiter>>,
    /// Answers to the peer (responses, pongs, acknowledgements) that could
    /// not be queued and were not reported yet (`Link::take_unsent_answers`).
    pub(crate) unsent_answers: AtomicU64,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            prefix: random_u64(),
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            unsent_answers: AtomicU64::new(0),
        }
    }
}

/// 64 random bits from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

fn radix36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A registered call; dropping it (e.g. the caller's future was dropped)
/// forgets the call, so a late answer is ignored.
#[derive(Debug)]
pub struct PendingCall {
    calls: Arc<Calls>,
    n: String,
    rx: Option<oneshot::Receiver<Result<Response, CallError>>>,
}

impl PendingCall {
    /// The correlation id to send.
    pub fn id(&self) -> &str {
        &self.n
    }

    /// Waits for the answer (`None` = no timeout).
    pub async fn wait(mut self, timeout: Option<Duration>) -> Result<Response, CallError> {
        let Some(rx) = self.rx.take() else {
            return Err(CallError::NotConnected);
        };
        let r = match timeout {
            Some(t) => match tokio::time::timeout(t, rx).await {
                Ok(r) => r,
                Err(_) => return Err(CallError::Timeout(t)),
            },
            None => rx.await,
        };
        r.unwrap_or(Err(CallError::NotConnected))
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.n);
    }
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new call.
    pub fn start(self: &Arc<Self>) -> PendingCall {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let n = format!("{}{}", radix36(self.prefix), radix36(k));
        let (tx, rx) = oneshot::channel();
        self.lock().insert(n.clone(), tx);
        PendingCall {
            calls: self.clone(),
            n,
            rx: Some(rx),
        }
    }

    /// Registers a call, sends the frame `build` makes for its id through
    /// `send`, and waits for the answer (`timeout` zero = no timeout).
    pub async fn call<E, Fut>(
        self: &Arc<Self>,
        build: impl FnOnce(&str) -> Result<Bytes, ProtocolError>,
        send: impl FnOnce(Bytes) -> Fut,
        timeout: Duration,
    ) -> Result<Response, CallFailure<E>>
    where
        Fut: std::future::Future<Output = Result<(), E>>,
    {
        let call = self.start();
        let frame = build(call.id()).map_err(CallFailure::Encode)?;
        send(frame).await.map_err(CallFailure::Send)?;
        call.wait((!timeout.is_zero()).then_some(timeout))
            .await
            .map_err(CallFailure::Call)
    }

    /// How many calls are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no call is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Settles the call an `ipcx.response` or `ipcx.pong` answers. Returns
    /// false for an answer to an unknown or expired call (ignored), and the
    /// error for a malformed one (whose call, if its id can be read, fails
    /// with that error at once).
    pub fn resolve(&self, msg: &Message) -> Result<bool, ProtocolError> {
        let r = match ext::decode::<ResponseIn>(msg) {
            Ok(r) => r,
            Err(e) => {
                // The caller it answers (if it can be named) fails now
                // instead of waiting for its timeout.
                let waiter = ext::call_id(msg).and_then(|n| self.lock().remove(&n));
                if let Some(tx) = waiter {
                    // A caller that gave up (dropped its future) waits for
                    // nothing: there is no one to tell.
                    let _ = tx.send(Err(CallError::Remote {
                        code: e.code().as_str().to_owned(),
                        message: e.message().to_owned(),
                    }));
                }
                return Err(e);
            }
        };
        let Some(tx) = self.lock().remove(&r.n) else {
            tracing::debug!(n = %r.n, "answer to an unknown or expired call ignored");
            return Ok(false);
        };
        let result = match r.e {
            Some(e) => Err(CallError::Remote {
                code: e.code.into_owned(),
                message: e.message.into_owned(),
            }),
            None => Ok(Response { data: r.d }),
        };
        // The caller may have given up (its future was dropped): nothing
        // is lost that anyone waits for.
        let _ = tx.send(result);
        Ok(true)
    }

    /// Fails every call in flight.
    pub fn fail_all(&self, err: CallError) {
        let drained: Vec<Waiter> = self.lock().drain().map(|(_, w)| w).collect();
        for w in drained {
            let _ = w.send(Err(err.clone()));
        }
    }
}

/// Why [`Calls::call`] failed.
#[derive(Debug)]
pub enum CallFailure<E> {
    /// The call frame could not be encoded.
    Encode(ProtocolError),
    /// The connection did not take the frame.
    Send(E),
    /// No (good) answer.
    Call(CallError),
}

/// Where a responder writes its answer: a try-send into a connection's
/// outbound queue.
pub type Sink = Arc<dyn Fn(Bytes) -> Result<(), CallError> + Send + Sync>;

/// Answers one request; may be cloned and moved into a task to answer
/// later. Only the first answer is sent.
#[derive(Clone)]
pub struct Responder {
    n: Arc<str>,
    sink: Sink,
    encoder: FrameEncoder,
    sent: Arc<AtomicBool>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("n", &self.n)
            .field("sent", &self.is_sent())
            .finish()
    }
}

/// Why a responder could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// This request was answered already.
    #[error("the request was answered already")]
    AlreadySent,
    /// The answer could not be encoded.
    #[error("cannot encode the answer: {0}")]
    Encode(#[source] ProtocolError),
    /// The connection cannot take it.
    #[error("cannot send the answer: {0}")]
    Send(#[source] CallError),
}

impl Responder {
    /// A responder for request `n`.
    pub fn new(n: &str, sink: Sink, encoder: FrameEncoder) -> Responder {
        Responder {
            n: n.into(),
            sink,
            encoder,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether an answer was sent.
    pub fn is_sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }

    fn claim(&self) -> Result<(), RespondError> {
        if self.sent.swap(true, Ordering::SeqCst) {
            Err(RespondError::AlreadySent)
        } else {
            Ok(())
        }
    }

    fn deliver(&self, frame: Result<Bytes, ProtocolError>) -> Result<(), RespondError> {
        (self.sink)(frame.map_err(RespondError::Encode)?).map_err(RespondError::Send)
    }

    /// Answers with `data`.
    pub fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), RespondError> {
        self.claim()?;
        self.deliver(ext::encode_response(&self.encoder, &self.n, Some(data)))
    }

    /// Answers without data.
    pub fn send_empty(&self) -> Result<(), RespondError> {
        self.claim()?;
        self.deliver(ext::encode_response::<()>(&self.encoder, &self.n, None))
    }

    /// Answers with an error.
    pub fn send_error(&self, code: &str, message: &str) -> Result<(), RespondError> {
        self.claim()?;
        self.deliver(ext::encode_error(&self.encoder, &self.n, code, message))
    }
}

/// One request as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request<P> {
    data: Option<Arc<RawValue>>,
    peer: P,
    responder: Responder,
}

impl<P> Request<P> {
    /// The request's data as `T` (absent data reads as JSON `null`).
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.data.as_deref().map(RawValue::get).unwrap_or("null"))
    }

    /// The raw JSON text of the request's data.
    pub fn raw(&self) -> Option<&str> {
        self.data.as_deref().map(RawValue::get)
    }

    /// Who sent it.
    pub fn peer(&self) -> &P {
        &self.peer
    }

    /// Answers with `data` (only the first answer counts).
    pub fn respond<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), RespondError> {
        self.responder.send(data)
    }

    /// A responder to answer later, e.g. from a spawned task.
    pub fn responder(&self) -> Responder {
        self.responder.clone()
    }
}

/// What a request handler tells the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let later handlers see the request too.
    Continue,
    /// Stop: later handlers do not run.
    Stop,
}

type ReqHandler<P> = Arc<dyn Fn(&Request<P>) -> Result<Flow, String> + Send + Sync>;

/// Request handlers, run in registration order (`docs/protocol.md` §5.2 rule 3).
pub struct RequestHandlers<P> {
    list: Mutex<Arc<Vec<ReqHandler<P>>>>,
}

impl<P> Default for RequestHandlers<P> {
    fn default() -> Self {
        RequestHandlers {
            list: Mutex::new(Arc::new(Vec::new())),
        }
    }
}

impl<P> std::fmt::Debug for RequestHandlers<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHandlers")
            .field("handlers", &self.lock().len())
            .finish()
    }
}

impl<P> RequestHandlers<P> {
    fn lock(&self) -> MutexGuard<'_, Arc<Vec<ReqHandler<P>>>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a handler. It answers with [`Request::respond`] (now or later
    /// through [`Request::responder`]), returns [`Flow::Stop`] to keep later
    /// handlers from running, or `Err(message)` to answer with an
    /// `ERR_IPC_HANDLER` error.
    pub fn add(&self, f: impl Fn(&Request<P>) -> Result<Flow, String> + Send + Sync + 'static) {
        let mut l = self.lock();
        let mut v: Vec<ReqHandler<P>> = l.to_vec();
        v.push(Arc::new(f));
        *l = Arc::new(v);
    }

    /// Removes every handler.
    pub fn clear(&self) {
        *self.lock() = Arc::new(Vec::new());
    }

    /// Runs the handlers for one `ipcx.request` message. With no handler the
    /// request is answered at once without data; a handler error or panic is
    /// answered with `ERR_IPC_HANDLER`. Returns the handler panics' messages.
    ///
    /// A malformed request is answered with `ERR_IPC_INVALID_MESSAGE` when
    /// its id can be read; otherwise it is returned as the error, for the
    /// caller to report.
    pub fn dispatch(
        &self,
        msg: &Message,
        peer: P,
        sink: Sink,
        encoder: &FrameEncoder,
    ) -> Result<Vec<String>, ProtocolError> {
        let c = match ext::decode::<CallIn>(msg) {
            Ok(c) => c,
            Err(e) => {
                return match ext::call_id(msg) {
                    Some(n) => {
                        let r = Responder::new(&n, sink, encoder.clone());
                        if let Err(err) = r.send_error(e.code().as_str(), e.message()) {
                            tracing::debug!("cannot answer a malformed request: {err}");
                        }
                        Ok(Vec::new())
                    }
                    None => Err(e),
                };
            }
        };
        let responder = Responder::new(&c.n, sink, encoder.clone());
        let list = self.lock().clone();
        let mut panics = Vec::new();
        if list.is_empty() {
            if let Err(e) = responder.send_empty() {
                tracing::debug!("cannot answer a request: {e}");
            }
            return Ok(panics);
        }
        let req = Request {
            data: c.d.map(Arc::from),
            peer,
            responder,
        };
        for h in list.iter() {
            match catch_unwind(AssertUnwindSafe(|| h(&req))) {
                Ok(Ok(Flow::Continue)) => {}
                Ok(Ok(Flow::Stop)) => break,
                Ok(Err(message)) => {
                    // A failure to queue it is counted by the sink.
                    if let Err(e) = req
                        .responder
                        .send_error(ErrorCode::Handler.as_str(), &message)
                    {
                        tracing::debug!("cannot answer a request: {e}");
                    }
                    break;
                }
                Err(p) => {
                    let message = p
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "request handler panicked".to_owned());
                    if let Err(e) = req
                        .responder
                        .send_error(ErrorCode::Handler.as_str(), &message)
                    {
                        tracing::debug!("cannot answer a request: {e}");
                    }
                    panics.push(message);
                    break;
                }
            }
        }
        Ok(panics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_proto::ext::{encode_call, names};
    use ipc_proto::{CodecConfig, FrameDecoder, Inbound};

    fn decode(frame: &Bytes) -> Message {
        let mut dec = FrameDecoder::new(CodecConfig::fast()).unwrap();
        let mut buf = bytes::BytesMut::from(&frame[..]);
        match dec.decode(&mut buf, std::time::Instant::now()).unwrap() {
            Some(Inbound::Message(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn calls_resolve_time_out_and_fail() {
        let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
        let calls = Arc::new(Calls::default());
        let a = calls.start();
        let b = calls.start();
        assert_ne!(a.id(), b.id());
        let resp = encode_call(&enc, names::RESPONSE, a.id(), Some(&42)).unwrap();
        assert!(calls.resolve(&decode(&resp)).unwrap());
        assert_eq!(a.wait(None).await.unwrap().data::<i32>().unwrap(), Some(42));
        // late answers to unknown ids are ignored
        assert!(!calls.resolve(&decode(&resp)).unwrap());
        assert_eq!(
            b.wait(Some(Duration::from_millis(10))).await.unwrap_err(),
            CallError::Timeout(Duration::from_millis(10))
        );
        assert!(calls.is_empty(), "timed-out calls are forgotten");
        let c = calls.start();
        calls.fail_all(CallError::NotConnected);
        assert_eq!(c.wait(None).await.unwrap_err(), CallError::NotConnected);
        let d = calls.start();
        drop(d);
        assert!(calls.is_empty(), "a dropped call is forgotten");
    }

    #[test]
    fn handlers_run_in_order_stop_and_errors() {
        let enc = FrameEncoder::new(CodecConfig::fast()).unwrap();
        let sent = Arc::new(Mutex::new(Vec::<Bytes>::new()));
        let s2 = sent.clone();
        let sink: Sink = Arc::new(move |b| {
            s2.lock().unwrap().push(b);
            Ok(())
        });
        let req = decode(&encode_call(&enc, names::REQUEST, "n1", Some(&7)).unwrap());
        let h: RequestHandlers<()> = RequestHandlers::default();
        // no handler: empty answer
        h.dispatch(&req, (), sink.clone(), &enc).unwrap();
        assert_eq!(
            &sent.lock().unwrap()[0][..],
            b"{\"type\":\"ipcx.response\",\"data\":{\"n\":\"n1\"}}\x0c"
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
        h.add(move |_| {
            o1.lock().unwrap().push(1);
            Ok(Flow::Continue)
        });
        h.add(move |r| {
            o2.lock().unwrap().push(2);
            r.respond(&(r.data::<i32>().unwrap() * 2)).unwrap();
            assert!(matches!(r.respond(&0), Err(RespondError::AlreadySent)));
            Ok(Flow::Stop)
        });
        h.add(move |_| {
            o3.lock().unwrap().push(3);
            Ok(Flow::Continue)
        });
        h.dispatch(&req, (), sink.clone(), &enc).unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 2]);
        assert_eq!(
            &sent.lock().unwrap()[1][..],
            b"{\"type\":\"ipcx.response\",\"data\":{\"n\":\"n1\",\"d\":14}}\x0c"
        );
        let h2: RequestHandlers<()> = RequestHandlers::default();
        h2.add(|_| Err("nope".into()));
        h2.dispatch(&req, (), sink.clone(), &enc).unwrap();
        assert_eq!(
            &sent.lock().unwrap()[2][..],
            &b"{\"type\":\"ipcx.response\",\"data\":{\"n\":\"n1\",\"e\":{\"code\":\"ERR_IPC_HANDLER\",\"message\":\"nope\"}}}\x0c"[..]
        );
        let h3: RequestHandlers<()> = RequestHandlers::default();
        h3.add(|_| panic!("kaboom"));
        assert_eq!(
            h3.dispatch(&req, (), sink, &enc).unwrap(),
            vec!["kaboom".to_string()]
        );
        assert!(std::str::from_utf8(&sent.lock().unwrap()[3])
            .unwrap()
            .contains("kaboom"));
    }
}
