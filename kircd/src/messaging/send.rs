//! Sending chat: sealed, stored PENDING while it is produced to the own
//! data-out (the delivery worker hands it on only once it is stored),
//! QUEUED (the call answers once both are done; the state is written behind
//! it); produced again when a crash or an expired record left it behind.

use std::sync::Arc;

use prost::Message as _;
use uuid::Uuid;

use super::acts::check_sendable;
use super::{Messaging, MessagingError};
use crate::backends::hops;
use crate::book::Contact;
use crate::content::{Content, check_text};
use crate::crypto::envelope;
use crate::hub::Hub;
use crate::store::{self, Message, MessageState};
use crate::transport::Lane;
use crate::transport::kafka::handoff::Stored;

/// The longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 128;

pub(crate) fn idempotency_key_of(key: &str) -> Result<Option<String>, MessagingError> {
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

impl Messaging {
    /// Sends a chat message, or a reply to `reply_to` (a message of the
    /// same conversation). With an idempotency key already used, the
    /// message first sent with it instead (produced again if it is still
    /// PENDING, which a call cut short by a crash or an unreachable outbox
    /// leaves).
    pub async fn send_message(
        &self,
        to: &str,
        text: &str,
        action: bool,
        reply_to: Option<Uuid>,
        idempotency_key: &str,
    ) -> Result<Message, MessagingError> {
        let called = hops::now();
        self.book.check_loaded()?;
        let key = idempotency_key_of(idempotency_key)?;
        check_text(text).map_err(|err| MessagingError::InvalidArgument(err.to_string()))?;
        let contact = self.book.resolve(to)?;
        check_sendable(&contact)?;
        if let Some(answered) = reply_to {
            self.check_reply(contact.conversation_id, answered).await?;
        }
        let content = Content {
            text: text.to_owned(),
            action,
            reply_to,
            act: None,
        };
        self.send_content(&contact, content, key, called).await
    }

    /// Stores, publishes and sends `content` to `contact`: a message, or an
    /// act (whose target, as it now is, is what returns).
    pub(super) async fn send_content(
        &self,
        contact: &Contact,
        content: Content,
        key: Option<String>,
        called: Option<std::time::SystemTime>,
    ) -> Result<Message, MessagingError> {
        let conversation = contact.conversation_id;
        if !self.kafka_only().is_loaded(conversation) {
            let unreceived = store::unreceived_outgoing(&self.pool, conversation).await?;
            self.kafka_only().load(conversation, unreceived);
        }
        let kind = content.kind();
        let sealed = self
            .outbound
            .seal_for(contact, kind, &content.to_payload().encode_to_vec());
        let outgoing = store::Outgoing {
            id: sealed.id,
            conversation_id: conversation,
            sender: self.book.me(),
            action: content.action,
            body: content.body().to_owned(),
            created_at_unix_ms: envelope::Header {
                message_id: sealed.id,
                sender: self.book.me(),
                recipient: contact.actor_id,
                kind,
            }
            .created_at_unix_ms(),
            envelope: sealed.bytes,
            idempotency_key: key.clone(),
            reply_to: content.reply_to,
            act: content.act.clone(),
        };
        // Before the record exists: no receipt can cover it unseen, and
        // no direct copy overtakes it.
        let may_go_direct = self.kafka_only().begin(conversation, outgoing.id);
        let placement = self.placing.begin(outgoing.id);
        // The message is stored while its record is produced: on every
        // send the two waits overlap instead of adding up. The delivery
        // worker hands the record on only once the message is stored (see
        // `storing.rs`), so a failed write or a taken idempotency key
        // leaves a record in data-out that is never handed on.
        let writing = self.storing.begin(outgoing.id);
        let produced = self.outbound.enqueue(
            Lane::Data,
            conversation,
            &outgoing.envelope,
            Stored::Pending(writing.outcome()),
        );
        let stored = async {
            // A key used before is found by the insert, not looked up first:
            // a retry is rare, and a lookup would put a second round trip on
            // every send.
            let inserted = store::insert_outgoing(&self.pool, &outgoing).await;
            let stored = matches!(inserted, Ok(Some(_)));
            writing.finish(stored);
            if !stored {
                self.kafka_only().never_sent(conversation, outgoing.id);
            }
            let Some(message) = inserted? else {
                return Ok(None);
            };
            hops::mark_at("send.called", message.id, called);
            hops::mark("send.stored", message.id);
            let direct = may_go_direct.then_some(outgoing.envelope.as_slice());
            self.stored_then_direct(contact, &content, message, direct)
                .await
                .map(Some)
        };
        let (stored, produced) = tokio::join!(stored, produced);
        let Some((mut message, acted_on)) = stored? else {
            // A call with the same key stored its message first.
            let key = key.unwrap_or_default();
            let sent = store::outgoing_by_key(&self.pool, &key)
                .await?
                .ok_or_else(|| MessagingError::UnknownMessage(key))?;
            return self.sent_before(sent, contact, &content).await;
        };
        let ((partition, offset), first_attempt) = produced?;
        hops::mark("send.acked", message.id);
        // The record is durable in data-out now, which is what QUEUED means:
        // the call answers at once, and the message's place and state are
        // written behind it (a round trip less on every send), once the
        // delivery worker's first attempt to hand it on is over (a commit
        // beside that produce slows it), and only if that attempt did not
        // hand it on: then the worker writes the place with DELIVERED.
        // Should kircd stop before either write, the message is still
        // PENDING at the next start, which produces it again; the contact
        // stores an id once.
        let pool = self.pool.clone();
        let hub = Arc::clone(&self.hub);
        let id = message.id;
        self.queued_writes.spawn(async move {
            if first_attempt.over().await {
                drop(placement);
                return;
            }
            if let Err(err) = record_queued(&pool, &hub, id, partition, offset).await {
                tracing::warn!(error = %err, message_id = %id, "cannot record a sent message as queued; it is produced again at the next start");
            }
            drop(placement);
        });
        message.state = MessageState::Queued;
        Ok(acted_on.unwrap_or(message))
    }

    /// What follows the store of a new message: its act applied or the
    /// message published, and its `direct` copy sent if the order allows
    /// it. Returns the message and, for an act, its target as it now is.
    async fn stored_then_direct(
        &self,
        contact: &Contact,
        content: &Content,
        mut message: Message,
        direct: Option<&[u8]>,
    ) -> Result<(Message, Option<Message>), MessagingError> {
        let acted_on = match &content.act {
            Some(act) => Some(self.apply_own_act(act).await?),
            None => {
                if message.reply_to.is_some() {
                    store::decorate(&self.pool, std::slice::from_mut(&mut message)).await?;
                }
                self.hub.message_added(&message);
                None
            }
        };
        self.outbound.touch_direct(contact.actor_id);
        // The direct copy (if a channel is open and nothing sent earlier is
        // still on its way by Kafka alone) leaves beside the durable Kafka
        // copy; the contact stores the id once, whichever arrives first.
        if let Some(envelope) = direct
            && self.outbound.send_direct(contact.actor_id, envelope).await
        {
            hops::mark("send.direct", message.id);
            self.kafka_only()
                .sent_direct(contact.conversation_id, message.id);
        }
        Ok((message, acted_on))
    }

    /// Waits for the QUEUED writes that calls left behind them (at
    /// shutdown, before the database closes).
    pub async fn settle(&self) {
        self.queued_writes.close();
        self.queued_writes.wait().await;
    }

    /// The answer to a call whose idempotency key names `sent`: that message,
    /// if the call asks for the same one.
    async fn sent_before(
        &self,
        mut sent: Message,
        contact: &Contact,
        content: &Content,
    ) -> Result<Message, MessagingError> {
        if sent.conversation_id != contact.conversation_id
            || sent.body != content.text
            || sent.action != content.action
            || sent.reply_to != content.reply_to
        {
            return Err(MessagingError::InvalidArgument(String::from(
                "this idempotency key was used for another message; choose a new key for each message",
            )));
        }
        if sent.state == MessageState::Pending {
            // The earlier call stopped before the outbox had it. Producing
            // it twice is harmless: the contact stores an id once.
            if let Some(sealed) = store::outgoing_envelope(&self.pool, sent.id).await? {
                self.enqueue(sent.id, contact.conversation_id, &sealed)
                    .await?;
                sent.state = MessageState::Queued;
            }
        }
        Ok(sent)
    }

    /// Produces a stored message to the own data-out; once acknowledged it is
    /// durable there and becomes QUEUED.
    async fn enqueue(
        &self,
        id: Uuid,
        conversation: Uuid,
        envelope: &[u8],
    ) -> Result<(), MessagingError> {
        let _placement = self.placing.begin(id);
        let ((partition, offset), _) = self
            .outbound
            .enqueue(Lane::Data, conversation, envelope, Stored::Before)
            .await?;
        record_queued(&self.pool, &self.hub, id, partition, offset).await?;
        Ok(())
    }

    /// Produces again what a crash left between the database and the outbox:
    /// messages stored but still PENDING, oldest first.
    pub async fn resend_pending(&self) -> Result<(), MessagingError> {
        let pending = store::pending_outgoing(&self.pool).await?;
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "re-sending messages stored but not yet in the outbox"
            );
        }
        for (id, conversation, envelope) in pending {
            self.enqueue(id, conversation, &envelope).await?;
        }
        Ok(())
    }

    /// Produces again the messages that expired from the own data-out before
    /// they were delivered: still QUEUED, at an offset below what the
    /// partition now holds. Returns how many.
    pub(super) async fn requeue_expired(&self) -> Result<usize, MessagingError> {
        let low = self.outbound.outbox().data_out_low_watermarks().await?;
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
}

/// Records a produced message's place in data-out and QUEUED, and publishes
/// the move.
async fn record_queued(
    pool: &sqlx::PgPool,
    hub: &Hub,
    id: Uuid,
    partition: i32,
    offset: i64,
) -> Result<(), store::StoreError> {
    if let Some(conversation) = store::set_queued(pool, id, partition, offset).await? {
        hops::mark("send.queued", id);
        hub.message_state_changed(id, conversation, MessageState::Queued);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_printable_ascii_up_to_128_bytes() {
        assert_eq!(idempotency_key_of("").unwrap(), None);
        assert_eq!(
            idempotency_key_of("0190-abc").unwrap().as_deref(),
            Some("0190-abc")
        );
        assert!(idempotency_key_of("with space").is_err());
        assert!(idempotency_key_of("é").is_err());
        assert!(idempotency_key_of(&"k".repeat(129)).is_err());
        assert!(idempotency_key_of(&"k".repeat(128)).is_ok());
    }
}
