//! What this actor sends: chat messages (through the own data-out) and
//! control records (receipts, presence, typing, profiles, through the own
//! rpc-out), and the keep-warm heartbeat.

use std::time::Duration;

use kirc_proto::v1::{self as pb, event::Kind};
use kirc_proto::wire::v1 as wire;
use prost::Message;
use uuid::Uuid;

use super::{MAX_TEXT_BYTES, Messaging, MessagingError, now_ms};
use crate::crypto::envelope;
use crate::store::{self, ContactRecord, ContactState, MessageState};

impl Messaging {
    /// Seals a control record for `contact` and puts it in the own rpc-out,
    /// from where the rpc delivery worker takes it to the contact's rpc-in.
    /// Sealing (which picks the message id, a UUIDv7) and producing happen
    /// under `control_order`: the contact applies a stream's records only in
    /// increasing id order, so they must leave in that order.
    pub(super) async fn send_control(
        &self,
        contact: &ContactRecord,
        kind: wire::Kind,
        payload: &[u8],
    ) -> Result<(), MessagingError> {
        let _in_order = self.control_order.lock().await;
        let id = envelope::new_message_id();
        let sealed = if kind == wire::Kind::ContactRequest {
            // The contact does not know our keys yet.
            envelope::seal_anonymous(
                &self.identity,
                contact.actor_id,
                &contact.box_key,
                kind,
                id,
                payload,
            )
        } else {
            envelope::seal(
                &self.identity,
                contact.actor_id,
                &contact.pair,
                kind,
                id,
                payload,
            )
        };
        self.outbox
            .produce(
                &self.config.kafka.topics.rpc_out,
                contact.conversation_id.as_bytes(),
                &sealed,
            )
            .await
            .map(drop)
            .map_err(|err| MessagingError::Outbox(err.to_string()))
    }

    /// Sends a chat message: sealed, stored PENDING, produced to the own
    /// data-out, QUEUED. With an idempotency key already used, the message
    /// first sent with it instead (produced again if it is still PENDING,
    /// which a call cut short by a crash or an unreachable outbox leaves).
    pub async fn send_message(
        &self,
        to: &str,
        text: &str,
        action: bool,
        idempotency_key: &str,
    ) -> Result<pb::ChatMessage, MessagingError> {
        self.check_ready()?;
        let key = idempotency_key_of(idempotency_key)?;
        if text.trim().is_empty() {
            return Err(MessagingError::InvalidArgument(String::from(
                "the message is empty",
            )));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(MessagingError::InvalidArgument(format!(
                "the message is {} bytes; the limit is {MAX_TEXT_BYTES}",
                text.len()
            )));
        }
        let contact = self.resolve(to)?;
        match contact.state {
            ContactState::Blocked => return Err(MessagingError::Blocked(contact.display_name)),
            ContactState::Request => return Err(MessagingError::NotAccepted(contact.display_name)),
            ContactState::Accepted => {}
        }
        if let Some(key) = &key
            && let Some(sent) = store::outgoing_by_key(&self.pool, key).await?
        {
            return self.sent_before(sent, &contact, text, action).await;
        }
        let id = envelope::new_message_id();
        let payload = wire::ChatPayload {
            text: text.to_owned(),
            action,
        };
        let sealed = envelope::seal(
            &self.identity,
            contact.actor_id,
            &contact.pair,
            wire::Kind::Chat,
            id,
            &payload.encode_to_vec(),
        );
        let outgoing = store::Outgoing {
            id,
            conversation_id: contact.conversation_id,
            sender: self.me,
            action,
            body: text.to_owned(),
            created_at_unix_ms: envelope::Header {
                message_id: id,
                sender: self.me,
                recipient: contact.actor_id,
                kind: wire::Kind::Chat,
            }
            .created_at_unix_ms(),
            envelope: sealed,
            idempotency_key: key.clone(),
        };
        let Some(mut message) = store::insert_outgoing(&self.pool, &outgoing).await? else {
            // A call with the same key stored its message first.
            let key = key.unwrap_or_default();
            let sent = store::outgoing_by_key(&self.pool, &key)
                .await?
                .ok_or_else(|| MessagingError::UnknownMessage(key))?;
            return self.sent_before(sent, &contact, text, action).await;
        };
        self.hub.publish_event(Kind::MessageAdded(message.clone()));
        self.enqueue(id, contact.conversation_id, &outgoing.envelope)
            .await?;
        message.state = pb::MessageState::Queued as i32;
        Ok(message)
    }

    /// The answer to a call whose idempotency key names `sent`: that message,
    /// if the call asks for the same one.
    async fn sent_before(
        &self,
        mut sent: pb::ChatMessage,
        contact: &ContactRecord,
        text: &str,
        action: bool,
    ) -> Result<pb::ChatMessage, MessagingError> {
        if sent.conversation_id != contact.conversation_id.to_string()
            || sent.body != text
            || sent.action != action
        {
            return Err(MessagingError::InvalidArgument(String::from(
                "this idempotency key was used for another message; choose a new key for each message",
            )));
        }
        if sent.state == pb::MessageState::Pending as i32 {
            // The earlier call stopped before the outbox had it. Producing
            // it twice is harmless: the contact stores an id once.
            let id = Uuid::parse_str(&sent.id)
                .map_err(|_| MessagingError::UnknownMessage(sent.id.clone()))?;
            if let Some(sealed) = store::outgoing_envelope(&self.pool, id).await? {
                self.enqueue(id, contact.conversation_id, &sealed).await?;
                sent.state = pb::MessageState::Queued as i32;
            }
        }
        Ok(sent)
    }

    /// Produces a stored message to the own data-out; once acknowledged it is
    /// durable there and becomes QUEUED.
    pub(super) async fn enqueue(
        &self,
        id: Uuid,
        conversation: Uuid,
        envelope: &[u8],
    ) -> Result<(), MessagingError> {
        let (partition, offset) = self
            .outbox
            .produce(
                &self.config.kafka.topics.data_out,
                conversation.as_bytes(),
                envelope,
            )
            .await
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        store::set_outbox_position(&self.pool, id, partition, offset).await?;
        self.advance(&[id], MessageState::Queued).await?;
        Ok(())
    }

    /// Produces again the messages that expired from the own data-out before
    /// they were delivered: still QUEUED, at an offset below what the
    /// partition now holds. Returns how many.
    pub(super) async fn requeue_expired(&self) -> Result<usize, MessagingError> {
        let low = self
            .outbox
            .low_watermarks(&self.config.kafka.topics.data_out)
            .await
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        let expired = store::expired_from_outbox(&self.pool, &low).await?;
        if !expired.is_empty() {
            tracing::warn!(
                messages = expired.len(),
                "messages expired from data-out before their contact could be reached; producing them again"
            );
        }
        for (id, conversation, envelope) in &expired {
            self.enqueue(*id, *conversation, envelope).await?;
        }
        Ok(expired.len())
    }

    /// Moves sent messages forward and publishes each move.
    pub(super) async fn advance(
        &self,
        ids: &[Uuid],
        state: MessageState,
    ) -> Result<(), MessagingError> {
        for (id, conversation) in store::advance_messages(&self.pool, ids, state, true).await? {
            self.hub
                .publish_event(Kind::MessageStateChanged(pb::MessageStateChanged {
                    message_id: id.to_string(),
                    conversation_id: conversation.to_string(),
                    state: state.to_pb() as i32,
                }));
        }
        Ok(())
    }

    pub(super) async fn send_receipt(
        &self,
        contact: &ContactRecord,
        kind: wire::ReceiptKind,
        ids: &[Uuid],
    ) -> Result<(), MessagingError> {
        // A receipt of thousands of ids would exceed the envelope limit;
        // chunks of 1,000 ids stay far below it.
        for chunk in ids.chunks(1000) {
            let receipt = wire::Receipt {
                kind: kind as i32,
                message_ids: chunk.iter().map(|id| id.as_bytes().to_vec()).collect(),
            };
            self.send_control(contact, wire::Kind::Receipt, &receipt.encode_to_vec())
                .await?;
        }
        Ok(())
    }

    /// Tells every accepted contact our presence.
    pub async fn send_presence(
        &self,
        state: pb::PresenceState,
        text: &str,
        ttl: Duration,
    ) -> Result<(), MessagingError> {
        let contacts: Vec<ContactRecord> = self
            .contacts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|contact| contact.state == ContactState::Accepted)
            .cloned()
            .collect();
        let presence = wire::Presence {
            state: state as i32,
            text: text.to_owned(),
            ttl_seconds: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1),
        };
        for contact in contacts {
            self.send_control(&contact, wire::Kind::Presence, &presence.encode_to_vec())
                .await?;
        }
        Ok(())
    }

    /// Tells the peer of `conversation` that we type (or stopped).
    pub async fn send_typing(
        &self,
        conversation: Uuid,
        active: bool,
    ) -> Result<(), MessagingError> {
        let contact = self
            .peer_of(conversation)
            .ok_or_else(|| MessagingError::UnknownConversation(conversation.to_string()))?;
        if contact.state != ContactState::Accepted {
            return Ok(());
        }
        self.send_control(
            &contact,
            wire::Kind::Typing,
            &wire::Typing { active }.encode_to_vec(),
        )
        .await
    }

    /// Produces a heartbeat to the own rpc-in (the inbox consumes it), so that
    /// the cluster sees both a produce and a consume.
    pub async fn keep_warm(&self) -> Result<(), MessagingError> {
        let pair = envelope::PairKey::new(&self.identity, &self.identity.box_key());
        let envelope = envelope::seal(
            &self.identity,
            self.me,
            &pair,
            wire::Kind::Heartbeat,
            envelope::new_message_id(),
            &wire::Heartbeat {}.encode_to_vec(),
        );
        self.outbox
            .produce(
                &self.config.kafka.topics.rpc_in,
                self.me.as_bytes(),
                &envelope,
            )
            .await
            .map_err(|err| MessagingError::Outbox(err.to_string()))?;
        self.hub
            .update_status(|status| status.heartbeat_produced_unix_ms = now_ms());
        Ok(())
    }
}

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

fn idempotency_key_of(key: &str) -> Result<Option<String>, MessagingError> {
    if key.is_empty() {
        return Ok(None);
    }
    if key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(MessagingError::InvalidArgument(format!(
            "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces (a UUID, say)"
        )));
    }
    Ok(Some(key.to_owned()))
}
