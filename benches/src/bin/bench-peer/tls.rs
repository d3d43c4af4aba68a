//! Throwaway TLS material for the TLS cases: a CA generated at startup, a
//! server certificate it signs for `localhost` and `127.0.0.1`, and the
//! configurations built from them the way the project's tests build theirs
//! (`TlsServerConfig` / `TlsClientConfig`). The raw and serde ceilings use
//! the same rustls configurations through tokio-rustls.

use std::path::Path;

use ipc_transport::{PemSource, TlsClientConfig, TlsServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::read_ca;

/// Generates a CA and a server certificate, writes the CA's PEM to
/// `ca_path` (for the client to trust) and returns the server configuration.
pub(crate) fn server_config(ca_path: &Path) -> Result<TlsServerConfig, String> {
    let e = |e: rcgen::Error| format!("certificate generation: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench-peer CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;

    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "bench-peer server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(e)?;

    // Write then rename, so a client never reads half a file.
    let tmp = ca_path.with_extension("pem.part");
    std::fs::write(&tmp, ca_cert.pem()).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, ca_path).map_err(|e| format!("write {}: {e}", ca_path.display()))?;

    TlsServerConfig::builder()
        .cert_chain(PemSource::Inline(cert.pem()))
        .key(PemSource::Inline(key.serialize_pem()))
        .build()
        .map_err(|e| format!("TLS server config: {e}"))
}

/// A client configuration trusting only the CA in `ca_path`.
pub(crate) fn client_config(ca_path: &Path) -> Result<TlsClientConfig, String> {
    let pem = read_ca(ca_path)?;
    TlsClientConfig::builder()
        .root(PemSource::Inline(pem))
        .build()
        .map_err(|e| format!("TLS client config: {e}"))
}
