//! The assured profile's transport gate for clients (`docs/protocol.md` §2.4,
//! `ipc_transport::assured`): checked when the client is created and, for
//! Unix sockets, before every connection attempt. No socket is opened for
//! a refused endpoint.

use ipc_proto::Profile;
use ipc_transport::{ConnectOptions, Endpoint, Stream, TransportError};

use crate::client::ClientConfig;
use crate::error::ClientError;

/// Refuses an assured client whose transport cannot authenticate the
/// server and itself: `ERR_IPC_ASSURED_TRANSPORT` (TCP, UDP, named pipes)
/// or `ERR_IPC_ASSURED_TLS` (no client certificate, no trusted roots,
/// verification off).
pub(crate) fn check_new(endpoint: &Endpoint, config: &ClientConfig) -> Result<(), ClientError> {
    if config.codec.profile != Profile::Assured {
        return Ok(());
    }
    ipc_transport::assured::check_connect(endpoint, &config.connect).map_err(|source| {
        ClientError::Connect {
            endpoint: endpoint.to_string(),
            source,
        }
    })
}

/// Connects, after checking (assured, Unix socket) that the socket's
/// directory is a secure socket root.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    opts: &ConnectOptions,
    profile: Profile,
) -> Result<Stream, TransportError> {
    #[cfg(all(unix, feature = "unix"))]
    if profile == Profile::Assured {
        if let Endpoint::Unix(path) = endpoint {
            ipc_transport::assured::check_local_root(path)?;
        }
    }
    #[cfg(not(all(unix, feature = "unix")))]
    let _ = profile;
    ipc_transport::connect(endpoint, opts).await
}
