//! [`IpcError`]: what the facade reports.

use ipc_client::ClientError;
use ipc_proto::ProtocolError;
use ipc_server::ServerError;
use ipc_transport::TransportError;

/// Everything the `ipc` facade can fail with; lower-level errors are
/// carried whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// The JSON configuration is not valid (unknown key, wrong type).
    #[error("invalid configuration: {0}")]
    ConfigJson(#[source] serde_json::Error),
    /// A configuration value is not acceptable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The codec settings derived from the configuration are inconsistent.
    #[error("invalid configuration: {0}")]
    Codec(#[source] ProtocolError),
    /// An id is required (`connect_to("")`).
    #[error("an id is required to {0}")]
    MissingId(&'static str),
    /// No server was created with `serve`/`serve_net`.
    #[error("no server: call serve() or serve_net() first")]
    NoServer,
    /// An endpoint could not be built or parsed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A client failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}
