//! Chat: sending (with idempotency keys), the messages' delivery states and
//! the receipts that move them, storing what arrives, and reading history.
//! Every change is persisted first and published as an event second.

mod acts;
mod order;
mod placing;
mod read;
mod receipts;
mod send;
mod storing;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::book::{ContactBook, LookupError, NotLoaded};
use crate::hub::Hub;
use crate::store::{MessageState, StoreError};
use crate::transport::TransportError;
use crate::transport::outbound::Outbound;
pub use read::HistoryAnchor;
pub use receipts::{ChatStore, ReceiptHandler, ReceiptRangeHandler};
pub(crate) use send::idempotency_key_of;

pub use crate::content::MAX_TEXT_BYTES;
pub use acts::{Awaited, MAX_WAITING_ACTS, StoredBatch, check_own_act, publish_stored, refusal};

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error(transparent)]
    NotLoaded(#[from] NotLoaded),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error("{0} is blocked; unblock them first")]
    Blocked(String),
    #[error("{0} has asked to be added; accept the request first")]
    NotAccepted(String),
    #[error("no such conversation: {0}")]
    UnknownConversation(String),
    #[error("no such message in that conversation: {0}")]
    UnknownMessage(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// The chat operations the API calls, and what the inbox and the delivery
/// workers tell about messages.
#[derive(Debug)]
pub struct Messaging {
    pool: PgPool,
    hub: Arc<Hub>,
    book: Arc<ContactBook>,
    outbound: Arc<Outbound>,
    /// Whether reading a conversation tells the contact (`messaging.read_receipts`).
    read_receipts: bool,
    /// Whether receipts go as ranges to contacts that read them
    /// (`messaging.receipt_ranges`).
    receipt_ranges: bool,
    /// Which sent messages hold the direct path back (see `order.rs`).
    kafka_only: Mutex<order::KafkaOnly>,
    /// The QUEUED writes calls left behind them (see `send.rs`).
    queued_writes: TaskTracker,
    /// The sent messages whose place those writes have not written yet.
    placing: Arc<placing::Placing>,
    /// The sent messages being stored while their record is produced.
    storing: Arc<storing::Storing>,
    /// The messages stored acts and replies wait for (shared with the
    /// channels).
    awaited: Arc<Awaited>,
}

impl Messaging {
    pub fn new(
        pool: PgPool,
        hub: Arc<Hub>,
        book: Arc<ContactBook>,
        outbound: Arc<Outbound>,
        read_receipts: bool,
        receipt_ranges: bool,
    ) -> Arc<Self> {
        Arc::new(Messaging {
            pool,
            hub,
            book,
            outbound,
            read_receipts,
            receipt_ranges,
            kafka_only: Mutex::new(order::KafkaOnly::default()),
            queued_writes: TaskTracker::new(),
            placing: Arc::default(),
            storing: Arc::default(),
            awaited: Arc::default(),
        })
    }

    /// The messages stored acts and replies wait for, for the channels.
    pub fn awaited(&self) -> Arc<Awaited> {
        Arc::clone(&self.awaited)
    }

    /// Reads which messages stored acts and replies wait for (at start).
    pub async fn load_awaited(&self) -> Result<(), StoreError> {
        self.awaited.load(&self.pool).await
    }

    fn kafka_only(&self) -> std::sync::MutexGuard<'_, order::KafkaOnly> {
        self.kafka_only
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves sent messages forward and publishes each move.
    async fn advance(&self, ids: &[Uuid], state: MessageState) -> Result<(), StoreError> {
        for (id, conversation) in
            crate::store::advance_messages(&self.pool, ids, state, true).await?
        {
            self.hub.message_state_changed(id, conversation, state);
        }
        Ok(())
    }
}

fn parse_uuid(text: &str, field: &str) -> Result<Uuid, MessagingError> {
    Uuid::parse_str(text.trim())
        .map_err(|_| MessagingError::InvalidArgument(format!("{field} is not a UUID: {text:?}")))
}

/// Looks for messages that expired from data-out before delivery, at start
/// and then every `interval`: a contact offline longer than the topic's
/// retention must still get every message.
pub async fn check_outbox(
    messaging: Arc<Messaging>,
    interval: Duration,
    cancel: CancellationToken,
) {
    tokio::select! {
        () = cancel.cancelled() => return,
        () = messaging.book.wait_loaded() => {}
    }
    crate::backends::supervise::every(interval, &cancel, || async {
        if let Err(err) = messaging.requeue_expired().await {
            tracing::debug!(error = %err, "cannot check data-out for expired messages; trying at the next interval");
        }
    })
    .await;
}
