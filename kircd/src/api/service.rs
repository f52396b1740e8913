//! The gRPC handlers. They stay thin: each reads from or asks the hub.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kirc_proto::v1::{self as pb, daemon_server::Daemon};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::hub::{Hub, Subscription};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct DaemonService {
    hub: Arc<Hub>,
    /// Cancelled when the daemon stops: every event stream then ends after
    /// delivering what it already holds (including the ShuttingDown event).
    streams_end: CancellationToken,
}

impl DaemonService {
    pub fn new(hub: Arc<Hub>, streams_end: CancellationToken) -> Self {
        DaemonService { hub, streams_end }
    }
}

#[tonic::async_trait]
impl Daemon for DaemonService {
    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        Ok(Response::new(self.hub.status()))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let subscription = self.hub.subscribe(request.since, request.epoch);
        Ok(Response::new(event_stream(
            subscription,
            self.streams_end.clone(),
        )))
    }
}

/// The backlog, then live events until the daemon stops. A subscriber that
/// falls behind the broadcast buffer gets a RESOURCE_EXHAUSTED error telling
/// it where to resume, and its stream ends.
pub fn event_stream(subscription: Subscription, streams_end: CancellationToken) -> EventStream {
    let Subscription { backlog, live } = subscription;
    let last_seq = backlog.last().map_or(0, |event| event.seq);
    let backlog = futures::stream::iter(
        backlog
            .into_iter()
            .map(|event| Ok(pb::Event::clone(&event))),
    );
    struct Live {
        receiver: tokio::sync::broadcast::Receiver<Arc<pb::Event>>,
        last_seq: u64,
        streams_end: CancellationToken,
        finished: bool,
    }
    let live = futures::stream::unfold(
        Live {
            receiver: live,
            last_seq,
            streams_end,
            finished: false,
        },
        |mut state| async move {
            if state.finished {
                return None;
            }
            let received = tokio::select! {
                // Buffered events first, so that ShuttingDown is delivered
                // before the stream ends.
                biased;
                received = state.receiver.recv() => received,
                () = state.streams_end.cancelled() => return None,
            };
            match received {
                Ok(event) => {
                    state.last_seq = event.seq;
                    Some((Ok(pb::Event::clone(&event)), state))
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        resume_from = state.last_seq,
                        "cut off a subscriber that fell behind"
                    );
                    let status = Status::resource_exhausted(format!(
                        "subscriber fell {missed} events behind; subscribe again with since={}",
                        state.last_seq
                    ));
                    state.finished = true;
                    Some((Err(status), state))
                }
                Err(RecvError::Closed) => None,
            }
        },
    );
    Box::pin(backlog.chain(live))
}

#[cfg(test)]
mod tests {
    use kirc_proto::v1::Backend;

    use super::*;

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_where_to_resume_and_cut_off() {
        let hub = Hub::new(&[(Backend::Kafka, "k:1".into())], 16);
        let mut stream = event_stream(hub.subscribe(0, 0), CancellationToken::new());
        let snapshot = stream.next().await.unwrap().unwrap();
        assert_eq!(snapshot.seq, 0);
        // The publisher runs far ahead; it never waits for this subscriber.
        for round in 0..100 {
            hub.backend_down(Backend::Kafka, format!("error {round}"));
        }
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("84 events behind"),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("subscribe again with since=0"),
            "{}",
            status.message()
        );
        assert!(stream.next().await.is_none(), "the stream ends");
    }

    #[tokio::test]
    async fn ending_the_streams_delivers_what_was_published_first() {
        let hub = Hub::new(&[(Backend::Kafka, "k:1".into())], 16);
        let streams_end = CancellationToken::new();
        let mut stream = event_stream(hub.subscribe(0, 0), streams_end.clone());
        stream.next().await.unwrap().unwrap();
        hub.shutting_down("SIGTERM");
        streams_end.cancel();
        let last = stream.next().await.unwrap().unwrap();
        assert!(matches!(last.kind, Some(pb::event::Kind::ShuttingDown(_))));
        assert!(stream.next().await.is_none());
    }
}
