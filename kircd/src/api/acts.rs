//! The handlers of replies' targets, reactions, edits, deletions and
//! versions: a message of a channel goes to the channels, any other to
//! messaging. The trait methods in `service.rs` call these.

use kirc_proto::v1 as pb;
use tonic::{Response, Status};

use super::channels::channel_status;
use super::service::{DaemonService, messaging_status};
use crate::content::ActKind;
use crate::hub::convert;

impl DaemonService {
    pub(super) async fn act_call(
        &self,
        message_id: &str,
        kind: ActKind,
    ) -> Result<Response<pb::ChatMessage>, Status> {
        let messaging = &self.services.messaging;
        let target = messaging
            .act_target(message_id)
            .await
            .map_err(messaging_status)?;
        let message = if self
            .services
            .hub
            .is_channel(&target.conversation_id.to_string())
        {
            self.services
                .channels
                .act_on(target, kind)
                .await
                .map_err(channel_status)?
        } else {
            messaging
                .act_on(&target, kind)
                .await
                .map_err(messaging_status)?
        };
        Ok(Response::new(convert::message(&message)))
    }

    pub(super) async fn versions_call(
        &self,
        message_id: &str,
    ) -> Result<Response<pb::MessageVersions>, Status> {
        let versions = self
            .services
            .messaging
            .versions(message_id)
            .await
            .map_err(messaging_status)?;
        Ok(Response::new(pb::MessageVersions {
            versions: versions
                .into_iter()
                .map(|version| pb::MessageVersion {
                    text: version.text,
                    at_unix_ms: version.at_unix_ms,
                })
                .collect(),
        }))
    }
}
