//! node-ipc's README "Raw Buffer or Binary Sockets": no JSON, no delimiter
//! — bytes in, bytes out (`data` events). `encoding` says how a string
//! given to `emit` becomes bytes (node's `Buffer.from(string, encoding)`);
//! arrays of numbers and buffers go as they are. Each README snippet is
//! one step below.

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
    let (got_tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::atomic::AtomicUsize::new(0);
    server.on_data(move |bytes, socket, server| {
        println!("world: got {} raw bytes: {:?}", bytes.len(), bytes);
        let _ = got_tx.send(bytes.to_vec());
        let before = seen.fetch_add(bytes.len(), std::sync::atomic::Ordering::SeqCst);
        // Once the client's "hello" is in (in however many chunks):
        // emit string buffer — server: ipc.server.emit(socket, 'hello')
        if before < 5 && before + bytes.len() >= 5 {
            if let Err(e) = server.send_str(socket, "hello") {
                println!("world: cannot answer: {e}");
            }
        }
    });
    server.start().await?;

    let hello = Ipc::new();
    hello.configure(|c| {
        c.id = "hello".into();
        c.raw_buffer = true;
        c.encoding = ipc::RawEncoding::Utf8;
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_with("world", Some(&path), |c| {
        c.on_data(move |bytes, _| {
            println!("hello: got raw bytes back: {:?}", bytes);
            let _ = tx.send(bytes.to_vec());
        });
    })?;

    // emit string buffer — client: ipc.of.world.emit('hello')
    client.emit_str("hello").await?;
    let reply = read(&mut rx, 5).await?;
    assert_eq!(reply, b"hello");
    let first = read(&mut got, 5).await?;
    assert_eq!(first, b"hello");

    // hex encoding may work best for this (the configuration is live, as
    // in node-ipc: later string emits decode hex).
    hello.configure(|c| c.encoding = ipc::RawEncoding::Hex);
    // emit byte array buffer: ipc.of.world.emit([10,20,30])
    client.emit_raw([10, 20, 30]).await?;
    // emit binary or hex array buffer: ipc.of.world.emit([0x05,0x6d,0x5c])
    client.emit_raw([0x05, 0x6d, 0x5c]).await?;
    // make a 6 byte buffer: a UInt16 (big endian) then a UInt32 (big endian)
    let mut my_buffer = [0u8; 6];
    my_buffer[0..2].copy_from_slice(&2u16.to_be_bytes()); // writeUInt16BE(2, 0)
    my_buffer[2..6].copy_from_slice(&16_772_812u32.to_be_bytes()); // writeUInt32BE(16772812, 2)
    client.emit_raw(my_buffer).await?;
    // and a string under `hex`: Buffer.from('ff00', 'hex')
    client.emit_str("ff00").await?;

    // A stream has no message boundaries in raw mode: the server sees the
    // same bytes, in order, in however many chunks.
    let rest = read(&mut got, 14).await?;
    assert_eq!(
        rest,
        [10, 20, 30, 0x05, 0x6d, 0x5c, 0, 2, 0x00, 0xff, 0xee, 0xcc, 0xff, 0x00]
    );

    hello.disconnect("world").await?;
    server.stop().await;
    Ok(())
}

/// `n` bytes from one side's `data` events.
async fn read(
    got: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    n: usize,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await?
            .ok_or("the connection ended")?;
        out.extend(chunk);
    }
    Ok(out)
}
