//! TLS, "more secure" (node-ipc's example of that name): both sides have
//! certificates and exchange them (`requestCert`, `trustedConnections`),
//! but `rejectUnauthorized=false` on both ends means neither is verified —
//! still no authentication, as `docs/protocol.md` §2.4 notes. Shown for parity with
//! node-ipc; use `tls_most_secure`.
//!
//! Certificates are generated at run time (a private CA signs both leaves;
//! rustls does not accept node-ipc's self-signed, CN-only fixtures).

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
        reject_unauthorized: Some(false),
        ..TlsOptions::default()
    };
    eprintln!("warning: rejectUnauthorized=false on both sides: nobody is authenticated");
    let client = TlsOptions {
        public: Some(pki.client.cert.clone()),
        private: Some(pki.client.key.clone()),
        trusted_connections: vec![pki.ca.clone()],
        reject_unauthorized: Some(false),
        ..TlsOptions::default()
    };
    let reply = tls_world_hello::world_hello(server, client, "127.0.0.1").await?;
    assert_eq!(reply, "hello world!");
    Ok(())
}
