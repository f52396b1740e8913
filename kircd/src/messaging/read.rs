//! Reading: history pages, conversations, search, and read markers (with
//! the read receipts they send).

use kirc_proto::v1::{self as pb, event::Kind};
use kirc_proto::wire::v1 as wire;
use uuid::Uuid;

use super::{Messaging, MessagingError, parse_uuid};
use crate::store::{self, ContactRecord};

impl Messaging {
    pub async fn history(
        &self,
        request: &pb::GetHistoryRequest,
    ) -> Result<pb::GetHistoryResponse, MessagingError> {
        self.check_ready()?;
        let conversation = parse_uuid(&request.conversation_id, "conversation_id")?;
        let anchor = match &request.anchor {
            None => store::Anchor::Latest,
            Some(pb::get_history_request::Anchor::Before(id)) => {
                store::Anchor::Before(parse_uuid(id, "before")?)
            }
            Some(pb::get_history_request::Anchor::After(id)) => {
                store::Anchor::After(parse_uuid(id, "after")?)
            }
            Some(pb::get_history_request::Anchor::Around(id)) => {
                store::Anchor::Around(parse_uuid(id, "around")?)
            }
        };
        let limit = if request.limit == 0 {
            50
        } else {
            request.limit
        };
        let page = store::history(&self.pool, conversation, anchor, limit)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(format!("{anchor:?}")))?;
        Ok(pb::GetHistoryResponse {
            messages: page.messages,
            more_before: page.more_before,
            more_after: page.more_after,
        })
    }

    pub async fn conversations(&self) -> Result<Vec<pb::Conversation>, MessagingError> {
        self.check_ready()?;
        Ok(store::conversations(&self.pool, &self.identity).await?)
    }

    pub async fn search(
        &self,
        request: &pb::SearchRequest,
    ) -> Result<Vec<pb::ChatMessage>, MessagingError> {
        self.check_ready()?;
        if request.query.trim().is_empty() {
            return Err(MessagingError::InvalidArgument(String::from(
                "the search is empty",
            )));
        }
        let conversation = if request.conversation_id.is_empty() {
            None
        } else {
            Some(parse_uuid(&request.conversation_id, "conversation_id")?)
        };
        let limit = if request.limit == 0 {
            50
        } else {
            request.limit
        };
        Ok(store::search(&self.pool, &request.query, conversation, limit).await?)
    }

    pub async fn mark_read(
        &self,
        conversation_id: &str,
        up_to: &str,
    ) -> Result<pb::MarkReadResponse, MessagingError> {
        self.check_ready()?;
        let conversation = parse_uuid(conversation_id, "conversation_id")?;
        let up_to = parse_uuid(up_to, "up_to")?;
        let before = self
            .hub
            .conversations()
            .iter()
            .find(|known| known.id == conversation_id)
            .map_or(0, |known| known.last_read_seq);
        let (last_read_seq, unread, moved) = store::mark_read(&self.pool, conversation, up_to)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(up_to.to_string()))?;
        if moved {
            self.hub
                .publish_event(Kind::ReadMarkerMoved(pb::ReadMarkerMoved {
                    conversation_id: conversation_id.to_owned(),
                    last_read_seq,
                    unread,
                }));
            if self.config.messaging.read_receipts {
                let ids = store::incoming_between(
                    &self.pool,
                    conversation,
                    i64::try_from(before).unwrap_or(0),
                    i64::try_from(last_read_seq).unwrap_or(0),
                )
                .await?;
                if let Some(peer) = self.peer_of(conversation) {
                    self.send_receipt(&peer, wire::ReceiptKind::Read, &ids)
                        .await?;
                }
            }
        }
        Ok(pb::MarkReadResponse {
            last_read_seq,
            unread,
            moved,
        })
    }

    pub(super) fn peer_of(&self, conversation: Uuid) -> Option<ContactRecord> {
        self.contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .find(|contact| contact.conversation_id == conversation)
            .cloned()
    }
}
