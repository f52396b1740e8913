//! The delivery worker's unit tests: a flaky transport, a contact book
//! and a recorder of what was marked delivered.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;

use super::*;
use crate::book::{Contact, ContactBook};
use crate::config::{KafkaConfig, KafkaSecurity, TopicNames};
use crate::store::ContactState;
use crate::testing::{book, contact, identity};
use crate::transport::TransportError;

/// A transport that fails `failures` times, then takes everything, or
/// never answers while it `hangs`.
#[derive(Default)]
struct Flaky {
    failures: AtomicUsize,
    hangs: std::sync::atomic::AtomicBool,
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
            if self.hangs.load(Ordering::SeqCst) {
                futures::future::pending::<()>().await;
            }
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

/// The messages marked delivered, the copies kept, the writes made, and
/// the messages the store lacks.
#[derive(Default)]
struct Marked(
    Mutex<Vec<Uuid>>,
    Mutex<Vec<(Uuid, i32, i64)>>,
    Mutex<Vec<&'static str>>,
    Mutex<HashSet<Uuid>>,
);

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
        self.2.lock().unwrap().push("copy");
        async { Ok(()) }.boxed()
    }

    fn delivered(&self, message: Uuid) -> futures::future::BoxFuture<'_, Result<(), HandlerError>> {
        self.0.lock().unwrap().push(message);
        self.2.lock().unwrap().push("delivered");
        async { Ok(()) }.boxed()
    }

    fn copy_delivered(
        &self,
        message: Uuid,
        partition: i32,
        offset: i64,
    ) -> futures::future::BoxFuture<'_, Result<(), HandlerError>> {
        self.0.lock().unwrap().push(message);
        self.1.lock().unwrap().push((message, partition, offset));
        self.2.lock().unwrap().push("copy and delivered");
        async { Ok(()) }.boxed()
    }

    fn is_stored(
        &self,
        message: Uuid,
    ) -> futures::future::BoxFuture<'_, Result<bool, HandlerError>> {
        self.2.lock().unwrap().push("looked up");
        let stored = !self.3.lock().unwrap().contains(&message);
        async move { Ok(stored) }.boxed()
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
    deliver_at_place(&world.delivery, lane, envelope, None, cancel).await
}

/// Delivers `envelope` from place (0, 7) with the world's backoff, its
/// message stored before.
async fn deliver_at_place(
    delivery: &Delivery,
    lane: Lane,
    envelope: &[u8],
    sender_waits: Option<oneshot::Sender<()>>,
    cancel: &CancellationToken,
) -> bool {
    deliver_stored(
        delivery,
        lane,
        envelope,
        Stored::Before,
        sender_waits,
        cancel,
    )
    .await
}

/// Delivers `envelope` from place (0, 7) with the world's backoff.
async fn deliver_stored(
    delivery: &Delivery,
    lane: Lane,
    envelope: &[u8],
    stored: Stored,
    sender_waits: Option<oneshot::Sender<()>>,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(delivery.health.retry_initial, delivery.health.retry_max);
    let record = Record {
        place: (0, 7),
        key: b"key",
        value: envelope,
        stored,
    };
    deliver(delivery, lane, record, sender_waits, &mut backoff, cancel).await
}

/// The chat to alice delivered by a task of its own, as a worker does.
fn spawn_worker(
    world: &World,
    sender_waits: Option<oneshot::Sender<()>>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<bool> {
    let delivery = world.delivery.clone();
    let (envelope, _) = world.to_alice.clone();
    tokio::spawn(async move {
        deliver_at_place(&delivery, Lane::Data, &envelope, sender_waits, &cancel).await
    })
}

#[tokio::test]
async fn the_senders_wait_ends_with_the_first_attempt_though_retries_go_on() {
    let world = world(usize::MAX);
    let (_, id) = world.to_alice;
    let (sender_waits, first_attempt) = oneshot::channel::<()>();
    let cancel = CancellationToken::new();
    let worker = spawn_worker(&world, Some(sender_waits), cancel.clone());
    // The worker retries every few milliseconds for ever: a wait that
    // lasted as long as the retries would not end.
    let ended = tokio::time::timeout(Duration::from_secs(10), first_attempt).await;
    assert!(
        ended.expect("the wait ends").is_err(),
        "the sender is dropped, never sent"
    );
    assert!(!worker.is_finished(), "the worker is still retrying");
    cancel.cancel();
    assert!(!worker.await.unwrap());
    assert_eq!(
        *world.marked.1.lock().unwrap(),
        vec![(id, 0, 7)],
        "the copy's place is kept anyway"
    );
}

#[tokio::test(start_paused = true)]
async fn the_copys_place_is_written_after_the_first_attempt_or_its_bound() {
    let world = world(0);
    world.flaky.hangs.store(true, Ordering::SeqCst);
    let (_, id) = world.to_alice;
    let worker = spawn_worker(&world, None, CancellationToken::new());
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        world.marked.1.lock().unwrap().is_empty(),
        "not beside the attempt"
    );
    tokio::time::sleep(super::super::handoff::FIRST_ATTEMPT_AT_MOST).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        *world.marked.1.lock().unwrap(),
        vec![(id, 0, 7)],
        "but at its bound"
    );
    // The attempt never ends (a real produce times out), so the worker
    // is aborted, not cancelled.
    worker.abort();
    assert!(worker.await.unwrap_err().is_cancelled());
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
    assert_eq!(
        *world.marked.2.lock().unwrap(),
        vec!["copy", "delivered"],
        "the first attempt failed: the place, then DELIVERED on success"
    );
}

#[tokio::test]
async fn a_chat_handed_on_at_the_first_attempt_is_one_write_and_the_sender_is_told() {
    let world = world(0);
    let (envelope, id) = world.to_alice.clone();
    let (sender_waits, first_attempt) = oneshot::channel::<()>();
    let cancel = CancellationToken::new();
    assert!(
        deliver_at_place(
            &world.delivery,
            Lane::Data,
            &envelope,
            Some(sender_waits),
            &cancel
        )
        .await
    );
    assert_eq!(first_attempt.await, Ok(()), "told it was handed on");
    assert_eq!(*world.marked.0.lock().unwrap(), vec![id]);
    assert_eq!(*world.marked.1.lock().unwrap(), vec![(id, 0, 7)]);
    assert_eq!(*world.marked.2.lock().unwrap(), vec!["copy and delivered"]);
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

/// How the worker learns whether a chat record's message is stored, and
/// what it then does.
#[tokio::test]
async fn a_record_whose_message_was_not_stored_is_skipped_not_handed_on() {
    /// What the send path tells, and whether the store has the message.
    enum Told {
        Before,
        Written(bool),
        CutShort,
        Fetched,
    }
    let cases = [
        (Told::Before, true, true, &["copy and delivered"][..]),
        (Told::Written(true), false, true, &["copy and delivered"]),
        (Told::Written(false), true, false, &[]),
        (
            Told::CutShort,
            true,
            true,
            &["looked up", "copy and delivered"],
        ),
        (Told::CutShort, false, false, &["looked up"]),
        (
            Told::Fetched,
            true,
            true,
            &["looked up", "copy and delivered"],
        ),
        (Told::Fetched, false, false, &["looked up"]),
    ];
    for (told, in_store, handed_on, writes) in cases {
        let world = world(0);
        let (envelope, id) = world.to_alice.clone();
        if !in_store {
            world.marked.3.lock().unwrap().insert(id);
        }
        let (outcome, watch) = tokio::sync::watch::channel(None);
        let stored = match told {
            Told::Before => Stored::Before,
            Told::Written(stored) => {
                outcome.send_replace(Some(stored));
                Stored::Pending(watch)
            }
            Told::CutShort => {
                drop(outcome);
                Stored::Pending(watch)
            }
            Told::Fetched => Stored::Unknown,
        };
        let (sender_waits, first_attempt) = oneshot::channel::<()>();
        let cancel = CancellationToken::new();
        assert!(
            deliver_stored(
                &world.delivery,
                Lane::Data,
                &envelope,
                stored,
                Some(sender_waits),
                &cancel
            )
            .await,
            "done with the record either way"
        );
        assert_eq!(
            world.flaky.delivered.lock().unwrap().len(),
            usize::from(handed_on)
        );
        assert_eq!(first_attempt.await.is_ok(), handed_on);
        assert_eq!(*world.marked.2.lock().unwrap(), writes);
    }
}

#[tokio::test(start_paused = true)]
async fn a_record_waits_for_its_messages_write_in_progress() {
    let world = world(0);
    let (outcome, watch) = tokio::sync::watch::channel(None);
    let delivery = world.delivery.clone();
    let (envelope, _) = world.to_alice.clone();
    let worker = tokio::spawn(async move {
        let cancel = CancellationToken::new();
        deliver_stored(
            &delivery,
            Lane::Data,
            &envelope,
            Stored::Pending(watch),
            None,
            &cancel,
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        world.flaky.delivered.lock().unwrap().is_empty(),
        "not handed on while the write is in progress"
    );
    outcome.send_replace(Some(true));
    assert!(worker.await.unwrap());
    assert_eq!(world.flaky.delivered.lock().unwrap().len(), 1);
}
