//! The publish/subscribe broker: who is subscribed to what, fan-out of a
//! frame to many sockets without waiting for a slow one, and the
//! subscription and publication messages of the `ipcx` extension.

use std::sync::Arc;

use bytes::Bytes;
use ipc_conn::{RespondError, Responder, SendError};
use ipc_proto::ext::{self, names, PubAck, PubIn, TopicsAck, TopicsIn};
use ipc_proto::{Message, ProtocolError};

use super::{lock, Inner};
use crate::error::ServerError;
use crate::event::ServerEvent;
use crate::socket::{Peer, Socket};

impl Inner {
    /// Handles one `ipcx.*` message from a client that the connection
    /// driver leaves to the server: subscriptions, publications, the close
    /// notice.
    pub(super) async fn broker_message(&self, socket: &Socket, m: &Message) {
        let max = self.config.codec.max_event_name_length;
        let responder = |n: &str| Responder::new(n, socket.sink(), self.encoder.clone());
        match m.event() {
            names::SUB | names::UNSUB => {
                let req = match ext::decode::<TopicsIn>(m) {
                    Ok(req) => req,
                    Err(e) => return self.malformed(socket, m, e).await,
                };
                let responder = responder(&req.n);
                if let Some(bad) = req
                    .topics
                    .iter()
                    .find_map(|t| ext::validate_topic(t, max).err())
                {
                    answered(
                        socket,
                        responder.send_error(bad.code().as_str(), &bad.to_string()),
                    );
                    return;
                }
                self.subscribe(socket, &req.topics, m.event() == names::SUB);
                let ack = TopicsAck {
                    topics: socket.topics(),
                };
                answered(socket, responder.send(&ack));
            }
            names::PUB => {
                let req = match ext::decode::<PubIn>(m) {
                    Ok(req) => req,
                    Err(e) => return self.malformed(socket, m, e).await,
                };
                let responder = req.n.as_deref().map(responder);
                if let Err(bad) = ext::validate_topic(&req.topic, max) {
                    if let Some(r) = responder {
                        answered(socket, r.send_error(bad.code().as_str(), &bad.to_string()));
                    }
                    return;
                }
                let frame = match self
                    .encoder
                    .encode_to_bytes(&req.topic, req.message.as_deref())
                {
                    Ok(f) => f,
                    Err(bad) => {
                        if let Some(r) = responder {
                            answered(socket, r.send_error(bad.code().as_str(), &bad.to_string()));
                        }
                        return;
                    }
                };
                let skip = self.config.no_local.then_some(socket);
                let delivered = self.publish_frame(&req.topic, &frame, skip).await;
                if let Some(r) = responder {
                    answered(socket, r.send(&PubAck { delivered }));
                }
            }
            names::END => {
                tracing::debug!(peer = %socket.label(), "peer announced a close");
                if let Ok(end) = ext::decode::<ext::End>(m) {
                    socket.set_close_reason(end.reason_text());
                }
            }
            other => {
                tracing::debug!(peer = %socket.label(), event = other, "unexpected extension message ignored")
            }
        }
    }

    /// A malformed subscription or publication: answered with its error
    /// when the requester's call id can be read, otherwise reported as an
    /// `error` event naming the peer.
    async fn malformed(&self, socket: &Socket, m: &Message, e: ProtocolError) {
        match ext::call_id(m) {
            Some(n) => {
                let r = Responder::new(&n, socket.sink(), self.encoder.clone());
                answered(socket, r.send_error(e.code().as_str(), e.message()));
            }
            None => {
                let peer = socket.label().to_owned();
                self.error(
                    Some(Peer::Socket(socket.clone())),
                    ServerError::Protocol { peer, source: e },
                )
                .await;
            }
        }
    }

    /// Queues `frame` to each socket (except `skip`) without waiting; a
    /// socket whose queue is full is disconnected with an error event.
    pub(super) async fn fan_out(
        &self,
        frame: &Bytes,
        sockets: &[Socket],
        skip: Option<&Socket>,
    ) -> usize {
        let mut sent = 0;
        let mut slow = Vec::new();
        for s in sockets.iter().filter(|s| Some(*s) != skip) {
            match s.link().outbox().try_send_copy(frame) {
                Ok(()) => sent += 1,
                Err(e @ SendError::Full { .. }) => slow.push((s.clone(), s.link_error(e.into()))),
                // Closing: its end is reported by its own task.
                Err(SendError::Closed { .. }) => {}
            }
        }
        // Like `emit`, spend the task's cooperative budget: a broadcast loop
        // yields now and then, so on a current-thread runtime the writers
        // start before the whole run is queued.
        tokio::task::coop::consume_budget().await;
        for (s, err) in slow {
            tracing::warn!(peer = %s.label(), "disconnecting a peer that does not keep up: {err}");
            self.deliver(ServerEvent::Error {
                peer: Some(Peer::Socket(s.clone())),
                error: Arc::new(err),
            })
            .await;
            s.destroy();
        }
        sent
    }

    pub(super) async fn publish_frame(
        &self,
        topic: &str,
        frame: &Bytes,
        skip: Option<&Socket>,
    ) -> usize {
        let subscribers = lock(&self.subs).get(topic).cloned();
        match subscribers {
            Some(list) => self.fan_out(frame, &list, skip).await,
            None => 0,
        }
    }

    /// Adds (or removes) `topics` for `socket`.
    fn subscribe(&self, socket: &Socket, topics: &[String], add: bool) {
        let mut subs = lock(&self.subs);
        let mut mine = lock(socket.topic_set());
        for t in topics {
            let mut v: Vec<Socket> = subs
                .get(t)
                .map(|l| l.iter().filter(|s| *s != socket).cloned().collect())
                .unwrap_or_default();
            if add {
                v.push(socket.clone());
                mine.insert(t.clone());
            } else {
                mine.remove(t);
            }
            if v.is_empty() {
                subs.remove(t);
            } else {
                subs.insert(t.clone(), Arc::new(v));
            }
        }
    }

    pub(super) fn unsubscribe_all(&self, socket: &Socket) {
        let topics: Vec<String> = socket.topics();
        self.subscribe(socket, &topics, false);
    }
}

/// An acknowledgement that could not be queued (the subscriber's queue is
/// full or closed) is counted by the socket's sink and reported by its
/// connection as an `error` event; here it is only logged.
fn answered(socket: &Socket, r: Result<(), RespondError>) {
    if let Err(e) = r {
        tracing::debug!(peer = %socket.label(), "cannot acknowledge: {e}");
    }
}
