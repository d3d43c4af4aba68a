//! `nipc`: node-ipc from the shell.
//!
//! ```text
//! nipc serve [endpoint] [--echo] [--broadcast-stdin]   print every event as a JSON line
//! nipc emit <endpoint> <type> [json] [--replies N]     send one message (and wait for answers)
//! nipc listen <endpoint> [--count N]                   print what a server sends
//! nipc request <endpoint> <json>                       one request, print the answer
//! nipc ping <endpoint>                                 round-trip time
//! nipc sub <endpoint> <topic>...                       print publications
//! nipc pub <endpoint> <topic> <json>                   publish through the server
//! nipc bench [--quick]                                 throughput, latency, fan-out
//! nipc demo                                            a guided tour in one process
//! ```
//!
//! Every peer command takes node-ipc's configuration (`--config FILE` and
//! flags named after node-ipc's keys, see `options.rs`). The output shapes
//! and exit codes are in [`AFTER_HELP`]; the wire format in
//! `docs/protocol.md`.
//!
//! Client commands take `--protocol net-ipc` to talk to a net-ipc server;
//! `serve` accepts node-ipc and net-ipc clients alike without a flag.

mod bench;
mod commands;
mod demo;
mod options;
mod output;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipc::Config;

use crate::bench::bench;
use crate::commands::{emit, listen, ping, publish, request, serve, sub, EmitOpts, ServeOpts};
use crate::demo::demo;
use crate::options::NodeArgs;
use crate::output::Fail;

/// The last lines of every command's help.
macro_rules! see_also {
    () => {
        "\nEndpoints, output lines and exit codes: `nipc --help`.\n\
         Protocol reference: docs/protocol.md in the source repository."
    };
}

/// Endpoints, output, exit codes and where the protocol is documented
/// (shown after every command's help).
const AFTER_HELP: &str = "\
Example:
  nipc serve unix:/tmp/app.world --echo &
  nipc emit unix:/tmp/app.world message '\"hello\"' --replies 1

Endpoints:
  unix:/path             a Unix socket
  id:NAME                node-ipc's path for service NAME (socketRoot + appspace + NAME)
  tcp://host:port        TCP (port 0 on serve: any free port, printed in the start line)
  tls://host:port        TLS (--cert/--key to serve; --ca or --insecure to connect)
  udp4://host:port       UDP over IPv4 (udp6://[::1]:port for IPv6)
  pipe:NAME              a Windows named pipe (\\\\.\\pipe\\NAME)

Output: one JSON object per line on stdout.
  {\"event\":\"start\",\"endpoint\":\"unix:/tmp/app.world\"}
  {\"event\":\"connect\",\"socket\":1}
  {\"event\":\"message\",\"type\":\"hello\",\"data\":{\"a\":1},\"from\":1}   (data exactly as sent; null if none)
  {\"event\":\"data\",\"hex\":\"056d5c\",\"from\":1}                      (raw mode)
  {\"event\":\"error\",\"code\":\"ERR_IPC_INVALID_JSON\",\"message\":\"…\",\"from\":1}
  {\"event\":\"socket.disconnected\",\"socket\":1,\"id\":null}  {\"event\":\"close\",\"socket\":1}
  Client commands print the same lines without \"from\"; sub prints {\"topic\":…,\"data\":…}.
  Diagnostics go to stderr, one line each.

Exit status: 0 done (or stopped by SIGINT/SIGTERM), 1 runtime failure (one line on
stderr saying what to do), 2 command-line usage error.

Protocol reference (wire format, profiles, ERR_IPC_* codes, node-ipc versions):
  docs/protocol.md in the source repository.";

#[derive(Parser)]
#[command(
    name = "nipc",
    version,
    about = "Talk to node-ipc peers from the shell",
    after_help = AFTER_HELP,
    after_long_help = AFTER_HELP,
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The wire protocol of the client commands (emit, listen, request,
    /// ping): node-ipc, or net-ipc to talk to a net-ipc server.
    #[arg(long, global = true, value_enum, default_value_t = WireProtocol::NodeIpc)]
    protocol: WireProtocol,
}

/// `--protocol`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WireProtocol {
    /// node-ipc's delimited JSON frames.
    NodeIpc,
    /// net-ipc's length-prefixed packets.
    NetIpc,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve an endpoint and print every event as one JSON line.
    #[command(after_help = concat!(
        "Examples:\n",
        "  nipc serve unix:/tmp/app.world --echo\n",
        "  nipc serve tcp://127.0.0.1:8000 --parser guarded --max-connections 10 --idle-timeout 60000\n",
        "  nipc serve --socket-root /tmp/ --secure-socket-root false --id world   # node-ipc 9/12's /tmp/app.world\n",
        "  echo '{\"type\":\"news\",\"data\":1}' | nipc serve id:world --broadcast-stdin\n",
        see_also!()
    ))]
    Serve {
        /// The endpoint to serve (default: id:<--id>, node-ipc's `serve()`).
        endpoint: Option<String>,
        /// Send every message back to its sender without waiting (a peer
        /// that does not read is cut off with ERR_IPC_BACKPRESSURE), and
        /// answer requests with their own data.
        #[arg(long)]
        echo: bool,
        /// Broadcast each stdin line `{"type":…,"data":…}` to every client
        /// (no `data`: `{}`, as node-ipc's `broadcast(type)`; `--raw`: the
        /// line's text in `--encoding`).
        #[arg(long)]
        broadcast_stdin: bool,
        /// `maxConnections`: concurrent stream connections (default 100).
        #[arg(long, value_name = "N")]
        max_connections: Option<usize>,
        /// Close a connection that sends nothing for this many ms (default: never).
        #[arg(long, value_name = "MS")]
        idle_timeout: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect, send one message, and exit (or wait for answers).
    #[command(after_help = concat!(
        "Examples:\n",
        "  nipc emit unix:/tmp/app.world message '\"hello\"'\n",
        "  nipc emit tcp://127.0.0.1:8000 app.message '{\"id\":\"client\",\"message\":\"hi\"}' --wait-for app.message\n",
        "  nipc emit id:world --raw --encoding hex 0a0b0c --replies 1\n",
        "  nipc emit udp4://127.0.0.1:8001 message '\"over udp\"'\n",
        see_also!()
    ))]
    Emit {
        /// The server's endpoint.
        endpoint: String,
        /// The event type (with --raw: the payload, encoded with --encoding).
        #[arg(value_name = "TYPE")]
        event: String,
        /// The data, as JSON (a string is '"text"'); none sends `{}`.
        json: Option<String>,
        /// Send the message this many times (with --sync: each after an answer).
        #[arg(long, value_name = "N", default_value_t = 1)]
        repeat: u64,
        /// Then print this many received messages and exit.
        #[arg(long, value_name = "N")]
        replies: Option<u64>,
        /// Then print received messages until one of this type, and exit.
        #[arg(long, value_name = "TYPE")]
        wait_for: Option<String>,
        /// Milliseconds for connecting and for the answers (exit 1 after).
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout: u64,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect and print every event as one JSON line.
    #[command(after_help = concat!(
        "Examples:\n",
        "  nipc listen unix:/tmp/app.world --count 1\n",
        "  nipc listen id:world --socket-root /tmp/ --max-retries Infinity --retry 1000\n",
        see_also!()
    ))]
    Listen {
        /// The server's endpoint.
        endpoint: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Send one request (ipcx.request, docs/protocol.md §5) and print the answer as JSON.
    #[command(after_help = concat!(
        "Example:\n",
        "  nipc request unix:/tmp/app.world '{\"q\":42}' --timeout 2000\n",
        see_also!()
    ))]
    Request {
        /// The server's endpoint.
        endpoint: String,
        /// The request data, as JSON.
        json: String,
        /// Timeout in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout: u64,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure round trips to a server (ipcx.ping).
    #[command(after_help = concat!(
        "Example:\n",
        "  nipc ping tcp://127.0.0.1:8000 --count 5\n",
        see_also!()
    ))]
    Ping {
        /// The server's endpoint.
        endpoint: String,
        /// How many pings.
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Subscribe to topics and print publications as JSON lines.
    #[command(after_help = concat!(
        "Example:\n",
        "  nipc sub unix:/tmp/app.world weather news --count 10\n",
        see_also!()
    ))]
    Sub {
        /// The server's endpoint.
        endpoint: String,
        /// Topics.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Exit after this many publications.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Publish one message on a topic through the server (ipcx.pub).
    #[command(after_help = concat!(
        "Example:\n",
        "  nipc pub unix:/tmp/app.world weather '\"sunny\"'\n",
        see_also!()
    ))]
    Pub {
        /// The server's endpoint.
        endpoint: String,
        /// The topic.
        topic: String,
        /// The message, as JSON.
        json: String,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure throughput, latency and broadcast fan-out in-process.
    #[command(after_help = concat!("Example:\n  cargo run --release -p ipc --features cli --bin nipc -- bench --quick\n", see_also!()))]
    Bench {
        /// Smaller counts (a few seconds).
        #[arg(long)]
        quick: bool,
        /// Override the number of throughput frames.
        #[arg(long, hide = true)]
        frames: Option<u64>,
        /// Override the number of round trips.
        #[arg(long, hide = true)]
        rtts: Option<usize>,
        /// Override the number of broadcasts.
        #[arg(long, hide = true)]
        fanout: Option<u64>,
    },
    /// A server and three clients in one process: events, broadcast, reconnect.
    #[command(after_help = concat!("Example:\n  nipc demo\n", see_also!()))]
    Demo,
}

#[derive(Args, Clone, Default)]
#[command(next_help_heading = "TLS")]
struct TlsArgs {
    /// PEM certificate (chain) of this side (tls:// only).
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// PEM private key of this side (tls:// only).
    #[arg(long, value_name = "PEM")]
    key: Option<PathBuf>,
    /// PEM certificate(s) to trust: the server's (client side) or the
    /// clients' (server side: requires client certificates).
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Client: do not verify the server's certificate (local testing only).
    #[arg(long)]
    insecure: bool,
    /// Client: the name to verify in the server's certificate.
    #[arg(long)]
    servername: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nipc: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let quiet = Config {
        silent: std::env::var_os("RUST_LOG").is_none(),
        ..Config::default()
    };
    ipc::init_logging(&quiet);
    if cli.protocol == WireProtocol::NetIpc {
        if let Some(name) = match &cli.cmd {
            Cmd::Serve { .. } => Some("serve (it accepts net-ipc clients without a flag)"),
            Cmd::Sub { .. } | Cmd::Pub { .. } => Some("sub/pub (net-ipc has no publish/subscribe)"),
            Cmd::Bench { .. } | Cmd::Demo => Some("bench/demo"),
            _ => None,
        } {
            eprintln!("nipc: --protocol net-ipc does not apply to {name}");
            return ExitCode::from(2);
        }
        commands::use_net_ipc();
    }
    let result = rt.block_on(async move {
        shutdown::install();
        match cli.cmd {
            Cmd::Serve {
                endpoint,
                echo,
                broadcast_stdin,
                max_connections,
                idle_timeout,
                node,
                tls,
            } => {
                let o = ServeOpts {
                    echo,
                    broadcast_stdin,
                    max_connections,
                    idle_timeout,
                };
                serve(endpoint.as_deref(), &o, &node, &tls).await
            }
            Cmd::Emit {
                endpoint,
                event,
                json,
                repeat,
                replies,
                wait_for,
                timeout,
                node,
                tls,
            } => {
                let o = EmitOpts {
                    repeat,
                    replies,
                    wait_for,
                    timeout,
                };
                emit(&endpoint, &event, json.as_deref(), &o, &node, &tls).await
            }
            Cmd::Listen {
                endpoint,
                count,
                node,
                tls,
            } => listen(&endpoint, count, &node, &tls).await,
            Cmd::Request {
                endpoint,
                json,
                timeout,
                node,
                tls,
            } => request(&endpoint, &json, timeout, &node, &tls).await,
            Cmd::Ping {
                endpoint,
                count,
                node,
                tls,
            } => ping(&endpoint, count, &node, &tls).await,
            Cmd::Sub {
                endpoint,
                topics,
                count,
                node,
                tls,
            } => sub(&endpoint, &topics, count, &node, &tls).await,
            Cmd::Pub {
                endpoint,
                topic,
                json,
                node,
                tls,
            } => publish(&endpoint, &topic, &json, &node, &tls).await,
            Cmd::Bench {
                quick,
                frames,
                rtts,
                fanout,
            } => bench(quick, frames, rtts, fanout).await,
            Cmd::Demo => demo().await,
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("nipc: {msg}");
            ExitCode::FAILURE
        }
    }
}
