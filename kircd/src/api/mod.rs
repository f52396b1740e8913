//! The daemon API: gRPC (`kirc.v1`) on an owner-only Unix socket, and the
//! events channel on Valkey. The only place, with the hub, that knows the
//! API's types: handlers turn requests into calls on the subsystems and
//! their answers into responses (`convert` in the hub).

mod acts;
mod authority;
mod channels;
pub mod events_channel;
pub mod service;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::v1::daemon_server::DaemonServer;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::contacts::Contacts;
use crate::hub::Hub;
use crate::live::Live;
use crate::messaging::Messaging;
use crate::presence;
use service::DaemonService;
use tokio::sync::mpsc;

/// What the API's handlers call: one field per subsystem that serves
/// commands.
#[derive(Debug, Clone)]
pub struct Services {
    pub hub: Arc<Hub>,
    pub contacts: Arc<Contacts>,
    pub messaging: Arc<Messaging>,
    pub presence: mpsc::Sender<presence::Command>,
    pub live: Arc<Live>,
    pub transfers: crate::transfers::TransfersHandle,
    pub channels: crate::channels::Channels,
}

/// The running API server.
#[derive(Debug)]
pub struct ApiHandle {
    stop_accepting: CancellationToken,
    streams_end: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    events_channel: (CancellationToken, JoinHandle<()>),
}

/// Serves the API on `listener` until [`ApiHandle::shutdown`].
pub fn spawn(listener: UnixListener, services: Services) -> ApiHandle {
    let stop_accepting = CancellationToken::new();
    let streams_end = CancellationToken::new();
    let hub = Arc::clone(&services.hub);
    let events_stop = CancellationToken::new();
    let events_channel = (
        events_stop.clone(),
        events_channel::spawn(Arc::clone(&hub), services.live.keys().clone(), events_stop),
    );
    let service = DaemonService {
        services,
        streams_end: streams_end.clone(),
    };
    let incoming = socket::incoming(listener, hub);
    let shutdown = stop_accepting.clone();
    let task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DaemonServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned()),
    );
    ApiHandle {
        stop_accepting,
        streams_end,
        task,
        events_channel,
    }
}

impl ApiHandle {
    /// Stops accepting, ends every event stream (after what it already
    /// holds), and waits up to `grace` for calls in flight; a client that
    /// stops reading cannot hold the daemon beyond that.
    pub async fn shutdown(self, grace: Duration) {
        self.streams_end.cancel();
        self.stop_accepting.cancel();
        let mut task = self.task;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(error = %err, "the API server ended with an error"),
            Ok(Err(err)) => tracing::error!(error = %err, "the API server task failed"),
            Err(_) => {
                tracing::warn!(grace = ?grace, "API calls still open after the grace period; closing them");
                task.abort();
            }
        }
        let (events_stop, events_channel) = self.events_channel;
        events_stop.cancel();
        let _ = events_channel.await;
    }
}
