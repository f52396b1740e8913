//! Group session keys between members: what a newcomer is given, a key
//! taken from another member (sealed by it, carried by the owner), and the
//! posts that waited for it.

use std::collections::BTreeMap;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use uuid::Uuid;

use super::owner::created_at;
use super::{Handled, Running, nothing, opened_content};
use crate::channels::sessions::Opened;
use crate::crypto::envelope::{self, PairKey, Rejection};
use crate::crypto::group::{self, InboundSession};
use crate::crypto::identity::ActorId;
use crate::store::{self, ChannelItem, MessageState, StoreError, StoredSession};

impl Running {
    /// The sessions a member who just joined needs from this actor: each
    /// session with own posts the owner has not relayed back yet (those
    /// may come after the join in its order), from the first of them, and
    /// the current one from its next message.
    pub(super) async fn shares_for_newcomer(&mut self, id: Uuid) -> Vec<(String, Vec<u8>)> {
        let unsent = store::unplaced_own_posts(&self.engine.pool, id)
            .await
            .unwrap_or_default();
        let Some(held) = self.channels.get_mut(&id) else {
            return Vec::new();
        };
        let mut from: BTreeMap<String, u32> = BTreeMap::new();
        for post in unsent {
            if let Ok(post) = wire::ChannelPost::decode(post.as_slice())
                && let Some(index) = group::message_index(&post.ciphertext)
            {
                let lowest = from.entry(post.session_id).or_insert(index);
                *lowest = (*lowest).min(index);
            }
        }
        let mut shares: Vec<(String, Vec<u8>)> = from
            .into_iter()
            .filter_map(|(session, index)| {
                let export = held.sessions.export(&session, index)?;
                Some((session, export))
            })
            .collect();
        if let Some((session, export)) = held.sessions.export_current()
            && !shares.iter().any(|(known, _)| *known == session)
        {
            shares.push((session, export));
        }
        shares
    }

    /// A member's session key for this actor, sealed by the member.
    pub(super) async fn receive_key(
        &mut self,
        forward: &wire::ChannelKeyForward,
    ) -> Result<Handled, StoreError> {
        let Ok((inner, header)) = envelope::parse(&forward.envelope, self.me) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        if header.kind != wire::Kind::ChannelKey {
            return Ok((Err(Rejection::Malformed), nothing()));
        }
        // The inner envelope names its channel only inside; the author must
        // be a member of a channel we are in, and of the one it names.
        let author = self
            .channels
            .values()
            .find_map(|held| held.view.profiles.get(&header.sender).cloned());
        let Some(author) = author else {
            return Ok((Err(Rejection::Stranger), nothing()));
        };
        if envelope::verify(&inner, &author.signing_key).is_err() {
            return Ok((Err(Rejection::BadSignature), nothing()));
        }
        let pair = PairKey::new(&self.engine.identity, &author.box_key);
        let Ok(payload) = envelope::open(&inner, &header, &pair) else {
            return Ok((Err(Rejection::Undecryptable), nothing()));
        };
        let Ok(key) = wire::ChannelSessionKey::decode(payload.as_slice()) else {
            return Ok((Err(Rejection::Undecryptable), nothing()));
        };
        let Ok(channel) = Uuid::from_slice(&key.channel_id) else {
            return Ok((Err(Rejection::Malformed), nothing()));
        };
        let Some(held) = self.channels.get_mut(&channel) else {
            return Ok((Err(Rejection::Stranger), nothing()));
        };
        if !held.view.profiles.contains_key(&header.sender) {
            return Ok((Err(Rejection::Stranger), nothing()));
        }
        let Ok(session) = InboundSession::from_export(&key.session_key) else {
            return Ok((Err(Rejection::Undecryptable), nothing()));
        };
        if session.id() != key.session_id {
            return Ok((Err(Rejection::Malformed), nothing()));
        }
        let row = StoredSession {
            channel_id: channel,
            session_id: key.session_id.clone(),
            outbound: false,
            author: header.sender,
            epoch: key.epoch,
            pickle: session.pickle(&self.key),
        };
        if !held.sessions.add_shared(header.sender, session) {
            // A copy of a share already kept.
            return Ok((Ok(()), nothing()));
        }
        self.store_session(&row).await?;
        self.open_waiting(channel, &key.session_id).await?;
        Ok((Ok(()), nothing()))
    }

    /// Opens the posts that waited for a session that just arrived.
    async fn open_waiting(&mut self, channel: Uuid, session_id: &str) -> Result<(), StoreError> {
        let waiting = store::waiting_for(&self.engine.pool, channel, session_id).await?;
        if waiting.is_empty() {
            return Ok(());
        }
        let me = self.me;
        let mut done = Vec::new();
        for (seq, encoded) in waiting {
            done.push(seq);
            let Some(held) = self.channels.get_mut(&channel) else {
                break;
            };
            let Ok(post) = wire::ChannelPost::decode(encoded.as_slice()) else {
                continue;
            };
            let (Ok(post_id), Some(author)) = (
                Uuid::from_slice(&post.post_id),
                ActorId::from_slice(&post.author),
            ) else {
                continue;
            };
            let Ok(Opened::Plaintext(plaintext)) =
                held.sessions
                    .decrypt(author, &post.session_id, &post.ciphertext)
            else {
                continue;
            };
            let Some(content) = opened_content(&plaintext) else {
                continue;
            };
            let item = ChannelItem {
                id: post_id,
                channel_id: channel,
                sender: author,
                outgoing: author == me,
                action: content.action,
                body: content.body(),
                created_at_unix_ms: created_at(post_id),
                channel_seq: Some(seq),
                line: None,
                state: MessageState::Received,
                post: None,
                outbox_key: None,
                idempotency_key: None,
                reply_to: content.reply_to,
                act: content.act.clone(),
            };
            let stored = store::insert_channel_item(&self.engine.pool, &item).await?;
            self.publish(post_id, stored, content.act.as_ref()).await?;
        }
        store::drop_waiting(&self.engine.pool, channel, &done).await
    }
}
