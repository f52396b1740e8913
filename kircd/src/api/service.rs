//! The gRPC handlers. They stay thin: each reads from or asks the hub.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kirc_proto::v1::{self as pb, daemon_server::Daemon};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::crypto::profile::InviteError;
use crate::hub::{Hub, Subscription};
use crate::messaging::{Messaging, MessagingError};
use crate::presence::{self, Live};
use tokio::sync::{mpsc, oneshot};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct DaemonService {
    pub(super) hub: Arc<Hub>,
    pub(super) messaging: Arc<Messaging>,
    pub(super) presence: mpsc::Sender<presence::Command>,
    pub(super) live: Arc<Live>,
    /// Cancelled when the daemon stops: every event stream then ends after
    /// delivering what it already holds (including the ShuttingDown event).
    pub(super) streams_end: CancellationToken,
}

fn valkey_unavailable(err: &redis::RedisError) -> Status {
    Status::unavailable(format!(
        "Valkey, which keeps sessions, is unreachable: {err}"
    ))
}

fn presence_stopped() -> Status {
    Status::unavailable("kircd is stopping")
}

/// The gRPC status for each messaging error: the message is the error's own
/// text, which names the problem and the fix.
fn status(err: MessagingError) -> Status {
    let message = err.to_string();
    match err {
        MessagingError::NotReady(_) | MessagingError::Outbox(_) => Status::unavailable(message),
        MessagingError::Store(crate::store::StoreError::Database(_)) => {
            Status::unavailable(message)
        }
        MessagingError::Store(_) => Status::failed_precondition(message),
        MessagingError::Invite(InviteError::AlreadyUsed(_)) => Status::already_exists(message),
        MessagingError::Invite(_)
        | MessagingError::InvalidArgument(_)
        | MessagingError::AmbiguousContact(_) => Status::invalid_argument(message),
        MessagingError::UnknownContact(_)
        | MessagingError::UnknownConversation(_)
        | MessagingError::UnknownMessage(_) => Status::not_found(message),
        MessagingError::Blocked(_) | MessagingError::NotAccepted(_) => {
            Status::failed_precondition(message)
        }
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
        let mut subscription = self.hub.subscribe(request.since, request.epoch);
        if request.interactive {
            subscription.interactive = Some(self.hub.attach_interactive());
        }
        Ok(Response::new(event_stream(
            subscription,
            self.streams_end.clone(),
        )))
    }

    async fn create_invite(
        &self,
        request: Request<pb::CreateInviteRequest>,
    ) -> Result<Response<pb::CreateInviteResponse>, Status> {
        let ttl = match request.into_inner().ttl_seconds {
            0 => None,
            seconds => Some(std::time::Duration::from_secs(seconds)),
        };
        self.messaging
            .create_invite(ttl)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn add_contact(
        &self,
        request: Request<pb::AddContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.messaging
            .add_contact(&request.into_inner().token)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn accept_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.messaging
            .accept_contact(&request.into_inner().contact)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn block_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.messaging
            .block_contact(&request.into_inner().contact, true)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn unblock_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.messaging
            .block_contact(&request.into_inner().contact, false)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn list_contacts(
        &self,
        _: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        self.messaging
            .list_contacts()
            .map(|contacts| Response::new(pb::ListContactsResponse { contacts }))
            .map_err(status)
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let request = request.into_inner();
        self.messaging
            .send_message(
                &request.to,
                &request.text,
                request.action,
                &request.idempotency_key,
            )
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        self.messaging
            .history(&request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn list_conversations(
        &self,
        _: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        self.messaging
            .conversations()
            .await
            .map(|conversations| Response::new(pb::ListConversationsResponse { conversations }))
            .map_err(status)
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let request = request.into_inner();
        self.messaging
            .mark_read(&request.conversation_id, &request.up_to)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.messaging
            .search(&request.into_inner())
            .await
            .map(|messages| Response::new(pb::SearchResponse { messages }))
            .map_err(status)
    }

    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Result<Response<pb::SetPresenceResponse>, Status> {
        let request = request.into_inner();
        let state = match request.state() {
            pb::PresenceState::Away => pb::PresenceState::Away,
            pb::PresenceState::Online => pb::PresenceState::Online,
            other => {
                return Err(Status::invalid_argument(format!(
                    "{} cannot be set; set ONLINE (back) or AWAY",
                    other.as_str_name()
                )));
            }
        };
        let (reply, answer) = oneshot::channel();
        self.presence
            .send(presence::Command::Set {
                state,
                text: request.text,
                reply,
            })
            .await
            .map_err(|_| presence_stopped())?;
        let presence = answer.await.map_err(|_| presence_stopped())?;
        Ok(Response::new(pb::SetPresenceResponse {
            presence: Some(presence),
        }))
    }

    async fn report_activity(
        &self,
        _: Request<pb::ReportActivityRequest>,
    ) -> Result<Response<pb::ReportActivityResponse>, Status> {
        self.presence
            .send(presence::Command::Activity)
            .await
            .map_err(|_| presence_stopped())?;
        Ok(Response::new(pb::ReportActivityResponse {}))
    }

    async fn report_typing(
        &self,
        request: Request<pb::ReportTypingRequest>,
    ) -> Result<Response<pb::ReportTypingResponse>, Status> {
        let request = request.into_inner();
        let conversation = uuid::Uuid::parse_str(&request.conversation_id)
            .map_err(|_| Status::invalid_argument("conversation_id is not a UUID"))?;
        let (reply, answer) = oneshot::channel();
        self.presence
            .send(presence::Command::Typing {
                conversation,
                active: request.active,
                reply,
            })
            .await
            .map_err(|_| presence_stopped())?;
        let sent = answer.await.map_err(|_| presence_stopped())?;
        Ok(Response::new(pb::ReportTypingResponse { sent }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let name = request.into_inner().name;
        let (open_conversation, drafts) = self
            .live
            .store()
            .session(&name)
            .await
            .map_err(|err| valkey_unavailable(&err))?;
        Ok(Response::new(pb::Session {
            name,
            open_conversation,
            drafts,
        }))
    }

    async fn save_session(
        &self,
        request: Request<pb::Session>,
    ) -> Result<Response<pb::SaveSessionResponse>, Status> {
        let session = request.into_inner();
        self.live
            .store()
            .save_session(&session.name, &session.open_conversation, &session.drafts)
            .await
            .map_err(|err| valkey_unavailable(&err))?;
        Ok(Response::new(pb::SaveSessionResponse {}))
    }
}

/// The backlog, then live events until the daemon stops. A subscriber that
/// falls behind the broadcast buffer gets a RESOURCE_EXHAUSTED error telling
/// it where to resume, and its stream ends.
pub fn event_stream(subscription: Subscription, streams_end: CancellationToken) -> EventStream {
    let Subscription {
        backlog,
        live,
        interactive,
    } = subscription;
    let last_seq = backlog.last().map_or(0, |event| event.seq);
    let backlog = futures::stream::iter(
        backlog
            .into_iter()
            .map(|event| Ok(pb::Event::clone(&event))),
    );
    struct Live {
        receiver: tokio::sync::broadcast::Receiver<Arc<pb::Event>>,
        // Counts the subscriber as attached until the stream is dropped.
        _interactive: Option<crate::hub::InteractiveGuard>,
        last_seq: u64,
        streams_end: CancellationToken,
        finished: bool,
    }
    let live = futures::stream::unfold(
        Live {
            receiver: live,
            _interactive: interactive,
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
