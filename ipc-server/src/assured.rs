//! The assured profile's transport gate, run by `Server::start` before
//! anything is bound (`docs/protocol.md` §2.4, `ipc_transport::assured`).

use ipc_proto::Profile;
use ipc_transport::Endpoint;

use crate::error::ServerError;
use crate::ServerConfig;

/// Refuses to start an assured server on a transport that cannot
/// authenticate its peers: `ERR_IPC_ASSURED_TRANSPORT` (TCP, UDP, named
/// pipes, Unix sockets outside a secure socket root) or
/// `ERR_IPC_ASSURED_TLS` (TLS without verified client certificates).
pub(crate) fn check_start(
    endpoint: &Endpoint,
    name: &str,
    config: &ServerConfig,
) -> Result<(), ServerError> {
    if config.codec.profile != Profile::Assured {
        return Ok(());
    }
    ipc_transport::assured::check_listen(endpoint, &config.listen).map_err(|source| {
        ServerError::Listen {
            endpoint: name.to_owned(),
            source,
        }
    })
}
