//! TLS, "most secure" (node-ipc's example of that name): mutual TLS. The
//! server requires and verifies a client certificate, the client verifies
//! the server's certificate and its name (`localhost`). This is the only
//! one of the three TLS setups that authenticates both sides.
//!
//! Certificates are generated at run time: a private CA signs a server and
//! a client leaf; each side trusts the CA (`trustedConnections`).

#[path = "support/pki.rs"]
mod pki;
#[path = "support/tls_world_hello.rs"]
mod tls_world_hello;

use ipc::TlsOptions;

/// Runs the example.
#[tokio::main]
pub(crate) async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let pki = pki::generate(dir.path())?;
    let server = TlsOptions {
        public: Some(pki.server.cert.clone()),
        private: Some(pki.server.key.clone()),
        trusted_connections: vec![pki.ca.clone()],
        request_cert: Some(true),
        reject_unauthorized: Some(true),
        ..TlsOptions::default()
    };
    let client = TlsOptions {
        public: Some(pki.client.cert.clone()),
        private: Some(pki.client.key.clone()),
        trusted_connections: vec![pki.ca.clone()],
        reject_unauthorized: Some(true),
        servername: Some("localhost".into()),
        ..TlsOptions::default()
    };
    let reply = tls_world_hello::world_hello(server, client, "127.0.0.1").await?;
    assert_eq!(reply, "hello world!");
    Ok(())
}
