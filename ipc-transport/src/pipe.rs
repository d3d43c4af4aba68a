//! Windows named pipes on tokio's named-pipe support (byte mode).

use std::io;
use std::time::Duration;

use tokio::net::windows::named_pipe::{
    ClientOptions, NamedPipeClient, NamedPipeServer, ServerOptions,
};

use crate::TransportError;

/// `ERROR_PIPE_BUSY`: every instance of the pipe is in use.
const ERROR_PIPE_BUSY: i32 = 231;

pub(crate) fn create_first(name: &str) -> Result<NamedPipeServer, TransportError> {
    ServerOptions::new()
        .first_pipe_instance(true)
        .create(name)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                TransportError::AddressInUse {
                    endpoint: format!("pipe:{name}"),
                    reason: "another server already owns this pipe".into(),
                    source: Some(e),
                }
            } else {
                TransportError::Bind {
                    endpoint: format!("pipe:{name}"),
                    source: e,
                }
            }
        })
}

pub(crate) fn create_next(name: &str) -> Result<NamedPipeServer, TransportError> {
    ServerOptions::new()
        .create(name)
        .map_err(|e| TransportError::Accept {
            endpoint: format!("pipe:{name}"),
            source: e,
        })
}

pub(crate) async fn connect(
    name: &str,
    limit: Option<Duration>,
) -> Result<NamedPipeClient, TransportError> {
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        match ClientOptions::new().open(name) {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) => {
                if let (Some(d), Some(l)) = (deadline, limit) {
                    if tokio::time::Instant::now() >= d {
                        return Err(TransportError::Timeout {
                            endpoint: format!("pipe:{name}"),
                            operation: "connect",
                            after: l,
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(TransportError::Connect {
                    endpoint: format!("pipe:{name}"),
                    source: e,
                })
            }
        }
    }
}
