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
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::handoff::{Handed, Progress};
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
        let (topic, partition, offset, key, value) = record.parts();
        if !deliver(
            delivery,
            lane,
            (partition, offset),
            key,
            value,
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

/// Delivers one record from `place` (partition, offset) of the own outbox,
/// retrying until it is done or the worker is cancelled (then false).
async fn deliver(
    delivery: &Delivery,
    lane: Lane,
    place: (i32, i64),
    key: &[u8],
    value: &[u8],
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
    // The copy's place is written beside the handing on, not before it (it
    // would add a commit to every message's way), and registered first, so
    // that the recipient's receipt, which cannot come before the handing
    // on, waits for it.
    let copy_kept = async {
        let Some(id) = chat else {
            return true;
        };
        let _handing_on = delivery.delivered.handing_on(id);
        let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
        while let Err(err) = delivery.delivered.record_copy(id, place.0, place.1).await {
            tracing::warn!(error = %err, "cannot record where a sent message lies; retrying");
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return false;
            }
        }
        true
    };
    let handed_on = async {
        let handed_on = hand_on(delivery, lane, recipient, key, value, backoff, cancel).await;
        if let (true, Some(id)) = (handed_on, chat) {
            hops::mark("delivery.produced", id);
        }
        handed_on
    };
    let (copy_kept, handed_on) = tokio::join!(copy_kept, handed_on);
    if !(copy_kept && handed_on) {
        return false;
    }
    if let Some(id) = chat {
        while let Err(err) = delivery.delivered.delivered(id).await {
            tracing::warn!(error = %err, "cannot record a delivery; retrying");
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return false;
            }
        }
    }
    true
}

/// Hands a record to the transport for `recipient`, retrying until it is
/// taken or the worker is cancelled (then false). A record for an actor
/// that is no longer a contact is dropped (true).
async fn hand_on(
    delivery: &Delivery,
    lane: Lane,
    recipient: ActorId,
    key: &[u8],
    value: &[u8],
    backoff: &mut Backoff,
    cancel: &CancellationToken,
) -> bool {
    let mut failures = 0u32;
    loop {
        let Some(contact) = delivery.book.get(&recipient) else {
            tracing::warn!(%recipient, "dropping an outbox record for an actor that is no longer a contact");
            return true;
        };
        match delivery.transport.deliver(&contact, lane, key, value).await {
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
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;

    use super::*;
    use crate::book::{Contact, ContactBook};
    use crate::config::{KafkaConfig, KafkaSecurity, TopicNames};
    use crate::store::ContactState;
    use crate::testing::{book, contact, identity};
    use crate::transport::TransportError;

    /// A transport that fails `failures` times, then takes everything.
    #[derive(Default)]
    struct Flaky {
        failures: AtomicUsize,
        delivered: Mutex<Vec<(ActorId, Lane, Vec<u8>)>>,
        forgotten: AtomicUsize,
    }

    impl Transport for Flaky {
        fn deliver<'a>(
            &'a self,
            contact: &'a Contact,
            lane: Lane,
            _key: &'a [u8],
            envelope: &'a [u8],
        ) -> futures::future::BoxFuture<'a, Result<(), TransportError>> {
            async move {
                if self.failures.load(Ordering::SeqCst) > 0 {
                    self.failures.fetch_sub(1, Ordering::SeqCst);
                    return Err(TransportError::Peer(String::from("unreachable")));
                }
                self.delivered
                    .lock()
                    .unwrap()
                    .push((contact.actor_id, lane, envelope.to_vec()));
                Ok(())
            }
            .boxed()
        }

        fn forget(&self, _contact: &Contact) {
            self.forgotten.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The messages marked delivered, and the copies kept.
    #[derive(Default)]
    struct Marked(Mutex<Vec<Uuid>>, Mutex<Vec<(Uuid, i32, i64)>>);

    impl Delivered for Marked {
        fn handing_on(&self, _message: Uuid) -> Box<dyn Send> {
            Box::new(())
        }

        fn record_copy(
            &self,
            message: Uuid,
            partition: i32,
            offset: i64,
        ) -> futures::future::BoxFuture<'_, Result<(), HandlerError>> {
            self.1.lock().unwrap().push((message, partition, offset));
            async { Ok(()) }.boxed()
        }

        fn delivered(
            &self,
            message: Uuid,
        ) -> futures::future::BoxFuture<'_, Result<(), HandlerError>> {
            self.0.lock().unwrap().push(message);
            async { Ok(()) }.boxed()
        }
    }

    struct World {
        delivery: Delivery,
        flaky: Arc<Flaky>,
        marked: Arc<Marked>,
        /// An envelope of ours to alice, and its id.
        to_alice: (Vec<u8>, Uuid),
        /// One to an actor who is not a contact.
        to_stranger: Vec<u8>,
    }

    fn world(failures: usize) -> World {
        let (me, alice, stranger) = (identity(1), identity(2), identity(3));
        let book = Arc::new(book(&me, &[(&alice, "alice", ContactState::Accepted)]));
        let to = contact(&book, &alice);
        let id = crate::crypto::envelope::new_message_id();
        let sealed =
            crate::crypto::envelope::seal(&me, alice.id(), &to.pair, wire::Kind::Chat, id, b"hi");
        let to_stranger = crate::crypto::envelope::seal(
            &me,
            stranger.id(),
            &to.pair,
            wire::Kind::Chat,
            crate::crypto::envelope::new_message_id(),
            b"hi",
        );
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(failures),
            ..Flaky::default()
        });
        let marked = Arc::new(Marked::default());
        let kafka = KafkaConfig {
            bootstrap_servers: String::from("127.0.0.1:1"),
            security: KafkaSecurity::Plaintext,
            topics: TopicNames {
                data_in: String::from("data-in"),
                data_out: String::from("data-out"),
                rpc_in: String::from("rpc-in"),
                rpc_out: String::from("rpc-out"),
            },
            create_topics: false,
            partitions: 1,
            replication_factor: 1,
        };
        let delivery = Delivery {
            topics: Arc::new(OwnTopics::new(kafka, me.id())),
            health: HealthConfig {
                probe_interval: Duration::from_secs(1),
                probe_timeout: Duration::from_secs(1),
                retry_initial: Duration::from_millis(1),
                retry_max: Duration::from_millis(4),
            },
            book,
            transport: Arc::clone(&flaky) as Arc<dyn Transport>,
            delivered: Arc::clone(&marked) as Arc<dyn Delivered>,
        };
        World {
            delivery,
            flaky,
            marked,
            to_alice: (sealed, id),
            to_stranger,
        }
    }

    async fn run(world: &World, lane: Lane, envelope: &[u8], cancel: &CancellationToken) -> bool {
        let mut backoff = Backoff::new(
            world.delivery.health.retry_initial,
            world.delivery.health.retry_max,
        );
        deliver(
            &world.delivery,
            lane,
            (0, 7),
            b"key",
            envelope,
            &mut backoff,
            cancel,
        )
        .await
    }

    #[tokio::test]
    async fn a_chat_is_retried_until_the_transport_takes_it_then_marked_delivered() {
        let world = world(3);
        let (envelope, id) = world.to_alice.clone();
        assert!(run(&world, Lane::Data, &envelope, &CancellationToken::new()).await);
        let delivered = world.flaky.delivered.lock().unwrap().clone();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].1, Lane::Data);
        assert_eq!(delivered[0].2, envelope);
        assert_eq!(
            world.flaky.forgotten.load(Ordering::SeqCst),
            3,
            "forgotten after each failure"
        );
        assert_eq!(*world.marked.0.lock().unwrap(), vec![id]);
        assert_eq!(*world.marked.1.lock().unwrap(), vec![(id, 0, 7)]);
    }

    #[tokio::test]
    async fn control_records_are_delivered_but_mark_no_message() {
        let world = world(0);
        let (envelope, _) = world.to_alice.clone();
        assert!(run(&world, Lane::Control, &envelope, &CancellationToken::new()).await);
        assert_eq!(world.flaky.delivered.lock().unwrap().len(), 1);
        assert!(world.marked.0.lock().unwrap().is_empty());
        assert!(world.marked.1.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn channel_records_take_the_data_lane_but_mark_no_message() {
        let world = world(0);
        let to = contact(&world.delivery.book, &identity(2));
        let relay = crate::crypto::envelope::seal(
            &identity(1),
            identity(2).id(),
            &to.pair,
            wire::Kind::ChannelRelay,
            crate::crypto::envelope::new_message_id(),
            b"relay",
        );
        assert_eq!(Lane::of(wire::Kind::ChannelRelay), Lane::Data);
        assert!(run(&world, Lane::Data, &relay, &CancellationToken::new()).await);
        assert_eq!(world.flaky.delivered.lock().unwrap().len(), 1);
        assert!(world.marked.0.lock().unwrap().is_empty());
        assert!(world.marked.1.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn records_for_no_contact_or_of_no_shape_are_skipped_not_retried() {
        let world = world(0);
        let cancel = CancellationToken::new();
        assert!(run(&world, Lane::Data, &world.to_stranger, &cancel).await);
        assert!(run(&world, Lane::Data, b"not an envelope", &cancel).await);
        assert!(world.flaky.delivered.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_record_read_before_the_book_is_loaded_waits_for_it() {
        let (me, alice) = (identity(1), identity(2));
        let mut world = world(0);
        // The daemon has just started: the book is not loaded yet.
        let empty = Arc::new(ContactBook::new(Arc::clone(&me)));
        world.delivery.book = Arc::clone(&empty);
        let (envelope, id) = world.to_alice.clone();
        let cancel = CancellationToken::new();
        let mut delivering = Box::pin(run(&world, Lane::Data, &envelope, &cancel));
        assert!(
            (&mut delivering).now_or_never().is_none(),
            "the record waits instead of being dropped as a stranger's"
        );
        empty.admit_verified(
            &crate::testing::profile(&alice, "alice", 1),
            ContactState::Accepted,
            0,
        );
        empty.set_loaded();
        assert!(delivering.await);
        assert_eq!(world.flaky.delivered.lock().unwrap().len(), 1);
        assert_eq!(*world.marked.0.lock().unwrap(), vec![id]);
    }

    #[tokio::test]
    async fn a_worker_stopped_while_retrying_leaves_the_record_for_next_time() {
        let world = world(usize::MAX);
        let (envelope, _) = world.to_alice.clone();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert!(!run(&world, Lane::Data, &envelope, &cancel).await);
        assert!(world.marked.0.lock().unwrap().is_empty());
    }
}
