//! Raw Kafka access for tests that play an outsider: whoever holds an actor's
//! public credential writes to its inboxes directly, and tests read what a
//! kircd wrote to its topics.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// One record as stored in a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The record's timestamp in ms (the broker's append time on kircd's
    /// inboxes).
    pub timestamp_ms: i64,
}

/// Every record in `topic` now, partition by partition, in offset order.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kirc-testkit-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader");
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(rdkafka::metadata::MetadataPartition::id)
        .collect();
    let mut records = Vec::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .expect("watermarks");
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(low))
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut next = low;
        while next < high {
            assert!(
                std::time::Instant::now() < deadline,
                "reading {topic}/{partition} stalled at {next} of {high}"
            );
            let Some(result) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = result.expect("a record");
            next = message.offset() + 1;
            records.push(Record {
                partition,
                offset: message.offset(),
                key: message.key().unwrap_or_default().to_vec(),
                value: message.payload().unwrap_or_default().to_vec(),
                timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
            });
        }
    }
    records
}

/// A plain producer to `bootstrap` (no credential: the local plaintext
/// listener).
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "2000000")
        .create()
        .expect("a producer")
}

/// Produces one record and waits for the broker's acknowledgement.
pub async fn produce(producer: &FutureProducer, topic: &str, key: &[u8], value: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)
        .expect("the broker acknowledges");
}

/// The records of `kind` addressed to `recipient` (hex actor id) in
/// `topic`, oldest first, with their envelopes (whose kind and ids are in
/// clear).
pub fn envelopes_of(
    bootstrap: &str,
    topic: &str,
    kind: kirc_proto::wire::v1::Kind,
    recipient: &str,
) -> Vec<(Record, kirc_proto::wire::v1::Envelope)> {
    use prost::Message as _;
    read_all(bootstrap, topic)
        .into_iter()
        .filter_map(|record| {
            let envelope = kirc_proto::wire::v1::Envelope::decode(record.value.as_slice()).ok()?;
            let to: String = envelope
                .recipient
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            (envelope.kind == kind as i32 && to == recipient).then_some((record, envelope))
        })
        .collect()
}

/// Where [`move_offsets`] puts a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The first record still in the topic: everything is read again.
    Start,
    /// After the last record: nothing now in the topic is read.
    End,
}

/// Commits `group`'s offsets in every partition of `topic` to its start or
/// end, as a simple consumer (no group membership). kircd's own consumer
/// commits to `kircd.<actor>.topics` that way; with kircd stopped, moving
/// them to the start is what a crash before any commit leaves behind.
pub fn move_offsets(bootstrap: &str, group: &str, topic: &str, at: At) {
    let consumer = group_client(bootstrap, group);
    let mut offsets = TopicPartitionList::new();
    for partition in partitions_of(&consumer, topic) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, GROUP_TIMEOUT)
            .expect("watermarks");
        let offset = if at == At::Start { low } else { high };
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
    }
    consumer
        .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
        .expect("the offsets committed");
}

/// What `group` committed in each partition of `topic`, in partition order:
/// `None` where it committed nothing.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer = group_client(bootstrap, group);
    let mut partitions = TopicPartitionList::new();
    for partition in partitions_of(&consumer, topic) {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, GROUP_TIMEOUT)
        .expect("the committed offsets");
    let mut offsets: Vec<(i32, Option<i64>)> = committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => (element.partition(), Some(offset)),
            _ => (element.partition(), None),
        })
        .collect();
    offsets.sort_unstable();
    offsets.into_iter().map(|(_, offset)| offset).collect()
}

const GROUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that reads and commits `group`'s offsets without joining it.
fn group_client(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer for the group")
}

/// The ids of `topic`'s partitions.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = consumer
        .fetch_metadata(Some(topic), GROUP_TIMEOUT)
        .expect("topic metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|partition| partition.id())
        .collect()
}

/// Deletes consumer `group` and its committed offsets; it must have no
/// members.
pub async fn delete_group(bootstrap: &str, group: &str) {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .create()
            .expect("an admin client");
    let results = admin
        .delete_groups(&[group], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("the group deletion is answered");
    for result in results {
        result.expect("the group is deleted");
    }
}
