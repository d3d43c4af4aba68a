//! @isdk/ipc-server's README example, line for line: a local server with
//! `ready`/`error`/`connect`/`disconnect`/`close`/`message`/`request`
//! handlers, a client that pings, sends, requests and uses pub/sub, a
//! second client, and graceful and immediate shutdowns.
//!
//! `cargo run -p ipc --example isdk`. isdk's `path: "/myapp"` becomes a
//! socket in a temporary directory. isdk's own wire format is not node-ipc's:
//! this speaks node-ipc framing with the `ipcx.*` extension (SPEC §5.4), so
//! the peer is this crate (or node-ipc for the plain messages).

use std::path::Path;

use ipc::prelude::*;

/// Runs the example in a temporary directory.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let dir = tempfile::tempdir().map_err(|e| IpcError::InvalidConfig(e.to_string()))?;
    isdk(&dir.path().join("myapp")).await
}

/// The README's server and clients on the socket `path`.
pub(crate) async fn isdk(path: &Path) -> Result<(), IpcError> {
    let ipc = Ipc::new();
    let server = ipc.serve(Some(path))?;
    server.on_start(|address, _| {
        println!("server started on {address}");
    });
    server.on_error(|error, connection| {
        let id = connection.map(|c| c.to_string()).unwrap_or_default();
        println!("an error happened in the connection {id}: {error}");
        println!("{error:?}");
    });
    server.on("hello", |ev| {
        if let ServerEvent::Hello { socket, hello } = ev {
            println!(
                "new connection! assigned it the following id: {}",
                socket.id()
            );
            if !hello.extras.is_null() {
                println!("client sent an initial payload:");
                println!("{}", hello.extras);
                // auth example
                // if hello.extras != "superSecretPassword" { socket.close(); }
            }
        }
    });
    server.on_disconnect(|connection, reason| {
        println!("connection {} disconnected because of:", connection.id());
        println!("{reason:?}");
    });
    server.on_closed(|| {
        println!("server closed");
    });
    server.handle("message", |message: String, connection, _| {
        println!("{message} from {connection}");
    });
    server.on_request(|request| {
        println!("received request from {}", request.peer());
        println!("request content: {}", request.raw().unwrap_or("null"));
        // return a response to this request
        if let Err(e) = request.respond("hello") {
            eprintln!("{e}");
        }
        // if already processed, do not want other request listeners to run
        Ok(Flow::Stop)
    });
    server.start().await?;

    // Connecting to a local IPC server.
    let ipc_client = Ipc::new();
    ipc_client.configure(|c| c.ext.handshake = ipc::Handshake::Announce);
    let client = ipc_client.connect_to("myapp", Some(path))?;
    client.connected().await?;
    let ping = client.ping_default().await?;
    // Sends a message to the server.
    client.emit("message", "hello").await?;
    // Sends a request to the server.
    let response: String = client.request_as("what time is it?").await?;
    // Pubsub events
    client.handle("event", |_data: serde_json::Value, _| {});
    client.subscribe(&["event"]).await?;
    client.publish("event", "hello from client").await?;
    server.publish("event", "hello from server").await?;
    let ipc_client1 = Ipc::new();
    let client1 = ipc_client1.connect_to("myapp", Some(path))?;
    client1.connected().await?;
    client1.publish("event", "hello from client1").await?;
    client.unsubscribe(&["event"]).await?;
    println!("ping {ping:?}, response {response:?}");

    // Gracefully disconnects the client. Any pending operations will be fulfilled before the connection is closed.
    client.close("shutting down").await?;
    // Immediately disconnects the client. Any pending operations will be rejected.
    client.destroy_with_reason("shutting down").await?;
    let allow_reconnect = false; // if true, the clients are told they may reconnect after a while
    server.close(allow_reconnect).await;
    Ok(())
}
