//! TCP: resolution, listening, connecting with node-ipc's `interface` options.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::{AddressFamily, ConnectOptions, TransportError};

/// Resolves `host:port`, keeping only addresses of `family` when given.
pub(crate) async fn resolve(
    host: &str,
    port: u16,
    family: Option<AddressFamily>,
) -> Result<Vec<SocketAddr>, TransportError> {
    let addrs: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| resolve_error(host, port, e))?
            .collect()
    };
    of_family(host, port, addrs, family)
}

/// The error of a failed name lookup (shared with the blocking transport).
pub(crate) fn resolve_error(host: &str, port: u16, e: io::Error) -> TransportError {
    TransportError::Resolve {
        host: host.to_owned(),
        port,
        reason: e.to_string(),
        source: Some(e),
    }
}

/// Keeps the addresses of `family` (all when `None`); none left is a
/// resolution error naming `host:port` (shared with the blocking transport).
pub(crate) fn of_family(
    host: &str,
    port: u16,
    addrs: Vec<SocketAddr>,
    family: Option<AddressFamily>,
) -> Result<Vec<SocketAddr>, TransportError> {
    let filtered: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match family {
            Some(AddressFamily::V4) => a.is_ipv4(),
            Some(AddressFamily::V6) => a.is_ipv6(),
            None => true,
        })
        .collect();
    if filtered.is_empty() {
        return Err(TransportError::Resolve {
            host: host.to_owned(),
            port,
            reason: match family {
                Some(f) => format!("no {f:?} address"),
                None => "no address".to_owned(),
            },
            source: None,
        });
    }
    Ok(filtered)
}

pub(crate) async fn bind(
    endpoint: &str,
    host: &str,
    port: u16,
) -> Result<TcpListener, TransportError> {
    let addrs = resolve(host, port, None).await?;
    let mut last = None;
    for addr in addrs {
        match bind_one(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable));
    if e.kind() == io::ErrorKind::AddrInUse {
        return Err(TransportError::AddressInUse {
            endpoint: endpoint.to_owned(),
            reason: "another socket is bound to this address and port".into(),
            source: Some(e),
        });
    }
    Err(TransportError::Bind {
        endpoint: endpoint.to_owned(),
        source: e,
    })
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(crate) async fn connect(
    endpoint: &str,
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<TcpStream, TransportError> {
    let family = opts.family.or(match opts.local_address {
        Some(IpAddr::V4(_)) => Some(AddressFamily::V4),
        Some(IpAddr::V6(_)) => Some(AddressFamily::V6),
        None => None,
    });
    let addrs = resolve(host, port, family).await?;
    let mut last = None;
    for addr in addrs {
        let attempt = connect_one(addr, opts);
        let result = match opts.connect_timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(TransportError::Timeout {
                        endpoint: endpoint.to_owned(),
                        operation: "connect",
                        after: limit,
                    })
                }
            },
            None => attempt.await,
        };
        match result {
            Ok(s) => {
                if opts.tcp_nodelay {
                    if let Err(e) = s.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                }
                crate::keepalive::apply_opt(opts.keepalive.as_ref(), &s, &endpoint);
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(TransportError::Connect {
        endpoint: endpoint.to_owned(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable)),
    })
}

async fn connect_one(addr: SocketAddr, opts: &ConnectOptions) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if opts.local_address.is_some() || opts.local_port.is_some() {
        let ip = opts.local_address.unwrap_or(if addr.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        });
        if opts.local_port.is_some() {
            socket.set_reuseaddr(true)?;
        }
        socket.bind(SocketAddr::new(ip, opts.local_port.unwrap_or(0)))?;
    }
    socket.connect(addr).await
}
