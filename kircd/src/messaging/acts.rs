//! Replies, reactions, edits and deletions in one-to-one chats: who may act
//! on what, the acts of an arriving batch that are refused before anything
//! is stored, and publishing what a stored batch changed. An act is stored
//! and sent like chat (a row of its own, `store::apply_acts` derives what it
//! does); channels use the same rules and publishing.

use std::collections::HashMap;

use uuid::Uuid;

use super::{Messaging, MessagingError};
use crate::book::Contact;
use crate::content::{Act, ActKind, Content, check_emoji, check_text};
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::hub::Hub;
use crate::store::{self, ContactState, Incoming, Message, StoreError, TargetFacts};

/// Acts per conversation that may wait for messages that have not arrived:
/// an act can come before its message (the two paths do not keep order
/// between them), but a flood of acts on messages that never come is
/// refused past this.
pub const MAX_WAITING_ACTS: u64 = 1000;

/// A contact messages may go to.
pub(super) fn check_sendable(contact: &Contact) -> Result<(), MessagingError> {
    match contact.state {
        ContactState::Blocked => Err(MessagingError::Blocked(contact.display_name.clone())),
        ContactState::Request => Err(MessagingError::NotAccepted(contact.display_name.clone())),
        ContactState::Accepted => Ok(()),
    }
}

/// Why an act by `sender` in `conversation` is refused, given what is known
/// of its target (`None`: not arrived yet, so it waits).
pub fn refusal(
    act: &Act,
    sender: ActorId,
    conversation: Uuid,
    target: Option<&TargetFacts>,
) -> Option<Rejection> {
    let target = target?;
    let elsewhere = target.conversation_id != conversation || !target.actable;
    let not_author = act.kind.needs_author() && target.sender != Some(sender);
    (elsewhere || not_author).then_some(Rejection::Forbidden)
}

/// Whether this actor may make `kind` on `target` (from the API), with the
/// reason if not.
pub fn check_own_act(target: &Message, kind: &ActKind) -> Result<(), MessagingError> {
    if target.line.is_some() || target.transfer_id.is_some() {
        return Err(MessagingError::InvalidArgument(String::from(
            "only messages can be reacted to, edited or deleted, not lines",
        )));
    }
    if target.deleted {
        return Err(MessagingError::InvalidArgument(String::from(
            "that message was deleted",
        )));
    }
    if kind.needs_author() && !target.outgoing {
        return Err(MessagingError::InvalidArgument(String::from(
            "you can edit or delete only your own messages",
        )));
    }
    match kind {
        ActKind::React(emoji) | ActKind::Unreact(emoji) => check_emoji(emoji),
        ActKind::Edit(text) => check_text(text),
        ActKind::Delete => Ok(()),
    }
    .map_err(|err| MessagingError::InvalidArgument(err.to_string()))
}

/// More awaited messages than this, and every stored message is looked up
/// instead (acts and replies on messages that never come, by the
/// hundred thousand, cost a query per batch rather than memory).
const MAX_AWAITED: usize = 100_000;

/// The messages that stored acts and replies wait for (not arrived yet),
/// so that a stored batch looks in the database only for those of its
/// messages that something waits for: nearly always none.
#[derive(Debug, Default)]
pub struct Awaited {
    ids: std::sync::Mutex<std::collections::HashSet<Uuid>>,
    /// Past [`MAX_AWAITED`]: every message is taken as awaited.
    overflowed: std::sync::atomic::AtomicBool,
}

impl Awaited {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Fills it from the database (at start).
    pub async fn load(&self, pool: &sqlx::PgPool) -> Result<(), StoreError> {
        let ids = store::awaited_messages(pool).await?;
        self.lock().clear();
        self.add(ids);
        Ok(())
    }

    fn add(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut awaited = self.lock();
        awaited.extend(ids);
        if awaited.len() > MAX_AWAITED
            && !self
                .overflowed
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                awaited = awaited.len(),
                "acts and replies wait for very many messages that have not come; every stored message is now checked for them"
            );
        }
    }

    /// Those of `arrived` something waits for, no longer awaited.
    fn take(&self, arrived: &[Uuid]) -> Vec<Uuid> {
        if self.overflowed.load(std::sync::atomic::Ordering::Relaxed) {
            return arrived.to_vec();
        }
        let mut awaited = self.lock();
        arrived
            .iter()
            .filter(|id| awaited.remove(id))
            .copied()
            .collect()
    }
}

/// What a stored batch was: the messages stored now (`added`), every act
/// of the batch by its id (stored now or before), and the ids of its
/// messages that are not acts.
pub struct StoredBatch<'a> {
    pub added: Vec<Message>,
    pub acts: &'a HashMap<Uuid, &'a Act>,
    pub messages: &'a [Uuid],
}

/// Publishes what storing a batch did: the messages stored now as added,
/// with their reply quotes; and as updated, the messages that the batch's
/// acts, or its messages' arrival, changed (an act or a reply may come
/// before its message). Every act of the batch is applied, stored now or
/// before, so that a batch stored again after a failure here finishes
/// what the first attempt began.
pub async fn publish_stored(
    pool: &sqlx::PgPool,
    hub: &Hub,
    awaited: &Awaited,
    batch: StoredBatch<'_>,
) -> Result<(), StoreError> {
    let mut shown: Vec<Message> = batch
        .added
        .into_iter()
        .filter(|message| !batch.acts.contains_key(&message.id))
        .collect();
    if shown.iter().any(|message| message.reply_to.is_some()) {
        store::decorate(pool, &mut shown).await?;
        // A reply to what has not arrived waits for it.
        awaited.add(
            shown
                .iter()
                .filter(|message| message.reply_to.is_some() && message.quote.is_none())
                .filter_map(|message| message.reply_to),
        );
    }
    for message in &shown {
        hub.message_added(message);
    }
    let mut targets: Vec<Uuid> = batch.acts.values().map(|act| act.target).collect();
    if !targets.is_empty() {
        let stored = store::stored_of(pool, &targets).await?;
        awaited.add(
            targets
                .iter()
                .copied()
                .filter(|target| !stored.contains(target)),
        );
    }
    let reacted: Vec<Uuid> = batch
        .acts
        .values()
        .filter(|act| matches!(act.kind, ActKind::React(_) | ActKind::Unreact(_)))
        .map(|act| act.target)
        .collect();
    let arrived = awaited.take(batch.messages);
    targets.extend(arrived.iter().copied());
    if targets.is_empty() {
        return Ok(());
    }
    match store::apply_acts(pool, &targets, &reacted).await {
        Ok(updated) => {
            for message in updated {
                hub.message_updated(&message);
            }
            Ok(())
        }
        Err(err) => {
            // The batch is stored again; what waited for these still does.
            awaited.add(arrived);
            Err(err)
        }
    }
}

impl Messaging {
    /// The acts of `chats` to refuse before anything is stored (see
    /// [`refusal`]), and those past [`MAX_WAITING_ACTS`].
    pub(super) async fn refused_acts(
        &self,
        chats: &[Incoming],
    ) -> Result<Vec<(Uuid, Rejection)>, StoreError> {
        let targets: Vec<Uuid> = chats
            .iter()
            .filter_map(|chat| chat.act.as_ref().map(|act| act.target))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut known = store::act_targets(&self.pool, &targets).await?;
        for chat in chats.iter().filter(|chat| chat.act.is_none()) {
            known.entry(chat.id).or_insert(TargetFacts {
                conversation_id: chat.conversation_id,
                sender: Some(chat.sender),
                actable: true,
            });
        }
        let mut refused = Vec::new();
        let mut waiting: HashMap<Uuid, u64> = HashMap::new();
        for chat in chats {
            let Some(act) = &chat.act else { continue };
            let target = known.get(&act.target);
            if let Some(rejection) = refusal(act, chat.sender, chat.conversation_id, target) {
                refused.push((chat.id, rejection));
                continue;
            }
            if target.is_none() {
                let count = match waiting.get_mut(&chat.conversation_id) {
                    Some(count) => count,
                    None => {
                        let stored = store::waiting_acts(&self.pool, chat.conversation_id).await?;
                        waiting.entry(chat.conversation_id).or_insert(stored)
                    }
                };
                if *count >= MAX_WAITING_ACTS {
                    refused.push((chat.id, Rejection::Forbidden));
                } else {
                    *count += 1;
                }
            }
        }
        Ok(refused)
    }

    /// Applies an act this actor just stored; returns its target as it now
    /// is.
    pub(super) async fn apply_own_act(&self, act: &Act) -> Result<Message, MessagingError> {
        let reacted: &[Uuid] = match act.kind {
            ActKind::React(_) | ActKind::Unreact(_) => std::slice::from_ref(&act.target),
            _ => &[],
        };
        let mut target = None;
        for message in store::apply_acts(&self.pool, &[act.target], reacted).await? {
            self.hub.message_updated(&message);
            if message.id == act.target {
                target = Some(message);
            }
        }
        match target {
            Some(target) => Ok(target),
            // Nothing changed (an edit to the same text): the target as it is.
            None => store::message_by_id(&self.pool, act.target)
                .await?
                .ok_or_else(|| MessagingError::UnknownMessage(act.target.to_string())),
        }
    }

    /// That `answered` is a message of `conversation` one may reply to.
    pub(super) async fn check_reply(
        &self,
        conversation: Uuid,
        answered: Uuid,
    ) -> Result<(), MessagingError> {
        let facts = store::act_targets(&self.pool, &[answered]).await?;
        match facts.get(&answered) {
            Some(target) if target.conversation_id == conversation && target.actable => Ok(()),
            _ => Err(MessagingError::UnknownMessage(answered.to_string())),
        }
    }

    /// The stored message `id`, for an act on it.
    pub async fn act_target(&self, id: &str) -> Result<Message, MessagingError> {
        let id = super::parse_uuid(id, "message_id")?;
        store::message_by_id(&self.pool, id)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(id.to_string()))
    }

    /// Reacts to, edits or deletes `target`, a message of a one-to-one
    /// conversation; returns it as it now is.
    pub async fn act_on(&self, target: &Message, kind: ActKind) -> Result<Message, MessagingError> {
        let called = crate::backends::hops::now();
        self.book.check_loaded()?;
        check_own_act(target, &kind)?;
        let contact = self
            .book
            .by_conversation(target.conversation_id)
            .ok_or_else(|| {
                MessagingError::UnknownConversation(target.conversation_id.to_string())
            })?;
        check_sendable(&contact)?;
        if !contact.reads_message_acts {
            return Err(MessagingError::InvalidArgument(format!(
                "{}'s kircd is older and cannot show reactions, edits or deletions; they can once it is updated",
                contact.display_name
            )));
        }
        let content = Content {
            text: String::new(),
            action: false,
            reply_to: None,
            act: Some(Act {
                target: target.id,
                kind,
            }),
        };
        self.send_content(&contact, content, None, called).await
    }

    /// The texts message `id` had, oldest first.
    pub async fn versions(&self, id: &str) -> Result<Vec<store::Version>, MessagingError> {
        let id = super::parse_uuid(id, "message_id")?;
        store::versions(&self.pool, id)
            .await?
            .ok_or_else(|| MessagingError::UnknownMessage(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(byte: u8) -> ActorId {
        ActorId::from_slice(&[byte; 16]).unwrap()
    }

    #[test]
    fn only_a_messages_sender_edits_or_deletes_it_and_only_in_its_conversation() {
        let here = Uuid::from_u128(1);
        let elsewhere = Uuid::from_u128(2);
        let target = |conversation, sender: u8, actable| TargetFacts {
            conversation_id: conversation,
            sender: Some(actor(sender)),
            actable,
        };
        let act = |kind| Act {
            target: Uuid::from_u128(9),
            kind,
        };
        let react = act(ActKind::React("👍".into()));
        let edit = act(ActKind::Edit("new".into()));
        let delete = act(ActKind::Delete);
        let forbidden = Some(Rejection::Forbidden);
        let cases: Vec<(&str, &Act, Option<TargetFacts>, Option<Rejection>)> = vec![
            (
                "a reaction to anyone's message",
                &react,
                Some(target(here, 2, true)),
                None,
            ),
            (
                "an edit of one's own",
                &edit,
                Some(target(here, 1, true)),
                None,
            ),
            (
                "a deletion of one's own",
                &delete,
                Some(target(here, 1, true)),
                None,
            ),
            (
                "an edit of another's",
                &edit,
                Some(target(here, 2, true)),
                forbidden,
            ),
            (
                "a deletion of another's",
                &delete,
                Some(target(here, 2, true)),
                forbidden,
            ),
            (
                "a reaction elsewhere",
                &react,
                Some(target(elsewhere, 2, true)),
                forbidden,
            ),
            (
                "an edit of one's own elsewhere",
                &edit,
                Some(target(elsewhere, 1, true)),
                forbidden,
            ),
            (
                "a reaction to a line or an act",
                &react,
                Some(target(here, 2, false)),
                forbidden,
            ),
            ("an edit of what has not arrived waits", &edit, None, None),
        ];
        for (name, act, target, expected) in cases {
            assert_eq!(
                refusal(act, actor(1), here, target.as_ref()),
                expected,
                "{name}"
            );
        }
    }
}
