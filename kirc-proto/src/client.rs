//! Connecting to kircd over its Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

use crate::v1::daemon_client::DaemonClient as GeneratedClient;

/// A client of the daemon API over a Unix socket.
pub type DaemonClient = GeneratedClient<Channel>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "no kircd is listening on {path}: the socket does not exist (start it with `kircd run`)"
    )]
    NotFound { path: PathBuf },
    #[error("kircd's socket {path} exists but nobody accepts on it (kircd is not running)")]
    Refused { path: PathBuf },
    #[error("permission denied on {path}: kircd runs as another user")]
    PermissionDenied { path: PathBuf },
    #[error("cannot connect to {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {path}: {source}")]
    Transport {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Connects to the daemon's socket at `path`.
///
/// The socket is probed once first so that the usual failures (no daemon, a
/// stale socket, another user's daemon) come back as a precise error instead
/// of a generic transport error.
pub async fn connect(path: &Path) -> Result<DaemonClient, ConnectError> {
    let probe = UnixStream::connect(path)
        .await
        .map_err(|source| classify(path, source))?;
    drop(probe);

    let socket_path = path.to_path_buf();
    // The URI is required by the HTTP/2 layer but never resolved: every
    // connection goes through the connector below.
    let channel =
        Endpoint::from_static("http://kircd.sock")
            .connect_with_connector(service_fn(move |_| {
                let socket_path = socket_path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket_path).await?))
                }
            }))
            .await
            .map_err(|source| ConnectError::Transport {
                path: path.to_path_buf(),
                source,
            })?;
    Ok(GeneratedClient::new(channel))
}

fn classify(path: &Path, source: std::io::Error) -> ConnectError {
    let path = path.to_path_buf();
    match source.kind() {
        std::io::ErrorKind::NotFound => ConnectError::NotFound { path },
        std::io::ErrorKind::ConnectionRefused => ConnectError::Refused { path },
        std::io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied { path },
        _ => ConnectError::Io { path, source },
    }
}

/// The folder that holds kircd's socket and lock file:
/// `$XDG_RUNTIME_DIR/kirc`, or `<tmp>/kirc-<uid>` where no runtime dir is set
/// (a root shell, a container), in the manner of tmux.
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("kirc"),
        _ => std::env::temp_dir().join(format!("kirc-{}", rustix::process::getuid().as_raw())),
    }
}

/// The default socket path, shared by kircd and every client so that they
/// meet without configuration.
pub fn default_socket_path() -> PathBuf {
    default_runtime_dir().join("kircd.sock")
}
