//! node-ipc's cluster pattern: several workers accept connections on one
//! Unix socket, bound once by a supervisor (node-ipc: `unlink: false` and
//! Node's cluster module sharing the listening handle). A client connects
//! periodically, emits, gets an answer from whichever worker accepted it,
//! and disconnects.
//!
//! Each worker here is a thread with its own tokio runtime and its own
//! server on a clone of the one listening socket
//! (`Listener::from_std_unix` + `Server::from_listener`). Worker processes
//! would share it the same way through an inherited descriptor; threads keep
//! the example free of descriptor passing.

use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

use ipc::client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc::server::{Server, ServerConfig};
use ipc::transport::{Endpoint, Listener};

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
                let listener = Listener::from_std_unix(listener).map_err(|e| e.to_string())?;
                let server = Server::from_listener(listener, ServerConfig::default())
                    .map_err(|e| e.to_string())?;
                server.on_message("app.message", move |m, from| {
                    let who: String = m.data().unwrap_or_default();
                    println!("worker {w}: message from {who}");
                    if let Some(s) = from.socket() {
                        let _ = s.try_emit("app.message", &format!("worker {w} served {who}"));
                    }
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
        for visit in 1..=VISITS {
            let config = ClientConfig {
                retry: RetryConfig {
                    max_retries: MaxRetries::Limited(0),
                    ..RetryConfig::default()
                },
                ..ClientConfig::default()
            };
            let client = Client::new(Endpoint::Unix(path.clone()), config)?;
            let mut events = client.events();
            client.start();
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
            client.disconnect().await?;
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
