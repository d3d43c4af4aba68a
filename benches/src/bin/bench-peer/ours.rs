//! This project's client and server, used as an application would use them:
//! `emit(..).await` in a plain loop, handlers for counting and the event
//! stream where an answer must be awaited, on the same tokio runtime flavour
//! as the ceilings for each workload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ipc_client::{Client, ClientConfig, ClientEvent};
use ipc_server::{Server, ServerConfig, ServerEvent};
use ipc_transport::Endpoint;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use crate::{emit, latency_summary, now_us, Addr, Args};
use ipc_benches::STANDARD_PAYLOAD;

fn endpoint(addr: &Addr) -> Result<Endpoint, String> {
    Ok(match addr {
        Addr::Unix(p) => Endpoint::Unix(p.clone()),
        Addr::Tcp(a) => {
            let (host, port) = a
                .rsplit_once(':')
                .ok_or_else(|| format!("bad TCP address `{a}`"))?;
            Endpoint::Tcp {
                host: host.to_string(),
                port: port.parse().map_err(|_| format!("bad port in `{a}`"))?,
            }
        }
    })
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    // The same runtime flavours as the ceilings (`raw.rs`): one connection
    // (W1, W2) runs on one thread, fan-out and many connections on the
    // multi-threaded runtime.
    let rt = if matches!(args.workload.as_str(), "w1" | "w2") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        match (args.role.as_str(), args.workload.as_str()) {
            ("server", w) => server(args, w).await,
            ("client", "w1") => w1_client(args).await,
            ("client", "w2") => w2_client(args).await,
            ("client", "w3") => w3_client(args).await,
            (r, w) => Err(format!("no {r} for {w}")),
        }?;
        // Keep driving the connections and tasks (a current-thread runtime
        // runs them only inside `block_on`) until stdin ends the process.
        std::future::pending::<Result<(), String>>().await
    })
}

/// Prints `{"ev":ev,"count":n,"end_us":…}` when `counter` reaches `n`.
fn count_to(counter: &AtomicU64, n: u64, ev: &str) {
    if counter.fetch_add(1, Ordering::Relaxed) + 1 == n {
        emit(json!({"ev":ev,"count":n,"end_us":now_us()}));
    }
}

async fn server(args: &Args, workload: &str) -> Result<(), String> {
    let mut config = ServerConfig::default();
    if workload == "w4" {
        config.max_connections = usize::try_from(args.n).unwrap_or(usize::MAX) + 100;
    }
    if workload == "w3" {
        // The broadcast loop queues the whole run for every client at once:
        // size the per-connection bound for it (about 93 bytes per event).
        config.queue_bytes = config
            .queue_bytes
            .max(usize::try_from(args.n).unwrap_or(0) * 100 + (1 << 20));
    }
    let server = Server::new(endpoint(&args.addr)?, config).map_err(|e| e.to_string())?;
    let counter = Arc::new(AtomicU64::new(0));
    let n = args.n;
    match workload {
        "w1" => {
            let c = counter.clone();
            server.on("message", move |_| count_to(&c, n, "done"));
        }
        "w4" => {
            let c = counter.clone();
            server.on("connect", move |_| count_to(&c, n, "accepted"));
        }
        _ => {}
    }
    let hellos = Arc::new(Notify::new());
    if workload == "w3" {
        let (c, h, clients) = (counter.clone(), hellos.clone(), args.clients as u64);
        server.on("hello", move |_| {
            if c.fetch_add(1, Ordering::Relaxed) + 1 == clients {
                h.notify_one();
            }
        });
    }
    let mut events = (workload == "w2").then(|| server.events());
    server.start().await.map_err(|e| e.to_string())?;
    emit(json!({"ev":"ready"}));
    match workload {
        "w2" => {
            let Some(events) = events.as_mut() else {
                return Ok(());
            };
            // Echo every message back to its sender.
            while let Some(ev) = events.recv().await {
                if let ServerEvent::Message { from, message } = ev {
                    let data: Box<RawValue> = message.data().map_err(|e| e.to_string())?;
                    if let Some(socket) = from.socket() {
                        socket
                            .emit(message.event(), &data)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        "w3" => {
            hellos.notified().await;
            emit(json!({"ev":"start","start_us":now_us()}));
            for _ in 0..args.n {
                let reached = server
                    .broadcast("message", STANDARD_PAYLOAD)
                    .await
                    .map_err(|e| e.to_string())?;
                if reached < args.clients {
                    emit(json!({"ev":"error","message":format!(
                        "a broadcast reached {reached} of {} clients", args.clients)}));
                    break;
                }
            }
            emit(json!({"ev":"sent","end_us":now_us()}));
        }
        _ => {}
    }
    std::mem::forget(server);
    Ok(())
}

async fn connect(args: &Args) -> Result<Client, String> {
    let client =
        Client::new(endpoint(&args.addr)?, ClientConfig::default()).map_err(|e| e.to_string())?;
    client.start();
    client.connected().await.map_err(|e| e.to_string())?;
    Ok(client)
}

/// W1 and the careless sender: every event emitted in a plain loop.
async fn w1_client(args: &Args) -> Result<(), String> {
    let client = connect(args).await?;
    let start = now_us();
    for _ in 0..args.n {
        client
            .emit("message", STANDARD_PAYLOAD)
            .await
            .map_err(|e| e.to_string())?;
    }
    emit(json!({"ev":"sent","start_us":start,"end_us":now_us()}));
    std::mem::forget(client);
    Ok(())
}

async fn w2_client(args: &Args) -> Result<(), String> {
    let client =
        Client::new(endpoint(&args.addr)?, ClientConfig::default()).map_err(|e| e.to_string())?;
    let mut events = client.events();
    client.start();
    client.connected().await.map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(args.n as usize);
    for i in 0..args.warm + args.n {
        let t0 = Instant::now();
        client
            .emit("message", STANDARD_PAYLOAD)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match events.recv().await {
                Some(ClientEvent::Message(_)) => break,
                Some(_) => {}
                None => return Err("event stream ended".into()),
            }
        }
        if i >= args.warm {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    emit(latency_summary(&mut samples));
    std::mem::forget(client);
    Ok(())
}

async fn w3_client(args: &Args) -> Result<(), String> {
    let remaining = Arc::new(AtomicU64::new(args.clients as u64));
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let client = Client::new(endpoint(&args.addr)?, ClientConfig::default())
            .map_err(|e| e.to_string())?;
        let (count, rem, n, total) = (
            Arc::new(AtomicU64::new(0)),
            remaining.clone(),
            args.n,
            args.n * args.clients as u64,
        );
        client.on("message", move |_| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 == n
                && rem.fetch_sub(1, Ordering::AcqRel) == 1
            {
                emit(json!({"ev":"done","count":total,"end_us":now_us()}));
            }
        });
        client.start();
        client.connected().await.map_err(|e| e.to_string())?;
        client.emit("hello", &()).await.map_err(|e| e.to_string())?;
        clients.push(client);
    }
    std::mem::forget(clients);
    Ok(())
}
