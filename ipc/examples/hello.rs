//! node-ipc's README "Client for Unix Sockets & TCP Sockets", line for
//! line: `hello` connects to `world`, says `hello` on connect and logs the
//! answer.
//!
//! `cargo run -p ipc --example hello` with `world` (this crate's example
//! or node-ipc's) running. `IPC_SOCKET_ROOT` overrides the socket root.
//! Unlike the JS, which keeps running, it disconnects after the first
//! answer.

use std::time::Duration;

use ipc::prelude::*;

/// Connects, waits for the first answer (at most 30 s) and disconnects.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let ipc = Ipc::new();
    if let Some(root) = std::env::var_os("IPC_SOCKET_ROOT") {
        ipc.configure(|c| c.socket_root = root.into());
    }
    let world = hello(&ipc)?;
    let answer = first_answer(&world, Duration::from_secs(30)).await;
    ipc.disconnect("world").await?;
    answer.map(|_| ())
}

/// The README's client: returns `ipc.of.world`.
pub(crate) fn hello(ipc: &Ipc) -> Result<Client, IpcError> {
    let log = ipc.logger();
    ipc.configure(|c| c.id = "hello".into());
    ipc.configure(|c| c.retry = Duration::from_millis(1500));

    ipc.connect_to_with("world", None, |world| {
        let log2 = log.clone();
        world.on_connect(move |world| {
            ipc::log!(log2, "## connected to world ##");
            let _ = world.try_emit(
                "message", // any event or message type your server listens for
                "hello",
            );
        });
        let log2 = log.clone();
        world.on_disconnect(move |_| {
            ipc::log!(log2, "disconnected from world");
        });
        world.handle(
            "message", // any event or message type your server listens for
            move |data: String, _| {
                ipc::log!(log, "got a message from world :", data);
            },
        );
    })
}

/// The data of the first `message` from `world`; the stream is opened
/// before the client can connect (the runtime is single-threaded and
/// `hello` does not yield).
pub(crate) async fn first_answer(world: &Client, limit: Duration) -> Result<String, IpcError> {
    let mut events = world.events();
    let wait = async {
        while let Some(ev) = events.recv().await {
            if let Some(m) = ev.message().filter(|m| m.event() == "message") {
                return m.data::<String>().ok();
            }
        }
        None
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(Some(text)) => Ok(text),
        _ => Err(IpcError::Timeout {
            what: "an answer from world".into(),
            after: limit,
        }),
    }
}
