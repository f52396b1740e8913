//! systemd integration: READY/STOPPING/STATUS notifications and watchdog
//! pings. Every call is a no-op when kircd is not run by systemd
//! (`NOTIFY_SOCKET` unset).

use std::sync::Arc;

use kirc_proto::v1::{BackendState, event::Kind};
use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::supervise::backend_name;

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "could not notify systemd");
    }
}

pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
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
