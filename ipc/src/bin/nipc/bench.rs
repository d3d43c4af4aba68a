//! `nipc bench`: throughput, latency and broadcast fan-out, in-process
//! over a Unix socket.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc::{ClientEvent, Config, Ipc};
use serde_json::json;

use crate::output::{Fail, Res};

fn bench_config() -> Config {
    Config {
        silent: true,
        ..Config::default()
    }
}

fn progress(label: &str, done: u64, total: u64) {
    let mut e = std::io::stderr().lock();
    let _ = write!(
        e,
        "\r  {label}: {done}/{total} ({:>3}%)",
        done * 100 / total.max(1)
    );
    let _ = e.flush();
}

async fn wait_count(counter: &AtomicU64, target: u64, label: &str) -> Res {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = Instant::now();
    loop {
        let n = counter.load(Ordering::Relaxed);
        if last.elapsed() > Duration::from_millis(200) || n >= target {
            progress(label, n, target);
            last = Instant::now();
        }
        if n >= target {
            eprintln!();
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Fail(format!(
                "{label}: only {n} of {target} arrived within 300 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn bench(
    quick: bool,
    frames: Option<u64>,
    rtts: Option<usize>,
    fanout: Option<u64>,
) -> Res {
    let (f, r, b) = if quick {
        (100_000u64, 2_000usize, 10_000u64)
    } else {
        (1_000_000, 20_000, 100_000)
    };
    let frames = frames.unwrap_or(f).max(1);
    let rtts = rtts.unwrap_or(r).max(1);
    let fanout_msgs = fanout.unwrap_or(b).max(1);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.sock");
    let ipc = Ipc::with_config(bench_config());
    let server = ipc.serve(Some(&path))?;
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    server.on("message", move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    });
    server.on_message("ping", |m, from| {
        if let Some(s) = from.socket() {
            if let Some(d) = m.data_json() {
                let pong = bytes::Bytes::from(
                    [
                        b"{\"type\":\"pong\",\"data\":".as_slice(),
                        d,
                        b"}\x0c".as_slice(),
                    ]
                    .concat(),
                );
                // The round-trip client waits for every pong: say why one
                // cannot come.
                if let Err(e) = s.try_send_frame(pong) {
                    eprintln!("nipc bench: cannot answer a ping: {e}");
                }
            }
        }
    });
    server.start().await?;
    eprintln!(
        "nipc bench: in-process over a Unix socket ({})",
        path.display()
    );

    // 1. Throughput.
    let client = ipc.connect_to("bench", Some(&path))?;
    client.connected().await?;
    let payload = "x".repeat(64);
    let t0 = Instant::now();
    let sender = {
        let client = client.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            for _ in 0..frames {
                if let Err(e) = client.emit("message", &payload).await {
                    return Err(e.to_string());
                }
            }
            Ok(())
        })
    };
    wait_count(&received, frames, "throughput").await?;
    let tput = t0.elapsed();
    sender.await?.map_err(Fail)?;
    let frame_len = serde_json::to_string(&json!({"type":"message","data":payload}))?.len() + 1;

    // 2. Latency.
    let mut events = client.events();
    let mut samples = Vec::with_capacity(rtts);
    for i in 0..rtts {
        let t = Instant::now();
        client.emit("ping", &i).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ClientEvent::Message(m))) if m.event() == "pong" => break,
                Ok(Some(_)) => continue,
                _ => return Err(Fail("latency: no pong within 10 s".into())),
            }
        }
        samples.push(t.elapsed());
        if i % 500 == 0 || i + 1 == rtts {
            progress("latency", i as u64 + 1, rtts as u64);
        }
    }
    eprintln!();
    drop(events);
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let (p50, p99) = (pct(0.50), pct(0.99));
    let _ = ipc.disconnect("bench").await;

    // 3. Broadcast fan-out to 8 clients.
    let got = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..8 {
        let g = got.clone();
        let c = ipc.connect_to_with(&format!("fan{i}"), Some(&path), |c| {
            c.on("news", move |_| {
                g.fetch_add(1, Ordering::Relaxed);
            });
        })?;
        clients.push(c);
    }
    for c in &clients {
        c.connected().await?;
    }
    while server.connections() < 8 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    let total = fanout_msgs * 8;
    let mut sent = 0u64;
    while sent < fanout_msgs {
        // Never let a queue overflow: broadcast drops slow peers by design.
        let delivered = got.load(Ordering::Relaxed);
        if sent * 8 - delivered > 8 * 20_000 {
            tokio::task::yield_now().await;
            continue;
        }
        let n = server.broadcast("news", &payload).await?;
        if n < 8 {
            return Err(Fail(format!("broadcast reached {n} of 8 clients")));
        }
        sent += 1;
    }
    wait_count(&got, total, "fan-out").await?;
    let fan = t0.elapsed();
    for i in 0..8 {
        let _ = ipc.disconnect(&format!("fan{i}")).await;
    }
    server.stop().await;

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!();
    println!("| workload | count | time | result |");
    println!("|---|---|---|---|");
    println!(
        "| throughput (client → server, {frame_len}-byte frames) | {frames} | {:.2} s | {:.0} msg/s, {:.1} MB/s |",
        tput.as_secs_f64(),
        rate(frames, tput),
        rate(frames, tput) * frame_len as f64 / 1e6
    );
    println!(
        "| round-trip latency (emit → echo) | {rtts} | — | p50 {:.1} µs, p99 {:.1} µs |",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    println!(
        "| broadcast fan-out to 8 clients | {fanout_msgs} × 8 | {:.2} s | {:.0} deliveries/s |",
        fan.as_secs_f64(),
        rate(total, fan)
    );
    Ok(())
}
