//! node-ipc's UDP example over IPv6 (`udp6` on `::1`). On a host without
//! IPv6 loopback it says so and exits successfully.

#[path = "support/udp_world_hello.rs"]
mod udp_world_hello;

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        println!("this host has no IPv6 loopback (::1): nothing to show");
        return Ok(());
    }
    let reply = udp_world_hello::world_hello(ipc::ServeNet::udp6, "::1").await?;
    assert_eq!(reply, "hello world!");
    Ok(())
}
