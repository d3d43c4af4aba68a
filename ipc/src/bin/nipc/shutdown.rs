//! SIGINT/SIGTERM, in every state.
//!
//! One task (on a runtime worker, never the command's own task) waits for
//! the signals. The first one asks every command loop to finish
//! ([`requested`]); commands stop their server or client and return. If the
//! command has not finished after [`GRACE`] — e.g. its task is stuck writing
//! to a stdout nobody reads — the watcher stops the server itself (bounded)
//! and exits. A second signal exits at once.

use std::sync::OnceLock;
use std::time::Duration;

use ipc::Server;
use tokio::sync::watch;

/// How long a command gets to finish after the first signal.
const GRACE: Duration = Duration::from_secs(3);
/// How long the watcher waits for a server to stop before exiting anyway.
const STOP_BOUND: Duration = Duration::from_secs(2);

static STATE: OnceLock<watch::Sender<bool>> = OnceLock::new();
static SERVER: OnceLock<Server> = OnceLock::new();

fn sender() -> &'static watch::Sender<bool> {
    STATE.get_or_init(|| watch::channel(false).0)
}

/// Starts the signal watcher (call once, inside the runtime).
pub(crate) fn install() {
    let _ = sender();
    tokio::spawn(async {
        signal().await;
        sender().send_replace(true);
        tokio::select! {
            _ = tokio::time::sleep(GRACE) => {}
            _ = signal() => std::process::exit(130),
        }
        if let Some(server) = SERVER.get() {
            let _ = tokio::time::timeout(STOP_BOUND, server.stop()).await;
        }
        eprintln!("nipc: stopped by signal");
        std::process::exit(0);
    });
}

/// Lets the watcher stop `server` if the command cannot.
pub(crate) fn stop_on_signal(server: Server) {
    let _ = SERVER.set(server);
}

/// A handle that resolves once a signal has arrived.
pub(crate) struct Requested(watch::Receiver<bool>);

/// The shutdown request, for a `select!` in a command loop.
pub(crate) fn requested() -> Requested {
    Requested(sender().subscribe())
}

impl Requested {
    /// Waits until a signal has arrived (at once if one already has).
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|&v| v).await;
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
