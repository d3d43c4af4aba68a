//! TCP keepalive: half-open connection detection by the kernel.
//!
//! A peer that vanishes without a FIN or RST (power loss, a cut network, a
//! firewall that silently drops the flow) leaves a TCP connection that
//! looks open forever to a side that only reads. With keepalive the kernel
//! probes an idle connection and, when the probes go unanswered, fails it:
//! the next read returns an error (`ETIMEDOUT` on Linux), which the client
//! reports and retries and the server reports and closes.

use std::time::Duration;

/// TCP keepalive settings (`SO_KEEPALIVE` plus `TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL` and `TCP_KEEPCNT` where the platform has them).
///
/// A dead peer is detected after about `time + interval * retries` without
/// an answer ([`Keepalive::detection_time`]). node-ipc sets no keepalive,
/// so none is set unless configured ([`ListenOptions::keepalive`],
/// [`ConnectOptions::keepalive`], or the `keepalive` field of the server and
/// client configurations). [`Keepalive::default`] detects a dead peer
/// within about two minutes.
///
/// Platforms without a per-socket probe count ignore `retries` (the
/// system-wide count applies); platforms without a per-socket interval
/// ignore `interval`. Sub-second values are rounded down to whole seconds
/// by most kernels.
///
/// ```
/// use std::time::Duration;
/// use ipc_transport::{ConnectOptions, Keepalive};
///
/// let opts = ConnectOptions {
///     keepalive: Some(Keepalive {
///         time: Duration::from_secs(30),
///         ..Keepalive::default()
///     }),
///     ..ConnectOptions::default()
/// };
/// assert_eq!(opts.keepalive.unwrap().detection_time(), Duration::from_secs(90));
/// ```
///
/// [`ListenOptions::keepalive`]: crate::ListenOptions::keepalive
/// [`ConnectOptions::keepalive`]: crate::ConnectOptions::keepalive
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keepalive {
    /// Idle time before the first probe (`TCP_KEEPIDLE`).
    pub time: Duration,
    /// Time between unanswered probes (`TCP_KEEPINTVL`).
    pub interval: Duration,
    /// Unanswered probes before the connection is dropped (`TCP_KEEPCNT`).
    pub retries: u32,
}

impl Default for Keepalive {
    /// 60 s idle, then a probe every 10 s, dropped after 6 unanswered
    /// probes: a dead peer is detected within about 2 minutes.
    fn default() -> Self {
        Keepalive {
            time: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            retries: 6,
        }
    }
}

impl Keepalive {
    /// About how long a silent dead peer goes unnoticed:
    /// `time + interval * retries`.
    pub fn detection_time(&self) -> Duration {
        self.time + self.interval.saturating_mul(self.retries)
    }

    #[cfg_attr(not(feature = "tcp"), allow(dead_code))]
    pub(crate) fn params(&self) -> socket2::TcpKeepalive {
        let ka = socket2::TcpKeepalive::new().with_time(self.time);
        #[cfg(any(
            target_os = "android",
            target_os = "dragonfly",
            target_os = "freebsd",
            target_os = "fuchsia",
            target_os = "illumos",
            target_os = "ios",
            target_os = "linux",
            target_os = "macos",
            target_os = "netbsd",
            target_os = "windows",
        ))]
        let ka = ka.with_interval(self.interval).with_retries(self.retries);
        ka
    }

    /// Applies the settings to a connected TCP socket.
    #[cfg(feature = "tcp")]
    pub(crate) fn apply(&self, stream: &tokio::net::TcpStream) -> std::io::Result<()> {
        socket2::SockRef::from(stream).set_tcp_keepalive(&self.params())
    }
}

/// Applies `keepalive` (if any) to `stream`; a failure is logged, the
/// connection is kept (it works, only without the probes).
#[cfg(feature = "tcp")]
pub(crate) fn apply_opt(
    keepalive: Option<&Keepalive>,
    stream: &tokio::net::TcpStream,
    peer: &dyn std::fmt::Display,
) {
    if let Some(k) = keepalive {
        if let Err(e) = k.apply(stream) {
            tracing::warn!(peer = %peer, error = %e, "cannot set TCP keepalive");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_time_adds_the_probes() {
        let k = Keepalive::default();
        assert_eq!(k.detection_time(), Duration::from_secs(120));
        let k = Keepalive {
            time: Duration::from_secs(1),
            interval: Duration::from_secs(2),
            retries: 3,
        };
        assert_eq!(k.detection_time(), Duration::from_secs(7));
    }
}
