//! node-ipc's `rawBuffer` example: no JSON, no delimiter — bytes in, bytes
//! out (`data` events). `encoding` says how a string given to `emit`
//! becomes bytes (node's `Buffer.from(string, encoding)`).

use std::time::Duration;

use ipc::prelude::*;

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.world");

    let world = Ipc::new();
    world.configure(|c| {
        c.id = "world".into();
        c.raw_buffer = true;
        c.encoding = ipc::RawEncoding::Utf8;
    });
    let server = world.serve(Some(&path))?;
    server.on_data(|bytes, socket, server| {
        println!("world: got {} raw bytes: {:?}", bytes.len(), bytes);
        // node-ipc: ipc.server.emit(socket, data + ' world!') with utf8.
        let text = String::from_utf8_lossy(bytes);
        if let Err(e) = server.send_str(socket, &format!("{text} world!")) {
            println!("world: cannot answer: {e}");
        }
    });
    server.start().await?;

    let hello = Ipc::new();
    hello.configure(|c| {
        c.id = "hello".into();
        c.raw_buffer = true;
        c.encoding = ipc::RawEncoding::Hex;
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_with("world", Some(&path), |c| {
        c.on_data(move |bytes, _| {
            println!("hello: got raw bytes back: {:?}", bytes);
            let _ = tx.send(bytes.clone());
        });
    })?;
    // node-ipc: ipc.of.world.emit('68656c6c6f') with encoding 'hex'.
    client.emit_str("68656c6c6f").await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .ok_or("the client stopped before the reply")?;
    // A stream has no message boundaries in raw mode; this exchange is small
    // enough to arrive in one read.
    assert_eq!(&reply[..], b"hello world!");

    hello.disconnect("world").await?;
    server.stop().await;
    Ok(())
}
