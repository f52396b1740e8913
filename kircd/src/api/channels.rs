//! The channels' gRPC handlers, and how their errors become statuses; the
//! trait methods in `service.rs` call these.

use kirc_proto::v1 as pb;
use tonic::{Response, Status};

use super::service::{DaemonService, contacts_status, store_status};
use crate::channels::{Act, ChannelError};
use crate::store::Message;

pub(super) fn channel_status(err: ChannelError) -> Status {
    let message = err.to_string();
    match err {
        ChannelError::NotLoaded(_) | ChannelError::Stopping => Status::unavailable(message),
        ChannelError::Unknown(_) | ChannelError::NoSuchMember { .. } => Status::not_found(message),
        ChannelError::Ambiguous(_)
        | ChannelError::Name(_)
        | ChannelError::Invite(_)
        | ChannelError::InvalidArgument(_) => Status::invalid_argument(message),
        ChannelError::NotIn(_) | ChannelError::Refused(_) | ChannelError::NotOwner(_) => {
            Status::failed_precondition(message)
        }
        ChannelError::Contacts(err) => contacts_status(err),
        ChannelError::Store(err) => store_status(&err, message),
    }
}

fn channel_response(id: uuid::Uuid) -> Response<pb::ChannelResponse> {
    Response::new(pb::ChannelResponse {
        conversation_id: id.to_string(),
    })
}

impl DaemonService {
    pub(super) async fn create_channel_call(
        &self,
        request: pb::CreateChannelRequest,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        self.services
            .channels
            .create(request.name, request.topic)
            .await
            .map(channel_response)
            .map_err(channel_status)
    }

    pub(super) async fn create_channel_invite_call(
        &self,
        request: pb::ChannelRequest,
    ) -> Result<Response<pb::CreateInviteResponse>, Status> {
        let (token, expires_at_unix_ms) = self
            .services
            .channels
            .invite(request.channel)
            .await
            .map_err(channel_status)?;
        Ok(Response::new(pb::CreateInviteResponse {
            token,
            expires_at_unix_ms,
        }))
    }

    pub(super) async fn join_channel_call(
        &self,
        request: pb::JoinChannelRequest,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        self.services
            .channels
            .join(request.token)
            .await
            .map(channel_response)
            .map_err(channel_status)
    }

    pub(super) async fn channel_act_call(
        &self,
        request: pb::ChannelActRequest,
    ) -> Result<Response<pb::ChannelResponse>, Status> {
        use pb::ChannelLine as Line;
        let member = request.member;
        let text = request.text;
        let act = match Line::try_from(request.act) {
            Ok(Line::Part) => Act::Part { reason: text },
            Ok(Line::Kick) => Act::Kick {
                member,
                reason: text,
            },
            Ok(Line::Ban) => Act::Ban {
                member,
                reason: text,
            },
            Ok(Line::Unban) => Act::Unban { member },
            Ok(Line::Op) => Act::Op { member },
            Ok(Line::Deop) => Act::Deop { member },
            Ok(Line::Topic) => Act::Topic { text },
            Ok(Line::Moderated) => Act::Moderate { on: true },
            Ok(Line::Unmoderated) => Act::Moderate { on: false },
            _ => {
                return Err(Status::invalid_argument(
                    "act: one of PART, KICK, BAN, UNBAN, OP, DEOP, TOPIC, MODERATED, UNMODERATED",
                ));
            }
        };
        let channel = request.channel;
        self.services
            .channels
            .act(channel.clone(), act)
            .await
            .map_err(channel_status)?;
        Ok(Response::new(pb::ChannelResponse {
            conversation_id: channel,
        }))
    }

    /// A message to a channel (`SendMessage` to `#name` or a channel's id).
    pub(super) async fn send_to_channel(
        &self,
        request: pb::SendMessageRequest,
    ) -> Result<Message, Status> {
        let reply_to = super::service::parse_reply_to(&request.reply_to)?;
        crate::content::check_text(&request.text)
            .map_err(|err| Status::invalid_argument(err.to_string()))?;
        let content = crate::content::Content {
            text: request.text,
            action: request.action,
            reply_to,
            act: None,
        };
        self.services
            .channels
            .send(request.to, content, request.idempotency_key)
            .await
            .map_err(channel_status)
    }
}
