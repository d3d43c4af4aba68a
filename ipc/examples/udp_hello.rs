//! node-ipc's README "UDP Server 2 - Hello", line for line: a UDP endpoint
//! on port 8001 that sends `{from: 'hello', message: 'Hello'}` to `world`
//! at `127.0.0.1:networkPort` and logs the answer.
//!
//! `cargo run -p ipc --example udp_hello` with `udp_world` (this crate's
//! or node-ipc's) running. `IPC_NETWORK_PORT` is world's port (default
//! 8000). Unlike the JS, it stops after the first answer.

use std::time::Duration;

use ipc::prelude::*;

#[path = "udp_world.rs"]
#[allow(dead_code)]
mod udp_world;
use udp_world::Greeting;

/// Sends, waits for the first answer (at most 30 s) and stops.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let ipc = Ipc::new();
    if let Some(port) = std::env::var("IPC_NETWORK_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        ipc.configure(|c| c.network_port = port);
    }
    let server = udp_hello(&ipc, 8001)?;
    let events = server.events();
    server.start().await?;
    let answer = first_answer(events, Duration::from_secs(30)).await;
    server.stop().await;
    answer.map(|_| ())
}

/// The README's UDP hello, to bind `port` (the README's 8001: world
/// already holds `networkPort`). The greeting goes out from the `start`
/// handler, as from the JS `serveNet` callback; the caller starts it
/// (`ipc.server.start()`).
pub(crate) fn udp_hello(ipc: &Ipc, port: u16) -> Result<Server, IpcError> {
    let log = ipc.logger();
    ipc.configure(|c| c.id = "hello".into());
    ipc.configure(|c| c.retry = Duration::from_millis(1500));

    let server = ipc.serve_net(ServeNet::udp4().port(port))?;
    let config = ipc.config();
    server.on_start(move |_, server| {
        server.handle("message", {
            let log = log.clone();
            move |data: Greeting, _, _| {
                ipc::log!(log, "got Data");
                ipc::log!(log, "got a message from", data.from, ":", data.message);
            }
        });
        let sent = server.send_to_host(
            "127.0.0.1", // any hostname will work
            config.network_port,
            "message",
            &Greeting {
                from: config.id.clone(),
                message: "Hello".into(),
            },
        );
        if let Err(e) = sent {
            ipc::log!(log, "cannot send:", e.to_string());
        }
    });
    Ok(server)
}

/// The first `message` hello receives.
pub(crate) async fn first_answer(
    mut events: ipc::EventStream<ServerEvent>,
    limit: Duration,
) -> Result<Greeting, IpcError> {
    let wait = async {
        while let Some(ev) = events.recv().await {
            if let Some(m) = ev.message().filter(|m| m.event() == "message") {
                return m.data::<Greeting>().ok();
            }
        }
        None
    };
    match tokio::time::timeout(limit, wait).await {
        Ok(Some(g)) => Ok(g),
        _ => Err(IpcError::Timeout {
            what: "an answer from world".into(),
            after: limit,
        }),
    }
}
