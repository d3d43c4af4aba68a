//! Run-time certificates for the TLS examples: a private CA, and leaves
//! signed by it for `localhost` / `127.0.0.1`, written as PEM files.
//! Not every example uses every field.
#![allow(dead_code)]

use std::error::Error;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its key, as files.
pub(crate) struct Pair {
    /// PEM certificate.
    pub(crate) cert: PathBuf,
    /// PEM private key.
    pub(crate) key: PathBuf,
}

/// A CA certificate (file) and leaves for a server and a client.
pub(crate) struct Pki {
    /// The CA certificate every side may trust.
    pub(crate) ca: PathBuf,
    /// The server's certificate (names `localhost`, `127.0.0.1`).
    pub(crate) server: Pair,
    /// The client's certificate.
    pub(crate) client: Pair,
}

/// Generates a fresh CA, server and client certificate in `dir`.
pub(crate) fn generate(dir: &Path) -> Result<Pki, Box<dyn Error>> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "example CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let leaf = |name: &str| -> Result<Pair, Box<dyn Error>> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer)?;
        let pair = Pair {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&pair.cert, cert.pem())?;
        std::fs::write(&pair.key, key.serialize_pem())?;
        Ok(pair)
    };
    Ok(Pki {
        ca: ca_path,
        server: leaf("server")?,
        client: leaf("client")?,
    })
}
