//! What moves a message's state: the delivery workers telling it reached
//! the contact's inbox, the contact's receipts; and what this actor stores
//! of the chat it receives, and acknowledges with a receipt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use uuid::Uuid;

use super::Messaging;
use crate::backends::hops;
use crate::book::Contact;
use crate::content::Act;
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::store::{self, Incoming, MessageState};
use crate::transport::TransportError;
use crate::transport::kafka::delivery::Delivered;
use crate::transport::marks::{self, Stream};
use crate::transport::router::{
    Applied, ChatOutcome, ChatSink, Control, ControlHandler, HandlerError, Sender,
};

/// Ids per listed receipt: a receipt of thousands of ids would exceed the
/// envelope limit; chunks of 1,000 stay far below it.
const RECEIPT_IDS: usize = 1000;

impl Messaging {
    /// Tells `contact` that its messages in `runs` were received or read.
    /// Each run is a sequence of messages the receipt's kind may cover as a
    /// range (see `wire::ReceiptRange`); a contact that cannot read ranges,
    /// or a kircd set to speak as one that cannot, gets the ids listed.
    pub(super) async fn send_receipt(
        &self,
        contact: &Contact,
        kind: wire::ReceiptKind,
        runs: &[Vec<Uuid>],
    ) -> Result<(), TransportError> {
        if self.receipt_ranges && contact.reads_receipt_ranges {
            for run in runs {
                let (Some(first), Some(last)) = (run.first(), run.last()) else {
                    continue;
                };
                let range = wire::ReceiptRange {
                    kind: kind as i32,
                    first: first.as_bytes().to_vec(),
                    last: last.as_bytes().to_vec(),
                };
                self.outbound
                    .send_control(contact, wire::Kind::ReceiptRange, &range.encode_to_vec())
                    .await?;
            }
            return Ok(());
        }
        let ids: Vec<Uuid> = runs.concat();
        for chunk in ids.chunks(RECEIPT_IDS) {
            let receipt = wire::Receipt {
                kind: kind as i32,
                message_ids: chunk.iter().map(|id| id.as_bytes().to_vec()).collect(),
            };
            self.outbound
                .send_control(contact, wire::Kind::Receipt, &receipt.encode_to_vec())
                .await?;
        }
        Ok(())
    }

    /// Applies a contact's receipt for `ids` (already limited to our
    /// messages in the conversation with it).
    async fn apply_receipt(
        &self,
        contact: &Contact,
        ids: &[Uuid],
        kind: wire::ReceiptKind,
    ) -> Result<(), HandlerError> {
        let kind = match kind {
            wire::ReceiptKind::Read => store::ReceiptKind::Read,
            wire::ReceiptKind::Received => store::ReceiptKind::Received,
        };
        for (id, conversation) in store::apply_receipts(&self.pool, ids, kind).await? {
            self.hub
                .message_state_changed(id, conversation, kind.state());
        }
        self.kafka_only().received(contact.conversation_id, ids);
        Ok(())
    }
}

/// The runs of one sender's chat that a stored batch acknowledges.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SenderRuns {
    pub sender: ActorId,
    pub runs: Vec<Vec<Uuid>>,
}

/// What a stored batch acknowledges: per sender, the copies that came
/// through Kafka (a direct copy is not acknowledged: its Kafka copy always
/// follows) and were not replays, in batch order, cut into runs where a
/// record naming the sender was refused in between, the partition
/// changes, or the id does not grow. A sender's ids grow in the order it
/// sends (UUIDv7), and its range is applied to the stretch of its outbox
/// between the two ends' copies: a run that went back (the sender's
/// delivery handed on again, after a restart, copies from before ones it
/// had already delivered) would name a last end whose copy is before the
/// first's, and the messages between would never be acknowledged.
/// Senders in order of their first message.
pub(super) fn acknowledged_runs(chats: &[Incoming], replayed: &HashSet<Uuid>) -> Vec<SenderRuns> {
    let mut senders: Vec<SenderRuns> = Vec::new();
    let mut open: HashMap<ActorId, (usize, i32)> = HashMap::new();
    for chat in chats
        .iter()
        .filter(|chat| chat.partition != marks::DIRECT && !replayed.contains(&chat.id))
    {
        match open.get_mut(&chat.sender) {
            Some((index, partition)) => {
                let runs = &mut senders[*index].runs;
                match runs.last_mut() {
                    Some(run)
                        if !chat.after_refused
                            && *partition == chat.partition
                            && run.last().is_some_and(|last| *last < chat.id) =>
                    {
                        run.push(chat.id);
                    }
                    _ => runs.push(vec![chat.id]),
                }
                *partition = chat.partition;
            }
            None => {
                open.insert(chat.sender, (senders.len(), chat.partition));
                senders.push(SenderRuns {
                    sender: chat.sender,
                    runs: vec![vec![chat.id]],
                });
            }
        }
    }
    senders
}

/// Stores the chat the inbox received, and marks sent chat delivered: the
/// router's chat sink and the delivery workers' listener.
#[derive(Debug, Clone)]
pub struct ChatStore(pub Arc<Messaging>);

impl ChatSink for ChatStore {
    fn store<'a>(
        &'a self,
        chats: &'a [Incoming],
    ) -> BoxFuture<'a, Result<ChatOutcome, HandlerError>> {
        async move {
            let messaging = &self.0;
            // Acts on messages their sender may not act on are refused before
            // anything is stored; the sender's next chat in the batch then
            // starts a new receipt range, as after any refused record.
            let refused_acts = messaging.refused_acts(chats).await?;
            let admitted: Vec<Incoming>;
            let batch = if refused_acts.is_empty() {
                chats
            } else {
                admitted = admit(chats, &refused_acts);
                &admitted
            };
            let started = std::time::Instant::now();
            let stored = store::insert_incoming(&messaging.pool, batch).await?;
            let inserted = started.elapsed();
            for message in &stored.added {
                hops::mark("stored", message.id);
            }
            let acts: HashMap<Uuid, &Act> = batch
                .iter()
                .filter_map(|chat| chat.act.as_ref().map(|act| (chat.id, act)))
                .collect();
            let messages: Vec<Uuid> = batch
                .iter()
                .filter(|chat| chat.act.is_none())
                .map(|chat| chat.id)
                .collect();
            super::publish_stored(
                &messaging.pool,
                &messaging.hub,
                &messaging.awaited,
                super::StoredBatch {
                    added: stored.added,
                    acts: &acts,
                    messages: &messages,
                },
            )
            .await?;
            let published = started.elapsed();
            let senders: HashSet<ActorId> = chats.iter().map(|chat| chat.sender).collect();
            for sender in senders {
                messaging.outbound.touch_direct(sender);
            }
            // Received receipts for what is now stored (a redelivered
            // message is acknowledged again: the first receipt may have been
            // lost with a crash). Only the Kafka copy of a message is
            // acknowledged: its sender always produces one, and a receipt
            // goes by Kafka either way, so acknowledging the channel's copy
            // too would send every receipt twice and put a produce on the
            // direct path's way.
            let replayed: HashSet<Uuid> = stored.replayed.iter().copied().collect();
            for SenderRuns { sender, runs } in acknowledged_runs(batch, &replayed) {
                if let Some(contact) = messaging.book.get(&sender)
                    && contact.is_accepted()
                {
                    messaging
                        .send_receipt(&contact, wire::ReceiptKind::Received, &runs)
                        .await?;
                }
            }
            tracing::debug!(
                messages = batch.len(),
                insert_ms = inserted.as_secs_f64() * 1e3,
                publish_ms = (published - inserted).as_secs_f64() * 1e3,
                receipts_ms = (started.elapsed() - published).as_secs_f64() * 1e3,
                "chat stored"
            );
            let mut refused: Vec<(Uuid, Rejection)> = stored
                .replayed
                .into_iter()
                .map(|id| (id, Rejection::Replay))
                .collect();
            refused.extend(refused_acts);
            Ok(ChatOutcome {
                redelivered: stored.redelivered.len() as u64,
                refused,
            })
        }
        .boxed()
    }
}

/// `chats` without the `refused` ones; the next chat of a refused one's
/// sender is marked as coming after a refusal.
fn admit(chats: &[Incoming], refused: &[(Uuid, Rejection)]) -> Vec<Incoming> {
    let refused: HashSet<Uuid> = refused.iter().map(|(id, _)| *id).collect();
    let mut after_refusal: HashSet<ActorId> = HashSet::new();
    let mut admitted = Vec::with_capacity(chats.len());
    for chat in chats {
        if refused.contains(&chat.id) {
            after_refusal.insert(chat.sender);
            continue;
        }
        let mut chat = chat.clone();
        chat.after_refused |= after_refusal.remove(&chat.sender);
        admitted.push(chat);
    }
    admitted
}

impl Delivered for ChatStore {
    fn handing_on(&self, message: Uuid) -> Box<dyn Send> {
        Box::new(self.0.placing.begin(message))
    }

    fn record_copy(
        &self,
        message: Uuid,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'_, Result<(), HandlerError>> {
        async move {
            store::record_copy(&self.0.pool, message, partition, offset).await?;
            Ok(())
        }
        .boxed()
    }

    fn delivered(&self, message: Uuid) -> BoxFuture<'_, Result<(), HandlerError>> {
        async move {
            self.0.advance(&[message], MessageState::Delivered).await?;
            Ok(())
        }
        .boxed()
    }

    fn copy_delivered(
        &self,
        message: Uuid,
        partition: i32,
        offset: i64,
    ) -> BoxFuture<'_, Result<(), HandlerError>> {
        async move {
            let messaging = &self.0;
            if let Some(conversation) =
                store::record_copy_delivered(&messaging.pool, message, partition, offset).await?
            {
                messaging
                    .hub
                    .message_state_changed(message, conversation, MessageState::Delivered);
            }
            Ok(())
        }
        .boxed()
    }

    fn is_stored(&self, message: Uuid) -> BoxFuture<'_, Result<bool, HandlerError>> {
        async move {
            let messaging = &self.0;
            if let Some(mut outcome) = messaging.storing.outcome_of(message)
                && let Ok(written) = outcome.wait_for(Option::is_some).await
                && let Some(stored) = *written
            {
                return Ok(stored);
            }
            Ok(store::outgoing_exists(&messaging.pool, message).await?)
        }
        .boxed()
    }
}

/// A contact's receipt for our messages: received or read.
#[derive(Debug)]
pub struct ReceiptHandler(pub Arc<Messaging>);

impl ControlHandler for ReceiptHandler {
    fn stream(&self) -> Stream {
        "receipt"
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let messaging = &self.0;
            let Sender::Contact(contact) = control.sender else {
                return Ok(Err(Rejection::Malformed));
            };
            let Ok(receipt) = wire::Receipt::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let ids: Vec<Uuid> = receipt
                .message_ids
                .iter()
                .filter_map(|id| Uuid::from_slice(id).ok())
                .collect();
            let kind =
                wire::ReceiptKind::try_from(receipt.kind).unwrap_or(wire::ReceiptKind::Received);
            // Only our messages in the conversation with this contact: a
            // contact cannot mark messages to others.
            let ids = store::outgoing_in(&messaging.pool, contact.conversation_id, &ids).await?;
            messaging.apply_receipt(&contact, &ids, kind).await?;
            Ok(Ok(()))
        }
        .boxed()
    }
}

/// A contact's receipt for a range of our messages.
#[derive(Debug)]
pub struct ReceiptRangeHandler(pub Arc<Messaging>);

impl ControlHandler for ReceiptRangeHandler {
    /// The same stream as listed receipts: a sender orders both under one
    /// lock, and a range must not be applied behind a later list.
    fn stream(&self) -> Stream {
        "receipt"
    }

    fn handle<'a>(&'a self, control: Control<'a>) -> BoxFuture<'a, Result<Applied, HandlerError>> {
        async move {
            let messaging = &self.0;
            let Sender::Contact(contact) = control.sender else {
                return Ok(Err(Rejection::Malformed));
            };
            let Ok(range) = wire::ReceiptRange::decode(control.payload.as_slice()) else {
                return Ok(Err(Rejection::Undecryptable));
            };
            let (Ok(first), Ok(last), Ok(kind)) = (
                Uuid::from_slice(&range.first),
                Uuid::from_slice(&range.last),
                wire::ReceiptKind::try_from(range.kind),
            ) else {
                return Ok(Err(Rejection::Malformed));
            };
            // The store limits both forms to our messages in the
            // conversation with this contact, found by places and states
            // that may still be being written behind their calls.
            messaging.placing.settled().await;
            let conversation = contact.conversation_id;
            let ids = match kind {
                wire::ReceiptKind::Received => {
                    store::received_range(&messaging.pool, conversation, first, last).await?
                }
                wire::ReceiptKind::Read => {
                    store::read_range(&messaging.pool, conversation, first, last).await?
                }
            };
            messaging.apply_receipt(&contact, &ids, kind).await?;
            Ok(Ok(()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chat from sender `from` (a small number) with id `id`, on
    /// `partition` (DIRECT for the direct path).
    fn chat(from: u8, id: u128, partition: i32, after_refused: bool) -> Incoming {
        Incoming {
            id: Uuid::from_u128(id),
            conversation_id: Uuid::from_u128(u128::from(from)),
            sender: ActorId::from_slice(&[from; 16]).unwrap(),
            action: false,
            body: String::new(),
            created_at_unix_ms: 0,
            partition,
            offset: 0,
            digest: [0; 32],
            after_refused,
            reply_to: None,
            act: None,
        }
    }

    /// Per sender (its first id byte), its runs of message numbers.
    type Runs = Vec<(u8, Vec<Vec<u128>>)>;

    fn runs(chats: &[Incoming], replayed: &[u128]) -> Runs {
        let replayed = replayed.iter().map(|id| Uuid::from_u128(*id)).collect();
        acknowledged_runs(chats, &replayed)
            .into_iter()
            .map(|SenderRuns { sender, runs }| {
                let runs = runs
                    .into_iter()
                    .map(|run| run.iter().map(Uuid::as_u128).collect())
                    .collect();
                (sender.as_bytes()[0], runs)
            })
            .collect()
    }

    #[test]
    fn a_batch_is_one_run_per_sender_cut_at_refusals_and_partition_changes() {
        let cases: &[(&str, Vec<Incoming>, &[u128], Runs)] = &[
            ("empty", vec![], &[], vec![]),
            (
                "two senders interleaved",
                vec![
                    chat(1, 10, 0, false),
                    chat(2, 20, 0, false),
                    chat(1, 11, 0, false),
                    chat(2, 21, 0, false),
                ],
                &[],
                vec![(1, vec![vec![10, 11]]), (2, vec![vec![20, 21]])],
            ),
            (
                "a refusal between cuts the run",
                vec![
                    chat(1, 10, 0, false),
                    chat(1, 11, 0, true),
                    chat(1, 12, 0, false),
                ],
                &[],
                vec![(1, vec![vec![10], vec![11, 12]])],
            ),
            (
                "a refusal before the first starts it anyway",
                vec![chat(1, 10, 0, true), chat(1, 11, 0, false)],
                &[],
                vec![(1, vec![vec![10, 11]])],
            ),
            (
                "direct copies and replays are not acknowledged",
                vec![
                    chat(1, 10, marks::DIRECT, false),
                    chat(1, 11, 0, false),
                    chat(1, 12, 0, false),
                    chat(1, 13, 0, false),
                ],
                &[12],
                vec![(1, vec![vec![11, 13]])],
            ),
            (
                "an id lower than the one before starts a run (the sender's delivery handed on copies again)",
                vec![
                    chat(1, 100, 0, false),
                    chat(1, 101, 0, false),
                    chat(1, 95, 0, false),
                    chat(1, 96, 0, false),
                    chat(1, 96, 0, false),
                ],
                &[],
                vec![(1, vec![vec![100, 101], vec![95, 96], vec![96]])],
            ),
            (
                "another partition starts a run",
                vec![
                    chat(1, 10, 0, false),
                    chat(1, 11, 1, false),
                    chat(1, 12, 1, false),
                ],
                &[],
                vec![(1, vec![vec![10], vec![11, 12]])],
            ),
        ];
        for (name, chats, replayed, expected) in cases {
            assert_eq!(&runs(chats, replayed), expected, "{name}");
        }
    }
}
