//! TLS, "local only" (node-ipc's basic TLS example): the server has a key
//! and certificate, the client does not verify them. This encrypts but
//! authenticates nobody — anyone can impersonate the server. Local
//! development only; see `tls_most_secure` for the real thing.
//!
//! Certificates are generated at run time into a temporary directory.

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
        ..TlsOptions::default()
    };
    eprintln!("warning: rejectUnauthorized=false: the server's identity is not checked");
    let client = TlsOptions {
        reject_unauthorized: Some(false),
        ..TlsOptions::default()
    };
    let reply = tls_world_hello::world_hello(server, client, "127.0.0.1").await?;
    assert_eq!(reply, "hello world!");
    Ok(())
}
