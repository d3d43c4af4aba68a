//! node-ipc's UDP example over IPv4: two UDP endpoints, `world` and
//! `hello`, each bound to its own port, exchanging one datagram each way.

#[path = "support/udp_world_hello.rs"]
mod udp_world_hello;

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reply = udp_world_hello::world_hello(ipc::ServeNet::udp4, "127.0.0.1").await?;
    assert_eq!(reply, "hello world!");
    Ok(())
}
