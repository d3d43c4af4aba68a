//! node-ipc's `sync` mode: the client sends one message, then waits until
//! the server sends something back before it writes the next one. Here the
//! server checks that every message arrives only after the previous one
//! was answered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipc::{ClientExt, Ipc, ServerExt};

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.world");

    let world = Ipc::new();
    let server = world.serve(Some(&path))?;
    let answered = Arc::new(AtomicUsize::new(0));
    let in_order = Arc::new(AtomicUsize::new(0));
    let (a, ok) = (answered.clone(), in_order.clone());
    server.on_typed("app.message", move |n: usize, peer| {
        // With sync, message n arrives only after n answers went out.
        let before = a.load(Ordering::SeqCst);
        println!("world: message {n} (answers sent so far: {before})");
        if before == n {
            ok.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(socket) = peer.socket() {
            if socket.try_emit("app.message", &format!("ack {n}")).is_ok() {
                a.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    server.start().await?;

    let hello = Ipc::new();
    hello.configure(|c| c.sync = true);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = hello.connect_to_with("world", Some(&path), |c| {
        c.on_typed("app.message", move |ack: String| {
            println!("hello: {ack}");
            let _ = tx.send(ack);
        });
    })?;
    // All five are queued at once; sync mode releases them one by one.
    for n in 0..5usize {
        client.emit("app.message", &n).await?;
    }
    for n in 0..5 {
        let ack = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .ok_or("the client stopped")?;
        assert_eq!(ack, format!("ack {n}"));
    }
    assert_eq!(
        in_order.load(Ordering::SeqCst),
        5,
        "a message overtook its answer"
    );

    hello.disconnect("world").await?;
    server.stop().await;
    Ok(())
}
