//! The world/hello exchange over UDP, shared by `udp4` and `udp6`. UDP has
//! no clients in node-ipc: both sides are servers (`serveNet(..., 'udp4')`)
//! and send with `server.emit({address, port}, type, data)`.

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use ipc::prelude::*;

fn addr_of(ep: &Endpoint) -> Result<SocketAddr, Box<dyn Error>> {
    match ep {
        Endpoint::Udp { host, port, .. } => {
            let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse()?;
            Ok(SocketAddr::new(ip, *port))
        }
        other => Err(format!("expected a UDP endpoint, got {other}").into()),
    }
}

/// Runs world and hello on `host` with `make` (udp4 or udp6); returns the
/// reply hello received.
pub(crate) async fn world_hello(
    make: fn() -> ServeNet,
    host: &str,
) -> Result<String, Box<dyn Error>> {
    let world = Ipc::new();
    world.configure(|c| c.id = "world".into());
    let server = world.serve_net(make().host(host).port(0))?;
    server.handle("message", |text: String, from, server| {
        println!("world: got a datagram from {from}: {text}");
        server.send(from, "message", &format!("{text} world!"))
    });
    let world_addr = addr_of(&server.start().await?)?;
    println!("world: bound to {world_addr}");

    let hello = Ipc::new();
    hello.configure(|c| c.id = "hello".into());
    let own = hello.serve_net(make().host(host).port(0))?;
    let mut events = own.events();
    let hello_addr = addr_of(&own.start().await?)?;
    println!("hello: bound to {hello_addr}, sending to world");
    own.emit_to(world_addr, "message", "hello").await?;
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = events.recv().await {
            if let ServerEvent::Message { message, .. } = ev {
                return message.data::<String>().ok();
            }
        }
        None
    })
    .await?
    .ok_or("no reply")?;
    println!("hello: got a datagram from world: {reply}");
    own.stop().await;
    server.stop().await;
    Ok(reply)
}
