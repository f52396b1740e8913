//! The socket's life: an owner-only folder, a lock that proves which kircd
//! owns the socket, replacing a stale socket, binding with mode 0600, and
//! refusing connections from any other uid.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::Stream;
use tokio::net::UnixListener;

use super::authority::Normalized;
use crate::hub::Hub;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the socket path {0} has no parent folder")]
    NoParent(PathBuf),
    #[error("cannot create the socket folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the socket folder {path} belongs to uid {owner}, not to this user (uid {uid})\n  fix: set api.socket to a path in a folder of your own"
    )]
    ForeignDir { path: PathBuf, owner: u32, uid: u32 },
    #[error("cannot secure the socket folder {path}: {source}")]
    Chmod {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the lock file {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another kircd{pid} is already serving {socket}\n  fix: stop it first (kill it, or `systemctl --user stop kircd`), or give this one its own api.socket"
    )]
    AlreadyRunning { socket: PathBuf, pid: String },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The folder's mode: the socket's first line of defence.
const DIR_MODE: u32 = 0o700;
const SOCKET_MODE: u32 = 0o600;

/// Ownership of a bound socket: its path and the lock. Dropping it does not
/// remove the socket file; call [`SocketGuard::remove`] at the end of an
/// orderly shutdown.
#[derive(Debug)]
pub struct SocketGuard {
    pub path: PathBuf,
    // Held for the daemon's lifetime: the OS releases the lock when the
    // process dies, so a crashed kircd never blocks the next one.
    lock: File,
    lock_path: PathBuf,
}

/// Creates (or checks) the socket's folder: it must be ours and owner-only.
pub fn prepare_dir(dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    let metadata = std::fs::metadata(dir).map_err(|source| Error::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let uid = rustix::process::getuid().as_raw();
    if metadata.uid() != uid {
        return Err(Error::ForeignDir {
            path: dir.to_path_buf(),
            owner: metadata.uid(),
            uid,
        });
    }
    if metadata.mode() & 0o777 != DIR_MODE {
        tracing::warn!(path = %dir.display(), mode = format!("{:o}", metadata.mode() & 0o777), "socket folder was not owner-only; fixing");
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)).map_err(|source| {
            Error::Chmod {
                path: dir.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Takes the lock next to `socket`, replaces a stale socket file, and binds.
pub fn bind(socket: &Path) -> Result<(UnixListener, SocketGuard), Error> {
    let dir = socket
        .parent()
        .ok_or_else(|| Error::NoParent(socket.to_path_buf()))?;
    prepare_dir(dir)?;

    let lock_path = socket.with_extension("lock");
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(SOCKET_MODE)
        .open(&lock_path)
        .map_err(|source| Error::Lock {
            path: lock_path.clone(),
            source,
        })?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::AlreadyRunning {
                socket: socket.to_path_buf(),
                pid: if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => {
            return Err(Error::Lock {
                path: lock_path,
                source,
            });
        }
    }
    // The pid is for humans reading the error above; the lock is the proof.
    let written = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| writeln!(lock, "{}", std::process::id()));
    if let Err(err) = written {
        tracing::debug!(error = %err, "could not record the pid in the lock file");
    }

    // We hold the lock, so a socket file left here belongs to a kircd that
    // is gone.
    match std::fs::remove_file(socket) {
        Ok(()) => tracing::info!(path = %socket.display(), "replaced a stale socket"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::RemoveStale {
                path: socket.to_path_buf(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(socket).map_err(|source| Error::Bind {
        path: socket.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(socket, Permissions::from_mode(SOCKET_MODE)).map_err(|source| {
        Error::Chmod {
            path: socket.to_path_buf(),
            source,
        }
    })?;
    let guard = SocketGuard {
        path: socket.to_path_buf(),
        lock,
        lock_path,
    };
    Ok((listener, guard))
}

impl SocketGuard {
    /// Removes the socket and lock files; the lock itself goes with the file
    /// handle.
    pub fn remove(self) {
        for path in [&self.path, &self.lock_path] {
            if let Err(err) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %err, "could not remove");
            }
        }
        drop(self.lock);
    }
}

/// The stream of accepted connections whose peer runs under our own uid,
/// each read through [`Normalized`] so that clients naming the socket path
/// as `:authority` are served too.
/// Others are closed at once, counted and logged: the folder's mode should
/// have stopped them, so one getting here means the folder was opened up.
pub fn incoming(
    listener: UnixListener,
    hub: Arc<Hub>,
) -> impl Stream<Item = std::io::Result<Normalized>> + Send + 'static {
    let uid = rustix::process::getuid().as_raw();
    futures::stream::unfold((listener, hub), move |(listener, hub)| async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Transient accept errors (EMFILE, ECONNABORTED) must not
                    // end the server.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(cred) if cred.uid() == uid => {
                    return Some((Ok(Normalized::new(stream)), (listener, hub)));
                }
                Ok(cred) => {
                    let total = hub.count_refused_connection();
                    tracing::warn!(peer_uid = cred.uid(), peer_pid = ?cred.pid(), total, "refused a connection from another user");
                }
                Err(err) => {
                    let total = hub.count_refused_connection();
                    tracing::warn!(error = %err, total, "refused a connection whose peer could not be identified");
                }
            }
        }
    })
}
