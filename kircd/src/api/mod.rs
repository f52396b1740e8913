//! The daemon API: gRPC (`kirc.v1`) on an owner-only Unix socket.

mod authority;
pub mod service;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::v1::daemon_server::DaemonServer;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::messaging::Messaging;
use crate::presence::{self, Live};
use service::DaemonService;
use tokio::sync::mpsc;

/// The running API server.
#[derive(Debug)]
pub struct ApiHandle {
    stop_accepting: CancellationToken,
    streams_end: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Serves the API on `listener` until [`ApiHandle::shutdown`].
pub fn spawn(
    listener: UnixListener,
    hub: Arc<Hub>,
    messaging: Arc<Messaging>,
    presence: mpsc::Sender<presence::Command>,
    live: Arc<Live>,
) -> ApiHandle {
    let stop_accepting = CancellationToken::new();
    let streams_end = CancellationToken::new();
    let service = DaemonService {
        hub: Arc::clone(&hub),
        messaging,
        presence,
        live,
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
    }
}
