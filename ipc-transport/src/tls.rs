//! TLS through rustls (ring provider) and tokio-rustls: typed builders and
//! the mapping of node-ipc's `config.tls` keys (`docs/protocol.md` §2.4).
//!
//! Verification is on by default on both sides. Turning it off is possible
//! (`danger_accept_invalid_certs`, node-ipc's `rejectUnauthorized: false`)
//! and logs a warning every time such a configuration is used.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::TransportError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM material: a file to read or the PEM text itself.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file holding PEM text.
    File(PathBuf),
    /// PEM text.
    Inline(String),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => f.debug_tuple("File").field(p).finish(),
            // Never print key material.
            PemSource::Inline(s) => write!(f, "Inline({} bytes)", s.len()),
        }
    }
}

impl PemSource {
    fn path(&self) -> Option<PathBuf> {
        match self {
            PemSource::File(p) => Some(p.clone()),
            PemSource::Inline(_) => None,
        }
    }

    fn describe(&self, what: &str) -> String {
        match self {
            PemSource::File(p) => format!("{what} file {}", p.display()),
            PemSource::Inline(_) => format!("inline {what}"),
        }
    }

    fn bytes(&self, what: &str) -> Result<Vec<u8>, TransportError> {
        match self {
            PemSource::File(p) => std::fs::read(p).map_err(|e| {
                TransportError::tls_config(
                    Some(p.clone()),
                    format!("cannot read {} ({e})", self.describe(what)),
                )
            }),
            PemSource::Inline(s) => Ok(s.as_bytes().to_vec()),
        }
    }

    fn certs(&self, what: &str) -> Result<Vec<CertificateDer<'static>>, TransportError> {
        let bytes = self.bytes(what)?;
        let mut out = Vec::new();
        for item in CertificateDer::pem_slice_iter(&bytes) {
            let cert = item.map_err(|e| {
                TransportError::tls_config(
                    self.path(),
                    format!("{} is not valid PEM ({e})", self.describe(what)),
                )
            })?;
            out.push(cert);
        }
        if out.is_empty() {
            return Err(TransportError::tls_config(
                self.path(),
                format!("{} contains no PEM certificate", self.describe(what)),
            ));
        }
        Ok(out)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TransportError> {
        let bytes = self.bytes("private key")?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
            TransportError::tls_config(
                self.path(),
                format!(
                    "{} holds no usable PEM private key ({e})",
                    self.describe("private key")
                ),
            )
        })
    }
}

fn roots_from(sources: &[PemSource]) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for src in sources {
        for cert in src.certs("CA certificate")? {
            roots.add(cert).map_err(|e| {
                TransportError::tls_config(
                    src.path(),
                    format!(
                        "{} cannot be used as a trust anchor ({e})",
                        src.describe("CA certificate")
                    ),
                )
            })?;
        }
    }
    Ok(roots)
}

fn key_mismatch(e: rustls::Error, cert: &PemSource, key: &PemSource) -> TransportError {
    let reason = match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "the {} does not match the {}",
            key.describe("private key"),
            cert.describe("certificate")
        ),
        other => format!(
            "cannot use {} with {} ({other})",
            cert.describe("certificate"),
            key.describe("private key")
        ),
    };
    TransportError::tls_config(cert.path().or_else(|| key.path()), reason)
}

/// The options of node-ipc's `config.tls` object (`docs/protocol.md` §2.4).
///
/// Paths are read when the configuration is built; inline PEM is used as is.
/// `trustedConnections` is appended to `ca` (node-ipc 14).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTlsOptions {
    /// `public`: path of the PEM certificate (chain).
    pub public: Option<PathBuf>,
    /// `private`: path of the PEM private key.
    pub private: Option<PathBuf>,
    /// `key`: inline PEM private key.
    pub key: Option<String>,
    /// `cert`: inline PEM certificate (chain).
    pub cert: Option<String>,
    /// `ca`: inline PEM certificates to trust.
    pub ca: Vec<String>,
    /// `trustedConnections`: paths of PEM certificates to trust.
    pub trusted_connections: Vec<PathBuf>,
    /// `requestCert`: the server asks for a client certificate
    /// (default: true when a CA is configured).
    pub request_cert: Option<bool>,
    /// `rejectUnauthorized`: verify the peer (default true).
    pub reject_unauthorized: Option<bool>,
    /// `servername`: the name the client verifies (and sends as SNI).
    pub servername: Option<String>,
    /// `dhparam`: accepted and ignored (rustls has no finite-field DHE).
    pub dhparam: Option<String>,
}

impl NodeTlsOptions {
    fn own_cert(&self) -> Option<PemSource> {
        self.cert
            .clone()
            .map(PemSource::Inline)
            .or_else(|| self.public.clone().map(PemSource::File))
    }

    fn own_key(&self) -> Option<PemSource> {
        self.key
            .clone()
            .map(PemSource::Inline)
            .or_else(|| self.private.clone().map(PemSource::File))
    }

    fn trusted(&self) -> Vec<PemSource> {
        self.ca
            .iter()
            .cloned()
            .map(PemSource::Inline)
            .chain(
                self.trusted_connections
                    .iter()
                    .cloned()
                    .map(PemSource::File),
            )
            .collect()
    }

    fn note_dhparam(&self) {
        if self.dhparam.is_some() {
            tracing::info!("tls.dhparam is ignored: rustls has no finite-field Diffie-Hellman");
        }
    }
}

/// A ready TLS server configuration.
#[derive(Clone)]
pub struct TlsServerConfig {
    inner: Arc<rustls::ServerConfig>,
    /// Why clients are not authenticated (`None`: they must present a
    /// certificate that verifies against the client CA).
    client_auth_gap: Option<&'static str>,
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// Starts a typed builder.
    pub fn builder() -> TlsServerConfigBuilder {
        TlsServerConfigBuilder::default()
    }

    /// Wraps an existing rustls configuration. Its client verification
    /// cannot be inspected, so the assured profile refuses it
    /// ([`crate::assured`]).
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        TlsServerConfig {
            inner: config,
            client_auth_gap: Some(
                "a rustls configuration wrapped with from_rustls: its client verification cannot be checked",
            ),
        }
    }

    /// True when every client must present a certificate that verifies
    /// against the configured client CA (mutual TLS with `requestCert` and
    /// `rejectUnauthorized`), as the assured profile requires.
    pub fn verifies_clients(&self) -> bool {
        self.client_auth_gap.is_none()
    }

    /// Why clients are not authenticated, if they are not.
    pub(crate) fn client_auth_gap(&self) -> Option<&'static str> {
        self.client_auth_gap
    }

    /// The rustls configuration.
    pub fn rustls(&self) -> &Arc<rustls::ServerConfig> {
        &self.inner
    }

    /// Builds the configuration from node-ipc's `config.tls` keys with
    /// node-ipc 14 defaults: a key and certificate are required
    /// (`ERR_IPC_TLS_CONFIGURATION` otherwise); `requestCert` defaults to
    /// true when `ca`/`trustedConnections` are present; `rejectUnauthorized`
    /// defaults to true.
    pub fn from_node_options(opts: &NodeTlsOptions) -> Result<Self, TransportError> {
        opts.note_dhparam();
        let (Some(cert), Some(key)) = (opts.own_cert(), opts.own_key()) else {
            return Err(TransportError::tls_config(
                None,
                "a TLS server needs a private key and a certificate (tls.private/tls.public or tls.key/tls.cert)",
            ));
        };
        let mut b = TlsServerConfig::builder().cert_chain(cert).key(key);
        for ca in opts.trusted() {
            b = b.client_ca(ca);
        }
        if let Some(r) = opts.request_cert {
            b = b.request_client_cert(r);
        }
        if let Some(r) = opts.reject_unauthorized {
            b = b.reject_unauthorized(r);
        }
        b.build()
    }
}

/// Builder of [`TlsServerConfig`].
#[derive(Debug, Clone)]
pub struct TlsServerConfigBuilder {
    cert_chain: Option<PemSource>,
    key: Option<PemSource>,
    client_ca: Vec<PemSource>,
    request_client_cert: Option<bool>,
    reject_unauthorized: bool,
}

impl Default for TlsServerConfigBuilder {
    fn default() -> Self {
        TlsServerConfigBuilder {
            cert_chain: None,
            key: None,
            client_ca: Vec::new(),
            request_client_cert: None,
            reject_unauthorized: true,
        }
    }
}

impl TlsServerConfigBuilder {
    /// The server's certificate chain, end entity first.
    pub fn cert_chain(mut self, pem: PemSource) -> Self {
        self.cert_chain = Some(pem);
        self
    }

    /// The server's certificate chain from a PEM file.
    pub fn cert_chain_file(self, path: impl Into<PathBuf>) -> Self {
        self.cert_chain(PemSource::File(path.into()))
    }

    /// The server's private key.
    pub fn key(mut self, pem: PemSource) -> Self {
        self.key = Some(pem);
        self
    }

    /// The server's private key from a PEM file.
    pub fn key_file(self, path: impl Into<PathBuf>) -> Self {
        self.key(PemSource::File(path.into()))
    }

    /// Adds certificates trusted to sign client certificates. Setting any
    /// makes the server request a client certificate unless
    /// [`request_client_cert`](Self::request_client_cert) says otherwise.
    pub fn client_ca(mut self, pem: PemSource) -> Self {
        self.client_ca.push(pem);
        self
    }

    /// Adds a PEM file of client-trusted certificates.
    pub fn client_ca_file(self, path: impl Into<PathBuf>) -> Self {
        self.client_ca(PemSource::File(path.into()))
    }

    /// Whether to ask clients for a certificate (`requestCert`).
    pub fn request_client_cert(mut self, request: bool) -> Self {
        self.request_client_cert = Some(request);
        self
    }

    /// Whether a requested client certificate must be present and verify
    /// (`rejectUnauthorized`, default true). With `false` any client
    /// certificate, or none, is accepted, and a warning is logged.
    pub fn reject_unauthorized(mut self, reject: bool) -> Self {
        self.reject_unauthorized = reject;
        self
    }

    /// Loads the material and builds the configuration.
    pub fn build(self) -> Result<TlsServerConfig, TransportError> {
        let (Some(cert_src), Some(key_src)) = (&self.cert_chain, &self.key) else {
            return Err(TransportError::tls_config(
                None,
                "a TLS server needs both a certificate chain and a private key",
            ));
        };
        let chain = cert_src.certs("certificate")?;
        let key = key_src.key()?;
        let provider = provider();
        let request = self
            .request_client_cert
            .unwrap_or(!self.client_ca.is_empty());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::tls_config(None, e.to_string()))?;
        let client_auth_gap = if self.client_ca.is_empty() {
            Some("no client CA (ca/trustedConnections): clients are not authenticated")
        } else if !request {
            Some("client certificates are not requested (requestCert is false)")
        } else if !self.reject_unauthorized {
            Some("client certificates are not verified (rejectUnauthorized is false)")
        } else {
            None
        };
        let builder = if !request {
            builder.with_no_client_auth()
        } else if self.reject_unauthorized {
            if self.client_ca.is_empty() {
                return Err(TransportError::tls_config(
                    None,
                    "client certificates are requested and verified, but no CA (ca/trustedConnections) is configured to verify them",
                ));
            }
            let roots = roots_from(&self.client_ca)?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| TransportError::tls_config(None, format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            tracing::warn!(
                "TLS server requests client certificates without verifying them (rejectUnauthorized = false): clients are not authenticated"
            );
            builder.with_client_cert_verifier(Arc::new(AcceptAnyClientCert {
                algs: provider.signature_verification_algorithms,
            }))
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| key_mismatch(e, cert_src, key_src))?;
        Ok(TlsServerConfig {
            inner: Arc::new(config),
            client_auth_gap,
        })
    }
}

/// A ready TLS client configuration.
#[derive(Clone)]
pub struct TlsClientConfig {
    inner: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
    insecure: bool,
    /// Trusted roots were configured (and are used: not `insecure`).
    /// Unknown, so false, for `from_rustls`.
    roots: bool,
    /// A client certificate is configured for mutual TLS.
    client_cert: bool,
}

impl fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientConfig")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// Starts a typed builder.
    pub fn builder() -> TlsClientConfigBuilder {
        TlsClientConfigBuilder::default()
    }

    /// Wraps an existing rustls configuration. Its server verification
    /// cannot be inspected, so the assured profile refuses it
    /// ([`crate::assured`]).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>, server_name: Option<String>) -> Self {
        let client_cert = config.client_auth_cert_resolver.has_certs();
        TlsClientConfig {
            inner: config,
            server_name,
            insecure: false,
            roots: false,
            client_cert,
        }
    }

    /// True when a client certificate is configured (mutual TLS).
    pub fn has_client_cert(&self) -> bool {
        self.client_cert
    }

    /// Why this configuration is not verified mutual TLS (what the assured
    /// profile requires), if it is not.
    pub(crate) fn mutual_auth_gap(&self) -> Option<&'static str> {
        if self.insecure {
            Some("server certificate verification is off (rejectUnauthorized is false)")
        } else if !self.roots {
            Some("no trusted roots (ca/trustedConnections) known to verify the server with")
        } else if !self.client_cert {
            Some("no client certificate (key/cert) for mutual TLS")
        } else {
            None
        }
    }

    /// The rustls configuration.
    pub fn rustls(&self) -> &Arc<rustls::ClientConfig> {
        &self.inner
    }

    /// The name verified instead of the endpoint's host, if set.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// True when server certificates are not verified.
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Builds the configuration from node-ipc's `config.tls` keys:
    /// `ca` + `trustedConnections` are the trusted roots, `key`/`cert`
    /// (or `private`/`public`) the optional client certificate for mutual
    /// TLS, `servername` the verified name, `rejectUnauthorized` (default
    /// true) whether to verify at all.
    pub fn from_node_options(opts: &NodeTlsOptions) -> Result<Self, TransportError> {
        opts.note_dhparam();
        let mut b = TlsClientConfig::builder();
        for ca in opts.trusted() {
            b = b.root(ca);
        }
        match (opts.own_cert(), opts.own_key()) {
            (Some(cert), Some(key)) => b = b.client_cert(cert, key),
            (None, None) => {}
            (Some(_), None) => {
                return Err(TransportError::tls_config(
                    None,
                    "a client certificate is configured without its private key",
                ))
            }
            (None, Some(_)) => {
                return Err(TransportError::tls_config(
                    None,
                    "a client private key is configured without its certificate",
                ))
            }
        }
        if let Some(name) = &opts.servername {
            b = b.server_name(name.clone());
        }
        if opts.reject_unauthorized == Some(false) {
            b = b.danger_accept_invalid_certs(true);
        }
        b.build()
    }
}

/// Builder of [`TlsClientConfig`].
#[derive(Debug, Clone, Default)]
pub struct TlsClientConfigBuilder {
    roots: Vec<PemSource>,
    client_cert: Option<(PemSource, PemSource)>,
    server_name: Option<String>,
    insecure: bool,
}

impl TlsClientConfigBuilder {
    /// Adds trusted root (or pinned self-signed) certificates.
    pub fn root(mut self, pem: PemSource) -> Self {
        self.roots.push(pem);
        self
    }

    /// Adds trusted certificates from a PEM file.
    pub fn root_file(self, path: impl Into<PathBuf>) -> Self {
        self.root(PemSource::File(path.into()))
    }

    /// A client certificate chain and key for mutual TLS.
    pub fn client_cert(mut self, chain: PemSource, key: PemSource) -> Self {
        self.client_cert = Some((chain, key));
        self
    }

    /// A client certificate chain and key from PEM files.
    pub fn client_cert_files(self, chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.client_cert(
            PemSource::File(chain.as_ref().to_owned()),
            PemSource::File(key.as_ref().to_owned()),
        )
    }

    /// Verifies (and sends as SNI) this name instead of the endpoint's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts any server certificate: encryption without authentication,
    /// open to man-in-the-middle attacks. A warning is logged when the
    /// configuration is built and on every connection that uses it.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.insecure = accept;
        self
    }

    /// Loads the material and builds the configuration.
    pub fn build(self) -> Result<TlsClientConfig, TransportError> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::tls_config(None, e.to_string()))?;
        let builder = if self.insecure {
            tracing::warn!(
                "TLS client configured to accept any server certificate: the server is not authenticated"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                    algs: provider.signature_verification_algorithms,
                }))
        } else {
            if self.roots.is_empty() {
                return Err(TransportError::tls_config(
                    None,
                    "no trusted certificates (ca/trustedConnections) to verify the server with",
                ));
            }
            builder.with_root_certificates(roots_from(&self.roots)?)
        };
        let config = match &self.client_cert {
            Some((cert_src, key_src)) => {
                let chain = cert_src.certs("client certificate")?;
                let key = key_src.key()?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| key_mismatch(e, cert_src, key_src))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClientConfig {
            inner: Arc::new(config),
            server_name: self.server_name,
            insecure: self.insecure,
            roots: !self.insecure && !self.roots.is_empty(),
            client_cert: self.client_cert.is_some(),
        })
    }
}

#[derive(Debug)]
struct AcceptAnyServerCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug)]
struct AcceptAnyClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AcceptAnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// True when a handshake error is a certificate or authentication failure
/// (retrying cannot fix it).
pub(crate) fn is_auth_failure(e: &io::Error) -> bool {
    use rustls::AlertDescription as A;
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return false;
    };
    match tls {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType
        | rustls::Error::InvalidCertRevocationList(_)
        | rustls::Error::PeerIncompatible(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::General(_) => true,
        rustls::Error::AlertReceived(a) => matches!(
            a,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::CertificateRequired
                | A::HandshakeFailure
                | A::ProtocolVersion
                | A::InsufficientSecurity
                | A::UnrecognisedName
                | A::DecryptError
                | A::IllegalParameter
        ),
        _ => false,
    }
}

/// Handshake errors as [`TransportError::TlsHandshake`].
pub(crate) fn handshake_error(peer: String, e: io::Error) -> TransportError {
    let authentication = is_auth_failure(&e);
    TransportError::TlsHandshake {
        peer,
        source: e,
        authentication,
    }
}

/// The server name to verify for a host (IP addresses become IP names).
pub(crate) fn server_name_for(
    host: &str,
    config: &TlsClientConfig,
) -> Result<ServerName<'static>, TransportError> {
    let name = config.server_name().unwrap_or(host);
    ServerName::try_from(name.to_owned()).map_err(|e| TransportError::InvalidEndpoint {
        input: name.to_owned(),
        reason: format!("not a valid TLS server name ({e})"),
    })
}
