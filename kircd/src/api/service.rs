//! The gRPC handlers. They stay thin: each turns a request into a call on a
//! subsystem (or a read of the hub) and the answer into a response. It is
//! long because tonic's trait is one `impl` with a method per RPC; the
//! channels' handlers live in `channels.rs`, those acting on a message in
//! `acts.rs`, and are called from here.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kirc_proto::v1::{self as pb, daemon_server::Daemon};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::Services;
use crate::book::BookError;
use crate::contacts::ContactsError;
use crate::content::ActKind;
use crate::crypto::profile::InviteError;
use crate::hub::convert;
use crate::hub::{PresenceState, Subscription};
use crate::messaging::{HistoryAnchor, MessagingError};
use crate::presence;
use crate::store::StoreError;
use crate::transfers::TransferError;
use crate::transport::TransportError;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[derive(Debug, Clone)]
pub struct DaemonService {
    pub(super) services: Services,
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

pub(super) fn store_status(err: &StoreError, message: String) -> Status {
    match err {
        StoreError::Database(_) => Status::unavailable(message),
        StoreError::ForeignDatabase { .. } => Status::failed_precondition(message),
        StoreError::UnknownConversation => Status::internal(message),
    }
}

/// The gRPC status for each error: the message is the error's own text,
/// which names the problem and the fix.
pub(super) fn contacts_status(err: ContactsError) -> Status {
    let message = err.to_string();
    match err {
        ContactsError::NotLoaded(_) | ContactsError::Transport(_) => Status::unavailable(message),
        ContactsError::Book(BookError::Store(err)) => store_status(&err, message),
        ContactsError::Book(BookError::DamagedContact(_)) => Status::failed_precondition(message),
        ContactsError::Invite(InviteError::AlreadyUsed(_)) => Status::already_exists(message),
        ContactsError::Invite(_) => Status::invalid_argument(message),
        ContactsError::Lookup(crate::book::LookupError::Unknown(_)) => Status::not_found(message),
        ContactsError::Lookup(crate::book::LookupError::Ambiguous(_)) => {
            Status::invalid_argument(message)
        }
        ContactsError::Blocked(_) => Status::failed_precondition(message),
    }
}

fn transfer_response((record, progress): crate::transfers::TransferView) -> Response<pb::Transfer> {
    Response::new(convert::transfer(&record, progress))
}

fn transfer_status(err: TransferError) -> Status {
    let message = err.to_string();
    match err {
        TransferError::NotLoaded(_)
        | TransferError::Stopped
        | TransferError::Transport(TransportError::Outbox(_) | TransportError::Peer(_)) => {
            Status::unavailable(message)
        }
        TransferError::Store(err) => store_status(&err, message),
        TransferError::InvalidArgument(_)
        | TransferError::Manifest(_)
        | TransferError::Lookup(crate::book::LookupError::Ambiguous(_)) => {
            Status::invalid_argument(message)
        }
        TransferError::Lookup(crate::book::LookupError::Unknown(_)) | TransferError::Unknown(_) => {
            Status::not_found(message)
        }
        TransferError::NotAccepted(_) => Status::failed_precondition(message),
    }
}

/// `SendMessageRequest.reply_to`: empty, or a message id.
pub(super) fn parse_reply_to(text: &str) -> Result<Option<uuid::Uuid>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::parse_str(text.trim())
        .map(Some)
        .map_err(|_| Status::invalid_argument(format!("reply_to is not a message id: {text:?}")))
}

pub(super) fn messaging_status(err: MessagingError) -> Status {
    let message = err.to_string();
    match err {
        MessagingError::NotLoaded(_)
        | MessagingError::Transport(TransportError::Outbox(_) | TransportError::Peer(_)) => {
            Status::unavailable(message)
        }
        MessagingError::Store(err) => store_status(&err, message),
        MessagingError::InvalidArgument(_)
        | MessagingError::Lookup(crate::book::LookupError::Ambiguous(_)) => {
            Status::invalid_argument(message)
        }
        MessagingError::Lookup(crate::book::LookupError::Unknown(_))
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
        Ok(Response::new(self.services.hub.status()))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let hub = &self.services.hub;
        let mut subscription = hub.subscribe(request.since, request.epoch);
        if request.interactive {
            subscription.interactive = Some(hub.attach_interactive());
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
        let (token, expires_at_unix_ms) = self
            .services
            .contacts
            .create_invite(ttl)
            .await
            .map_err(contacts_status)?;
        Ok(Response::new(pb::CreateInviteResponse {
            token,
            expires_at_unix_ms,
        }))
    }

    async fn add_contact(
        &self,
        request: Request<pb::AddContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.services
            .contacts
            .add_contact(&request.into_inner().token)
            .await
            .map(|contact| Response::new(convert::contact(&contact)))
            .map_err(contacts_status)
    }

    async fn accept_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.services
            .contacts
            .accept_contact(&request.into_inner().contact)
            .await
            .map(|contact| Response::new(convert::contact(&contact)))
            .map_err(contacts_status)
    }

    async fn block_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.services
            .contacts
            .block_contact(&request.into_inner().contact, true)
            .await
            .map(|contact| Response::new(convert::contact(&contact)))
            .map_err(contacts_status)
    }

    async fn unblock_contact(
        &self,
        request: Request<pb::ContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        self.services
            .contacts
            .block_contact(&request.into_inner().contact, false)
            .await
            .map(|contact| Response::new(convert::contact(&contact)))
            .map_err(contacts_status)
    }

    async fn list_contacts(
        &self,
        _: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let contacts = self
            .services
            .contacts
            .list_contacts()
            .map_err(contacts_status)?;
        Ok(Response::new(pb::ListContactsResponse {
            contacts: contacts
                .iter()
                .map(|contact| convert::contact(contact))
                .collect(),
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let request = request.into_inner();
        // `#name`, or the id of a channel's conversation: a channel. (An
        // actor id parses as a UUID too, so the id must be a channel's.)
        let to_channel = request.to.starts_with('#') || self.services.hub.is_channel(&request.to);
        if to_channel {
            return self
                .send_to_channel(request)
                .await
                .map(|message| Response::new(convert::message(&message)));
        }
        let reply_to = parse_reply_to(&request.reply_to)?;
        self.services
            .messaging
            .send_message(
                &request.to,
                &request.text,
                request.action,
                reply_to,
                &request.idempotency_key,
            )
            .await
            .map(|message| Response::new(convert::message(&message)))
            .map_err(messaging_status)
    }

    async fn create_channel(
        &self,
        request: Request<pb::CreateChannelRequest>,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        self.create_channel_call(request.into_inner()).await
    }

    async fn create_channel_invite(
        &self,
        request: Request<pb::ChannelRequest>,
    ) -> Result<Response<pb::CreateInviteResponse>, Status> {
        self.create_channel_invite_call(request.into_inner()).await
    }

    async fn join_channel(
        &self,
        request: Request<pb::JoinChannelRequest>,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        self.join_channel_call(request.into_inner()).await
    }

    async fn channel_act(
        &self,
        request: Request<pb::ChannelActRequest>,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        self.channel_act_call(request.into_inner()).await
    }

    async fn react(
        &self,
        request: Request<pb::ReactRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let request = request.into_inner();
        let kind = if request.remove {
            ActKind::Unreact(request.emoji)
        } else {
            ActKind::React(request.emoji)
        };
        self.act_call(&request.message_id, kind).await
    }

    async fn edit_message(
        &self,
        request: Request<pb::EditMessageRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let request = request.into_inner();
        self.act_call(&request.message_id, ActKind::Edit(request.text))
            .await
    }

    async fn delete_message(
        &self,
        request: Request<pb::MessageRequest>,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        self.act_call(&request.into_inner().message_id, ActKind::Delete)
            .await
    }

    async fn set_muted(
        &self,
        request: Request<pb::SetMutedRequest>,
    ) -> Result<Response<pb::SetMutedResponse>, Status> {
        let request = request.into_inner();
        self.services
            .messaging
            .set_muted(&request.conversation_id, request.muted)
            .await
            .map_err(messaging_status)?;
        Ok(Response::new(pb::SetMutedResponse {}))
    }

    async fn get_message_versions(
        &self,
        request: Request<pb::MessageRequest>,
    ) -> Result<Response<pb::MessageVersions>, Status> {
        self.versions_call(&request.into_inner().message_id).await
    }

    async fn get_history(
        &self,
        request: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        use pb::get_history_request::Anchor;
        let request = request.into_inner();
        let anchor = match &request.anchor {
            None => HistoryAnchor::Latest,
            Some(Anchor::Before(id)) => HistoryAnchor::Before(id),
            Some(Anchor::After(id)) => HistoryAnchor::After(id),
            Some(Anchor::Around(id)) => HistoryAnchor::Around(id),
        };
        let page = self
            .services
            .messaging
            .history(&request.conversation_id, anchor, request.limit)
            .await
            .map_err(messaging_status)?;
        Ok(Response::new(pb::GetHistoryResponse {
            messages: page.messages.iter().map(convert::message).collect(),
            more_before: page.more_before,
            more_after: page.more_after,
        }))
    }

    async fn list_conversations(
        &self,
        _: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let summaries = self
            .services
            .messaging
            .conversations()
            .await
            .map_err(messaging_status)?;
        let contacts: Vec<pb::Contact> = self
            .services
            .contacts
            .list_contacts()
            .map_err(contacts_status)?
            .iter()
            .map(|contact| convert::contact(contact))
            .collect();
        let me = self.services.contacts.me();
        Ok(Response::new(pb::ListConversationsResponse {
            conversations: summaries
                .iter()
                .map(|summary| convert::conversation(summary, Some(me), &contacts))
                .collect(),
        }))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        let request = request.into_inner();
        let marker = self
            .services
            .messaging
            .mark_read(&request.conversation_id, &request.up_to)
            .await
            .map_err(messaging_status)?;
        Ok(Response::new(pb::MarkReadResponse {
            last_read_seq: marker.last_read_seq,
            unread: marker.unread,
            moved: marker.moved,
        }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let request = request.into_inner();
        let messages = self
            .services
            .messaging
            .search(&request.query, &request.conversation_id, request.limit)
            .await
            .map_err(messaging_status)?;
        Ok(Response::new(pb::SearchResponse {
            messages: messages.iter().map(convert::message).collect(),
        }))
    }

    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Result<Response<pb::SetPresenceResponse>, Status> {
        let request = request.into_inner();
        let state = match request.state() {
            pb::PresenceState::Away => PresenceState::Away,
            pb::PresenceState::Online => PresenceState::Online,
            other => {
                return Err(Status::invalid_argument(format!(
                    "{} cannot be set; set ONLINE (back) or AWAY",
                    other.as_str_name()
                )));
            }
        };
        let (reply, answer) = oneshot::channel();
        self.services
            .presence
            .send(presence::Command::Set {
                state,
                text: request.text,
                reply,
            })
            .await
            .map_err(|_| presence_stopped())?;
        let presence = answer.await.map_err(|_| presence_stopped())?;
        Ok(Response::new(pb::SetPresenceResponse {
            presence: Some(convert::own_presence(&presence)),
        }))
    }

    async fn report_activity(
        &self,
        _: Request<pb::ReportActivityRequest>,
    ) -> Result<Response<pb::ReportActivityResponse>, Status> {
        self.services
            .presence
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
        self.services
            .presence
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
            .services
            .live
            .keys()
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
        self.services
            .live
            .keys()
            .save_session(&session.name, &session.open_conversation, &session.drafts)
            .await
            .map_err(|err| valkey_unavailable(&err))?;
        Ok(Response::new(pb::SaveSessionResponse {}))
    }

    async fn send_file(
        &self,
        request: Request<pb::SendFileRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let request = request.into_inner();
        self.services
            .transfers
            .send_file(&request.to, &request.path)
            .await
            .map(transfer_response)
            .map_err(transfer_status)
    }

    async fn answer_transfer(
        &self,
        request: Request<pb::AnswerTransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let request = request.into_inner();
        self.services
            .transfers
            .answer(&request.transfer_id, request.accept)
            .await
            .map(transfer_response)
            .map_err(transfer_status)
    }

    async fn cancel_transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::Transfer>, Status> {
        let request = request.into_inner();
        self.services
            .transfers
            .cancel(&request.transfer_id)
            .await
            .map(transfer_response)
            .map_err(transfer_status)
    }

    async fn list_transfers(
        &self,
        _request: Request<pb::ListTransfersRequest>,
    ) -> Result<Response<pb::ListTransfersResponse>, Status> {
        let transfers = self
            .services
            .transfers
            .list()
            .await
            .map_err(transfer_status)?;
        Ok(Response::new(pb::ListTransfersResponse {
            transfers: transfers
                .iter()
                .map(|(record, progress)| convert::transfer(record, *progress))
                .collect(),
        }))
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
    struct LiveStream {
        receiver: tokio::sync::broadcast::Receiver<Arc<pb::Event>>,
        // Counts the subscriber as attached until the stream is dropped.
        _interactive: Option<crate::hub::InteractiveGuard>,
        last_seq: u64,
        streams_end: CancellationToken,
        finished: bool,
    }
    let live = futures::stream::unfold(
        LiveStream {
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
    use crate::hub::Hub;

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
