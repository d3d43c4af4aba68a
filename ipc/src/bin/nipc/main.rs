//! `nipc`: node-ipc from the shell.
//!
//! ```text
//! nipc serve <endpoint> [--echo] [--broadcast-stdin]   print every event as a JSON line
//! nipc emit <endpoint> <type> <json>                   send one message and exit
//! nipc listen <endpoint> [--count N]                   print what a server sends
//! nipc request <endpoint> <json>                       one request, print the answer
//! nipc ping <endpoint>                                 round-trip time
//! nipc sub <endpoint> <topic>...                       print publications
//! nipc pub <endpoint> <topic> <json>                   publish through the server
//! nipc bench [--quick]                                 throughput, latency, fan-out
//! nipc demo                                            a guided tour in one process
//! ```
//!
//! Client commands take `--protocol net-ipc` to talk to a net-ipc server;
//! `serve` accepts node-ipc and net-ipc clients alike without a flag.
//!
//! Endpoints: `unix:/path`, `id:world` (node-ipc's default path for that
//! id), `tcp://host:port`, `tls://host:port`, `udp4://host:port`,
//! `udp6://[::1]:port`. Errors are one line on stderr and exit status 1
//! (2 for command-line usage errors).

mod bench;
mod commands;
mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipc::Config;

use crate::bench::bench;
use crate::commands::{emit, listen, ping, publish, request, serve, sub};
use crate::demo::demo;
use crate::output::Fail;

#[derive(Parser)]
#[command(
    name = "nipc",
    version,
    about = "Talk to node-ipc peers from the shell"
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
    Serve {
        /// `unix:/path`, `id:name`, `tcp://host:port`, `tls://host:port`, `udp4://host:port`, `udp6://[::1]:port`
        endpoint: String,
        /// Send every message back to its sender (and answer requests with
        /// their own data).
        #[arg(long)]
        echo: bool,
        /// Broadcast each stdin line `{"type":…,"data":…}` to every client.
        #[arg(long)]
        broadcast_stdin: bool,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect, send one message, flush and exit.
    Emit {
        /// The server's endpoint.
        endpoint: String,
        /// The event type.
        #[arg(value_name = "TYPE")]
        event: String,
        /// The data, as JSON (a string is '"text"').
        json: String,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Connect and print every event as one JSON line.
    Listen {
        /// The server's endpoint.
        endpoint: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Send one request (SPEC §5.4) and print the answer as JSON.
    Request {
        /// The server's endpoint.
        endpoint: String,
        /// The request data, as JSON.
        json: String,
        /// Timeout in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        timeout: u64,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure round trips to a server (ipcx.ping).
    Ping {
        /// The server's endpoint.
        endpoint: String,
        /// How many pings.
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Subscribe to topics and print publications as JSON lines.
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
        tls: TlsArgs,
    },
    /// Publish one message on a topic through the server (ipcx.pub).
    Pub {
        /// The server's endpoint.
        endpoint: String,
        /// The topic.
        topic: String,
        /// The message, as JSON.
        json: String,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Measure throughput, latency and broadcast fan-out in-process.
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
    Demo,
}

#[derive(Args, Clone, Default)]
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
        match cli.cmd {
            Cmd::Serve {
                endpoint,
                echo,
                broadcast_stdin,
                tls,
            } => serve(&endpoint, echo, broadcast_stdin, &tls).await,
            Cmd::Emit {
                endpoint,
                event,
                json,
                tls,
            } => emit(&endpoint, &event, &json, &tls).await,
            Cmd::Listen {
                endpoint,
                count,
                tls,
            } => listen(&endpoint, count, &tls).await,
            Cmd::Request {
                endpoint,
                json,
                timeout,
                tls,
            } => request(&endpoint, &json, timeout, &tls).await,
            Cmd::Ping {
                endpoint,
                count,
                tls,
            } => ping(&endpoint, count, &tls).await,
            Cmd::Sub {
                endpoint,
                topics,
                count,
                tls,
            } => sub(&endpoint, &topics, count, &tls).await,
            Cmd::Pub {
                endpoint,
                topic,
                json,
                tls,
            } => publish(&endpoint, &topic, &json, &tls).await,
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
