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

/// Moves a stopped kircd's consumer group `role` (e.g. "inbox") back to the
/// start of `topic`, as a crash before any commit would leave it: its next
/// start reads every record of `topic` again. Joins as the group's static
/// member (replacing the stopped kircd's, which stays in the group until its
/// session expires) and commits the first offsets.
pub fn rewind_group(bootstrap: &str, actor_id: &str, role: &str, topic: &str) {
    let group = format!("kircd.{actor_id}.{role}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("group.instance.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a consumer in the group");
    consumer.subscribe(&[topic]).expect("subscribed");
    let timeout = Duration::from_secs(10);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // The assignment is served by polling; records read meanwhile are not
    // committed (auto commit is off).
    while consumer.assignment().map_or(0, |list| list.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no assignment in {group}"
        );
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut first = TopicPartitionList::new();
    for element in consumer.assignment().expect("an assignment").elements() {
        let (low, _) = consumer
            .fetch_watermarks(topic, element.partition(), timeout)
            .expect("watermarks");
        first
            .add_partition_offset(topic, element.partition(), Offset::Offset(low))
            .unwrap();
    }
    consumer
        .commit(&first, rdkafka::consumer::CommitMode::Sync)
        .expect("the first offsets committed");
}
