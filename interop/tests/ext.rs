//! `interop/js/ext-client.mjs`: a plain node-ipc 14.0.0 client (`fast` and
//! `guarded` parsers) subscribing to topics of our server and making
//! requests (`docs/protocol.md` §5), over Unix and TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{bounded, s, T, V4};
use ipc_client::Flow;
use ipc_interop::{interop_dir, Flavor, Matrix, NodePeer};
use ipc_server::{Server, ServerConfig};
use ipc_transport::Endpoint;
use serde_json::{json, Value};

async fn ext_case(flavor: Flavor, tcp: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(s)?;
    let ep = if tcp {
        Endpoint::Tcp {
            host: V4.to_string(),
            port: 0,
        }
    } else {
        Endpoint::Unix(dir.path().join("ext.sock"))
    };
    let codec = match flavor {
        Flavor::V14Guarded => ipc_proto::CodecConfig::guarded(),
        _ => ipc_proto::CodecConfig::fast(),
    };
    let server = Server::new(
        ep,
        ServerConfig {
            codec,
            ..ServerConfig::default()
        },
    )
    .map_err(s)?;
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    server.on_request(move |req| {
        let data: Value = req.data().map_err(|e| e.to_string())?;
        seen2.lock().unwrap().push(data.clone());
        req.respond(&json!({"echo": data, "from": "rust"}))
            .map_err(|e| e.to_string())?;
        Ok(Flow::Stop)
    });
    let local = server.start().await.map_err(s)?;
    let mut opts = match &local {
        Endpoint::Unix(p) => json!({"path": p}),
        Endpoint::Tcp { host, port } => json!({"host": host, "port": port}),
        other => return Err(format!("unexpected endpoint {other}")),
    };
    opts["parser"] = json!(flavor.parser());
    opts["topics"] = json!(["news", "weather"]);
    let script = interop_dir().join("js").join("ext-client.mjs");
    let mut node = NodePeer::spawn_script(
        flavor,
        &script,
        &[opts.to_string()],
        format!("{flavor} ext-client"),
    )
    .await
    .map_err(s)?;

    let ev = node
        .expect(|e| e.kind() == "subscribed", T)
        .await
        .map_err(s)?;
    if ev.raw["topics"] != json!(["news", "weather"]) {
        return Err(format!("subscription acknowledged as {ev}"));
    }
    let sent = server
        .publish("news", "hello from server")
        .await
        .map_err(s)?;
    if sent != 1 {
        return Err(format!("publish reached {sent} subscribers, want 1"));
    }
    let ev = node
        .expect(|e| e.kind() == "publication", T)
        .await
        .map_err(s)?;
    if ev.raw["topic"] != "news" || ev.raw["message"] != "hello from server" {
        return Err(format!("publication {ev}"));
    }

    node.send(&json!({"request": {"q": "what time is it?"}}))
        .await
        .map_err(s)?;
    let ev = node
        .expect(|e| e.kind() == "response", T)
        .await
        .map_err(s)?;
    let want = json!({"echo": {"q": "what time is it?"}, "from": "rust"});
    if ev.raw["d"] != want || ev.raw.get("e").is_some() {
        return Err(format!("response {ev}, want d = {want}"));
    }
    if *seen.lock().unwrap() != [json!({"q": "what time is it?"})] {
        return Err(format!("the handler saw {:?}", seen.lock().unwrap()));
    }
    node.kill().await;
    server.abort().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node14_client_requests_and_subscribes() {
    let mut m = Matrix::new("ext-client");
    for flavor in [Flavor::V14Fast, Flavor::V14Guarded] {
        if !m.require(flavor) {
            continue;
        }
        for (label, tcp) in [("unix", false), ("tcp4", true)] {
            let res = bounded(ext_case(flavor, tcp)).await;
            m.outcome(flavor.label(), label, "request+subscribe", res);
        }
    }
    m.finish();
}
