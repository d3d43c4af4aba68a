//! Endpoints (where to listen or connect), node-ipc's local path
//! composition and its Windows pipe-name mapping.

use std::ffi::OsString;
use std::fmt;
#[cfg(not(windows))]
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;

use crate::TransportError;

/// The address family of a UDP endpoint (`udp4` or `udp6` in node-ipc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UdpFamily {
    /// IPv4 (`udp4`).
    V4,
    /// IPv6 (`udp6`).
    V6,
}

/// Where to listen or connect.
///
/// `Display` and `FromStr` use one text form per transport:
/// `unix:/path`, `tcp://host:port`, `tls://host:port`, `udp4://host:port`,
/// `udp6://[host]:port` and `pipe:\\.\pipe\name`. IPv6 hosts are written in
/// brackets. `FromStr` also accepts `id:<name>`, the node-ipc way of naming
/// a local service: the path is composed by [`LocalPaths::default`]
/// (a Unix socket, or a named pipe on Windows).
///
/// ```
/// use ipc_transport::Endpoint;
/// let e: Endpoint = "tcp://[::1]:8000".parse().unwrap();
/// assert_eq!(e, Endpoint::Tcp { host: "::1".into(), port: 8000 });
/// assert_eq!(e.to_string(), "tcp://[::1]:8000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A Unix-domain socket path.
    Unix(PathBuf),
    /// Plain TCP.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; `0` asks for an ephemeral port when listening.
        port: u16,
    },
    /// TLS over TCP.
    Tls {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; `0` asks for an ephemeral port when listening.
        port: u16,
    },
    /// A UDP socket of one family.
    Udp {
        /// `udp4` or `udp6`.
        family: UdpFamily,
        /// Host name or IP address to bind (IPv6 without brackets).
        host: String,
        /// Port; `0` asks for an ephemeral port.
        port: u16,
    },
    /// A Windows named pipe, as a full `\\.\pipe\` name (see [`pipe_name`]).
    /// The value exists on every platform; only Windows can open it.
    NamedPipe(String),
}

impl Endpoint {
    /// The endpoint node-ipc would use for the local service `id` with
    /// default paths (see [`LocalPaths::endpoint_for`]).
    pub fn local(id: &str) -> Endpoint {
        LocalPaths::default().endpoint_for(id)
    }

    /// A short transport name: `unix`, `tcp`, `tls`, `udp4`, `udp6` or `pipe`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Unix(_) => "unix",
            Endpoint::Tcp { .. } => "tcp",
            Endpoint::Tls { .. } => "tls",
            Endpoint::Udp {
                family: UdpFamily::V4,
                ..
            } => "udp4",
            Endpoint::Udp {
                family: UdpFamily::V6,
                ..
            } => "udp6",
            Endpoint::NamedPipe(_) => "pipe",
        }
    }

    /// True for Unix sockets and named pipes.
    pub fn is_local(&self) -> bool {
        matches!(self, Endpoint::Unix(_) | Endpoint::NamedPipe(_))
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str, port: u16) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]:{port}")
    } else {
        write!(f, "{host}:{port}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp { host, port } => {
                f.write_str("tcp://")?;
                write_host(f, host, *port)
            }
            Endpoint::Tls { host, port } => {
                f.write_str("tls://")?;
                write_host(f, host, *port)
            }
            Endpoint::Udp { host, port, .. } => {
                write!(f, "{}://", self.scheme())?;
                write_host(f, host, *port)
            }
            Endpoint::NamedPipe(name) => write!(f, "pipe:{name}"),
        }
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidEndpoint {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

fn parse_host_port(input: &str, rest: &str) -> Result<(String, u16), TransportError> {
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (host, tail) = after
            .split_once(']')
            .ok_or_else(|| invalid(input, "missing `]` after an IPv6 host"))?;
        let port = tail
            .strip_prefix(':')
            .ok_or_else(|| invalid(input, "expected `:port` after `]`"))?;
        (host, port)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid(input, "expected `host:port`"))?;
        if host.contains(':') {
            return Err(invalid(
                input,
                "an IPv6 host must be written in brackets, e.g. `[::1]:8000`",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(invalid(input, "empty host"));
    }
    if host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(invalid(input, "the host contains `/` or whitespace"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(input, format!("`{port}` is not a port number (0-65535)")))?;
    Ok((host.to_owned(), port))
}

impl FromStr for Endpoint {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = parse_host_port(s, rest)?;
            Ok(Endpoint::Tcp { host, port })
        } else if let Some(rest) = s.strip_prefix("tls://") {
            let (host, port) = parse_host_port(s, rest)?;
            Ok(Endpoint::Tls { host, port })
        } else if let Some(rest) = s.strip_prefix("udp4://") {
            let (host, port) = parse_host_port(s, rest)?;
            Ok(Endpoint::Udp {
                family: UdpFamily::V4,
                host,
                port,
            })
        } else if let Some(rest) = s.strip_prefix("udp6://") {
            let (host, port) = parse_host_port(s, rest)?;
            Ok(Endpoint::Udp {
                family: UdpFamily::V6,
                host,
                port,
            })
        } else if let Some(rest) = s.strip_prefix("unix:") {
            if rest.is_empty() {
                return Err(invalid(s, "empty socket path"));
            }
            if rest.contains('\0') {
                return Err(invalid(s, "the socket path contains a NUL byte"));
            }
            Ok(Endpoint::Unix(PathBuf::from(rest)))
        } else if let Some(rest) = s.strip_prefix("pipe:") {
            if rest.is_empty() {
                return Err(invalid(s, "empty pipe name"));
            }
            Ok(Endpoint::NamedPipe(pipe_name(rest)))
        } else if let Some(rest) = s.strip_prefix("id:") {
            if rest.is_empty() {
                return Err(invalid(s, "empty service id"));
            }
            Ok(Endpoint::local(rest))
        } else {
            Err(invalid(
                s,
                "expected one of unix:/path, tcp://host:port, tls://host:port, \
                 udp4://host:port, udp6://[host]:port, pipe:name or id:name",
            ))
        }
    }
}

/// The Windows pipe prefix `\\.\pipe\`.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";

/// Maps a node-ipc local path onto a Windows pipe name (`docs/protocol.md` §2.2).
///
/// A name that already starts with `\\.\pipe\` is returned unchanged (so the
/// mapping is idempotent, unlike node-ipc's server side). Otherwise **one**
/// leading `/` is removed, every remaining `/` becomes `-` and the result is
/// prefixed with `\\.\pipe\`. Backslashes are left alone.
///
/// ```
/// use ipc_transport::pipe_name;
/// assert_eq!(pipe_name("/tmp/app.world"), r"\\.\pipe\tmp-app.world");
/// assert_eq!(pipe_name(&pipe_name("/tmp/app.world")), r"\\.\pipe\tmp-app.world");
/// ```
pub fn pipe_name(logical: &str) -> String {
    if logical.starts_with(PIPE_PREFIX) {
        return logical.to_owned();
    }
    let trimmed = logical.strip_prefix('/').unwrap_or(logical);
    let mut out = String::with_capacity(PIPE_PREFIX.len() + trimmed.len());
    out.push_str(PIPE_PREFIX);
    out.extend(trimmed.chars().map(|c| if c == '/' { '-' } else { c }));
    out
}

/// node-ipc's local path composition: `socket_root + appspace + id`, plain
/// string concatenation (so `socket_root` must end with a separator).
///
/// [`LocalPaths::default`] gives node-ipc 14's layout (a per-user socket
/// root, see [`LocalPaths::default_socket_root`]); [`LocalPaths::legacy`]
/// gives node-ipc 9/12's `/tmp/app.<id>`. Peers of different node-ipc
/// versions only meet when both sides use the same root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPaths {
    /// Directory prefix, ending with a separator (`socketRoot`).
    pub socket_root: PathBuf,
    /// Namespace prefix of every id (`appspace`, default `app.`).
    pub appspace: String,
    /// Whether a server secures the root before binding inside it
    /// (`secureSocketRoot`, `docs/protocol.md` §2.1).
    pub secure_socket_root: bool,
}

impl Default for LocalPaths {
    /// node-ipc 14 defaults: the per-user root, `app.`, secure root on.
    fn default() -> Self {
        LocalPaths {
            socket_root: Self::default_socket_root(),
            appspace: "app.".to_owned(),
            secure_socket_root: true,
        }
    }
}

impl LocalPaths {
    /// node-ipc 9/12 defaults: `/tmp/` + `app.`, no secure root.
    pub fn legacy() -> Self {
        LocalPaths {
            socket_root: PathBuf::from("/tmp/"),
            appspace: "app.".to_owned(),
            secure_socket_root: false,
        }
    }

    /// node-ipc 14's default socket root: `$XDG_RUNTIME_DIR/node-ipc/` when
    /// `XDG_RUNTIME_DIR` is set and non-empty, else
    /// `<tmpdir>/node-ipc-<uid>/` (`$TMPDIR` or `/tmp`); on Windows
    /// `/node-ipc-<username>/`.
    pub fn default_socket_root() -> PathBuf {
        #[cfg(windows)]
        {
            let user = std::env::var("USERNAME").unwrap_or_default();
            PathBuf::from(format!("/node-ipc-{}/", sanitize_user(&user)))
        }
        #[cfg(not(windows))]
        {
            if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                return join_root(Path::new(&xdg), "node-ipc");
            }
            let tmp = node_tmpdir();
            join_root(&tmp, &format!("node-ipc-{}", current_uid()))
        }
    }

    /// `socket_root + appspace + id` as a path.
    pub fn path_for(&self, id: &str) -> PathBuf {
        let mut s = OsString::from(self.socket_root.as_os_str());
        s.push(&self.appspace);
        s.push(id);
        PathBuf::from(s)
    }

    /// Listen options that create and secure this socket root (when
    /// [`LocalPaths::secure_socket_root`] is set) before binding a socket
    /// inside it; everything else keeps its default.
    pub fn listen_options(&self) -> crate::ListenOptions {
        crate::ListenOptions {
            socket_root: Some(self.socket_root.clone()),
            secure_socket_root: self.secure_socket_root,
            ..crate::ListenOptions::default()
        }
    }

    /// The endpoint of the local service `id`: a Unix socket at
    /// [`LocalPaths::path_for`], or on Windows the pipe [`pipe_name`] maps
    /// that path to.
    pub fn endpoint_for(&self, id: &str) -> Endpoint {
        let path = self.path_for(id);
        if cfg!(windows) {
            Endpoint::NamedPipe(pipe_name(&path.to_string_lossy()))
        } else {
            Endpoint::Unix(path)
        }
    }
}

/// Replaces every character outside `[A-Za-z0-9_.-]` with `_`; an empty
/// name becomes `user` (node-ipc 14's rule for the Windows root).
pub fn sanitize_user(name: &str) -> String {
    if name.is_empty() {
        return "user".to_owned();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(not(windows))]
fn join_root(base: &Path, dir: &str) -> PathBuf {
    let mut s = OsString::from(base.as_os_str());
    if !s.to_string_lossy().ends_with('/') {
        s.push("/");
    }
    s.push(dir);
    s.push("/");
    PathBuf::from(s)
}

/// `os.tmpdir()`: `$TMPDIR` without a trailing slash, else `/tmp`.
#[cfg(not(windows))]
fn node_tmpdir() -> PathBuf {
    match std::env::var("TMPDIR") {
        Ok(v) if !v.is_empty() => {
            let trimmed = if v.len() > 1 {
                v.trim_end_matches('/')
            } else {
                v.as_str()
            };
            PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed })
        }
        _ => PathBuf::from("/tmp"),
    }
}

#[cfg(unix)]
fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(all(not(unix), not(windows)))]
fn current_uid() -> String {
    sanitize_user(&std::env::var("USER").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_names_follow_node_ipc() {
        assert_eq!(pipe_name("/tmp/app.world"), r"\\.\pipe\tmp-app.world");
        assert_eq!(
            pipe_name("/node-ipc-Test_User/app.world"),
            r"\\.\pipe\node-ipc-Test_User-app.world"
        );
        assert_eq!(pipe_name("myapp.world"), r"\\.\pipe\myapp.world");
        // Only one leading slash is removed.
        assert_eq!(pipe_name("//a/b"), r"\\.\pipe\-a-b");
        // Idempotent for explicit pipe paths.
        assert_eq!(pipe_name(r"\\.\pipe\x"), r"\\.\pipe\x");
        assert_eq!(pipe_name(r"\\.\pipe\a/b"), r"\\.\pipe\a/b");
        for p in ["/tmp/app.world", "x", "/a/b/c"] {
            assert_eq!(pipe_name(&pipe_name(p)), pipe_name(p));
        }
        // Backslashes are not converted.
        assert_eq!(pipe_name(r"a\b"), r"\\.\pipe\a\b");
    }

    #[test]
    fn endpoint_round_trips() {
        for s in [
            "unix:/tmp/app.world",
            "tcp://127.0.0.1:8000",
            "tcp://[::1]:0",
            "tls://localhost:443",
            "udp4://127.0.0.1:9",
            "udp6://[::1]:9",
            r"pipe:\\.\pipe\tmp-app.world",
        ] {
            let e: Endpoint = s.parse().unwrap();
            assert_eq!(e.to_string(), s, "{e:?}");
            assert_eq!(e.to_string().parse::<Endpoint>().unwrap(), e);
        }
        assert_eq!(
            "pipe:/tmp/app.world".parse::<Endpoint>().unwrap(),
            Endpoint::NamedPipe(r"\\.\pipe\tmp-app.world".into())
        );
        assert_eq!(
            "udp6://[::1]:7".parse::<Endpoint>().unwrap(),
            Endpoint::Udp {
                family: UdpFamily::V6,
                host: "::1".into(),
                port: 7
            }
        );
    }

    #[test]
    fn endpoint_errors_are_clear() {
        for (s, needle) in [
            ("tcp://::1:80", "brackets"),
            ("tcp://localhost", "host:port"),
            ("tcp://localhost:99999", "not a port"),
            ("tcp://:80", "empty host"),
            ("tls://[::1:80", "missing `]`"),
            ("unix:", "empty socket path"),
            ("http://x:1", "expected one of"),
            ("id:", "empty service id"),
        ] {
            let err = s.parse::<Endpoint>().unwrap_err();
            assert!(err.to_string().contains(needle), "{s}: {err}");
            assert_eq!(err.code(), Some(ipc_proto::ErrorCode::InvalidConfiguration));
        }
    }

    #[test]
    fn local_paths_compose_by_concatenation() {
        let legacy = LocalPaths::legacy();
        assert_eq!(legacy.path_for("world"), PathBuf::from("/tmp/app.world"));
        let custom = LocalPaths {
            socket_root: PathBuf::from("/run/x/"),
            appspace: "svc-".into(),
            secure_socket_root: true,
        };
        assert_eq!(custom.path_for("a"), PathBuf::from("/run/x/svc-a"));
        let no_sep = LocalPaths {
            socket_root: PathBuf::from("/run/x"),
            appspace: "app.".into(),
            secure_socket_root: true,
        };
        assert_eq!(no_sep.path_for("a"), PathBuf::from("/run/xapp.a"));
        let v14 = LocalPaths::default();
        assert!(v14.socket_root.to_string_lossy().ends_with('/'));
        assert!(v14.socket_root.to_string_lossy().contains("node-ipc"));
        assert_eq!(v14.appspace, "app.");
        let e: Endpoint = "id:world".parse().unwrap();
        assert_eq!(e, v14.endpoint_for("world"));
    }

    #[test]
    fn usernames_are_sanitised() {
        assert_eq!(sanitize_user("Test User!"), "Test_User_");
        assert_eq!(sanitize_user("a.b-c_d"), "a.b-c_d");
        assert_eq!(sanitize_user(""), "user");
    }
}
