//! The keep-warm heartbeat: the free tier powers a Kafka service off after a
//! day without traffic, so kircd produces a heartbeat to its own rpc-in at
//! start and every `messaging.keep_warm_interval`, and its inbox consumes
//! it, so that the cluster sees both a produce and a consume. The times of
//! both are in the status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::backends::supervise::every;
use crate::hub::Hub;
use crate::transport::TransportError;
use crate::transport::marks::Stream;
use crate::transport::outbound::Outbound;
use crate::transport::router::{Applied, Control, ControlHandler, HandlerError, Opening};

fn now_ms() -> i64 {
    kirc_proto::unix_ms(SystemTime::now())
}

/// Produces one heartbeat and notes when.
pub async fn beat(outbound: &Outbound, hub: &Hub) -> Result<(), TransportError> {
    outbound
        .send_to_self(wire::Kind::Heartbeat, &wire::Heartbeat {}.encode_to_vec())
        .await?;
    hub.update_status(|status| status.heartbeat_produced_unix_ms = now_ms());
    Ok(())
}

/// Beats at once and then every `interval` until cancelled.
pub async fn run(
    outbound: Arc<Outbound>,
    hub: Arc<Hub>,
    interval: Duration,
    cancel: CancellationToken,
) {
    every(interval, &cancel, || async {
        if let Err(err) = beat(&outbound, &hub).await {
            tracing::warn!(error = %err, "keep-warm heartbeat not produced; retrying at the next interval");
        }
    })
    .await;
}

/// The inbox's handler of the own heartbeat: notes when it came back.
#[derive(Debug)]
pub struct HeartbeatHandler {
    pub hub: Arc<Hub>,
}

impl ControlHandler for HeartbeatHandler {
    fn stream(&self) -> Stream {
        "heartbeat"
    }

    fn opening(&self) -> Opening {
        Opening::Own
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let at = control.header.created_at_unix_ms();
            self.hub.update_status(|status| {
                status.heartbeat_consumed_unix_ms = status.heartbeat_consumed_unix_ms.max(at);
            });
            Ok(Ok(()))
        }
        .boxed()
    }
}
