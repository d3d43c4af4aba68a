//! Unix-domain socket transport: round trips and every failure path.
#![cfg(all(unix, feature = "unix"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::within;
use ipc_transport::{
    connect, ConnectOptions, Endpoint, ErrorCode, ListenOptions, Listener, PeerAddr,
    TransportError, UnlinkMode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ep(path: &Path) -> Endpoint {
    Endpoint::Unix(path.to_owned())
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("ipct").tempdir().unwrap()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

async fn exchange(listener: &Listener, endpoint: &Endpoint) {
    let mut client = within(connect(endpoint, &ConnectOptions::default()))
        .await
        .unwrap();
    let (mut server, peer) = within(listener.accept()).await.unwrap();
    assert_eq!(server.peer(), &peer);
    client.write_all(b"ping\x0c").await.unwrap();
    let mut buf = [0u8; 5];
    within(server.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"ping\x0c");
    server.write_all(b"pong\x0c").await.unwrap();
    within(client.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"pong\x0c");
    // Closing the client is seen as EOF by the server.
    client.shutdown().await.unwrap();
    drop(client);
    let n = within(server.read(&mut buf)).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn round_trip_both_ways_with_peer_credentials() {
    let dir = tempdir();
    let path = dir.path().join("app.world");
    let endpoint = ep(&path);
    let listener = within(Listener::bind(&endpoint, &ListenOptions::default()))
        .await
        .unwrap();
    assert_eq!(listener.local_endpoint(), endpoint);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());

    let client = within(connect(&endpoint, &ConnectOptions::default()))
        .await
        .unwrap();
    let (server, peer) = within(listener.accept()).await.unwrap();
    let euid = ipc_transport::unix::current_euid();
    let cred = peer.cred.expect("server sees the client's credentials");
    assert_eq!(cred.uid, euid);
    assert_eq!(cred.pid, Some(std::process::id() as i32));
    assert_eq!(peer.addr, PeerAddr::Unix(None));
    let client_view = client
        .peer()
        .cred
        .expect("client sees the server's credentials");
    assert_eq!(client_view.uid, euid);
    assert_eq!(client.peer().addr, PeerAddr::Unix(Some(path.clone())));

    // Owned halves work independently.
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    cw.write_all(b"{\"type\":\"a\"}\x0c").await.unwrap();
    let mut buf = vec![0u8; 13];
    within(sr.read_exact(&mut buf)).await.unwrap();
    assert_eq!(buf, b"{\"type\":\"a\"}\x0c");
    sw.write_all(b"back").await.unwrap();
    let mut b4 = [0u8; 4];
    within(cr.read_exact(&mut b4)).await.unwrap();
    assert_eq!(&b4, b"back");

    exchange(&listener, &endpoint).await;
    within(listener.close()).await;
    assert!(!path.exists(), "socket file removed on close");
}

#[tokio::test]
async fn path_too_long_is_reported_before_bind_and_connect() {
    let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
    let err = Listener::bind(&ep(&long), &ListenOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SocketPathTooLong));
    assert!(matches!(
        err,
        TransportError::SocketPathTooLong { len: 125, .. }
    ));
    assert!(err.to_string().contains("sun_path"));
    assert!(!long.exists());
    let err = connect(&ep(&long), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SocketPathTooLong));
}

#[tokio::test]
async fn live_socket_is_not_unlinked() {
    let dir = tempdir();
    let path = dir.path().join("live");
    let first = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    let err = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AddressInUse));
    assert!(err.to_string().contains("live server"), "{err}");
    assert!(!err.is_retryable());
    // The first server still works (its socket was not stolen). The probe
    // connection is in its backlog first.
    let (_probe, _) = within(first.accept()).await.unwrap();
    exchange(&first, &ep(&path)).await;
}

#[tokio::test]
async fn force_mode_replaces_a_live_socket() {
    let dir = tempdir();
    let path = dir.path().join("forced");
    let first = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    let opts = ListenOptions {
        unlink_mode: UnlinkMode::Force,
        ..ListenOptions::default()
    };
    let second = within(Listener::bind(&ep(&path), &opts)).await.unwrap();
    exchange(&second, &ep(&path)).await;
    // The first listener's file was replaced: dropping it leaves the new one.
    drop(first);
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    exchange(&second, &ep(&path)).await;
}

#[tokio::test]
async fn stale_socket_is_reclaimed() {
    let dir = tempdir();
    let path = dir.path().join("stale");
    // A socket file nobody listens on (a crashed server).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let err = within(connect(&ep(&path), &ConnectOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::ConnectionRefused));
    assert!(err.is_retryable());

    let listener = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    exchange(&listener, &ep(&path)).await;
}

#[tokio::test]
async fn non_socket_is_not_unlinked() {
    let dir = tempdir();
    let path = dir.path().join("precious");
    std::fs::write(&path, b"keep me").unwrap();
    let err = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnlinkNotSocket));
    assert!(err.to_string().contains("regular file"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");

    let sub = dir.path().join("adir");
    std::fs::create_dir(&sub).unwrap();
    let err = within(Listener::bind(&ep(&sub), &ListenOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnlinkNotSocket));
    assert!(sub.is_dir());
}

#[tokio::test]
async fn symlink_is_not_followed() {
    let dir = tempdir();
    let target = dir.path().join("real-stale-socket");
    drop(std::os::unix::net::UnixListener::bind(&target).unwrap());
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = within(Listener::bind(&ep(&link), &ListenOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnlinkNotSocket));
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_socket());
}

#[tokio::test]
async fn unlink_false_never_touches_the_path() {
    let dir = tempdir();
    let path = dir.path().join("kept");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let ino = std::fs::symlink_metadata(&path).unwrap().ino();
    let opts = ListenOptions {
        unlink: false,
        ..ListenOptions::default()
    };
    let err = within(Listener::bind(&ep(&path), &opts)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AddressInUse));
    assert!(err.to_string().contains("unlink is off"), "{err}");
    assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), ino);
}

#[tokio::test]
async fn socket_file_modes() {
    let dir = tempdir();
    for (readable, writable, expected) in [
        (false, false, 0o600),
        (true, false, 0o644),
        (false, true, 0o622),
        (true, true, 0o666),
    ] {
        let path = dir.path().join(format!("m{readable}{writable}"));
        let opts = ListenOptions {
            readable_all: readable,
            writable_all: writable,
            ..ListenOptions::default()
        };
        let l = within(Listener::bind(&ep(&path), &opts)).await.unwrap();
        assert_eq!(mode_of(&path), expected, "{readable} {writable}");
        // The owner can always connect.
        exchange(&l, &ep(&path)).await;
    }
}

#[tokio::test]
async fn socket_file_removed_on_drop_only_if_still_ours() {
    let dir = tempdir();
    let path = dir.path().join("owned");
    let l = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    drop(l);
    assert!(!path.exists(), "our socket is removed");

    let l = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    // Someone replaces the file while we listen.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not ours").unwrap();
    drop(l);
    assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
    std::fs::remove_file(&path).unwrap();

    let l = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let other = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(l);
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket(),
        "another server's socket is left alone"
    );
    drop(other);
}

#[tokio::test]
async fn shared_pre_bound_listener_cluster_pattern() {
    let dir = tempdir();
    let path = dir.path().join("cluster");
    let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let a = Listener::from_std_unix(std_listener.try_clone().unwrap()).unwrap();
    let b = Listener::from_std_unix(std_listener).unwrap();
    assert_eq!(a.local_endpoint(), ep(&path));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    for (name, l) in [("a", a), ("b", b)] {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut byte = [0u8; 1];
                if s.read_exact(&mut byte).await.is_ok() {
                    s.write_all(name.as_bytes()).await.ok();
                    tx.send(name).await.ok();
                }
            }
        });
    }
    for _ in 0..4 {
        let mut c = within(connect(&ep(&path), &ConnectOptions::default()))
            .await
            .unwrap();
        c.write_all(b"x").await.unwrap();
        let mut who = [0u8; 1];
        within(c.read_exact(&mut who)).await.unwrap();
        assert!(who == *b"a" || who == *b"b");
        assert!(within(rx.recv()).await.is_some());
    }
    // Nothing removed the shared path.
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
}

#[tokio::test]
async fn nothing_listening_is_not_found_and_retryable() {
    let dir = tempdir();
    let path = dir.path().join("absent");
    let err = within(connect(&ep(&path), &ConnectOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound));
    assert!(err.is_retryable());
    assert!(err.to_string().contains("absent"), "{err}");
}

mod socket_root {
    use super::*;
    use ipc_transport::unix::prepare_socket_root;

    #[tokio::test]
    async fn missing_root_is_created_owner_only() {
        let dir = tempdir();
        let root = dir.path().join("node-ipc").join("deeper");
        let path = root.join("app.world");
        let opts = ListenOptions {
            socket_root: Some(root.clone()),
            ..ListenOptions::default()
        };
        let l = within(Listener::bind(&ep(&path), &opts)).await.unwrap();
        assert_eq!(mode_of(&root), 0o700);
        exchange(&l, &ep(&path)).await;
    }

    #[test]
    fn loose_root_is_tightened() {
        let dir = tempdir();
        let root = dir.path().join("r");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_socket_root(&root.join("app.x"), &root, true).unwrap();
        assert_eq!(mode_of(&root), 0o700);
        // Without secureSocketRoot an existing root is left alone.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_socket_root(&root.join("app.x"), &root, false).unwrap();
        assert_eq!(mode_of(&root), 0o755);
    }

    #[test]
    fn symlink_root_is_refused_when_secure() {
        let dir = tempdir();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let root = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &root).unwrap();
        let err = prepare_socket_root(&root.join("app.x"), &root, true).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::SocketRoot));
        assert!(err.to_string().contains("symlink"), "{err}");
        prepare_socket_root(&root.join("app.x"), &root, false).unwrap();
    }

    #[test]
    fn file_root_is_refused() {
        let dir = tempdir();
        let root = dir.path().join("file");
        std::fs::write(&root, b"").unwrap();
        for secure in [true, false] {
            let err = prepare_socket_root(&root.join("app.x"), &root, secure).unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::SocketRoot));
            assert!(err.to_string().contains("not a directory"), "{err}");
        }
    }

    #[test]
    fn foreign_owner_is_refused() {
        let dir = tempdir();
        let root = if ipc_transport::unix::current_euid() == 0 {
            let root = dir.path().join("foreign");
            std::fs::create_dir(&root).unwrap();
            std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
            root
        } else {
            // /tmp belongs to root.
            PathBuf::from("/tmp")
        };
        let before = mode_of(&root);
        let err = prepare_socket_root(&root.join("app.x"), &root, true).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::SocketRoot));
        assert!(err.to_string().contains("owned by uid"), "{err}");
        assert_eq!(mode_of(&root), before, "nothing changed");
    }

    #[test]
    fn paths_outside_the_root_skip_root_handling() {
        let dir = tempdir();
        let root = dir.path().join("never-created");
        prepare_socket_root(&dir.path().join("elsewhere"), &root, true).unwrap();
        assert!(!root.exists());
    }
}

const CHILD_ENV: &str = "IPC_TRANSPORT_TEST_DENIED_SOCKET";

/// Runs in a child process started by `permission_denied_is_reported`,
/// under an unprivileged uid.
#[tokio::test]
#[ignore = "helper run by permission_denied_is_reported in a child process"]
async fn child_connects_without_permission() {
    let path = PathBuf::from(std::env::var(CHILD_ENV).expect("started by the parent test"));
    assert_ne!(ipc_transport::unix::current_euid(), 0);
    let err = within(connect(&ep(&path), &ConnectOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
    assert!(!err.is_retryable());
    println!("CHILD-DENIED-OK");
}

#[tokio::test]
async fn permission_denied_is_reported() {
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("private");
    let l = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    assert_eq!(mode_of(&path), 0o600);
    if ipc_transport::unix::current_euid() == 0 {
        // Root bypasses file permissions: ask an unprivileged child. It runs
        // a copy of this test binary placed where it can execute it (the
        // build directory may be private to root).
        let exe = dir.path().join("test-binary");
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = within(
            tokio::process::Command::new(exe)
                .args([
                    "--ignored",
                    "--exact",
                    "child_connects_without_permission",
                    "--nocapture",
                ])
                .env(CHILD_ENV, &path)
                .uid(65534)
                .gid(65534)
                .output(),
        )
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("CHILD-DENIED-OK"),
            "child: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = within(connect(&ep(&path), &ConnectOptions::default()))
            .await
            .unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::PermissionDenied));
        assert!(!err.is_retryable());
    }
    drop(l);
}

#[tokio::test]
async fn local_paths_listen_options_secure_the_root() {
    let dir = tempdir();
    let paths = ipc_transport::LocalPaths {
        socket_root: PathBuf::from(format!("{}/node-ipc-test/", dir.path().display())),
        appspace: "app.".into(),
        secure_socket_root: true,
    };
    let endpoint = paths.endpoint_for("world");
    assert_eq!(
        endpoint,
        Endpoint::Unix(dir.path().join("node-ipc-test/app.world"))
    );
    let l = within(Listener::bind(&endpoint, &paths.listen_options()))
        .await
        .unwrap();
    assert_eq!(mode_of(&dir.path().join("node-ipc-test")), 0o700);
    let Endpoint::Unix(path) = &endpoint else {
        unreachable!()
    };
    ipc_transport::unix::verify_socket_owner(path).unwrap();
    exchange(&l, &endpoint).await;
}

#[tokio::test]
async fn verify_socket_owner_refuses_unsafe_endpoints() {
    use ipc_transport::unix::verify_socket_owner;
    let dir = tempdir();
    // A directory others can write to.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.path().join("s");
    let _l = within(Listener::bind(&ep(&path), &ListenOptions::default()))
        .await
        .unwrap();
    let err = verify_socket_owner(&path).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SocketRoot));
    assert!(err.to_string().contains("writable"), "{err}");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    verify_socket_owner(&path).unwrap();
    // Not a socket.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    assert_eq!(
        verify_socket_owner(&file).unwrap_err().code(),
        Some(ErrorCode::UnlinkNotSocket)
    );
    // A socket owned by someone else (root can arrange that).
    if ipc_transport::unix::current_euid() == 0 {
        std::os::unix::fs::lchown(&path, Some(65534), Some(65534)).unwrap();
        let err = verify_socket_owner(&path).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }
}
