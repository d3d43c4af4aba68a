//! The world/hello exchange over TLS, shared by the three TLS examples:
//! they differ only in the `tls` options of each side.

use std::error::Error;
use std::time::Duration;

use ipc::prelude::*;
use ipc::TlsOptions;

/// Serves TLS with `server_tls`, connects with `client_tls` to `host`,
/// exchanges one message and returns the reply.
pub(crate) async fn world_hello(
    server_tls: TlsOptions,
    client_tls: TlsOptions,
    host: &str,
) -> Result<String, Box<dyn Error>> {
    let world = Ipc::new();
    world.configure(|c| {
        c.id = "world".into();
        c.tls = Some(server_tls);
    });
    let server = world.serve_net(ServeNet::tcp().host("127.0.0.1").port(0))?;
    server.handle("message", |data: String, socket, server| {
        println!("world: got a message over TLS: {data}");
        server.send(socket, "message", &format!("{data} world!"))
    });
    server.on_error(|e, _| println!("world: error: {e}"));
    let Endpoint::Tls { port, .. } = server.start().await? else {
        return Err("expected a TLS endpoint".into());
    };
    println!("world: serving on tls://127.0.0.1:{port}");

    let hello = Ipc::new();
    hello.configure(|c| {
        c.id = "hello".into();
        c.tls = Some(client_tls);
        c.max_retries = ipc::MaxRetries::Limited(0);
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_net_with("world", Some(host), Some(port), |c| {
        c.on_connect(|_| println!("hello: connected (TLS handshake done)"));
        c.on_error(|e| println!("hello: error: {e}"));
        c.on_typed("message", move |data: String| {
            println!("hello: got a message from world: {data}");
            let _ = tx.send(data);
        });
    })?;
    client.emit("message", "hello").await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or("the client stopped before the reply")?;
    hello.disconnect("world").await?;
    server.stop().await;
    Ok(reply)
}
