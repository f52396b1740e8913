//! The own topics' consumer shared by its three readers (the inbox and the
//! two delivery lanes). Each reader claims its [`Feed`], the queues of its
//! topics' partitions, and gives it back when it stops; the consumer is
//! opened by the first claim and closed (with a final commit) when the
//! last feed is given back. A consumer that librdkafka declares dead wakes
//! every reader; each gives its feed back and claims again, and the next
//! claim after the last one opens a new consumer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::FutureExt;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, OwnedMessage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::consumer::{self, PartitionQueue, Reader, close_consumer};
use super::{KafkaContext, restore_lost_brokers};
use crate::config::KafkaConfig;
use crate::crypto::identity::ActorId;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("opening the consumer failed: {0}")]
    Panicked(String),
}

/// The own topics' consumer, opened on demand and shared by its readers.
#[derive(Debug)]
pub struct OwnTopics {
    kafka: KafkaConfig,
    actor: ActorId,
    open: tokio::sync::Mutex<Option<Generation>>,
    /// Notified when a consumer was closed: a reader waiting to claim anew
    /// may open the next.
    closed: tokio::sync::Notify,
}

/// One consumer's life.
struct Generation {
    consumer: Arc<StreamConsumer<KafkaContext>>,
    unclaimed: HashMap<Reader, Vec<PartitionQueue>>,
    /// Feeds claimed and not given back.
    claimed: usize,
    /// The task that serves the consumer's events (errors, statistics):
    /// librdkafka hands them out only to a poll of the consumer itself.
    serving: JoinHandle<()>,
    stop_serving: CancellationToken,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

impl OwnTopics {
    pub fn new(kafka: KafkaConfig, actor: ActorId) -> Self {
        OwnTopics {
            kafka,
            actor,
            open: tokio::sync::Mutex::new(None),
            closed: tokio::sync::Notify::new(),
        }
    }

    /// `reader`'s feed, opening the consumer if none is open. If the open
    /// consumer's feed for `reader` is still held (the consumer died and
    /// another reader has not given its feed back yet), waits until that
    /// consumer is closed and opens the next.
    pub async fn claim(&self, reader: Reader) -> Result<Feed, ClaimError> {
        loop {
            let mut open = self.open.lock().await;
            if open.is_none() {
                *open = Some(self.open_consumer().await?);
            }
            let Some(generation) = open.as_mut() else {
                continue;
            };
            if let Some(queues) = generation.unclaimed.remove(&reader) {
                generation.claimed += 1;
                return Ok(Feed {
                    reader,
                    consumer: Arc::clone(&generation.consumer),
                    queues,
                    next: AtomicUsize::new(0),
                });
            }
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            drop(open);
            closed.await;
        }
    }

    async fn open_consumer(&self) -> Result<Generation, ClaimError> {
        let (kafka, actor) = (self.kafka.clone(), self.actor);
        let (consumer, unclaimed) =
            tokio::task::spawn_blocking(move || consumer::open(&kafka, actor))
                .await
                .map_err(|err| ClaimError::Panicked(err.to_string()))??;
        let stop_serving = CancellationToken::new();
        let serving = tokio::spawn(serve(Arc::clone(&consumer), stop_serving.clone()));
        Ok(Generation {
            consumer,
            unclaimed,
            claimed: 0,
            serving,
            stop_serving,
        })
    }

    /// Gives `feed` back; the last one closes its consumer, committing the
    /// offsets stored through every feed.
    pub async fn release(&self, feed: Feed) {
        let Feed {
            consumer, queues, ..
        } = feed;
        // A queue holds its consumer too.
        drop(queues);
        let mut open = self.open.lock().await;
        let Some(generation) = open.as_mut() else {
            return;
        };
        if !Arc::ptr_eq(&generation.consumer, &consumer) {
            return;
        }
        drop(consumer);
        generation.claimed -= 1;
        if generation.claimed > 0 {
            return;
        }
        let Some(Generation {
            consumer,
            unclaimed,
            serving,
            stop_serving,
            ..
        }) = open.take()
        else {
            return;
        };
        stop_serving.cancel();
        if let Err(err) = serving.await {
            tracing::error!(error = %err, "serving the own topics' consumer failed");
        }
        drop(unclaimed);
        match Arc::into_inner(consumer) {
            Some(consumer) => close_consumer(consumer, "own-topics").await,
            // Every holder was given back or stopped just now.
            None => {
                tracing::warn!("the own topics' consumer is still held; closed with the process")
            }
        }
        drop(open);
        self.closed.notify_waiters();
    }
}

/// Polls `consumer` itself until stopped: that serves its events, and
/// repairs it when it lost every broker. Every partition has its own queue,
/// so no record comes here; one that did would be left unstored, and read
/// again after a restart.
async fn serve(consumer: Arc<StreamConsumer<KafkaContext>>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = consumer.context().brokers_lost() => restore_lost_brokers(consumer.client()),
            received = consumer.recv() => match received {
                Ok(record) => tracing::error!(
                    topic = record.topic(),
                    partition = record.partition(),
                    offset = record.offset(),
                    "a record came to the consumer's own queue; left for the next start"
                ),
                Err(err) => tracing::debug!(error = %err, "own topics' consumer"),
            },
        }
    }
}

/// A reader's partitions of the own topics.
pub struct Feed {
    reader: Reader,
    consumer: Arc<StreamConsumer<KafkaContext>>,
    queues: Vec<PartitionQueue>,
    /// The queue asked first next time: each in turn, so that a busy
    /// partition starves no other.
    next: AtomicUsize,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("reader", &self.reader)
            .field("partitions", &self.queues.len())
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// The next record of any of the feed's partitions.
    pub async fn recv(&self) -> Result<OwnedMessage, KafkaError> {
        let count = self.queues.len();
        if count == 0 {
            return std::future::pending().await;
        }
        let start = self.turn();
        let receiving = (0..count).map(|step| {
            let queue = &self.queues[(start + step) % count].queue;
            Box::pin(queue.recv())
        });
        let (received, _, _) = futures::future::select_all(receiving).await;
        received.map(|record| BorrowedMessage::detach(&record))
    }

    /// A record already fetched, if there is one.
    pub fn try_recv(&self) -> Option<Result<OwnedMessage, KafkaError>> {
        let count = self.queues.len();
        let start = self.turn();
        (0..count).find_map(|step| {
            let queue = &self.queues[(start + step) % count].queue;
            queue
                .recv()
                .now_or_never()
                .map(|received| received.map(|record| record.detach()))
        })
    }

    fn turn(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len().max(1)
    }

    /// Where each partition's records start (partition, offset), for the
    /// partitions the group had committed offsets for.
    pub fn starts(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.queues
            .iter()
            .filter_map(|queue| queue.start.map(|start| (queue.partition, start)))
    }

    /// Marks a record's offset as done: committed in the background.
    pub fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.consumer.store_offset(topic, partition, offset)
    }

    /// Resolves once librdkafka declared the consumer dead.
    pub async fn failed(&self) {
        self.consumer.context().failed().await;
    }

    /// The consumer's fatal error, if it had one.
    pub fn fatal(&self) -> Option<String> {
        consumer::fatal(&self.consumer)
    }
}
