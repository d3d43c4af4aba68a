//! The assured profile's transport gates (`docs/protocol.md` §1.6, §2.4, §4.2).
//!
//! node-ipc 14 refuses to run the `assured` profile over a transport that
//! cannot prove who is on the other end. These checks look only at the
//! configuration (and, for a client's Unix socket, at the directory it
//! lies in); they open no socket, so a refused endpoint never sees a
//! single packet. `ipc-server` runs [`check_listen`] at `start`, `ipc-client`
//! runs [`check_connect`] when a client is created and [`check_local_root`]
//! before each connection to a Unix socket.
//!
//! | Transport | Allowed under assured when | Otherwise |
//! |---|---|---|
//! | TCP, UDP | never | `ERR_IPC_ASSURED_TRANSPORT` |
//! | Windows named pipe | never (the pipe ACL cannot be proven) | `ERR_IPC_ASSURED_TRANSPORT` |
//! | Unix socket, server | the socket is a direct child of [`ListenOptions::socket_root`] with `secure_socket_root` on | `ERR_IPC_ASSURED_TRANSPORT` |
//! | Unix socket, client | the socket's directory is a secure socket root: a real directory (not a symlink) owned by this user with no group/other permissions | `ERR_IPC_ASSURED_TRANSPORT` |
//! | TLS, server | client certificates are requested and verified against a client CA (`requestCert` and `rejectUnauthorized`) | `ERR_IPC_ASSURED_TLS` |
//! | TLS, client | server certificates are verified against trusted roots and a client certificate is configured | `ERR_IPC_ASSURED_TLS` |
//!
//! TLS configurations wrapped with `from_rustls` cannot be inspected and
//! are refused (`ERR_IPC_ASSURED_TLS`); build them with the typed builders
//! or from node-ipc options instead.
//!
//! ```
//! use ipc_transport::{assured, ErrorCode, ListenOptions, LocalPaths};
//!
//! let tcp = "tcp://127.0.0.1:8000".parse().unwrap();
//! let err = assured::check_listen(&tcp, &ListenOptions::default()).unwrap_err();
//! assert_eq!(err.code(), Some(ErrorCode::AssuredTransport));
//!
//! // node-ipc's layout: `socketRoot` + `appspace` + `id`, secure root on.
//! let paths = LocalPaths::default();
//! assert!(assured::check_listen(&paths.endpoint_for("world"), &paths.listen_options()).is_ok());
//! ```

#[cfg(all(unix, feature = "unix"))]
use std::path::Path;

use crate::{ConnectOptions, Endpoint, ListenOptions, TransportError};

fn transport(endpoint: &Endpoint, reason: impl Into<String>) -> TransportError {
    TransportError::AssuredTransport {
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    }
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
fn tls(endpoint: &Endpoint, reason: impl Into<String>) -> TransportError {
    TransportError::AssuredTls {
        endpoint: endpoint.to_string(),
        reason: reason.into(),
    }
}

/// The transports the assured profile never allows.
fn common(endpoint: &Endpoint) -> Result<(), TransportError> {
    match endpoint {
        Endpoint::Tcp { .. } => Err(transport(
            endpoint,
            "plain TCP has no peer authentication; use mutual TLS",
        )),
        Endpoint::Udp { .. } => Err(transport(
            endpoint,
            "UDP has no peer authentication and spoofable sources",
        )),
        Endpoint::NamedPipe(_) => Err(transport(
            endpoint,
            "a named pipe's access control cannot be verified",
        )),
        Endpoint::Unix(_) | Endpoint::Tls { .. } => Ok(()),
    }
}

/// Checks that a server may listen on `endpoint` with `opts` under the
/// assured profile (see the module docs). Opens nothing.
pub fn check_listen(endpoint: &Endpoint, opts: &ListenOptions) -> Result<(), TransportError> {
    common(endpoint)?;
    match endpoint {
        Endpoint::Unix(path) => {
            let Some(root) = &opts.socket_root else {
                return Err(transport(
                    endpoint,
                    "an explicit socket path outside any socket root; listen inside a secure socket root (LocalPaths)",
                ));
            };
            if !opts.secure_socket_root {
                return Err(transport(
                    endpoint,
                    "secure_socket_root is off: the socket root is not checked",
                ));
            }
            if path.parent() != Some(root.as_path()) {
                return Err(transport(
                    endpoint,
                    format!(
                        "the socket must be a direct child of the socket root {}",
                        root.display()
                    ),
                ));
            }
            Ok(())
        }
        Endpoint::Tls { .. } => {
            #[cfg(feature = "tls")]
            {
                let Some(config) = &opts.tls else {
                    return Err(tls(endpoint, "no TLS server configuration"));
                };
                if let Some(gap) = config.client_auth_gap() {
                    return Err(tls(endpoint, gap));
                }
                Ok(())
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = opts;
                Err(transport(endpoint, "built without TLS support"))
            }
        }
        _ => Ok(()),
    }
}

/// Checks that a client may connect to `endpoint` with `opts` under the
/// assured profile, from the configuration alone (see the module docs).
/// For a Unix socket, also run [`check_local_root`] before each connection.
pub fn check_connect(endpoint: &Endpoint, opts: &ConnectOptions) -> Result<(), TransportError> {
    common(endpoint)?;
    match endpoint {
        Endpoint::Tls { .. } => {
            #[cfg(feature = "tls")]
            {
                let Some(config) = &opts.tls else {
                    return Err(tls(endpoint, "no TLS client configuration"));
                };
                if let Some(gap) = config.mutual_auth_gap() {
                    return Err(tls(endpoint, gap));
                }
                Ok(())
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = opts;
                Err(transport(endpoint, "built without TLS support"))
            }
        }
        _ => Ok(()),
    }
}

/// Checks, just before a client connects to the Unix socket `path` under
/// the assured profile, that its directory is a secure socket root: a real
/// directory (not a symlink) owned by this user, with no permission bits
/// for group or other. A missing directory is a retryable
/// [`TransportError::Connect`] (`NotFound`: the server is not up yet);
/// anything else wrong is `ERR_IPC_ASSURED_TRANSPORT`. Only metadata is
/// read; no socket is opened.
#[cfg(all(unix, feature = "unix"))]
pub fn check_local_root(path: &Path) -> Result<(), TransportError> {
    use std::os::unix::fs::MetadataExt;

    let endpoint = Endpoint::Unix(path.to_owned());
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Err(transport(
            &endpoint,
            "a relative socket path without a directory",
        ));
    };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TransportError::Connect {
                endpoint: endpoint.to_string(),
                source: e,
            })
        }
        Err(e) => {
            return Err(transport(
                &endpoint,
                format!("cannot inspect the socket root {}: {e}", dir.display()),
            ))
        }
    };
    let euid = crate::unix::current_euid();
    let gap = if meta.file_type().is_symlink() {
        Some("is a symlink".to_owned())
    } else if !meta.is_dir() {
        Some("is not a directory".to_owned())
    } else if meta.uid() != euid {
        Some(format!("is owned by uid {}, not by uid {euid}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!(
            "has mode {:o}: group or other may enter it",
            meta.mode() & 0o7777
        ))
    } else {
        None
    };
    match gap {
        Some(g) => Err(transport(
            &endpoint,
            format!(
                "the socket's directory {} is not a secure socket root: it {g}",
                dir.display()
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn network_and_pipe_transports_are_refused() {
        for ep in [
            "tcp://127.0.0.1:8000",
            "udp4://127.0.0.1:8000",
            "udp6://[::1]:8000",
            r"pipe:\\.\pipe\app.world",
        ] {
            let ep: Endpoint = ep.parse().unwrap();
            let l = check_listen(&ep, &ListenOptions::default()).unwrap_err();
            let c = check_connect(&ep, &ConnectOptions::default()).unwrap_err();
            for e in [l, c] {
                assert_eq!(e.code(), Some(ErrorCode::AssuredTransport), "{ep}: {e}");
                assert!(!e.is_retryable());
                assert!(e.to_string().contains(&ep.to_string()), "{e}");
            }
        }
    }
}
