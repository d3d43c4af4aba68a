//! node-ipc's multi-client example: one server, several clients; the
//! server greets each client individually and broadcasts to all of them.

use std::time::Duration;

use ipc::{ClientExt, Ipc, ServerEvent};

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.world");

    let world = Ipc::new();
    let server = world.serve(Some(&path))?;
    let mut server_events = server.events();
    server.start().await?;

    // One instance holding three clients in its `of` registry.
    let hellos = Ipc::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for id in ["one", "two", "three"] {
        let tx = tx.clone();
        hellos.connect_to_with(id, Some(&path), |c| {
            c.on_typed("news", move |text: String| {
                println!("client {id}: news: {text}");
                let _ = tx.send(id);
            });
        })?;
    }
    println!("clients in `of`: {:?}", hellos.of_ids());

    // Wait until the server has accepted all three.
    let mut connected = 0;
    while connected < 3 {
        match tokio::time::timeout(Duration::from_secs(10), server_events.recv()).await? {
            Some(ServerEvent::Connect(socket)) => {
                connected += 1;
                socket
                    .emit("welcome", &format!("you are #{}", socket.id()))
                    .await?;
            }
            Some(_) => {}
            None => return Err("server gone".into()),
        }
    }
    let sent = server.broadcast("news", "hello, everyone").await?;
    println!("world: broadcast queued to {sent} clients");
    assert_eq!(sent, 3);

    let mut got = Vec::new();
    while got.len() < 3 {
        let id = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await?
            .ok_or("clients gone")?;
        got.push(id);
    }
    got.sort_unstable();
    assert_eq!(got, ["one", "three", "two"]);

    for id in hellos.of_ids() {
        hellos.disconnect(&id).await?;
    }
    server.stop().await;
    Ok(())
}
