//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

/// Every await in the tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `fut`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .expect("operation did not finish within the test limit")
}

#[cfg(feature = "tls")]
pub mod pki {
    use std::path::{Path, PathBuf};

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    /// A CA and a leaf signed by it, written as PEM files.
    pub struct Leaf {
        pub cert: PathBuf,
        pub key: PathBuf,
        pub cert_pem: String,
        pub key_pem: String,
    }

    pub struct Ca {
        pub cert: PathBuf,
        pub cert_pem: String,
        params: CertificateParams,
        key: KeyPair,
    }

    impl Ca {
        pub fn new(dir: &Path, name: &str) -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let cert = params.self_signed(&key).unwrap();
            let cert_pem = cert.pem();
            let path = dir.join(format!("{name}.pem"));
            std::fs::write(&path, &cert_pem).unwrap();
            Ca {
                cert: path,
                cert_pem,
                params,
                key,
            }
        }

        /// A leaf for `names` (DNS names or IP addresses), for server and
        /// client authentication.
        pub fn leaf(&self, dir: &Path, file: &str, names: &[&str]) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(DnType::CommonName, file);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let issuer = Issuer::from_params(&self.params, &self.key);
            let cert = params.signed_by(&key, &issuer).unwrap();
            let cert_pem = cert.pem();
            let key_pem = key.serialize_pem();
            let cert_path = dir.join(format!("{file}.pem"));
            let key_path = dir.join(format!("{file}.key"));
            std::fs::write(&cert_path, &cert_pem).unwrap();
            std::fs::write(&key_path, &key_pem).unwrap();
            Leaf {
                cert: cert_path,
                key: key_path,
                cert_pem,
                key_pem,
            }
        }
    }
}
