//! This project's client and server, used as an application would use them:
//! `emit(..).await` in a plain loop, handlers for counting and the event
//! stream where an answer must be awaited, on the same tokio runtime flavour
//! as the ceilings for each workload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_client::{Client, ClientConfig, ClientEvent};
use ipc_server::{Peer, Server, ServerConfig};
use ipc_transport::{ConnectOptions, Endpoint, ListenOptions, UdpFamily};
use serde_json::json;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify};

use crate::{emit, is_udp, latency_summary, now_us, Addr, Args, UDP_STALL};
use ipc_benches::STANDARD_PAYLOAD;

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    Ok(match &args.addr {
        Addr::Unix(p) => Endpoint::Unix(p.clone()),
        Addr::Tcp(_) => {
            let (host, port) = args.host_port()?;
            Endpoint::Tcp { host, port }
        }
        Addr::Tls(_) => {
            let (host, port) = args.host_port()?;
            Endpoint::Tls { host, port }
        }
        Addr::Udp4(_) => {
            let (host, port) = args.host_port()?;
            Endpoint::Udp {
                family: UdpFamily::V4,
                host,
                port,
            }
        }
    })
}

/// A client configuration for the address (TLS: trusting the server's CA).
fn client_config(args: &Args) -> Result<ClientConfig, String> {
    let mut config = ClientConfig::default();
    if matches!(args.addr, Addr::Tls(_)) {
        config.connect = ConnectOptions {
            tls: Some(crate::tls::client_config(&args.ca)?),
            ..ConnectOptions::default()
        };
    }
    Ok(config)
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    let rt = crate::runtime(args)?;
    rt.block_on(async move {
        match (args.role.as_str(), args.workload.as_str()) {
            ("server", "w1") if is_udp(&args.addr) => w1_udp_receiver(args).await,
            ("client", "w1") if is_udp(&args.addr) => w1_udp_sender(args).await,
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
    if matches!(args.addr, Addr::Tls(_)) {
        config.listen = ListenOptions {
            tls: Some(crate::tls::server_config(&args.ca)?),
            ..ListenOptions::default()
        };
    }
    let server = Server::new(endpoint(args)?, config).map_err(|e| e.to_string())?;
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
    if workload == "w2" {
        // Echo every message back to its sender from a handler, as a
        // node-ipc server does (`server.on(type, (data, socket) => …)`).
        server.on_message("message", |message, from| {
            let echoed = std::str::from_utf8(message.data_json().unwrap_or(b"{}"))
                .map_err(|e| e.to_string())
                .and_then(|json| serde_json::from_str::<&RawValue>(json).map_err(|e| e.to_string()))
                .and_then(|data| match from.socket() {
                    Some(socket) => socket
                        .try_emit(message.event(), data)
                        .map_err(|e| e.to_string()),
                    None => Err("not a stream peer".into()),
                });
            if let Err(e) = echoed {
                emit(json!({"ev":"error","message":e}));
            }
        });
    }
    server.start().await.map_err(|e| e.to_string())?;
    emit(json!({"ev":"ready"}));
    if workload == "w3" {
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
    std::mem::forget(server);
    Ok(())
}

async fn connect(args: &Args) -> Result<Client, String> {
    let client = Client::new(endpoint(args)?, client_config(args)?).map_err(|e| e.to_string())?;
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
    let client = Client::new(endpoint(args)?, client_config(args)?).map_err(|e| e.to_string())?;
    let mut events = client.events();
    client.start();
    client.connected().await.map_err(|e| e.to_string())?;
    let (n, warm) = (args.n, args.warm);
    // The round trips run in a task of their own, as an application's
    // would: the connection's reader wakes it without a trip through the
    // runtime's driver (which waking the `block_on` future costs).
    let rounds = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(n as usize);
        for i in 0..warm + n {
            let t0 = Instant::now();
            client
                .emit("message", STANDARD_PAYLOAD)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                match events.recv().await {
                    Some(ClientEvent::Message(_)) => break,
                    Some(_) => {}
                    None => return Err("event stream ended".to_string()),
                }
            }
            if i >= warm {
                samples.push(t0.elapsed().as_nanos() as u64);
            }
        }
        std::mem::forget(client);
        Ok(samples)
    });
    let mut samples = rounds.await.map_err(|e| e.to_string())??;
    emit(latency_summary(&mut samples));
    Ok(())
}

async fn w3_client(args: &Args) -> Result<(), String> {
    let remaining = Arc::new(AtomicU64::new(args.clients as u64));
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let client =
            Client::new(endpoint(args)?, client_config(args)?).map_err(|e| e.to_string())?;
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

/// UDP W1 receiver: a UDP server counting `message` events in a handler,
/// acknowledging every `ack=N` (default [`crate::UDP_ACK_EVERY`]) to the sender, and reporting
/// `done` at `n` deliveries or at the sender's `end` datagram.
async fn w1_udp_receiver(args: &Args) -> Result<(), String> {
    let server =
        Server::new(endpoint(args)?, ServerConfig::default()).map_err(|e| e.to_string())?;
    let (n, ack_every) = (args.n, args.ack_every);
    let count = Arc::new(AtomicU64::new(0));
    let last_us = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let (ack_tx, mut ack_rx) = mpsc::channel::<(SocketAddr, u64)>(64);
    {
        let (count, last_us, finished) = (count.clone(), last_us.clone(), finished.clone());
        server.on_message("message", move |_, from| {
            let c = count.fetch_add(1, Ordering::Relaxed) + 1;
            let now = now_us();
            last_us.store(now as u64, Ordering::Relaxed);
            if c % ack_every == 0 {
                if let Peer::Udp(a) = from {
                    let _ = ack_tx.try_send((*a, c));
                }
            }
            if c == n && !finished.swap(true, Ordering::AcqRel) {
                emit(json!({"ev":"done","count":c,"sent":n,"end_us":now}));
            }
        });
    }
    server.on_message("end", move |m, _| {
        let sent: u64 = m.data().unwrap_or(0);
        if !finished.swap(true, Ordering::AcqRel) {
            let c = count.load(Ordering::Relaxed);
            let end = last_us.load(Ordering::Relaxed) as f64;
            emit(json!({"ev":"done","count":c,"sent":sent,"end_us":end}));
        }
    });
    server.start().await.map_err(|e| e.to_string())?;
    let acker = server.clone();
    tokio::spawn(async move {
        while let Some((to, c)) = ack_rx.recv().await {
            let _ = acker.emit_to(to, "ack", &c).await;
        }
    });
    emit(json!({"ev":"ready"}));
    std::mem::forget(server);
    Ok(())
}

/// UDP W1 sender: a UDP server on its own port sending `n` events with
/// `emit_to`, paced by the receiver's acknowledgements (see the crate docs).
async fn w1_udp_sender(args: &Args) -> Result<(), String> {
    let (host, port) = args.host_port()?;
    let target: SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|e| format!("bad UDP target {host}:{port}: {e}"))?;
    let me = Server::new(
        Endpoint::Udp {
            family: UdpFamily::V4,
            host: "127.0.0.1".into(),
            port: 0,
        },
        ServerConfig::default(),
    )
    .map_err(|e| e.to_string())?;
    let acked = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Notify::new());
    {
        let (acked, progress) = (acked.clone(), progress.clone());
        me.on_message("ack", move |m, _| {
            if let Ok(c) = m.data::<u64>() {
                acked.fetch_max(c, Ordering::AcqRel);
                progress.notify_one();
            }
        });
    }
    me.start().await.map_err(|e| e.to_string())?;
    let mut written_off = 0u64;
    let mut stalls = 0u64;
    let start = now_us();
    for i in 0..args.n {
        while i.saturating_sub(acked.load(Ordering::Acquire) + written_off) >= args.window {
            if tokio::time::timeout(UDP_STALL, progress.notified())
                .await
                .is_err()
            {
                stalls += 1;
                written_off = i.saturating_sub(acked.load(Ordering::Acquire));
            }
        }
        me.emit_to(target, "message", STANDARD_PAYLOAD)
            .await
            .map_err(|e| e.to_string())?;
    }
    let end = now_us();
    for _ in 0..3 {
        me.emit_to(target, "end", &args.n)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    emit(json!({"ev":"sent","count":args.n,"stalls":stalls,"start_us":start,"end_us":end}));
    std::mem::forget(me);
    Ok(())
}
