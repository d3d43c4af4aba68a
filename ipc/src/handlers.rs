//! Callback helpers in node-ipc's shape: `on(type, (data, socket) => …)`
//! with `data` deserialized into the handler's type.

use ipc_client::{Client, ClientEvent, HandlerId};
use ipc_proto::Message;
use ipc_server::{Peer, Server, ServerEvent};
use serde::de::DeserializeOwned;

/// node-ipc-style message handlers on a [`Server`].
pub trait ServerExt {
    /// `server.on(type, (data, socket) => …)` with `data` deserialized
    /// into `T`. A message whose data does not fit `T` is skipped with a
    /// warning (register [`Server::on_message`] to see every message).
    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T, &Peer) + Send + Sync + 'static;
}

impl ServerExt for Server {
    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T, &Peer) + Send + Sync + 'static,
    {
        self.on(event, move |ev: &ServerEvent| {
            if let ServerEvent::Message { from, message } = ev {
                match message.data::<T>() {
                    Ok(data) => f(data, from),
                    Err(e) => tracing::warn!(
                        event = message.event(),
                        peer = %from,
                        "message data does not fit the handler's type: {e}"
                    ),
                }
            }
        })
    }
}

/// node-ipc-style message handlers on a [`Client`] (`ipc.of[id].on`).
pub trait ClientExt {
    /// `of[id].on(type, data => …)` with the whole [`Message`].
    fn on_message(&self, event: &str, f: impl Fn(&Message) + Send + Sync + 'static) -> HandlerId;

    /// `of[id].on(type, data => …)` with `data` deserialized into `T`; a
    /// message whose data does not fit is skipped with a warning.
    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T) + Send + Sync + 'static;
}

impl ClientExt for Client {
    fn on_message(&self, event: &str, f: impl Fn(&Message) + Send + Sync + 'static) -> HandlerId {
        self.on(event, move |ev: &ClientEvent| {
            if let Some(m) = ev.message() {
                f(m)
            }
        })
    }

    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T) + Send + Sync + 'static,
    {
        self.on_message(event, move |m| match m.data::<T>() {
            Ok(d) => f(d),
            Err(e) => tracing::warn!(
                event = m.event(),
                "message data does not fit the handler's type: {e}"
            ),
        })
    }
}
