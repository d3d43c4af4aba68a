//! node-ipc's `ipc.log(...args)`: every argument that is not an object is
//! written as it is, objects and arrays are shown the way node's
//! `util.inspect` does (to `logDepth` levels, coloured when `logInColor`
//! and the output is a terminal), all joined by spaces, and the line goes
//! to `config.logger` (default: standard output), unless `silent`.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde::Serialize;
use serde_json::Value;

/// One argument of [`log!`](crate::log!) / [`Ipc::log_parts`](crate::Ipc::log_parts):
/// any serializable value, kept as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPart(Value);

impl LogPart {
    /// The value of `v` (a value that cannot be serialized shows as
    /// `<unserializable: why>`).
    pub fn new<T: Serialize + ?Sized>(v: &T) -> LogPart {
        LogPart(
            serde_json::to_value(v)
                .unwrap_or_else(|e| Value::String(format!("<unserializable: {e}>"))),
        )
    }
}

/// Whether `ipc.log` colours its objects: `logInColor` and a terminal on
/// standard output (no ANSI codes in redirected output).
pub(crate) fn use_color(log_in_color: bool) -> bool {
    log_in_color && std::io::stdout().is_terminal()
}

/// The line node-ipc's `log` builds from `parts`.
pub(crate) fn line(parts: &[LogPart], depth: usize, color: bool) -> String {
    let mut out = String::new();
    for (i, LogPart(v)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match v {
            // Not objects: joined as they are (strings without quotes).
            Value::String(s) => out.push_str(s),
            Value::Null => out.push_str("null"),
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            other => inspect(other, 0, depth, color, &mut out),
        }
    }
    out
}

const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[39m";
const RESET_BOLD: &str = "\x1b[22m";

fn paint(out: &mut String, color: bool, code: &str, reset: &str, text: &str) {
    if color {
        out.push_str(code);
        out.push_str(text);
        out.push_str(reset);
    } else {
        out.push_str(text);
    }
}

fn is_ident(k: &str) -> bool {
    let mut chars = k.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// `util.inspect(v, {depth, colors})` on one line: `{ a: 1, b: 'x' }`,
/// `[ 1, 2 ]`; an object or array nested deeper than `depth` shows as
/// `[Object]` / `[Array]`.
fn inspect(v: &Value, level: usize, depth: usize, color: bool, out: &mut String) {
    match v {
        Value::Null => paint(out, color, BOLD, RESET_BOLD, "null"),
        Value::Bool(b) => paint(out, color, YELLOW, RESET, &b.to_string()),
        Value::Number(n) => paint(out, color, YELLOW, RESET, &n.to_string()),
        Value::String(s) => {
            let quoted = format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
            paint(out, color, GREEN, RESET, &quoted)
        }
        Value::Array(a) if level > depth => paint(out, color, CYAN, RESET, "[Array]"),
        Value::Object(_) if level > depth => paint(out, color, CYAN, RESET, "[Object]"),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Array(a) => {
            out.push_str("[ ");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                inspect(x, level + 1, depth, color, out);
            }
            out.push_str(" ]");
        }
        Value::Object(m) => {
            out.push_str("{ ");
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if is_ident(k) {
                    out.push_str(k);
                } else {
                    paint(out, color, GREEN, RESET, &format!("'{k}'"));
                }
                out.push_str(": ");
                inspect(x, level + 1, depth, color, out);
            }
            out.push_str(" }");
        }
    }
}

/// node-ipc's `ipc.log(a, b, c)`: `ipc::log!(ipc, "got", data)` logs the
/// arguments (anything serializable) through the instance's logger, unless
/// `silent`; strings and numbers as they are, objects as node's
/// `util.inspect` shows them (to `logDepth` levels, coloured when
/// `logInColor` and writing to a terminal).
///
/// ```
/// let ipc = ipc::Ipc::new();
/// ipc::log!(ipc, "## received ##", "message", serde_json::json!({"id": 7}));
/// // prints: ## received ## message { id: 7 }
/// ```
#[macro_export]
macro_rules! log {
    ($ipc:expr $(, $arg:expr)* $(,)?) => {
        $ipc.log_parts(&[$($crate::LogPart::new(&$arg)),*])
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(vs: &[Value]) -> Vec<LogPart> {
        vs.iter().map(LogPart::new).collect()
    }

    #[test]
    fn like_node_ipc_log() {
        let p = parts(&[
            json!("got"),
            json!(3),
            json!({"a":{"b":[1,"x"]}, "k-1": null}),
        ]);
        assert_eq!(
            line(&p, 5, false),
            "got 3 { a: { b: [ 1, 'x' ] }, 'k-1': null }"
        );
        // logDepth: objects below it are [Object] / [Array].
        assert_eq!(line(&p, 0, false), "got 3 { a: [Object], 'k-1': null }");
        assert_eq!(
            line(&p, 1, false),
            "got 3 { a: { b: [Array] }, 'k-1': null }"
        );
        // logInColor: ANSI colours in objects only.
        let c = line(&parts(&[json!("s"), json!({"n":1})]), 5, true);
        assert_eq!(c, "s { n: \u{1b}[33m1\u{1b}[39m }");
    }
}
