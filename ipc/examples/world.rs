//! node-ipc's README "Server for Unix Sockets, Windows Sockets & TCP
//! Sockets", line for line: the `world` server answers every `message`
//! with `data + ' world!'`.
//!
//! `cargo run -p ipc --example world`, then `cargo run -p ipc --example
//! hello` (or node-ipc's own `hello` client) in another terminal.
//! `IPC_SOCKET_ROOT` overrides the socket root; the server runs until
//! Ctrl-C.

use std::time::Duration;

use ipc::prelude::*;

/// Runs the server until Ctrl-C.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let ipc = Ipc::new();
    if let Some(root) = std::env::var_os("IPC_SOCKET_ROOT") {
        ipc.configure(|c| c.socket_root = root.into());
    }
    let server = world(&ipc).await?;
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    Ok(())
}

/// The README's server. Returns it started, as `ipc.server.start()` leaves
/// it.
pub(crate) async fn world(ipc: &Ipc) -> Result<Server, IpcError> {
    let log = ipc.logger();
    ipc.configure(|c| c.id = "world".into());
    ipc.configure(|c| c.retry = Duration::from_millis(1500));

    let server = ipc.serve(None)?;
    let log2 = log.clone();
    server.handle("message", move |data: String, socket, server| {
        ipc::log!(log2, "got a message :", data);
        server.send(
            socket,
            "message", // this can be anything you want so long as
            // your client knows.
            &(data + " world!"),
        )
    });
    server.on_socket_disconnected(move |_socket, destroyed_socket_id| {
        let id = destroyed_socket_id.unwrap_or("undefined");
        ipc::log!(log, format!("client {id} has disconnected!"));
    });

    server.start().await?;
    Ok(server)
}
