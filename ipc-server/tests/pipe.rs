//! Server and client together over Windows named pipes: events both ways,
//! broadcast, a graceful stop that does not wait for its time limit, a
//! restart the clients come back from, and a client process that dies.
//! Runs on Windows (in CI under Wine, through `cargo xtask windows`).
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_client::{Client, ClientConfig, ClientEvent, MaxRetries, RetryConfig};
use ipc_server::{Server, ServerConfig, ServerEvent};
use ipc_transport::Endpoint;
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const T: Duration = Duration::from_secs(20);

/// Set in a child process started by [`dying_client`].
const CHILD: &str = "IPC_PIPE_TEST_CHILD";

fn endpoint(tag: &str) -> Endpoint {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "pipe:/ipcs/{}-{}-{tag}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
    .parse()
    .unwrap()
}

fn client_config(max: MaxRetries) -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            retry: Duration::from_millis(50),
            max_retries: max,
            ..RetryConfig::default()
        },
        ..ClientConfig::default()
    }
}

async fn next_server(events: &mut ipc_server::EventStream<ServerEvent>) -> ServerEvent {
    timeout(T, events.recv())
        .await
        .expect("timed out waiting for a server event")
        .expect("server event stream ended")
}

async fn next_client(events: &mut ipc_client::EventStream<ClientEvent>) -> ClientEvent {
    timeout(T, events.recv())
        .await
        .expect("timed out waiting for a client event")
        .expect("client event stream ended")
}

/// The next server event other than messages and errors, by name.
async fn next_server_named(events: &mut ipc_server::EventStream<ServerEvent>) -> String {
    loop {
        let ev = next_server(events).await;
        if let ServerEvent::Error { error, .. } = &ev {
            panic!("unexpected server error: {error}");
        }
        if !matches!(ev, ServerEvent::Message { .. }) {
            return ev.name().to_string();
        }
    }
}

/// An echo server: every `message` goes back to its sender as `echo`.
async fn echo_server(ep: &Endpoint, config: ServerConfig) -> Server {
    let server = Server::new(ep.clone(), config).unwrap();
    server.on_message("message", |m, from| {
        let data: String = m.data().unwrap();
        from.socket()
            .unwrap()
            .try_emit("echo", &format!("echo:{data}"))
            .unwrap();
    });
    timeout(T, server.start()).await.unwrap().unwrap();
    server
}

#[tokio::test]
async fn events_both_ways_and_a_broadcast_to_every_client() {
    let ep = endpoint("rt");
    let server = echo_server(&ep, ServerConfig::default()).await;
    let mut sev = server.events();
    let mut clients = Vec::new();
    for i in 0..3 {
        let client = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
        let mut cev = client.events();
        client.start();
        assert_eq!(next_client(&mut cev).await.name(), "connect");
        assert_eq!(next_server_named(&mut sev).await, "connect");
        client.emit("message", &format!("c{i}")).await.unwrap();
        let ev = next_client(&mut cev).await;
        assert_eq!(
            ev.message().unwrap().data::<String>().unwrap(),
            format!("echo:c{i}")
        );
        clients.push((client, cev));
    }
    let sent = server.broadcast("news", &"to all").await.unwrap();
    assert_eq!(sent, 3);
    for (_, cev) in &mut clients {
        let ev = next_client(cev).await;
        let m = ev.message().unwrap();
        assert_eq!(m.event(), "news");
        assert_eq!(m.data::<String>().unwrap(), "to all");
    }
    // A client that disconnects is seen by the server.
    let (first, _) = clients.remove(0);
    timeout(T, first.disconnect()).await.unwrap().unwrap();
    assert_eq!(next_server_named(&mut sev).await, "socket.disconnected");
    timeout(T, server.stop()).await.unwrap();
}

/// A graceful stop with pipe clients connected: what was queued reaches
/// them, they see the end, and the stop completes long before
/// `stop_timeout` (set far beyond this test's limit, so waiting for it
/// fails the test). A pipe has no half-close: unless the server's shutdown
/// of its side closes the pipe, the clients never see the end and the stop
/// waits for the whole `stop_timeout`.
#[tokio::test]
async fn a_graceful_stop_does_not_wait_for_its_time_limit() {
    let ep = endpoint("stop");
    let config = ServerConfig {
        stop_timeout: Duration::from_secs(600),
        ..ServerConfig::default()
    };
    let server = echo_server(&ep, config).await;
    let mut sev = server.events();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let client = Client::new(ep.clone(), client_config(MaxRetries::Limited(0))).unwrap();
        let mut cev = client.events();
        client.start();
        assert_eq!(next_client(&mut cev).await.name(), "connect");
        assert_eq!(next_server_named(&mut sev).await, "connect");
        clients.push((client, cev));
    }
    // Queued right before the stop: delivered, not dropped.
    assert_eq!(server.broadcast("bye", &"last words").await.unwrap(), 2);
    timeout(T, server.stop())
        .await
        .expect("a graceful stop over pipes must not wait for stop_timeout");
    for (_, cev) in &mut clients {
        let ev = next_client(cev).await;
        assert_eq!(
            ev.message().map(|m| m.event().to_owned()),
            Some("bye".into())
        );
        assert_eq!(next_client(cev).await.name(), "disconnect");
    }
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(next_server_named(&mut sev).await);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "close",
            "close",
            "socket.disconnected",
            "socket.disconnected"
        ]
    );
}

/// The server stops and starts again on the same pipe; a client with
/// retries comes back on its own and talks again.
#[tokio::test]
async fn clients_come_back_after_a_restart() {
    let ep = endpoint("restart");
    let server = echo_server(&ep, ServerConfig::default()).await;
    let client = Client::new(ep.clone(), client_config(MaxRetries::Unlimited)).unwrap();
    let mut cev = client.events();
    client.start();
    assert_eq!(next_client(&mut cev).await.name(), "connect");
    timeout(T, server.stop()).await.unwrap();
    assert_eq!(next_client(&mut cev).await.name(), "disconnect");
    let server = echo_server(&ep, ServerConfig::default()).await;
    loop {
        // Failed attempts while the server was away may come first.
        let ev = next_client(&mut cev).await;
        if ev.name() == "connect" {
            break;
        }
    }
    client.emit("message", "again").await.unwrap();
    let ev = loop {
        let ev = next_client(&mut cev).await;
        if ev.message().is_some() {
            break ev;
        }
    };
    assert_eq!(
        ev.message().unwrap().data::<String>().unwrap(),
        "echo:again"
    );
    timeout(T, client.disconnect()).await.unwrap().unwrap();
    timeout(T, server.stop()).await.unwrap();
}

/// The child side of [`a_client_process_that_dies_is_disconnected`]:
/// connects, says hello, prints a line, then waits to be killed.
#[tokio::test]
async fn dying_client() {
    let Ok(name) = std::env::var(CHILD) else {
        return; // a normal test run: nothing to do
    };
    let ep: Endpoint = name.parse().unwrap();
    let client = Client::new(ep, client_config(MaxRetries::Limited(0))).unwrap();
    let mut cev = client.events();
    client.start();
    assert_eq!(next_client(&mut cev).await.name(), "connect");
    client.emit("message", "from the child").await.unwrap();
    assert!(next_client(&mut cev).await.message().is_some());
    println!("@@ready");
    // Killed by the parent long before this ends.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_client_process_that_dies_is_disconnected() {
    let ep = endpoint("death");
    let server = echo_server(&ep, ServerConfig::default()).await;
    let mut sev = server.events();
    let mut child = Killed(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "dying_client", "--nocapture", "--test-threads=1"])
            .env(CHILD, ep.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let out = child.0.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("@@ready"))
    });
    assert!(
        timeout(T, ready).await.unwrap().unwrap(),
        "the child got its echo"
    );
    assert_eq!(next_server_named(&mut sev).await, "connect");
    // Killed without a word: the server sees the pipe end.
    child.0.kill().unwrap();
    let _ = child.0.wait();
    loop {
        let ev = next_server(&mut sev).await;
        match ev.name() {
            "socket.disconnected" => break,
            // A dying peer may also surface as an I/O error first.
            "error" | "message" => continue,
            other => panic!("unexpected server event {other}"),
        }
    }
    assert_eq!(next_server_named(&mut sev).await, "close");
    timeout(T, server.stop()).await.unwrap();
}
