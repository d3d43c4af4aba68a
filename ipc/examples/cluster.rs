//! node-ipc's cluster pattern: several workers accept connections on one
//! Unix socket, bound once by a supervisor (node-ipc: `unlink: false` and
//! Node's cluster module sharing the listening handle). A client connects
//! periodically, emits, gets an answer from whichever worker accepted it,
//! and disconnects.
//!
//! Each worker here is a thread with its own tokio runtime and its own
//! server on a clone of the one listening socket
//! (`Listener::from_std_unix` + `Ipc::serve_listener`). Worker processes
//! would share it the same way through an inherited descriptor; threads keep
//! the example free of descriptor passing.

use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use ipc::prelude::*;
use ipc::transport::Listener;

const WORKERS: usize = 3;
const VISITS: usize = 9;

/// Runs the example.
pub(crate) fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.cluster");
    // The supervisor binds once (removing a stale file first would go here).
    let shared = UnixListener::bind(&path)?;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let stop_rx = std::sync::Arc::new(std::sync::Mutex::new(stop_rx));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::new();
    for w in 1..=WORKERS {
        let listener = shared.try_clone()?;
        let ready = ready_tx.clone();
        let stop = stop_rx.clone();
        workers.push(std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let ipc = Ipc::new();
                ipc.configure(|c| c.unlink = false);
                let listener = Listener::from_std_unix(listener).map_err(|e| e.to_string())?;
                let server = ipc.serve_listener(listener).map_err(|e| e.to_string())?;
                server.handle("app.message", move |who: String, socket, server| {
                    println!("worker {w}: message from {who}");
                    server.send(socket, "app.message", &format!("worker {w} served {who}"))
                });
                server.start().await.map_err(|e| e.to_string())?;
                let _ = ready.send(());
                // Serve until the supervisor says stop.
                let stop = stop.clone();
                tokio::task::spawn_blocking(move || {
                    let _ = stop.lock().map(|rx| rx.recv());
                })
                .await
                .map_err(|e| e.to_string())?;
                server.stop().await;
                Ok(())
            })
        }));
    }
    for _ in 0..WORKERS {
        ready_rx.recv_timeout(Duration::from_secs(10))?;
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ipc = Ipc::new();
        ipc.configure(|c| c.max_retries = MaxRetries::Limited(0));
        for visit in 1..=VISITS {
            // The stream is opened before the client can connect: this
            // runtime is single-threaded and connect_to does not yield.
            let client = ipc.connect_to("world", Some(&path))?;
            let mut events = client.events();
            client
                .emit("app.message", &format!("visit {visit}"))
                .await?;
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                    .await?
                    .ok_or("the client stopped")?;
                if let ClientEvent::Message(m) = ev {
                    println!("client: {}", m.data::<String>()?);
                    break;
                }
            }
            ipc.disconnect("world").await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;

    for _ in 0..WORKERS {
        stop_tx.send(())?;
    }
    for w in workers {
        w.join().map_err(|_| "a worker panicked")??;
    }
    // The workers never unlinked the shared path.
    assert!(path.exists(), "the supervisor's socket file is still there");
    println!("cluster: {VISITS} visits served by {WORKERS} workers");
    Ok(())
}
