//! Callbacks in node-ipc's shape: `on(type, (data, socket) => …)` with
//! `data` deserialized into the handler's type and a handle to the handler's
//! own server or client, plus typed lifecycle hooks (`on_connect`,
//! `on_socket_disconnected`, `on_error`, …) where a misspelt event name
//! would otherwise be silently never called.
//!
//! The handle a handler receives is lent for the call: the handler does not
//! need to capture its own server or client (which would be a reference
//! cycle that keeps both alive forever).

use std::fmt;

use bytes::Bytes;
use ipc_client::{Client, ClientError, ClientEvent, HandlerId};
use ipc_proto::Message;
use ipc_server::{Peer, Server, ServerError, ServerEvent, Socket};
use ipc_transport::Endpoint;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a handler may return: nothing, or a `Result` whose error is
/// logged (with the event and the peer) instead of being lost.
pub trait HandlerResult {
    /// `Err` with the error's text, if the handler failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl HandlerResult for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> HandlerResult for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

fn report(outcome: Result<(), String>, event: &str, peer: &dyn fmt::Display) {
    if let Err(e) = outcome {
        tracing::warn!(event, peer = %peer, "handler failed: {e}");
    }
}

/// node-ipc-style handlers and answers on a [`Server`] (in the
/// [`prelude`](crate::prelude)).
pub trait ServerExt {
    /// `server.on(type, (data, socket) => …)`: `data` deserialized into
    /// `T`, `socket` the sender (a stream [`Socket`] or a UDP address) and
    /// `server` this server, to answer with [`ServerExt::send`]. A message
    /// whose data does not fit `T` is skipped with a warning (use
    /// `T = serde_json::Value` to take anything); an `Err` returned by the
    /// handler is logged.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ipc::IpcError> {
    /// use ipc::prelude::*;
    /// let ipc = Ipc::new();
    /// let server = ipc.serve(None)?;
    /// server.handle("message", |data: String, socket, server| {
    ///     server.send(socket, "message", &format!("{data} world!"))
    /// });
    /// server.start().await?;
    /// # Ok(()) }
    /// ```
    fn handle<T, R, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        R: HandlerResult,
        F: Fn(T, &Peer, &Server) -> R + Send + Sync + 'static;

    /// Like [`ServerExt::handle`] without the server handle.
    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T, &Peer) + Send + Sync + 'static;

    /// node-ipc's `server.emit(socket, type, data)` without waiting, to a
    /// stream socket or a UDP peer alike: what a handler answers with. A
    /// stream socket whose queue is full fails with `ERR_IPC_BACKPRESSURE`
    /// (use the async [`Socket::emit`] to wait instead); a UDP datagram the
    /// socket cannot take at once is sent in the background (a failure then
    /// is an `error` event).
    fn send<T: Serialize + ?Sized>(
        &self,
        to: &Peer,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError>;

    /// Raw mode: node-ipc's `server.emit(socket, buffer)`, without waiting,
    /// to a stream socket or a UDP peer: the bytes as they are.
    fn send_raw(&self, to: &Peer, bytes: &[u8]) -> Result<(), ServerError>;

    /// Raw mode: node-ipc's `server.emit(socket, string)`: the text turned
    /// into bytes with `encoding` ([`Server::raw_encoding`]), then
    /// [`ServerExt::send_raw`].
    fn send_str(&self, to: &Peer, text: &str) -> Result<(), ServerError>;

    /// node-ipc's `emit({address, port}, type, data)` to a UDP peer named
    /// by host and port, without waiting (as [`ServerExt::send`]). The host
    /// is resolved with the system resolver, which blocks for a name that
    /// is not an address literal; an address of the server's family is
    /// used.
    fn send_to_host<T: Serialize + ?Sized>(
        &self,
        host: &str,
        port: u16,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError>;

    /// `start` (the `serve`/`serveNet` callback): listening (stream) or
    /// bound (UDP) on this endpoint.
    fn on_start(&self, f: impl Fn(&Endpoint, &Server) + Send + Sync + 'static) -> HandlerId;

    /// `connect`: a stream connection was accepted.
    fn on_connect(&self, f: impl Fn(&Socket, &Server) + Send + Sync + 'static) -> HandlerId;

    /// `socket.disconnected(socket, destroyedSocketID)`: a connection
    /// ended; `id` is the id the peer announced, if any.
    fn on_socket_disconnected(
        &self,
        f: impl Fn(&Socket, Option<&str>) + Send + Sync + 'static,
    ) -> HandlerId;

    /// isdk's `disconnect(connection, reason)`: `socket.disconnected` with
    /// the reason the connection was closed for, when one was given
    /// ([`Socket::close_reason`]).
    fn on_disconnect(&self, f: impl Fn(&Socket, Option<&str>) + Send + Sync + 'static)
        -> HandlerId;

    /// `error`: something failed; `peer` is set when one peer is concerned.
    fn on_error(
        &self,
        f: impl Fn(&ServerError, Option<&Peer>) + Send + Sync + 'static,
    ) -> HandlerId;

    /// `data`: a raw-mode chunk (stream) or datagram (UDP).
    fn on_data(&self, f: impl Fn(&Bytes, &Peer, &Server) + Send + Sync + 'static) -> HandlerId;

    /// `closed`: the server stopped (isdk's server `close`).
    fn on_closed(&self, f: impl Fn() + Send + Sync + 'static) -> HandlerId;
}

impl ServerExt for Server {
    fn handle<T, R, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        R: HandlerResult,
        F: Fn(T, &Peer, &Server) -> R + Send + Sync + 'static,
    {
        let me = self.downgrade();
        self.on(event, move |ev: &ServerEvent| {
            let (ServerEvent::Message { from, message }, Some(server)) = (ev, me.upgrade()) else {
                return;
            };
            match message.data::<T>() {
                Ok(data) => report(f(data, from, &server).into_outcome(), message.event(), from),
                Err(e) => tracing::warn!(
                    event = message.event(),
                    peer = %from,
                    "message data does not fit the handler's type: {e}"
                ),
            }
        })
    }

    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T, &Peer) + Send + Sync + 'static,
    {
        self.handle(event, move |data: T, from, _| f(data, from))
    }

    fn send<T: Serialize + ?Sized>(
        &self,
        to: &Peer,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        match to {
            Peer::Socket(s) => s.try_emit(event, data),
            #[cfg(feature = "udp")]
            Peer::Udp(addr) => self.try_emit_to(*addr, event, data),
            #[cfg(not(feature = "udp"))]
            Peer::Udp(_) => Err(ServerError::NoTarget),
        }
    }

    fn send_raw(&self, to: &Peer, bytes: &[u8]) -> Result<(), ServerError> {
        match to {
            Peer::Socket(s) => s.try_send_frame(Bytes::copy_from_slice(bytes)),
            #[cfg(feature = "udp")]
            Peer::Udp(addr) => self.try_emit_raw_to(*addr, bytes),
            #[cfg(not(feature = "udp"))]
            Peer::Udp(_) => Err(ServerError::NoTarget),
        }
    }

    fn send_str(&self, to: &Peer, text: &str) -> Result<(), ServerError> {
        self.send_raw(to, &self.raw_encoding().encode_str(text))
    }

    fn send_to_host<T: Serialize + ?Sized>(
        &self,
        host: &str,
        port: u16,
        event: &str,
        data: &T,
    ) -> Result<(), ServerError> {
        use std::net::ToSocketAddrs;
        let want_v6 = matches!(
            self.endpoint(),
            Endpoint::Udp {
                family: ipc_transport::UdpFamily::V6,
                ..
            }
        );
        let unresolved = |why: String| ServerError::NotConnected {
            peer: format!("{host}:{port} ({why})"),
        };
        let host = host.trim_matches(['[', ']']);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| unresolved(e.to_string()))?
            .find(|a| a.is_ipv6() == want_v6)
            .ok_or_else(|| unresolved("no address of the server's family".into()))?;
        self.send(&Peer::Udp(addr), event, data)
    }

    fn on_start(&self, f: impl Fn(&Endpoint, &Server) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("start", move |ev| {
            if let (ServerEvent::Start(endpoint), Some(server)) = (ev, me.upgrade()) {
                f(endpoint, &server)
            }
        })
    }

    fn on_connect(&self, f: impl Fn(&Socket, &Server) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("connect", move |ev| {
            if let (ServerEvent::Connect(socket), Some(server)) = (ev, me.upgrade()) {
                f(socket, &server)
            }
        })
    }

    fn on_socket_disconnected(
        &self,
        f: impl Fn(&Socket, Option<&str>) + Send + Sync + 'static,
    ) -> HandlerId {
        self.on("socket.disconnected", move |ev| {
            if let ServerEvent::SocketDisconnected { socket, id } = ev {
                f(socket, id.as_deref())
            }
        })
    }

    fn on_disconnect(
        &self,
        f: impl Fn(&Socket, Option<&str>) + Send + Sync + 'static,
    ) -> HandlerId {
        self.on("socket.disconnected", move |ev| {
            if let ServerEvent::SocketDisconnected { socket, .. } = ev {
                f(socket, socket.close_reason().as_deref())
            }
        })
    }

    fn on_error(
        &self,
        f: impl Fn(&ServerError, Option<&Peer>) + Send + Sync + 'static,
    ) -> HandlerId {
        self.on("error", move |ev| {
            if let ServerEvent::Error { peer, error } = ev {
                f(error, peer.as_ref())
            }
        })
    }

    fn on_data(&self, f: impl Fn(&Bytes, &Peer, &Server) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("data", move |ev| {
            if let (ServerEvent::Data { from, bytes }, Some(server)) = (ev, me.upgrade()) {
                f(bytes, from, &server)
            }
        })
    }

    fn on_closed(&self, f: impl Fn() + Send + Sync + 'static) -> HandlerId {
        self.on("closed", move |ev| {
            if let ServerEvent::Closed = ev {
                f()
            }
        })
    }
}

/// node-ipc-style handlers on a [`Client`] (`ipc.of[id].on`; in the
/// [`prelude`](crate::prelude)).
pub trait ClientExt {
    /// `of[id].on(type, data => …)`: `data` deserialized into `T`, and
    /// `client` this client, to answer with [`Client::try_emit`]. A message
    /// whose data does not fit is skipped with a warning; an `Err`
    /// returned by the handler is logged.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), ipc::IpcError> {
    /// use ipc::prelude::*;
    /// let ipc = Ipc::new();
    /// let world = ipc.connect_to("world", None)?;
    /// world.handle("message", |data: String, world| {
    ///     println!("got {data}");
    ///     world.try_emit("thanks", &data)
    /// });
    /// # Ok(()) }
    /// ```
    fn handle<T, R, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        R: HandlerResult,
        F: Fn(T, &Client) -> R + Send + Sync + 'static;

    /// `of[id].on(type, data => …)` with the whole [`Message`].
    fn on_message(&self, event: &str, f: impl Fn(&Message) + Send + Sync + 'static) -> HandlerId;

    /// Like [`ClientExt::handle`] without the client handle.
    fn on_typed<T, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        F: Fn(T) + Send + Sync + 'static;

    /// `connect`: connected (TLS: after the handshake).
    fn on_connect(&self, f: impl Fn(&Client) + Send + Sync + 'static) -> HandlerId;

    /// `disconnect`: a connection or attempt ended; a retry may follow.
    /// [`Client::close_reason`] tells why, when the server said so.
    fn on_disconnect(&self, f: impl Fn(&Client) + Send + Sync + 'static) -> HandlerId;

    /// `destroy`: final, no retry remains.
    fn on_destroy(&self, f: impl Fn() + Send + Sync + 'static) -> HandlerId;

    /// `error`: something failed (always before the matching `disconnect`).
    fn on_error(&self, f: impl Fn(&ClientError) + Send + Sync + 'static) -> HandlerId;

    /// `data`: a raw-mode chunk.
    fn on_data(&self, f: impl Fn(&Bytes, &Client) + Send + Sync + 'static) -> HandlerId;
}

impl ClientExt for Client {
    fn handle<T, R, F>(&self, event: &str, f: F) -> HandlerId
    where
        T: DeserializeOwned,
        R: HandlerResult,
        F: Fn(T, &Client) -> R + Send + Sync + 'static,
    {
        let me = self.downgrade();
        self.on(event, move |ev: &ClientEvent| {
            let (Some(m), Some(client)) = (ev.message(), me.upgrade()) else {
                return;
            };
            match m.data::<T>() {
                Ok(d) => report(f(d, &client).into_outcome(), m.event(), client.endpoint()),
                Err(e) => tracing::warn!(
                    event = m.event(),
                    "message data does not fit the handler's type: {e}"
                ),
            }
        })
    }

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
        self.handle(event, move |d: T, _| f(d))
    }

    fn on_connect(&self, f: impl Fn(&Client) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("connect", move |ev| {
            if let (ClientEvent::Connect, Some(c)) = (ev, me.upgrade()) {
                f(&c)
            }
        })
    }

    fn on_disconnect(&self, f: impl Fn(&Client) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("disconnect", move |ev| {
            if let (ClientEvent::Disconnect, Some(c)) = (ev, me.upgrade()) {
                f(&c)
            }
        })
    }

    fn on_destroy(&self, f: impl Fn() + Send + Sync + 'static) -> HandlerId {
        self.on("destroy", move |ev| {
            if let ClientEvent::Destroy = ev {
                f()
            }
        })
    }

    fn on_error(&self, f: impl Fn(&ClientError) + Send + Sync + 'static) -> HandlerId {
        self.on("error", move |ev| {
            if let Some(e) = ev.error() {
                f(e)
            }
        })
    }

    fn on_data(&self, f: impl Fn(&Bytes, &Client) + Send + Sync + 'static) -> HandlerId {
        let me = self.downgrade();
        self.on("data", move |ev| {
            if let (ClientEvent::Data(bytes), Some(c)) = (ev, me.upgrade()) {
                f(bytes, &c)
            }
        })
    }
}
