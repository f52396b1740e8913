//! What moves a message's state: the delivery workers telling it reached
//! the contact's inbox, the contact's receipts; and what this actor stores
//! of the chat it receives, and acknowledges with a receipt.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use uuid::Uuid;

use super::Messaging;
use crate::backends::hops;
use crate::book::Contact;
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::store::{self, Incoming, MessageState};
use crate::transport::TransportError;
use crate::transport::kafka::delivery::Delivered;
use crate::transport::marks::{self, Stream};
use crate::transport::router::{
    Applied, ChatOutcome, ChatSink, Control, ControlHandler, HandlerError, Sender,
};

/// Ids per receipt: a receipt of thousands of ids would exceed the envelope
/// limit; chunks of 1,000 stay far below it.
const RECEIPT_IDS: usize = 1000;

impl Messaging {
    /// Tells `contact` that its messages `ids` were received or read.
    pub(super) async fn send_receipt(
        &self,
        contact: &Contact,
        kind: wire::ReceiptKind,
        ids: &[Uuid],
    ) -> Result<(), TransportError> {
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
            let stored = store::insert_incoming(&messaging.pool, chats).await?;
            for message in &stored.added {
                hops::mark("stored", message.id);
                messaging.hub.message_added(message);
            }
            let senders: std::collections::HashSet<ActorId> =
                chats.iter().map(|chat| chat.sender).collect();
            for sender in senders {
                messaging.outbound.touch_direct(sender);
            }
            // Received receipts, one per sender, for what is now stored (a
            // redelivered message is acknowledged again: the first receipt
            // may have been lost with a crash). Only the Kafka copy of a
            // message is acknowledged: its sender always produces one, and a
            // receipt goes by Kafka either way, so acknowledging the
            // channel's copy too would send every receipt twice and put a
            // produce on the direct path's way.
            let replayed: std::collections::HashSet<Uuid> =
                stored.replayed.iter().copied().collect();
            let mut by_sender: HashMap<ActorId, Vec<Uuid>> = HashMap::new();
            for chat in chats
                .iter()
                .filter(|chat| chat.partition != marks::DIRECT && !replayed.contains(&chat.id))
            {
                by_sender.entry(chat.sender).or_default().push(chat.id);
            }
            for (sender, ids) in by_sender {
                if let Some(contact) = messaging.book.get(&sender)
                    && contact.is_accepted()
                {
                    messaging
                        .send_receipt(&contact, wire::ReceiptKind::Received, &ids)
                        .await?;
                }
            }
            Ok(ChatOutcome {
                redelivered: stored.redelivered.len() as u64,
                replayed: stored.replayed,
            })
        }
        .boxed()
    }
}

impl Delivered for ChatStore {
    fn delivered(&self, message: Uuid) -> BoxFuture<'_, Result<(), HandlerError>> {
        async move {
            self.0.advance(&[message], MessageState::Delivered).await?;
            Ok(())
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
            let (state, kind) = match wire::ReceiptKind::try_from(receipt.kind) {
                Ok(wire::ReceiptKind::Read) => (MessageState::Read, "read"),
                _ => (MessageState::Received, "received"),
            };
            // Only our messages in the conversation with this contact: a
            // contact cannot mark messages to others.
            let ids = store::outgoing_in(&messaging.pool, contact.conversation_id, &ids).await?;
            store::insert_receipts(&messaging.pool, &ids, kind).await?;
            messaging.advance(&ids, state).await?;
            messaging
                .kafka_only()
                .received(contact.conversation_id, &ids);
            Ok(Ok(()))
        }
        .boxed()
    }
}
