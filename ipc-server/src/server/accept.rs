//! The accept loop: one task per accepted connection, within
//! `maxConnections`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ipc_transport::Listener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn::connection;
use super::Inner;
use crate::error::ServerError;

pub(super) async fn accept_loop(
    inner: Arc<Inner>,
    listener: Listener,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let incoming = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = listener.accept_raw() => r,
        };
        match incoming {
            Ok(incoming) => {
                let limit = inner.config.max_connections;
                if inner.live.load(Ordering::SeqCst) >= limit {
                    let peer = incoming.peer().to_string();
                    drop(incoming);
                    tracing::warn!(endpoint = %inner.name, %peer, limit, "maxConnections reached; connection closed");
                    inner
                        .error(None, ServerError::MaxConnections { peer, limit })
                        .await;
                    continue;
                }
                inner.live.fetch_add(1, Ordering::SeqCst);
                // Boxed: the connection's task keeps its arguments for its whole
                // life, and the handshake's are no use after it.
                let incoming = Box::new(incoming);
                tracker.spawn(connection(inner.clone(), incoming, cancel.clone()));
            }
            Err(source) => {
                inner
                    .error(
                        None,
                        ServerError::Accept {
                            endpoint: inner.name.clone(),
                            source,
                        },
                    )
                    .await;
                // Resource exhaustion (EMFILE…) would spin: pause briefly.
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }
    }
    listener.close().await;
}
