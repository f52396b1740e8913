//! The one consumer of the actor's own four topics. It belongs to no
//! consumer group's membership: it assigns itself every partition (kircd is
//! its topics' only reader, and the API socket's lock keeps a second kircd
//! of the same configuration from starting) and commits its offsets to the
//! group `kircd.<actor>.topics` as a simple consumer. Each partition's
//! records go to a queue of their own, split before the assignment, so the
//! inbox and the two delivery lanes read their topics apart: a lane stuck
//! on an unreachable contact holds back no other.
//!
//! One consumer instead of three (one per reader, each in its own group)
//! idles at a fraction of the wake-ups: one set of librdkafka threads, and
//! no group heartbeats, joins or fencing. Offsets are stored only when the
//! reader says a record's effect is durable, committed in the background,
//! and committed once more when the consumer closes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaContext, client_config};
use crate::config::{KafkaConfig, TopicNames};
use crate::crypto::identity::ActorId;

/// Every consumer group kircd uses starts with this; terraform/ grants kircd's
/// Kafka user the groups with this prefix and no others.
pub const CONSUMER_GROUP_PREFIX: &str = "kircd.";

/// How long opening the consumer may wait for the cluster's answers (the
/// topics' partitions, the committed offsets).
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Who reads which of the own topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reader {
    /// `data-in` and `rpc-in`.
    Inbox,
    /// `data-out`.
    DeliveryData,
    /// `rpc-out`.
    DeliveryRpc,
}

impl Reader {
    pub const ALL: [Reader; 3] = [Reader::Inbox, Reader::DeliveryData, Reader::DeliveryRpc];

    /// The names of the topics it reads.
    pub fn topics(self, names: &TopicNames) -> Vec<String> {
        match self {
            Reader::Inbox => vec![names.data_in.clone(), names.rpc_in.clone()],
            Reader::DeliveryData => vec![names.data_out.clone()],
            Reader::DeliveryRpc => vec![names.rpc_out.clone()],
        }
    }

    /// The group whose offsets it committed while each reader had a
    /// consumer of its own (kircd 0.1 before the one consumer): read once,
    /// where the group `topics` has none yet, so that an upgrade reads
    /// nothing twice.
    fn former_group(self) -> &'static str {
        match self {
            Reader::Inbox => "inbox",
            Reader::DeliveryData => "delivery-data",
            Reader::DeliveryRpc => "delivery-rpc",
        }
    }

    pub fn name(self) -> &'static str {
        self.former_group()
    }
}

/// One partition of an own topic, split off the consumer into its own queue.
pub struct PartitionQueue {
    pub topic: String,
    pub partition: i32,
    /// The offset it was assigned from, when the group had one committed:
    /// every record below it was handled before.
    pub start: Option<i64>,
    pub queue: StreamPartitionQueue<KafkaContext>,
}

/// The consumer with every partition's queue, by reader.
pub type Opened = (
    Arc<StreamConsumer<KafkaContext>>,
    HashMap<Reader, Vec<PartitionQueue>>,
);

fn group(actor: ActorId, name: &str) -> String {
    format!("{CONSUMER_GROUP_PREFIX}{actor}.{name}")
}

/// The settings of the own topics' consumer.
fn settings(config: &KafkaConfig, actor: ActorId) -> rdkafka::ClientConfig {
    let mut settings = client_config(config, &format!("kircd-{actor}-topics"));
    settings
        .set("group.id", group(actor, "topics"))
        .set("enable.auto.commit", "true")
        // Every 5 s would save an idle daemon about 0.01 % of a core, but
        // what a crash leaves uncommitted is read again. The inbox does not
        // count its own records twice against their senders' rate (it
        // knows the offsets it counted through), but a delivery lane's
        // records read again are produced again: new records at the
        // contact, counted there once more (presence.rate_limit).
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // What librdkafka prefetches, per partition (each has its own
        // queue), and how long the broker holds a fetch that finds nothing
        // (it answers at once when a record arrives, so the hold costs no
        // latency, only an idle wake-up per hold) are one trade. A partition
        // whose queue is full is left out of the next fetch; if every other
        // partition is idle, that fetch is held for the whole wait, and
        // librdkafka sends no other fetch meanwhile. A backlog that produces
        // nothing of its own (a junk flood: chat produces receipts, whose
        // records end the hold) is then read at most one queue per wait: a
        // 3 MB queue and a 2 s wait read 2 KiB junk at 1,400 records/s; 8 MB
        // and 250 ms at 17,500/s, against 0.090 % idle CPU (0.068-0.083 %
        // with 2 s). A partition fills its queue only while it has a
        // backlog; with the default kafka.partitions (8 partitions over the
        // four topics) a backlog in all of them holds up to 64 MB (24 MB
        // before).
        .set("queued.max.messages.kbytes", "8192")
        // Once that prefetch is full, librdkafka waits this long before it
        // fetches again (1 s by default): with large records (a junk flood of
        // 2 KiB on average filled it several times a second) the inbox sat
        // idle 80 % of the time, rejecting 5,200 records/s instead of the
        // 30,000 it can. Only a full queue starts this wait.
        .set("fetch.queue.backoff.ms", "10")
        .set("fetch.wait.max.ms", "250");
    settings
}

/// Makes the own topics' consumer: every partition of the four topics split
/// into its own queue, then assigned from the group's committed offsets (a
/// former group's where it has none, else the beginning). Blocks on the
/// cluster: call it off the async workers.
pub fn open(config: &KafkaConfig, actor: ActorId) -> Result<Opened, KafkaError> {
    let settings = settings(config, actor);
    let context = KafkaContext::new(&settings);
    let consumer = Arc::new(StreamConsumer::from_config_and_context(&settings, context)?);
    let mut places = TopicPartitionList::new();
    let mut reader_of = HashMap::new();
    for reader in Reader::ALL {
        for topic in reader.topics(&config.topics) {
            let metadata = consumer.fetch_metadata(Some(&topic), OPEN_TIMEOUT)?;
            for found in metadata.topics() {
                if let Some(err) = found.error() {
                    return Err(KafkaError::MetadataFetch(err.into()));
                }
                for partition in found.partitions() {
                    places.add_partition(found.name(), partition.id());
                }
            }
            reader_of.insert(topic, reader);
        }
    }
    let committed = consumer.committed_offsets(places.clone(), OPEN_TIMEOUT)?;
    let mut starts = TopicPartitionList::new();
    let mut missing: HashMap<Reader, TopicPartitionList> = HashMap::new();
    for element in committed.elements() {
        match element.offset() {
            Offset::Offset(offset) => {
                starts.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(offset),
                )?;
            }
            _ => {
                if let Some(reader) = reader_of.get(element.topic()) {
                    missing
                        .entry(*reader)
                        .or_default()
                        .add_partition(element.topic(), element.partition());
                }
            }
        }
    }
    let asked_former_groups = !missing.is_empty();
    for (reader, partitions) in missing {
        for element in former_offsets(config, actor, reader, partitions)?.elements() {
            let start = match element.offset() {
                Offset::Offset(offset) => Offset::Offset(offset),
                _ => Offset::Beginning,
            };
            starts.add_partition_offset(element.topic(), element.partition(), start)?;
        }
    }
    if asked_former_groups {
        keep_starts(&consumer, &starts);
    }
    // Split first: a partition's queue is then its records' only way out,
    // from the first fetch on (librdkafka keeps a queue the application
    // forwarded when the assignment starts the partition).
    let mut queues: HashMap<Reader, Vec<PartitionQueue>> = HashMap::new();
    for element in starts.elements() {
        let Some(reader) = reader_of.get(element.topic()) else {
            continue;
        };
        let queue = consumer
            .split_partition_queue(element.topic(), element.partition())
            .ok_or(KafkaError::Subscription(format!(
                "no queue for {}/{}",
                element.topic(),
                element.partition()
            )))?;
        queues.entry(*reader).or_default().push(PartitionQueue {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            start: match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            },
            queue,
        });
    }
    consumer.assign(&starts)?;
    Ok((consumer, queues))
}

/// Commits where each partition starts to the own group, so that the next
/// start finds every partition there and asks no former group: asking takes
/// a client per group and a few round trips, 0.3-0.5 s at every start before
/// the first record was read (a partition that never had a record is in no
/// group's offsets). A partition that starts at the beginning is kept at 0,
/// which the `earliest` reset turns into its first record, as `Beginning`
/// does. If the commit fails, the next start asks again.
fn keep_starts(consumer: &StreamConsumer<KafkaContext>, starts: &TopicPartitionList) {
    let mut kept = TopicPartitionList::new();
    for element in starts.elements() {
        let offset = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        };
        if let Err(err) =
            kept.add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))
        {
            tracing::warn!(error = %err, "cannot keep a partition's start");
            return;
        }
    }
    if let Err(err) = consumer.commit(&kept, CommitMode::Sync) {
        tracing::warn!(error = %err, "cannot keep where each partition starts; the next start asks the former groups again");
    }
}

/// What `reader`'s former group committed for `partitions`.
fn former_offsets(
    config: &KafkaConfig,
    actor: ActorId,
    reader: Reader,
    partitions: TopicPartitionList,
) -> Result<TopicPartitionList, KafkaError> {
    let mut settings = client_config(config, &format!("kircd-{actor}-offsets"));
    settings
        .set("group.id", group(actor, reader.former_group()))
        .set("enable.auto.commit", "false");
    let reader: BaseConsumer = settings.create()?;
    reader.committed_offsets(partitions, OPEN_TIMEOUT)
}

/// librdkafka's fatal error on `consumer`, if it had one: that client can
/// no longer be used and must be replaced.
pub fn fatal(consumer: &StreamConsumer<KafkaContext>) -> Option<String> {
    consumer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code:?}: {reason}"))
}

/// How long closing a consumer at shutdown may take: the final commit and
/// the close normally take a few milliseconds.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits the offsets stored so far and closes `consumer`, on a thread of
/// its own because both calls block. After CONSUMER_CLOSE_TIMEOUT the close
/// is abandoned and its thread ends with the process. Nothing is lost by
/// that: the commit comes first, and a record whose commit did not happen
/// is read again and stored idempotently.
pub async fn close_consumer(consumer: StreamConsumer<KafkaContext>, role: &'static str) {
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let close = move || {
        if let Err(err) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Usually NoOffset: nothing was stored since the last commit.
            tracing::debug!(error = %err, role, "final commit");
        }
        drop(consumer);
        let _ = closed_tx.send(());
    };
    if let Err(err) = std::thread::Builder::new()
        .name(format!("close-{role}"))
        .spawn(close)
    {
        tracing::warn!(error = %err, role, "no thread to close the consumer on");
        return;
    }
    if tokio::time::timeout(CONSUMER_CLOSE_TIMEOUT, closed_rx)
        .await
        .is_err()
    {
        tracing::warn!(
            role,
            timeout = ?CONSUMER_CLOSE_TIMEOUT,
            "the consumer did not close in time; stopping without it (records not yet committed come again and are stored once)"
        );
    }
}
