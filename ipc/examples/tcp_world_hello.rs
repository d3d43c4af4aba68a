//! node-ipc's basic example over TCP: `serveNet` on an ephemeral port and
//! `connectToNet` to it.

use std::time::Duration;

use ipc::prelude::*;

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let world = Ipc::new();
    world.configure(|c| c.id = "world".into());
    // node-ipc would use networkPort (8000); port 0 picks a free one.
    let server = world.serve_net(ServeNet::tcp().host("127.0.0.1").port(0))?;
    server.handle("message", |data: String, socket, server| {
        println!("world: got a message: {data}");
        server.send(socket, "message", &format!("{data} world!"))
    });
    let Endpoint::Tcp { host, port } = server.start().await? else {
        return Err("expected a TCP endpoint".into());
    };
    println!("world: serving on tcp://{host}:{port}");

    let hello = Ipc::new();
    hello.configure(|c| c.id = "hello".into());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_net_with("world", Some(&host), Some(port), |c| {
        c.on_connect(|_| println!("hello: connected to world"));
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
