//! node-ipc's README "UDP Server 1 - World", line for line: a UDP endpoint
//! on `networkPort` that answers every `message` with
//! `{from: 'world', message: data.message + ' world!'}` to its sender.
//!
//! `cargo run -p ipc --example udp_world`, then `cargo run -p ipc
//! --example udp_hello` (or node-ipc's). `IPC_NETWORK_PORT` overrides
//! `networkPort` (8000); it runs until Ctrl-C.

use std::time::Duration;

use ipc::prelude::*;
use serde::{Deserialize, Serialize};

/// The `message` data of both UDP examples.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Greeting {
    /// Who sends it.
    pub(crate) from: String,
    /// What it says.
    pub(crate) message: String,
}

/// Runs the endpoint until Ctrl-C.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let ipc = Ipc::new();
    if let Some(port) = std::env::var("IPC_NETWORK_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        ipc.configure(|c| c.network_port = port);
    }
    let server = udp_world(&ipc).await?;
    let _ = tokio::signal::ctrl_c().await;
    server.stop().await;
    Ok(())
}

/// The README's UDP world; returns it started.
pub(crate) async fn udp_world(ipc: &Ipc) -> Result<Server, IpcError> {
    let log = ipc.logger();
    ipc.configure(|c| c.id = "world".into());
    ipc.configure(|c| c.retry = Duration::from_millis(1500));

    let server = ipc.serve_net(ServeNet::udp4())?;
    let id = ipc.config().id;
    server.handle("message", move |data: Greeting, socket, server| {
        ipc::log!(log, "got a message from", data.from, ":", data.message);
        server.send(
            socket,
            "message",
            &Greeting {
                from: id.clone(),
                message: data.message + " world!",
            },
        )
    });
    println!("{server:?}");

    server.start().await?;
    Ok(server)
}
