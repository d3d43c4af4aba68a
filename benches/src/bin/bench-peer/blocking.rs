//! This project's blocking client and server (`ipc_client::blocking`,
//! `ipc_server::blocking`), used as an application would use them: `emit`
//! in a plain loop and `flush` at the end, `recv_timeout` where an answer
//! must be awaited, handlers on the server. No async runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_client::blocking::BlockingClient;
use ipc_client::{ClientConfig, ClientEvent};
use ipc_server::blocking::BlockingServer;
use ipc_server::ServerConfig;
use ipc_transport::Endpoint;
use serde_json::json;
use serde_json::value::RawValue;

use crate::{emit, latency_summary, now_us, Addr, Args};
use ipc_benches::STANDARD_PAYLOAD;

/// How long a client waits for any one event before it gives up.
const STALL: Duration = Duration::from_secs(60);

fn endpoint(args: &Args) -> Result<Endpoint, String> {
    Ok(match &args.addr {
        Addr::Unix(p) => Endpoint::Unix(p.clone()),
        Addr::Tcp(_) => {
            let (host, port) = args.host_port()?;
            Endpoint::Tcp { host, port }
        }
        Addr::Tls(_) | Addr::Udp4(_) => {
            return Err("the blocking subject runs over unix and tcp only".into())
        }
    })
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    match (args.role.as_str(), args.workload.as_str()) {
        ("server", w @ ("w1" | "w2" | "w3")) => server(args, w),
        ("client", "w1") => w1_client(args),
        ("client", "w2") => w2_client(args),
        ("client", "w3") => w3_client(args),
        (r, w) => Err(format!("no {r} for {w}")),
    }
}

fn server(args: &Args, workload: &str) -> Result<(), String> {
    let mut config = ServerConfig::default();
    if workload == "w3" {
        // The broadcast loop may queue much of the run before the writers
        // catch up: size the per-connection bound for it.
        config.queue_bytes = config
            .queue_bytes
            .max(usize::try_from(args.n).unwrap_or(0) * 100 + (1 << 20));
    }
    let server = BlockingServer::bind(endpoint(args)?, config).map_err(|e| e.to_string())?;
    let counter = Arc::new(AtomicU64::new(0));
    let n = args.n;
    let (hello_tx, hello_rx) = mpsc::channel::<()>();
    match workload {
        "w1" => {
            let c = counter.clone();
            server.on("message", move |_, _| {
                if c.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    emit(json!({"ev":"done","count":n,"end_us":now_us()}));
                }
            });
        }
        "w2" => {
            server.on("message", |message, socket| {
                let echoed = std::str::from_utf8(message.data_json().unwrap_or(b"{}"))
                    .map_err(|e| e.to_string())
                    .and_then(|json| {
                        serde_json::from_str::<&RawValue>(json).map_err(|e| e.to_string())
                    })
                    .and_then(|data| {
                        socket
                            .emit(message.event(), data)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = echoed {
                    emit(json!({"ev":"error","message":e}));
                }
            });
        }
        _ => {
            let tx = Mutex::new(hello_tx);
            server.on("hello", move |_, _| {
                let _ = tx.lock().map(|t| t.send(()));
            });
        }
    }
    server.on_error(|e| emit(json!({"ev":"error","message":e.to_string()})));
    server.start().map_err(|e| e.to_string())?;
    emit(json!({"ev":"ready"}));
    if workload == "w3" {
        for _ in 0..args.clients {
            hello_rx
                .recv_timeout(STALL)
                .map_err(|_| "not every client said hello".to_string())?;
        }
        emit(json!({"ev":"start","start_us":now_us()}));
        for _ in 0..args.n {
            let reached = server
                .broadcast("message", STANDARD_PAYLOAD)
                .map_err(|e| e.to_string())?;
            if reached < args.clients {
                emit(json!({"ev":"error","message":format!(
                    "a broadcast reached {reached} of {} clients", args.clients)}));
                break;
            }
        }
        emit(json!({"ev":"sent","end_us":now_us()}));
    }
    // Keep serving until stdin ends the process.
    std::mem::forget(server);
    Ok(())
}

fn connect(args: &Args) -> Result<BlockingClient, String> {
    BlockingClient::connect(endpoint(args)?, ClientConfig::default()).map_err(|e| e.to_string())
}

/// The next message event, skipping lifecycle events.
fn next_message(client: &mut BlockingClient) -> Result<(), String> {
    loop {
        match client.recv_timeout(STALL).map_err(|e| e.to_string())? {
            Some(ClientEvent::Message(_)) => return Ok(()),
            Some(ClientEvent::Error(e)) => return Err(e.to_string()),
            Some(_) => {}
            None => return Err("no message within the stall limit".into()),
        }
    }
}

fn w1_client(args: &Args) -> Result<(), String> {
    let mut client = connect(args)?;
    let start = now_us();
    for _ in 0..args.n {
        client
            .emit("message", STANDARD_PAYLOAD)
            .map_err(|e| e.to_string())?;
    }
    client.flush().map_err(|e| e.to_string())?;
    emit(json!({"ev":"sent","start_us":start,"end_us":now_us()}));
    std::mem::forget(client);
    Ok(())
}

fn w2_client(args: &Args) -> Result<(), String> {
    let mut client = connect(args)?;
    let mut samples = Vec::with_capacity(args.n as usize);
    for i in 0..args.warm + args.n {
        let t0 = Instant::now();
        client
            .emit("message", STANDARD_PAYLOAD)
            .map_err(|e| e.to_string())?;
        next_message(&mut client)?;
        if i >= args.warm {
            samples.push(t0.elapsed().as_nanos() as u64);
        }
    }
    emit(latency_summary(&mut samples));
    std::mem::forget(client);
    Ok(())
}

/// One thread per client, each counting its deliveries.
fn w3_client(args: &Args) -> Result<(), String> {
    let mut threads = Vec::new();
    for _ in 0..args.clients {
        let mut client = connect(args)?;
        client.emit_empty("hello").map_err(|e| e.to_string())?;
        client.flush().map_err(|e| e.to_string())?;
        let n = args.n;
        threads.push(std::thread::spawn(move || {
            let mut count = 0u64;
            while count < n {
                if next_message(&mut client).is_err() {
                    break;
                }
                count += 1;
            }
            std::mem::forget(client);
            (count, now_us())
        }));
    }
    let mut total = 0;
    let mut end: f64 = 0.0;
    for t in threads {
        let (c, e) = t.join().map_err(|_| "client thread panicked")?;
        total += c;
        end = end.max(e);
    }
    emit(json!({"ev":"done","count":total,"end_us":end}));
    Ok(())
}
