//! Unix-domain sockets: `sun_path` check, secure socket root, safe unlink,
//! permissions, removal on drop, peer credentials.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use crate::stream::{PeerAddr, PeerCred, PeerInfo};
use crate::{ListenOptions, TransportError, UnlinkMode};

/// The largest socket path length in bytes (without the terminating NUL)
/// this platform's `sun_path` holds: 107 on Linux, 103 on macOS and the BSDs.
pub const MAX_SOCKET_PATH: usize = if cfg!(any(target_os = "linux", target_os = "android")) {
    107
} else {
    103
};

/// How long the liveness probe of an existing socket may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Fails with [`TransportError::SocketPathTooLong`] when `path` does not
/// fit into `sun_path`.
pub fn check_path_len(path: &Path) -> Result<(), TransportError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(TransportError::SocketPathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// The effective user id of this process.
pub fn current_euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Prepares node-ipc 14's secure socket root before a server binds `path`
/// (`docs/protocol.md` §2.1): when `path` lies inside `root`, the root is created with
/// mode 0700 if missing; when `secure` is true an existing root must be a
/// real directory (not a symlink) owned by this user, and group/other
/// permission bits are removed.
pub fn prepare_socket_root(path: &Path, root: &Path, secure: bool) -> Result<(), TransportError> {
    if !path.starts_with(root) || path == root {
        return Ok(());
    }
    let root_err = |reason: String, source: Option<io::Error>| TransportError::SocketRoot {
        root: root.to_owned(),
        reason,
        source,
    };
    // Look first, so a symlink is never followed by the mkdir.
    match fs::symlink_metadata(root) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)
                .map_err(|e| root_err("cannot create the directory".into(), Some(e)))?;
            // `mode` is filtered by the umask; make sure of 0700.
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                .map_err(|e| root_err("cannot set mode 0700".into(), Some(e)))?;
            tracing::debug!(root = %root.display(), "created socket root");
        }
        Err(e) => return Err(root_err("cannot inspect it".into(), Some(e))),
    }
    let meta =
        fs::symlink_metadata(root).map_err(|e| root_err("cannot inspect it".into(), Some(e)))?;
    let ft = meta.file_type();
    if !ft.is_dir() && !ft.is_symlink() {
        return Err(root_err(
            "exists and is not a directory".into(),
            Some(io::Error::from(io::ErrorKind::AlreadyExists)),
        ));
    }
    if !secure {
        return Ok(());
    }
    if ft.is_symlink() {
        return Err(root_err(
            "socketRoot must be a real directory, not a symlink".into(),
            None,
        ));
    }
    let euid = current_euid();
    if meta.uid() != euid {
        return Err(root_err(
            format!(
                "owned by uid {}, not by this process (uid {euid})",
                meta.uid()
            ),
            None,
        ));
    }
    if meta.mode() & 0o077 != 0 {
        tracing::info!(root = %root.display(), mode = format!("{:o}", meta.mode() & 0o7777), "restricting socket root to 0700");
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(|e| root_err("cannot set mode 0700".into(), Some(e)))?;
    }
    Ok(())
}

/// Client-side ownership check of a local endpoint (`docs/protocol.md` §2.1, item 4):
/// `path` must be a socket (not a symlink) owned by this user or by root,
/// and its directory a real directory owned by this user or by root that
/// nobody else can write to. Call it before [`crate::connect`] when the
/// server must be trusted; the peer credentials of the connected stream
/// ([`crate::PeerInfo::cred`]) give the same answer for the live process.
pub fn verify_socket_owner(path: &Path) -> Result<(), TransportError> {
    let euid = current_euid();
    let trusted = |uid: u32| uid == euid || uid == 0;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let root_err = |reason: String, source: Option<io::Error>| TransportError::SocketRoot {
        root: dir.clone(),
        reason,
        source,
    };
    let dmeta = fs::symlink_metadata(&dir)
        .map_err(|e| root_err("cannot inspect the directory".into(), Some(e)))?;
    if !dmeta.file_type().is_dir() {
        return Err(root_err("not a real directory".into(), None));
    }
    if !trusted(dmeta.uid()) {
        return Err(root_err(
            format!(
                "directory owned by uid {}, not by uid {euid} or root",
                dmeta.uid()
            ),
            None,
        ));
    }
    // Sticky directories such as /tmp are writable by all but protect
    // entries of other users; anything else writable by others is unsafe.
    if dmeta.mode() & 0o022 != 0 && dmeta.mode() & 0o1000 == 0 {
        return Err(root_err(
            "directory is writable by group or other users".into(),
            None,
        ));
    }
    let meta = fs::symlink_metadata(path).map_err(|e| TransportError::Connect {
        endpoint: format!("unix:{}", path.display()),
        source: e,
    })?;
    let ft = meta.file_type();
    if !ft.is_socket() {
        return Err(TransportError::UnlinkNotSocket {
            path: path.to_owned(),
            kind: kind_name(&ft),
        });
    }
    if !trusted(meta.uid()) {
        return Err(root_err(
            format!(
                "socket {} owned by uid {}, not by uid {euid} or root",
                path.display(),
                meta.uid()
            ),
            None,
        ));
    }
    Ok(())
}

pub(crate) fn kind_name(ft: &fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() || ft.is_block_device() {
        "device"
    } else {
        "non-socket file"
    }
}

/// Makes `path` free for binding (`docs/protocol.md` §2.1 unlink rule plus liveness probe):
/// nothing there → fine; not a socket (symlinks included, never followed) →
/// [`TransportError::UnlinkNotSocket`]; a socket a live server accepts on →
/// [`TransportError::AddressInUse`] unless `mode` is [`UnlinkMode::Force`];
/// otherwise the stale socket is removed.
///
/// The probe is a real connection: a live server sees it connect and close
/// without sending anything.
pub async fn unlink_stale(path: &Path, mode: UnlinkMode) -> Result<(), TransportError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(TransportError::io(
                format!("cannot inspect {}", path.display()),
                e,
            ))
        }
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        return Err(TransportError::UnlinkNotSocket {
            path: path.to_owned(),
            kind: kind_name(&ft),
        });
    }
    if mode == UnlinkMode::Probe {
        match tokio::time::timeout(PROBE_TIMEOUT, UnixStream::connect(path)).await {
            Ok(Ok(_live)) => {
                return Err(TransportError::AddressInUse {
                    endpoint: format!("unix:{}", path.display()),
                    reason: "a live server accepts connections on this socket; \
                             stop it first or use unlink_mode = force"
                        .into(),
                    source: None,
                });
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing stale socket file");
            }
            Ok(Err(e)) => {
                return Err(TransportError::io(
                    format!("cannot probe the existing socket {}", path.display()),
                    e,
                ))
            }
            Err(_) => {
                return Err(TransportError::AddressInUse {
                    endpoint: format!("unix:{}", path.display()),
                    reason: "the existing socket neither accepted nor refused a probe connection"
                        .into(),
                    source: None,
                })
            }
        }
    } else {
        tracing::warn!(path = %path.display(), "unlink_mode = force: removing the existing socket without probing");
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TransportError::io(
            format!("cannot remove the stale socket {}", path.display()),
            e,
        )),
    }
}

/// Identity of the socket file a listener created, to remove it on drop only
/// if it is still the same file.
#[derive(Debug)]
pub(crate) struct SocketFileGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFileGuard {
    pub(crate) fn new(path: &Path) -> Option<Self> {
        let meta = fs::symlink_metadata(path).ok()?;
        Some(SocketFileGuard {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Removes the socket file if it is still the one that was bound.
    pub(crate) fn remove(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove socket file");
                } else {
                    tracing::debug!(path = %self.path.display(), "removed socket file");
                }
            }
            Ok(_) => {
                tracing::debug!(path = %self.path.display(), "socket file was replaced; leaving it");
            }
            Err(_) => {}
        }
    }
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A bound Unix listener with the guard of its socket file.
pub(crate) struct BoundUnix {
    pub(crate) listener: UnixListener,
    pub(crate) guard: Option<SocketFileGuard>,
}

/// The mode of a freshly bound socket file: owner read/write, plus read or
/// write for group and other when asked.
pub fn socket_mode(readable_all: bool, writable_all: bool) -> u32 {
    let mut mode = 0o600;
    if readable_all {
        mode |= 0o044;
    }
    if writable_all {
        mode |= 0o022;
    }
    mode
}

pub(crate) async fn bind(path: &Path, opts: &ListenOptions) -> Result<BoundUnix, TransportError> {
    check_path_len(path)?;
    let endpoint = || format!("unix:{}", path.display());
    if let Some(root) = &opts.socket_root {
        prepare_socket_root(path, root, opts.secure_socket_root)?;
    }
    if opts.unlink {
        unlink_stale(path, opts.unlink_mode).await?;
    }
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let reason = if opts.unlink {
                "the path was taken while binding".to_owned()
            } else {
                "the path exists and unlink is off; remove a stale socket first".to_owned()
            };
            return Err(TransportError::AddressInUse {
                endpoint: endpoint(),
                reason,
                source: Some(e),
            });
        }
        Err(e) => {
            return Err(TransportError::Bind {
                endpoint: endpoint(),
                source: e,
            })
        }
    };
    let guard = SocketFileGuard::new(path);
    let mode = socket_mode(opts.readable_all, opts.writable_all);
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        drop(guard);
        return Err(TransportError::io(
            format!("cannot set mode {mode:o} on {}", path.display()),
            e,
        ));
    }
    tracing::debug!(path = %path.display(), mode = format!("{mode:o}"), "listening on unix socket");
    Ok(BoundUnix { listener, guard })
}

pub(crate) async fn connect(path: &Path) -> Result<UnixStream, TransportError> {
    check_path_len(path)?;
    UnixStream::connect(path)
        .await
        .map_err(|e| TransportError::Connect {
            endpoint: format!("unix:{}", path.display()),
            source: e,
        })
}

/// Peer information of a connected Unix stream.
pub(crate) fn peer_info(stream: &UnixStream) -> PeerInfo {
    let addr = stream
        .peer_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned));
    let mut info = PeerInfo::new(PeerAddr::Unix(addr));
    match stream.peer_cred() {
        Ok(c) => {
            info.cred = Some(PeerCred {
                pid: c.pid(),
                uid: c.uid(),
                gid: c.gid(),
            });
        }
        Err(e) => tracing::debug!(error = %e, "peer credentials unavailable"),
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_add_bits_without_removing_owner_bits() {
        assert_eq!(socket_mode(false, false), 0o600);
        assert_eq!(socket_mode(true, false), 0o644);
        assert_eq!(socket_mode(false, true), 0o622);
        assert_eq!(socket_mode(true, true), 0o666);
    }

    #[test]
    fn path_length_limit() {
        let ok = PathBuf::from(format!("/{}", "a".repeat(MAX_SOCKET_PATH - 1)));
        assert!(check_path_len(&ok).is_ok());
        let long = PathBuf::from(format!("/{}", "a".repeat(MAX_SOCKET_PATH)));
        let err = check_path_len(&long).unwrap_err();
        assert_eq!(err.code(), Some(ipc_proto::ErrorCode::SocketPathTooLong));
    }
}
