//! TLS between real node-ipc peers and a raw rustls endpoint, with a CA,
//! server and client certificates generated at run time (`rcgen`; PEM files
//! in a temporary directory), over 127.0.0.1 and ::1:
//!
//! * Rust TLS client → Node TLS server (server auth only, then mutual TLS,
//!   then a client without a certificate that the mutual-TLS server must
//!   refuse);
//! * Node TLS client → Rust TLS server (server auth only, then mutual TLS).
//!
//! Frames are checked byte for byte (`docs/protocol.md` §7.1 F1) in both directions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use ipc_interop::{hex_decode, Flavor, Matrix, NodePeer, PeerSpec, Transport};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const F1: &str = "7b2274797065223a226d657373616765222c2264617461223a2268656c6c6f227d0c";

/// Run-time PKI: a CA, a server leaf (SANs localhost, 127.0.0.1, ::1) and a
/// client leaf, as DER for rustls and as PEM files for node-ipc.
struct Pki {
    _dir: tempfile::TempDir,
    ca_pem: PathBuf,
    server_pem: PathBuf,
    server_key: PathBuf,
    client_pem: PathBuf,
    client_key: PathBuf,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
    client_der: CertificateDer<'static>,
    client_key_der: Vec<u8>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ipc interop test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "ipc interop server",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["interop-client".into()],
        "ipc interop client",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca_pem: write("ca.pem", ca_cert.pem()),
        server_pem: write("server.pem", server_cert.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_pem: write("client.pem", client_cert.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        ca_der: ca_cert.der().clone(),
        server_der: server_cert.der().clone(),
        server_key_der: server_key.serialize_der(),
        client_der: client_cert.der().clone(),
        client_key_der: client_key.serialize_der(),
        _dir: dir,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(pki: &Pki) -> Arc<rustls::RootCertStore> {
    let mut r = rustls::RootCertStore::empty();
    r.add(pki.ca_der.clone()).unwrap();
    Arc::new(r)
}

fn key(der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec()))
}

fn connector(pki: &Pki, with_client_cert: bool) -> TlsConnector {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki));
    let cfg = if with_client_cert {
        b.with_client_auth_cert(vec![pki.client_der.clone()], key(&pki.client_key_der))
            .unwrap()
    } else {
        b.with_no_client_auth()
    };
    TlsConnector::from(Arc::new(cfg))
}

fn acceptor(pki: &Pki, require_client_cert: bool) -> TlsAcceptor {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = if require_client_cert {
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(pki), provider())
            .build()
            .unwrap();
        b.with_client_cert_verifier(v)
    } else {
        b.with_no_client_auth()
    };
    let cfg = b
        .with_single_cert(vec![pki.server_der.clone()], key(&pki.server_key_der))
        .unwrap();
    TlsAcceptor::from(Arc::new(cfg))
}

fn p(path: &Path) -> Value {
    json!(path.to_string_lossy())
}

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    with_cert: bool,
) -> Result<BufReader<ClientTls>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(s)?;
    let name = ServerName::from(addr.ip());
    let fut = connector(pki, with_cert).connect(name, tcp);
    match tokio::time::timeout(T, fut).await {
        Ok(Ok(t)) => Ok(BufReader::new(t)),
        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}")),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

async fn start_node_server(
    flavor: Flavor,
    host: IpAddr,
    tls: Value,
) -> Result<(NodePeer, SocketAddr), String> {
    let spec = PeerSpec::server(flavor, Transport::Tls { host, port: 0 }).config("tls", tls);
    let (peer, transport) = ipc_interop::spawn_server_ready(&spec, T).await.map_err(s)?;
    let Transport::Tls { port, .. } = transport else {
        return Err(format!("not a TLS transport: {transport:?}"));
    };
    Ok((peer, SocketAddr::new(host, port)))
}

/// Rust client → Node server: F1 both ways over an established connection.
async fn exchange_with_server(
    peer: &mut NodePeer,
    st: &mut BufReader<ClientTls>,
    data: &str,
) -> Result<(), String> {
    let frame = format!("{{\"type\":\"message\",\"data\":\"{data}\"}}\u{c}");
    st.get_mut().write_all(frame.as_bytes()).await.map_err(s)?;
    st.get_mut().flush().await.map_err(s)?;
    let ev = peer
        .expect(|e| is_msg(e, "message", &json!(data)), T)
        .await
        .map_err(s)?;
    let sock = ev.socket_arg(1).ok_or("message without its socket")?;
    peer.command(
        json!({"cmd":"emit","socket":sock,"type":"message","data":"hello"}),
        T,
    )
    .await
    .map_err(s)?;
    let got = read_frame(st, 0x0c).await?;
    check_bytes("F1 from the Node server", &got, &hex_decode(F1).unwrap())
}

async fn node_server_case(flavor: Flavor, host: IpAddr, pki: &Pki) -> Result<(), String> {
    let tls = json!({"private": p(&pki.server_key), "public": p(&pki.server_pem)});
    let (mut peer, addr) = start_node_server(flavor, host, tls).await?;
    let mut st = tls_connect(pki, addr, false).await?;
    exchange_with_server(&mut peer, &mut st, "hello").await?;
    peer.kill().await;
    Ok(())
}

async fn node_server_mtls_case(flavor: Flavor, host: IpAddr, pki: &Pki) -> Result<(), String> {
    let tls = json!({
        "private": p(&pki.server_key),
        "public": p(&pki.server_pem),
        "trustedConnections": [p(&pki.ca_pem)],
        "requestCert": true,
        "rejectUnauthorized": true,
    });
    let (mut peer, addr) = start_node_server(flavor, host, tls).await?;

    // A client without a certificate is refused: with TLS 1.3 its own
    // handshake completes, then the server's alert ends the connection and
    // nothing it wrote is dispatched.
    if let Ok(mut bad) = tls_connect(pki, addr, false).await {
        let frame = b"{\"type\":\"message\",\"data\":\"rejected\"}\x0c";
        let _ = bad.get_mut().write_all(frame).await;
        let _ = bad.get_mut().flush().await;
        expect_closed(&mut bad).await?;
    }

    let mut st = tls_connect(pki, addr, true).await?;
    let frame = b"{\"type\":\"message\",\"data\":\"authenticated\"}\x0c";
    st.get_mut().write_all(frame).await.map_err(s)?;
    st.get_mut().flush().await.map_err(s)?;
    let evs = peer
        .collect_until(|e| is_msg(e, "message", &json!("authenticated")), T)
        .await
        .map_err(s)?;
    if let Some(e) = evs
        .iter()
        .find(|e| is_msg(e, "message", &json!("rejected")))
    {
        return Err(format!(
            "frame from the unauthenticated client dispatched: {e}"
        ));
    }
    exchange_with_server(&mut peer, &mut st, "hello").await?;
    peer.kill().await;
    Ok(())
}

async fn node_client_case(
    flavor: Flavor,
    host: IpAddr,
    pki: &Pki,
    mutual: bool,
) -> Result<(), String> {
    let listener = TcpListener::bind((host, 0)).await.map_err(s)?;
    let port = listener.local_addr().map_err(s)?.port();
    let mut tls = json!({"trustedConnections": [p(&pki.ca_pem)], "rejectUnauthorized": true});
    if mutual {
        tls["private"] = p(&pki.client_key);
        tls["public"] = p(&pki.client_pem);
    }
    if v6_ip_san_broken(flavor, host) {
        // Verify the DNS SAN instead (see `v6_ip_san_broken`).
        tls["servername"] = json!("localhost");
    }
    let spec = PeerSpec::client(flavor, Transport::Tls { host, port }).config("tls", tls);
    let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
    let tcp = match tokio::time::timeout(T, listener.accept()).await {
        Ok(Ok((tcp, _))) => tcp,
        Ok(Err(e)) => return Err(format!("accept failed: {e}")),
        Err(_) => return Err("no connection from the Node client".into()),
    };
    let tls_stream = match tokio::time::timeout(T, acceptor(pki, mutual).accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let why = match peer.expect(|e| e.is_event("error"), T).await {
                Ok(ev) => ev.to_string(),
                Err(err) => err.to_string(),
            };
            return Err(format!("TLS accept failed: {e}; Node client: {why}"));
        }
        Err(_) => return Err("TLS accept timed out".into()),
    };
    if mutual && tls_stream.get_ref().1.peer_certificates().is_none() {
        return Err("no client certificate presented".into());
    }
    let mut st = BufReader::new(tls_stream);
    peer.ready(T).await.map_err(s)?;
    peer.command(json!({"cmd":"emit","type":"message","data":"hello"}), T)
        .await
        .map_err(s)?;
    let got = read_frame(&mut st, 0x0c).await?;
    check_bytes("F1 from the Node client", &got, &hex_decode(F1).unwrap())?;
    st.get_mut()
        .write_all(&hex_decode(F1).unwrap())
        .await
        .map_err(s)?;
    st.get_mut().flush().await.map_err(s)?;
    peer.expect(|e| is_msg(e, "message", &json!("hello")), T)
        .await
        .map_err(s)?;
    peer.kill().await;
    Ok(())
}

/// Node 22 (the runtime of the v14 peers) does not match an IPv6 host such
/// as `::1` against the certificate's IPv6 IP SAN (`tls.checkServerIdentity`
/// fails with `ERR_TLS_CERT_ALTNAME_INVALID`; Node 20 accepts it). Clients on
/// Node 22 connecting to `::1` therefore verify a DNS SAN via `servername`.
fn v6_ip_san_broken(flavor: Flavor, host: IpAddr) -> bool {
    flavor.needs_node22() && host.is_ipv6()
}

/// The behaviour behind `v6_ip_san_broken`, asserted so a runtime update
/// that fixes it shows up: without `servername` the Node 22 client refuses
/// the Rust server's certificate for `::1`.
async fn node22_v6_ip_san_case(flavor: Flavor, pki: &Pki) -> Result<(), String> {
    let listener = TcpListener::bind((V6, 0)).await.map_err(s)?;
    let port = listener.local_addr().map_err(s)?.port();
    let tls = json!({"trustedConnections": [p(&pki.ca_pem)], "rejectUnauthorized": true});
    let spec = PeerSpec::client(flavor, Transport::Tls { host: V6, port }).config("tls", tls);
    let mut peer = NodePeer::spawn(&spec).await.map_err(s)?;
    let acceptor = acceptor(pki, false);
    let server = tokio::spawn(async move {
        if let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });
    let ev = peer
        .expect(|e| e.is_event("error") || e.kind() == "ready", T)
        .await
        .map_err(s)?;
    server.abort();
    if ev.error_code() == Some("ERR_TLS_CERT_ALTNAME_INVALID") {
        Ok(())
    } else {
        Err(format!(
            "expected ERR_TLS_CERT_ALTNAME_INVALID (Node 22 IPv6 IP-SAN behaviour), got {ev}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_both_directions() {
    let pki = pki();
    let mut m = Matrix::new("tls");
    for flavor in Flavor::ALL {
        if !m.require(flavor) {
            continue;
        }
        for (label, host) in [("tls4", V4), ("tls6", V6)] {
            let res = bounded(node_server_case(flavor, host, &pki)).await;
            m.outcome(flavor.label(), label, "node-server", res);
            let res = bounded(node_server_mtls_case(flavor, host, &pki)).await;
            m.outcome(flavor.label(), label, "node-server-mtls", res);
            let res = bounded(node_client_case(flavor, host, &pki, false)).await;
            m.outcome(flavor.label(), label, "node-client", res);
            let res = bounded(node_client_case(flavor, host, &pki, true)).await;
            m.outcome(flavor.label(), label, "node-client-mtls", res);
            if v6_ip_san_broken(flavor, host) {
                let res = bounded(node22_v6_ip_san_case(flavor, &pki)).await;
                m.outcome(flavor.label(), label, "node22-ipv6-ip-san-refused", res);
            }
        }
    }
    m.finish();
}
