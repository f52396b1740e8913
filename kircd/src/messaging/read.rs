//! Reading: history pages, conversations, search, and read markers (with
//! the read receipts they send).

use kirc_proto::wire::v1 as wire;

use super::{Messaging, MessagingError, parse_uuid};
use crate::store::{self, ConversationSummary, Message, Page, ReadMarker};

/// Where a history page is, by message id as the client gives it.
#[derive(Debug, Clone, Copy)]
pub enum HistoryAnchor<'a> {
    Latest,
    Before(&'a str),
    After(&'a str),
    Around(&'a str),
}

/// Page size when the client gives none.
const DEFAULT_LIMIT: u32 = 50;

impl Messaging {
    pub async fn history(
        &self,
        conversation_id: &str,
        anchor: HistoryAnchor<'_>,
        limit: u32,
    ) -> Result<Page, MessagingError> {
        self.book.check_loaded()?;
        let conversation = parse_uuid(conversation_id, "conversation_id")?;
        let anchor = match anchor {
            HistoryAnchor::Latest => store::Anchor::Latest,
            HistoryAnchor::Before(id) => store::Anchor::Before(parse_uuid(id, "before")?),
            HistoryAnchor::After(id) => store::Anchor::After(parse_uuid(id, "after")?),
            HistoryAnchor::Around(id) => store::Anchor::Around(parse_uuid(id, "around")?),
        };
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        store::history(&self.pool, conversation, anchor, limit)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(format!("{anchor:?}")))
    }

    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, MessagingError> {
        self.book.check_loaded()?;
        Ok(store::conversations(&self.pool).await?)
    }

    pub async fn search(
        &self,
        query: &str,
        conversation_id: &str,
        limit: u32,
    ) -> Result<Vec<Message>, MessagingError> {
        self.book.check_loaded()?;
        if query.trim().is_empty() {
            return Err(MessagingError::InvalidArgument(String::from(
                "the search is empty",
            )));
        }
        let conversation = if conversation_id.is_empty() {
            None
        } else {
            Some(parse_uuid(conversation_id, "conversation_id")?)
        };
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        Ok(store::search(&self.pool, query, conversation, limit).await?)
    }

    /// Moves the read marker forward to `up_to` and, if it moved and read
    /// receipts are on, tells the contact which of its messages are read.
    pub async fn mark_read(
        &self,
        conversation_id: &str,
        up_to: &str,
    ) -> Result<ReadMarker, MessagingError> {
        self.book.check_loaded()?;
        let conversation = parse_uuid(conversation_id, "conversation_id")?;
        let up_to = parse_uuid(up_to, "up_to")?;
        let marker = store::mark_read(&self.pool, conversation, up_to)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(up_to.to_string()))?;
        if marker.moved {
            self.hub
                .read_marker_moved(conversation, marker.last_read_seq, marker.unread);
            if self.read_receipts {
                let ids = store::incoming_between(
                    &self.pool,
                    conversation,
                    marker.before,
                    marker.last_read_seq,
                )
                .await?;
                if let Some(peer) = self.book.by_conversation(conversation) {
                    self.send_receipt(&peer, wire::ReceiptKind::Read, &[ids])
                        .await?;
                }
            }
        }
        Ok(marker)
    }

    /// Mutes or unmutes a conversation, for every client.
    pub async fn set_muted(
        &self,
        conversation_id: &str,
        muted: bool,
    ) -> Result<(), MessagingError> {
        let conversation = parse_uuid(conversation_id, "conversation_id")?;
        if !store::set_muted(&self.pool, conversation, muted).await? {
            return Err(MessagingError::UnknownConversation(
                conversation.to_string(),
            ));
        }
        self.hub.conversation_muted(conversation, muted);
        Ok(())
    }
}
