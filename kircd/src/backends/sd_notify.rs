//! systemd integration: READY/STOPPING/STATUS notifications and watchdog
//! pings. Every call is a no-op when kircd is not run by systemd
//! (`NOTIFY_SOCKET` unset).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;

use kirc_proto::v1::{BackendState, event::Kind};
use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backends::supervise::backend_name;
use crate::hub::Hub;

/// Sends `states` to the service manager without ever blocking: a manager
/// that does not read (or a full queue) costs a dropped notification, never a
/// stalled daemon. sd-notify's own sender blocks, so only its message format
/// and watchdog parsing are used.
fn notify(states: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message: String = states.iter().map(|state| format!("{state}\n")).collect();
    let sent = (|| -> std::io::Result<usize> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        match path.as_bytes().strip_prefix(b"@") {
            Some(name) => {
                socket.send_to_addr(message.as_bytes(), &SocketAddr::from_abstract_name(name)?)
            }
            None => socket.send_to(message.as_bytes(), &path),
        }
    })();
    match sent {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!(
                message = message.trim_end(),
                "the service manager's queue is full; notification dropped"
            );
        }
        Err(err) => tracing::warn!(error = %err, "could not notify the service manager"),
    }
}

/// READY, with each backend's state as the status line.
pub fn ready(hub: &Hub) {
    notify(&[NotifyState::Ready, NotifyState::Status(&status_line(hub))]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// The one-line status `systemctl --user status kircd` shows.
fn status_line(hub: &Hub) -> String {
    hub.status()
        .backends
        .iter()
        .map(|backend| {
            let name = backend_name(backend.backend());
            match backend.state() {
                BackendState::Up => format!("{name} up"),
                BackendState::Down => format!("{name} DOWN"),
                _ => format!("{name} connecting"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends watchdog pings at half the configured interval, and keeps the STATUS
/// line current with backend changes. The pings come from the runtime itself,
/// so a wedged runtime stops them and systemd restarts kircd.
pub fn spawn(hub: Arc<Hub>, cancel: CancellationToken) -> Option<JoinHandle<()>> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let watchdog = sd_notify::watchdog_enabled().map(|interval| interval / 2);
    Some(tokio::spawn(async move {
        let mut events = hub.subscribe(0, 0).live;
        let mut ping = watchdog.map(tokio::time::interval);
        notify(&[NotifyState::Status(&status_line(&hub))]);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = async { ping.as_mut()?.tick().await; Some(()) }, if ping.is_some() => {
                    notify(&[NotifyState::Watchdog]);
                }
                received = events.recv() => match received {
                    Ok(event) if matches!(event.kind, Some(Kind::BackendChanged(_))) => {
                        notify(&[NotifyState::Status(&status_line(&hub))]);
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    }))
}
