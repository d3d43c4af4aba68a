//! node-ipc's basic example over a Unix socket: a `world` server answers
//! every `message` from a `hello` client with `"<text> world!"`.
//!
//! Two independent [`Ipc`] instances (one per role) share the process; the
//! socket lives in a temporary socket root, at `socketRoot + appspace + id`
//! exactly as node-ipc composes it.

use std::time::Duration;

use ipc::{ClientExt, Ipc, ServerEvent, ServerExt};

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let root = format!("{}/", dir.path().display());

    // The `world` server.
    let world = Ipc::new();
    world.configure(|c| {
        c.id = "world".into();
        c.socket_root = root.clone().into();
        c.retry = Duration::from_millis(1500);
    });
    let server = world.serve(None)?;
    server.on_typed("message", |data: String, peer| {
        println!("world: got a message: {data}");
        if let Some(socket) = peer.socket() {
            let _ = socket.try_emit("message", &format!("{data} world!"));
        }
    });
    server.on("socket.disconnected", |ev| {
        if let ServerEvent::SocketDisconnected { socket, .. } = ev {
            println!("world: client #{} has disconnected", socket.id());
        }
    });
    let endpoint = server.start().await?;
    println!("world: serving on {endpoint}");

    // The `hello` client: connectTo('world') finds the same default path.
    let hello = Ipc::new();
    hello.configure(|c| {
        c.id = "hello".into();
        c.socket_root = root.into();
        c.retry = Duration::from_millis(1500);
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_with("world", None, |c| {
        c.on("connect", |_| println!("hello: connected to world"));
        c.on("disconnect", |_| println!("hello: disconnected from world"));
        c.on_typed("message", move |data: String| {
            println!("hello: got a message from world: {data}");
            let _ = tx.send(data);
        });
    })?;
    client.emit("message", "hello").await?;

    let reply = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or("the client stopped before the reply")?;
    assert_eq!(reply, "hello world!");

    hello.disconnect("world").await?;
    server.stop().await;
    Ok(())
}
