//! [`IpcError`]: what the facade reports.

use std::fmt;

use ipc_client::ClientError;
use ipc_proto::ProtocolError;
use ipc_server::ServerError;
use ipc_transport::TransportError;

/// Everything the `ipc` facade can fail with; lower-level errors are
/// carried whole. Its `Debug` is the readable message with its causes, so
/// `fn main() -> Result<(), IpcError>` prints something a person can read.
#[derive(thiserror::Error)]
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
    /// `connect_to` named an id whose live client connects elsewhere: two
    /// clients in one instance need two ids (`of` holds one per id).
    #[error(
        "the id {id:?} is in use by a client of {endpoint}: disconnect it first, or use another id"
    )]
    IdInUse {
        /// The id.
        id: String,
        /// Where its client connects.
        endpoint: String,
    },
    /// Something awaited did not come in time.
    #[error("no {what} within {after:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        after: std::time::Duration,
    },
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

impl fmt::Debug for IpcError {
    /// The message, then each cause the message does not already contain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.to_string();
        f.write_str(&shown)?;
        let mut source = std::error::Error::source(self);
        let mut first = true;
        while let Some(e) = source {
            let text = e.to_string();
            if !shown.contains(&text) {
                if first {
                    f.write_str("\n\nCaused by:")?;
                    first = false;
                }
                write!(f, "\n    {text}")?;
                shown.push_str(&text);
            }
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_the_message_and_its_causes() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let last = ClientError::Io {
            endpoint: "tcp://127.0.0.1:9".into(),
            source: refused,
        };
        let e = IpcError::from(ClientError::NotConnected {
            endpoint: "tcp://127.0.0.1:9".into(),
            after: None,
            last: Some(std::sync::Arc::new(last)),
        });
        let shown = format!("{e:?}");
        assert!(
            shown.starts_with("not connected to tcp://127.0.0.1:9"),
            "{shown}"
        );
        assert!(shown.contains("connection refused"), "{shown}");
        // Not a derived Debug dump.
        assert!(!shown.contains("NotConnected {"), "{shown}");
    }
}
