//! Reactions, edits and deletions in a channel: a post like any other whose
//! plaintext carries the act, so that the owner orders and relays it
//! without reading it, and every member applies it by the same rules as
//! in a one-to-one chat (only a message's author edits or deletes it).

use super::{ChannelError, MessageAct, Running};
use crate::content::{ActKind, Content};
use crate::store::{self, Message};

impl Running {
    /// Posts `kind` on `target`, a message of one of our channels; returns
    /// the target as it now is here.
    pub(super) async fn act_on(
        &mut self,
        target: &Message,
        kind: ActKind,
    ) -> Result<Message, ChannelError> {
        crate::messaging::check_own_act(target, &kind)
            .map_err(|err| ChannelError::InvalidArgument(err.to_string()))?;
        let content = Content {
            text: String::new(),
            action: false,
            reply_to: None,
            act: Some(MessageAct {
                target: target.id,
                kind,
            }),
        };
        self.send(&target.conversation_id.to_string(), content, "")
            .await?;
        store::message_by_id(&self.engine.pool, target.id)
            .await?
            .ok_or_else(|| ChannelError::Unknown(target.id.to_string()))
    }
}
