//! node-ipc's configuration on the command line: `--config FILE` (the JSON
//! of node-ipc's `ipc.config`, read by [`Config::from_json`]) and one flag
//! per key a shell user changes most, with node-ipc's names and meanings.
//! Flags override the file; the file overrides node-ipc 14's defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipc::{Config, Endpoint, MaxRetries, Parser, RawEncoding};

use crate::output::{Fail, Res};

/// `--parser`: node-ipc 14's framed profiles (`--raw` selects `raw`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ParserArg {
    /// Framing and JSON, no limits (node-ipc's default).
    Fast,
    /// Fast plus size, name, reserved-name and timeout checks.
    Guarded,
    /// Guarded plus the `--allowed-events` list and transport gates.
    Assured,
}

/// The node-ipc configuration flags every peer command takes.
#[derive(Args, Clone, Default, Debug)]
#[command(next_help_heading = "node-ipc configuration")]
pub(crate) struct NodeArgs {
    /// node-ipc `ipc.config` as a JSON file (camelCase keys: `socketRoot`,
    /// `appspace`, `rawBuffer`, `delimiter`, `parser`, `maxRetries`, `tls`,
    /// …); unknown keys are an error. The flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `id`: the service id `id:` endpoints and a `serve` without endpoint use.
    #[arg(long)]
    pub id: Option<String>,
    /// `appspace`: the prefix of local socket names (default `app.`).
    #[arg(long)]
    pub appspace: Option<String>,
    /// `socketRoot`: the directory of local sockets (node-ipc 9/12: `/tmp/`,
    /// with `--secure-socket-root false`).
    #[arg(long, value_name = "DIR")]
    pub socket_root: Option<PathBuf>,
    /// `secureSocketRoot` (default true): a serving side creates the socket
    /// root with mode 0700 and requires it to be its own. Set false for a
    /// shared directory such as node-ipc 9/12's `/tmp/` (as root, true would
    /// make `/tmp` 0700).
    #[arg(long, value_name = "BOOL")]
    pub secure_socket_root: Option<bool>,
    /// `rawBuffer`: no framing, bytes as they are (stdout shows them as hex).
    #[arg(long)]
    pub raw: bool,
    /// `encoding` of raw strings sent: utf8, ascii, utf16le, ucs2, base64,
    /// hex, latin1, binary.
    #[arg(long, value_name = "ENC")]
    pub encoding: Option<String>,
    /// `delimiter` between frames (default `\f`); `\f`, `\n`, `\r`, `\t`,
    /// `\0` and `\\` are understood.
    #[arg(long, value_name = "TEXT")]
    pub delimiter: Option<String>,
    /// `sync`: a client sends its next message only after receiving one.
    #[arg(long)]
    pub sync: bool,
    /// `parser`: the framed profile.
    #[arg(long, value_enum)]
    pub parser: Option<ParserArg>,
    /// `allowedEvents` (required by `--parser assured`), comma-separated.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub allowed_events: Option<Vec<String>>,
    /// `maxMessageSize` in bytes (checked by guarded and assured).
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// `maxPendingBytes`: bytes queued for one peer before it counts as slow.
    #[arg(long, value_name = "BYTES")]
    pub max_pending_bytes: Option<usize>,
    /// `messageTimeout` in ms for a partial frame (guarded and assured; 0: none).
    #[arg(long, value_name = "MS")]
    pub message_timeout: Option<u64>,
    /// Client `retry`: ms between reconnect attempts (default 500).
    #[arg(long, value_name = "MS")]
    pub retry: Option<u64>,
    /// Client `maxRetries`: attempts after each disconnect, or `Infinity`.
    /// nipc's clients default to 0 (fail at once) unless this flag or the
    /// config file says otherwise; with retries, `listen` and `sub` wait for
    /// their server until the budget is spent.
    #[arg(long, value_name = "N")]
    pub max_retries: Option<String>,
}

/// Unescapes `\f`, `\n`, `\r`, `\t`, `\0`, `\\` and `\uXXXX` in a delimiter.
fn unescape(s: &str) -> Res<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                let hex: String = it.by_ref().take(4).collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| Fail(format!("--delimiter: `\\u{hex}` is not a character")))?;
                out.push(ch);
            }
            other => {
                return Err(Fail(format!(
                "--delimiter: unknown escape `\\{}` (use \\f, \\n, \\r, \\t, \\0, \\\\ or \\uXXXX)",
                other.map(String::from).unwrap_or_default()
            )))
            }
        }
    }
    Ok(out)
}

impl NodeArgs {
    /// The configuration: node-ipc 14's defaults, then the file, then the
    /// flags. `client`: nipc's clients do not reconnect unless asked to.
    pub(crate) fn config(&self, client: bool) -> Res<Config> {
        let (mut c, file_sets_retries) = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Fail(format!("cannot read --config {}: {e}", path.display())))?;
                let c = Config::from_json(&text)
                    .map_err(|e| Fail(format!("--config {}: {e}", path.display())))?;
                let sets = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("maxRetries").map(|_| ()))
                    .is_some();
                (c, sets)
            }
            None => (Config::default(), false),
        };
        if let Some(v) = &self.id {
            c.id.clone_from(v);
        }
        if let Some(v) = &self.appspace {
            c.appspace.clone_from(v);
        }
        if let Some(v) = &self.socket_root {
            let mut s = v.display().to_string();
            if !s.ends_with('/') {
                s.push('/');
            }
            c.socket_root = PathBuf::from(s);
        }
        if let Some(v) = self.secure_socket_root {
            c.secure_socket_root = v;
        }
        if self.raw {
            c.raw_buffer = true;
        }
        if let Some(v) = &self.encoding {
            c.encoding = v
                .parse::<RawEncoding>()
                .map_err(|e| Fail(format!("--encoding {v}: {e}")))?;
        }
        if let Some(v) = &self.delimiter {
            c.delimiter = unescape(v)?;
        }
        if self.sync {
            c.sync = true;
        }
        if let Some(p) = self.parser {
            c.parser = match p {
                ParserArg::Fast => Parser::Fast,
                ParserArg::Guarded => Parser::Guarded,
                ParserArg::Assured => Parser::Assured,
            };
        }
        if let Some(v) = &self.allowed_events {
            c.allowed_events = Some(v.clone());
        }
        if let Some(v) = self.max_message_size {
            c.max_message_size = v;
        }
        if let Some(v) = self.max_pending_bytes {
            c.max_pending_bytes = v;
        }
        if let Some(v) = self.message_timeout {
            c.message_timeout = v;
        }
        if let Some(v) = self.retry {
            c.retry = Duration::from_millis(v);
        }
        match &self.max_retries {
            Some(v) => {
                let js = if v == "Infinity" {
                    serde_json::Value::String(v.clone())
                } else {
                    let n: f64 = v
                        .parse()
                        .map_err(|_| Fail(format!("--max-retries {v}: a number or Infinity")))?;
                    serde_json::json!(n)
                };
                c.max_retries = MaxRetries::from_js(&js);
            }
            None if client && !file_sets_retries => c.max_retries = MaxRetries::Limited(0),
            None => {}
        }
        c.validate()
            .map_err(|e| Fail(format!("invalid configuration: {e}")))?;
        Ok(c)
    }
}

/// Parses an endpoint; `id:NAME` follows this configuration's `socketRoot`
/// and `appspace`, and no endpoint at all means `id:<--id>`.
pub(crate) fn endpoint_for(given: Option<&str>, config: &Config) -> Res<Endpoint> {
    match given {
        None => Ok(config.local_paths().endpoint_for(&config.id)),
        Some(s) => match s.strip_prefix("id:") {
            Some(name) if !name.is_empty() => Ok(config.local_paths().endpoint_for(name)),
            _ => s.parse::<Endpoint>().map_err(Fail::from),
        },
    }
}
