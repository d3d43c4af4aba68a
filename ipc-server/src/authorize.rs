//! [`Authorizer`]: a hook that decides, from what the transport knows about a
//! peer, whether its connection may proceed.

use std::fmt;
use std::sync::Arc;

use ipc_transport::PeerInfo;

type Check = dyn Fn(&PeerInfo) -> Result<(), String> + Send + Sync;

/// Decides whether an accepted connection may proceed, before `connect` is
/// emitted. It sees the peer's address, its kernel-reported credentials
/// (Unix sockets: uid, gid, pid) and, over TLS, the certificate chain it
/// presented. `Err(reason)` refuses the connection: it is closed at once and
/// an `error` event names the peer and the reason.
///
/// ```
/// use ipc_server::{Authorizer, ServerConfig};
/// let config = ServerConfig {
///     // Only processes of the same user may connect (Unix sockets).
///     authorize: Some(Authorizer::new(|peer| match peer.cred {
///         Some(c) if c.uid == 1000 => Ok(()),
///         _ => Err("not uid 1000".into()),
///     })),
///     ..ServerConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct Authorizer(Arc<Check>);

impl Authorizer {
    /// Wraps a check: `Ok(())` admits the peer, `Err(reason)` refuses it.
    pub fn new(check: impl Fn(&PeerInfo) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Authorizer(Arc::new(check))
    }

    /// Runs the check for `peer`.
    pub fn check(&self, peer: &PeerInfo) -> Result<(), String> {
        (self.0)(peer)
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorizer(..)")
    }
}
