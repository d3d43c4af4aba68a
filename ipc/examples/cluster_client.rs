//! node-ipc's README "Server with the `cluster` Module" client, line for
//! line: every 2 s it connects to the cluster's one socket, emits
//! `currentDate` on connect and disconnects, so the server logs show the
//! worker pid changing. The server side is `cluster.rs` (workers as
//! threads) or node-ipc's own, with node's cluster module.
//!
//! `cargo run -p ipc --example cluster_client -- /tmp/ipc.sock`. Unlike the
//! JS, which loops forever, it stops after ten visits.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc::prelude::*;

/// Visits the socket given as the first argument (default
/// `/tmp/ipc.sock`) ten times.
#[tokio::main(flavor = "current_thread")]
pub(crate) async fn main() -> Result<(), IpcError> {
    let socket_path = std::env::args().nth(1).unwrap_or("/tmp/ipc.sock".into());
    let ipc = Ipc::new();
    cluster_client(
        &ipc,
        Path::new(&socket_path),
        Duration::from_millis(2000),
        10,
    )
    .await
}

/// The README's client: `visits` rounds, one every `every`; returns once
/// the last visit has disconnected (it waits for a server as long as the
/// retry policy does).
pub(crate) async fn cluster_client(
    ipc: &Ipc,
    socket_path: &Path,
    every: Duration,
    visits: usize,
) -> Result<(), IpcError> {
    // loop so you can see the pid of the cluster server change in the logs
    let mut interval = tokio::time::interval(every);
    for _ in 0..visits {
        interval.tick().await;
        ipc.connect_to_with("world", Some(socket_path), |world| connecting(ipc, world))?;
        // (not in the JS) let this visit end before the next one
        while ipc.of("world").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    Ok(())
}

fn connecting(ipc: &Ipc, world: &Client) {
    let ipc = ipc.clone(); // let go when `disconnect` removes the handlers
    world.on_connect(move |world| {
        let _ = world.try_emit("currentDate", &serde_json::json!({ "message": iso_now() }));
        ipc.disconnect_detached("world");
    });
}

/// `new Date().toISOString()`.
fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        now.subsec_millis(),
    )
}

/// `new Date(secs * 1000 + ms).toISOString()`.
pub(crate) fn iso(secs: i64, ms: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}
