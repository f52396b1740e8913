//! The delivery workers: one per outbox topic (`data-out`, `rpc-out`). Each
//! consumes its topic and hands every envelope to the [`Transport`] for the
//! recipient, retrying with capped backoff until it succeeds. A record the
//! send path hands over as the outbox acknowledges it (`handoff.rs`) is
//! handed on without waiting for the consumer to fetch it, when it is the
//! next of its partition; its fetched copy is then only acknowledged. The
//! outbox offset is stored only after the transport succeeded (and, for
//! chat, after the message was marked delivered), so a crash re-delivers
//! rather than loses. Records are handled one at a time per partition, which
//! keeps each conversation's order (the record key is the conversation id).
//! The recipient is looked up in the contact book on every attempt, so a
//! corrected profile takes effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use rdkafka::Message;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::handoff::{FirstAttempt, Handed, Progress, Stored};
use crate::backends::hops;
use crate::backends::kafka::consumer::Reader;
use crate::backends::kafka::{Feed, OwnTopics};
use crate::backends::supervise::Backoff;
use crate::book::ContactBook;
use crate::config::HealthConfig;
use crate::crypto::identity::ActorId;
use crate::transport::router::HandlerError;
use crate::transport::{Lane, Transport};

/// Told of each chat copy the worker hands to its recipient: where it lies in
/// the own data-out before the recipient can hold it, and when it reached
/// the recipient's inbox. The offset waits until both returned.
pub trait Delivered: Send + Sync {
    /// Registers that the copy of `message` is being handed on; a receipt
    /// that names the message waits until what this returns is dropped,
    /// which the worker does once [`Delivered::record_copy`] has returned.
    fn handing_on(&self, message: Uuid) -> Box<dyn Send>;
    /// Keeps where the copy of `message` lies in the own data-out.
    fn record_copy(
        &self,
        message: Uuid,
        partition: i32,
        offset: i64,
    ) -> futures::future::BoxFuture<'_, Result<(), HandlerError>>;
    fn delivered(&self, message: Uuid) -> futures::future::BoxFuture<'_, Result<(), HandlerError>>;
    /// [`Delivered::record_copy`] and [`Delivered::delivered`] in one
    /// write, for a copy handed on at the first attempt.
    fn copy_delivered(
        &self,
        message: Uuid,
        partition: i32,
        offset: i64,
    ) -> futures::future::BoxFuture<'_, Result<(), HandlerError>>;
    /// Whether `message` is stored: once the write in progress, if any, is
    /// over; otherwise as the store has it.
    fn is_stored(
        &self,
        message: Uuid,
    ) -> futures::future::BoxFuture<'_, Result<bool, HandlerError>>;
}

/// What a delivery worker needs.
#[derive(Clone)]
pub struct Delivery {
    pub topics: Arc<OwnTopics>,
    pub health: HealthConfig,
    pub book: Arc<ContactBook>,
    pub transport: Arc<dyn Transport>,
    pub delivered: Arc<dyn Delivered>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

fn reader(lane: Lane) -> Reader {
    match lane {
        Lane::Data => Reader::DeliveryData,
        Lane::Control => Reader::DeliveryRpc,
    }
}

/// Delivers the own outbox of `lane` until cancelled, claiming its feed
/// again if librdkafka declares the consumer dead; `handed` brings the
/// records the send path handed over.
pub async fn run(
    delivery: Delivery,
    lane: Lane,
    mut handed: tokio::sync::mpsc::Receiver<Handed>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
    loop {
        let feed = tokio::select! {
            () = cancel.cancelled() => break,
            claimed = delivery.topics.claim(reader(lane)) => match claimed {
                Ok(feed) => feed,
                Err(err) => {
                    tracing::error!(error = %err, ?lane, "cannot open the own topics' consumer; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            },
        };
        let fatal = consume(&delivery, &feed, lane, &mut handed, &cancel).await;
        delivery.topics.release(feed).await;
        let Some(reason) = fatal else {
            break;
        };
        // What it had not committed is delivered again through the new
        // one; the contact stores an id once.
        tracing::warn!(
            reason,
            ?lane,
            "the own topics' consumer failed for good; replacing it"
        );
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Delivers records until cancelled (`None`) or until librdkafka declares
/// the consumer dead (`Some(reason)`).
async fn consume(
    delivery: &Delivery,
    feed: &Feed,
    lane: Lane,
    handed: &mut tokio::sync::mpsc::Receiver<Handed>,
    cancel: &CancellationToken,
) -> Option<String> {
    let mut progress = Progress::starting_at(feed.starts());
    loop {
        let record = tokio::select! {
            () = cancel.cancelled() => return None,
            () = feed.failed() => return Some(feed.fatal().unwrap_or_default()),
            Some(record) = handed.recv() => {
                if !progress.is_next(record.partition, record.offset) {
                    // Fetched and handed on already, or behind one that is
                    // not: the consumer brings it in its turn.
                    continue;
                }
                progress.took_handed(record.partition, record.offset);
                tracing::debug!(?lane, partition = record.partition, offset = record.offset, "handing on a record the send path handed over");
                Next::Handed(record)
            }
            received = feed.recv() => match received {
                Ok(record) => {
                    let (partition, offset) = (record.partition(), record.offset());
                    if progress.fetched(partition, offset) {
                        store_offset(feed, lane, record.topic(), partition, offset);
                        continue;
                    }
                    Next::Fetched(record)
                }
                Err(err) => {
                    if let Some(reason) = feed.fatal() {
                        return Some(reason);
                    }
                    // librdkafka reconnects by itself; the health supervisor
                    // reports the outage.
                    tracing::debug!(error = %err, ?lane, "delivery consumer error");
                    continue;
                }
            },
        };
        let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
        let mut record = record;
        let sender_waits = record.sender_waits();
        let stored = record.stored();
        let (topic, partition, offset, key, value) = record.parts();
        if !deliver(
            delivery,
            lane,
            Record {
                place: (partition, offset),
                key,
                value,
                stored,
            },
            sender_waits,
            &mut backoff,
            cancel,
        )
        .await
        {
            // Cancelled before delivery: the offset stays, the record comes
            // again at the next start.
            return None;
        }
        progress.passed(partition, offset);
        store_offset(feed, lane, topic, partition, offset);
    }
}

/// The record a worker hands on next: handed over by the send path, or
/// fetched by the consumer.
enum Next {
    Handed(Handed),
    Fetched(rdkafka::message::OwnedMessage),
}

impl Next {
    /// The sender's wait for the first attempt, if it handed the record
    /// over.
    fn sender_waits(&mut self) -> Option<oneshot::Sender<()>> {
        match self {
            Next::Handed(record) => record.first_attempt.take(),
            Next::Fetched(_) => None,
        }
    }

    /// Whether its message is stored, as the send path knows it.
    fn stored(&mut self) -> Stored {
        match self {
            Next::Handed(record) => std::mem::replace(&mut record.stored, Stored::Before),
            Next::Fetched(_) => Stored::Unknown,
        }
    }

    /// Its topic, partition, offset, key and value.
    fn parts(&self) -> (&str, i32, i64, &[u8], &[u8]) {
        match self {
            Next::Handed(record) => (
                &record.topic,
                record.partition,
                record.offset,
                &record.key,
                &record.value,
            ),
            Next::Fetched(record) => (
                record.topic(),
                record.partition(),
                record.offset(),
                record.key().unwrap_or_default(),
                record.payload().unwrap_or_default(),
            ),
        }
    }
}

fn store_offset(feed: &Feed, lane: Lane, topic: &str, partition: i32, offset: i64) {
    if let Err(err) = feed.store_offset(topic, partition, offset) {
        tracing::warn!(error = %err, ?lane, partition, offset, "could not store the delivery offset");
    }
}

/// One record of the own outbox: its place (partition, offset), key and
/// value, and whether its message is stored.
struct Record<'a> {
    place: (i32, i64),
    key: &'a [u8],
    value: &'a [u8],
    stored: Stored,
}

/// Delivers one record of the own outbox, retrying until it is done or the
/// worker is cancelled (then false). `sender_waits` ends once the first
/// attempt is over, like the wait of the copy's own write.
async fn deliver(
    delivery: &Delivery,
    lane: Lane,
    Record {
        place,
        key,
        value,
        stored,
    }: Record<'_>,
    sender_waits: Option<oneshot::Sender<()>>,
    backoff: &mut Backoff,
    cancel: &CancellationToken,
) -> bool {
    // These are our own envelopes: a record that does not decode was never
    // written by kircd, and no retry will change it.
    let Ok(envelope) = wire::Envelope::decode(value) else {
        tracing::error!("skipping an undecodable record in the own outbox");
        return true;
    };
    let Some(recipient) = ActorId::from_slice(&envelope.recipient) else {
        tracing::error!("skipping an outbox record without a recipient");
        return true;
    };
    // Only chat has a row whose delivery is recorded; channel records share
    // its lane, not its bookkeeping.
    let chat = (lane == Lane::Data
        && wire::Kind::try_from(envelope.kind).is_ok_and(crate::transport::carries_chat))
    .then(|| Uuid::from_slice(&envelope.message_id).ok())
    .flatten();
    if let Some(id) = chat {
        hops::mark("delivery.taken", id);
    }
    // Until the contact book is loaded every recipient would look like a
    // stranger, and a record for a stranger is skipped for good.
    tokio::select! {
        () = cancel.cancelled() => return false,
        () = delivery.book.wait_loaded() => {}
    }
    if let Some(id) = chat {
        match is_stored(delivery, id, stored, cancel).await {
            None => return false,
            Some(false) => {
                tracing::info!(message_id = %id, "skipping an outbox record whose message was not stored: its send failed or was a retry");
                return true;
            }
            Some(true) => {}
        }
    }
    // The copy's place is written behind the handing on, not before it (it
    // would add a commit to every message's way), once the first attempt is
    // over (beside the produce it slows it), and registered first, so that
    // the recipient's receipt, which cannot come before the handing on,
    // waits for it. When that attempt handed the copy on, the place and
    // DELIVERED are one statement; otherwise DELIVERED follows the success.
    let (copy_waits, first_attempt) = FirstAttempt::new();
    let copy_kept = async {
        let Some(id) = chat else {
            return Some(true);
        };
        let _handing_on = delivery.delivered.handing_on(id);
        let at_once = first_attempt.over().await;
        let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
        loop {
            let written = if at_once {
                delivery
                    .delivered
                    .copy_delivered(id, place.0, place.1)
                    .await
            } else {
                delivery.delivered.record_copy(id, place.0, place.1).await
            };
            let Err(err) = written else {
                return Some(at_once);
            };
            tracing::warn!(error = %err, "cannot record where a sent message lies; retrying");
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return None;
            }
        }
    };
    let handed_on = async {
        let waiting = [Some(copy_waits), sender_waits];
        let handed_on = hand_on(
            delivery,
            lane,
            recipient,
            (key, value),
            waiting,
            backoff,
            cancel,
        )
        .await;
        if let (true, Some(id)) = (handed_on, chat) {
            hops::mark("delivery.produced", id);
        }
        handed_on
    };
    let (delivered_with_copy, handed_on) = tokio::join!(copy_kept, handed_on);
    let (Some(delivered_with_copy), true) = (delivered_with_copy, handed_on) else {
        return false;
    };
    if let (Some(id), false) = (chat, delivered_with_copy) {
        while let Err(err) = delivery.delivered.delivered(id).await {
            tracing::warn!(error = %err, "cannot record a delivery; retrying");
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return false;
            }
        }
    }
    true
}

/// Whether the message `id` of a chat record is stored, waiting for its
/// write if it is in progress and retrying a failed look-up; `None` when
/// cancelled.
async fn is_stored(
    delivery: &Delivery,
    id: Uuid,
    stored: Stored,
    cancel: &CancellationToken,
) -> Option<bool> {
    match stored {
        Stored::Before => return Some(true),
        Stored::Pending(mut outcome) => {
            let written = tokio::select! {
                () = cancel.cancelled() => return None,
                written = outcome.wait_for(Option::is_some) => written.ok().and_then(|written| *written),
            };
            if let Some(stored) = written {
                return Some(stored);
            }
            // The call was cut short before it knew: the store has it.
        }
        Stored::Unknown => {}
    }
    let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
    loop {
        let looked_up = tokio::select! {
            () = cancel.cancelled() => return None,
            looked_up = delivery.delivered.is_stored(id) => looked_up,
        };
        match looked_up {
            Ok(stored) => return Some(stored),
            Err(err) => {
                tracing::warn!(error = %err, "cannot look up whether a sent message is stored; retrying");
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return None;
                }
            }
        }
    }
}

/// Hands a record (key, value) to the transport for `recipient`, retrying
/// until it is taken or the worker is cancelled (then false), and ends
/// `waiting` once the first attempt is over: sent to when it handed the
/// record on, dropped when not. A record for an actor that is
/// no longer a contact is dropped (true).
async fn hand_on(
    delivery: &Delivery,
    lane: Lane,
    recipient: ActorId,
    (key, value): (&[u8], &[u8]),
    mut waiting: [Option<oneshot::Sender<()>>; 2],
    backoff: &mut Backoff,
    cancel: &CancellationToken,
) -> bool {
    let mut failures = 0u32;
    loop {
        let Some(contact) = delivery.book.get(&recipient) else {
            tracing::warn!(%recipient, "dropping an outbox record for an actor that is no longer a contact");
            return true;
        };
        let attempt = delivery.transport.deliver(&contact, lane, key, value).await;
        // The waits of the writes behind the record end here: told that it
        // was handed on, or (dropped) that it was not yet.
        for wait in &mut waiting {
            if let (Some(wait), true) = (wait.take(), attempt.is_ok()) {
                let _ = wait.send(());
            }
        }
        match attempt {
            Ok(()) => return true,
            Err(err) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(contact = %contact.display_name, cluster = %contact.access.bootstrap_servers, error = %err, "cannot deliver; retrying with backoff");
                } else {
                    tracing::debug!(contact = %contact.display_name, failures, error = %err, "still cannot deliver");
                }
                delivery.transport.forget(&contact);
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return false;
                }
            }
        }
    }
}

async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests;
