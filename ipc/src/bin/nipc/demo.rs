//! `nipc demo`: a server and three clients in one process, narrated.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc::{ClientEvent, Config, Ipc, Server, ServerEvent};
use serde_json::json;

use crate::output::{Fail, Res};

struct Narrator {
    t0: Instant,
}

impl Narrator {
    fn say(&self, who: &str, what: impl std::fmt::Display) {
        let t = self.t0.elapsed().as_secs_f64();
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "[{t:>5.2}s] {who:<8} {what}");
        let _ = o.flush();
    }
}

async fn next_message(events: &mut ipc::EventStream<ClientEvent>, name: &str) -> Res<ipc::Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(ClientEvent::Message(m))) if m.event() == name => return Ok(m),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Fail(format!("demo: client gone while waiting for {name}"))),
            Err(_) => return Err(Fail(format!("demo: no {name:?} within 5 s"))),
        }
    }
}

async fn next_lifecycle(events: &mut ipc::EventStream<ClientEvent>, name: &str) -> Res {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(ev)) if ev.name() == name && ev.message().is_none() => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Fail(format!("demo: client gone while waiting for {name}"))),
            Err(_) => return Err(Fail(format!("demo: no {name} within 5 s"))),
        }
    }
}

fn demo_server(ipc: &Ipc, path: &std::path::Path, n: Arc<Narrator>) -> Res<Server> {
    let server = ipc.serve(Some(path))?;
    let say = n.clone();
    server.on("connect", move |ev| {
        if let ServerEvent::Connect(s) = ev {
            say.say("server", format_args!("client #{} connected", s.id()));
        }
    });
    let say = n.clone();
    server.on_message("hello", move |m, from| {
        let name: String = m.data().unwrap_or_default();
        say.say("server", format_args!("got hello from {name:?}, answering"));
        if let Some(s) = from.socket() {
            if let Err(e) = s.try_emit(
                "welcome",
                &json!({"to": name, "text": format!("hi {name}!")}),
            ) {
                say.say("server", format_args!("cannot answer {name:?}: {e}"));
            }
        }
    });
    let say = n;
    server.on("socket.disconnected", move |ev| {
        if let ServerEvent::SocketDisconnected { socket, .. } = ev {
            say.say(
                "server",
                format_args!("client #{} disconnected", socket.id()),
            );
        }
    });
    Ok(server)
}

pub(crate) async fn demo() -> Res {
    let n = Arc::new(Narrator { t0: Instant::now() });
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("app.world");
    let config = Config {
        id: "world".into(),
        retry: Duration::from_millis(200),
        silent: true,
        ..Config::default()
    };
    let server_ipc = Ipc::with_config(config.clone());
    let server = demo_server(&server_ipc, &path, n.clone())?;
    let ep = server.start().await?;
    n.say("server", format_args!("listening on {ep}"));

    let clients_ipc = Ipc::with_config(config);
    let names = ["alice", "bob", "carol"];
    let mut streams = Vec::new();
    for name in names {
        let mut stream = None;
        clients_ipc.connect_to_with(name, Some(&path), |c| stream = Some(c.events()))?;
        let mut stream = stream.ok_or_else(|| Fail("demo: duplicate client id".into()))?;
        next_lifecycle(&mut stream, "connect").await?;
        n.say(name, "connected");
        streams.push(stream);
    }

    for (i, name) in names.iter().enumerate() {
        let c = clients_ipc
            .of(name)
            .ok_or_else(|| Fail(format!("demo: {name} missing")))?;
        n.say(name, "emits hello");
        c.emit("hello", name).await?;
        let m = next_message(&mut streams[i], "welcome").await?;
        n.say(name, format_args!("received welcome {}", m.data_value()));
    }

    n.say("server", "broadcasts news to everyone");
    let k = server
        .broadcast("news", "the server says hello to all")
        .await?;
    n.say("server", format_args!("news queued to {k} clients"));
    for (i, name) in names.iter().enumerate() {
        let m = next_message(&mut streams[i], "news").await?;
        n.say(name, format_args!("received news {}", m.data_value()));
    }

    n.say("server", "stops (simulated restart)");
    server.stop().await;
    for (i, name) in names.iter().enumerate() {
        next_lifecycle(&mut streams[i], "disconnect").await?;
        n.say(name, "disconnected; retrying every 200 ms");
    }
    let server = demo_server(&server_ipc, &path, n.clone())?;
    server.start().await?;
    n.say("server", "started again");
    for (i, name) in names.iter().enumerate() {
        next_lifecycle(&mut streams[i], "connect").await?;
        n.say(name, "reconnected");
    }
    let c = clients_ipc
        .of("alice")
        .ok_or_else(|| Fail("demo: alice missing".into()))?;
    c.emit("hello", "alice").await?;
    let m = next_message(&mut streams[0], "welcome").await?;
    n.say(
        "alice",
        format_args!("after the restart: {}", m.data_value()),
    );

    let rtt = c.ping(Duration::from_secs(5)).await?;
    n.say(
        "alice",
        format_args!("ping: {:.0} µs round trip", rtt.as_secs_f64() * 1e6),
    );

    for name in names {
        clients_ipc.disconnect(name).await?;
        n.say(name, "disconnected (explicitly, no retry)");
    }
    server.stop().await;
    n.say("server", "stopped; demo complete");
    Ok(())
}
