//! Consumers of the actor's own topics: offsets stored only when the owner
//! says the record's effect is durable, committed in the background, and
//! closed at shutdown without waiting on librdkafka unbounded.

use std::time::Duration;

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;

use super::{KafkaContext, client_config};
use crate::config::KafkaConfig;
use crate::crypto::identity::ActorId;

/// Every consumer group kircd uses starts with this; terraform/ grants kircd's
/// Kafka user the groups with this prefix and no others.
pub const CONSUMER_GROUP_PREFIX: &str = "kircd.";

/// A consumer of own topics that stores offsets only when told to (after the
/// record's effect is durable) and commits them in the background.
pub fn consumer(
    config: &KafkaConfig,
    actor: ActorId,
    role: &str,
) -> Result<StreamConsumer<KafkaContext>, KafkaError> {
    let mut settings = client_config(config, &format!("kircd-{actor}-{role}"));
    settings
        .set("group.id", format!("{CONSUMER_GROUP_PREFIX}{actor}.{role}"))
        // Static membership: a restarted kircd takes its partitions back at
        // once instead of waiting for its predecessor's session to expire.
        .set(
            "group.instance.id",
            format!("{CONSUMER_GROUP_PREFIX}{actor}.{role}"),
        )
        .set(
            "session.timeout.ms",
            GROUP_SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set("enable.auto.commit", "true")
        // Every 5 s would save an idle daemon about 0.01 % of a core, but
        // what a crash leaves uncommitted is read again. The inbox does not
        // count its own records twice against their senders' rate (it
        // knows the offsets it counted through), but a delivery worker's
        // records read again are produced again: new records at the
        // contact, counted there once more (presence.rate_limit). Before
        // the inbox knew its offsets, 5 s dropped a contact's last message
        // of a fast burst in the SIGKILL test.
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // Bounds what librdkafka prefetches (for the whole consumer).
        .set("queued.max.messages.kbytes", "8192")
        // Once that prefetch is full, librdkafka waits this long before it
        // fetches again (1 s by default): with large records (a junk flood of
        // 2 KiB on average filled it several times a second) the inbox sat
        // idle 80 % of the time, rejecting 5,200 records/s instead of the
        // 30,000 it can. Only a full queue starts this wait.
        .set("fetch.queue.backoff.ms", "10")
        // How long the broker holds a fetch that finds nothing: it answers
        // at once when a record arrives, so this costs no latency (the
        // direct benchmark's hop marks: the delivery worker and the inbox
        // take a record 0.00 ms (p50) after it was acknowledged), only
        // wake-ups while idle. At 100 ms, each consumer's broker thread
        // woke ten times a second: about a third of an idle daemon's CPU;
        // at 500 ms twice a second. The group's heartbeats and commits go
        // over the coordinator's own connection, so they never queue behind
        // a waiting fetch.
        .set("fetch.wait.max.ms", "2000");
    let context = KafkaContext::new(&settings);
    StreamConsumer::from_config_and_context(&settings, context)
}

/// A consumer of `topics` (see [`consumer`]), subscribed.
pub fn subscribed(
    config: &KafkaConfig,
    actor: ActorId,
    role: &str,
    topics: &[&str],
) -> Result<StreamConsumer<KafkaContext>, KafkaError> {
    let consumer = consumer(config, actor, role)?;
    consumer.subscribe(topics)?;
    Ok(consumer)
}

/// librdkafka's fatal error on `consumer`, if it had one: that client can
/// no longer be used and must be replaced. After a broker restart a static
/// member is "fenced by another consumer with the same group.instance.id"
/// when a commit from before its rejoin arrives: that is fatal to it.
pub fn fatal(consumer: &StreamConsumer<KafkaContext>) -> Option<String> {
    consumer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code:?}: {reason}"))
}

/// How long a consumer may go unheard before its group drops it; an outage
/// longer than this makes every consumer join its group anew.
pub const GROUP_SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long closing a consumer at shutdown may take: the final commit and
/// the close normally take a few milliseconds.
const CONSUMER_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Commits the offsets stored so far and closes `consumer`, on a thread of
/// its own because both calls block. librdkafka can block a close forever
/// when a group assignment arrives during it (confluentinc/librdkafka#4884,
/// seen here when kircd is stopped right after READY); after
/// CONSUMER_CLOSE_TIMEOUT the close is abandoned and its thread ends with the
/// process. Nothing is lost by that: the commit comes first, a record whose
/// commit did not happen is delivered again and stored idempotently, and a
/// static group member does not leave its group on close anyway.
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
            "the consumer did not close in time (librdkafka#4884); stopping without it (records not yet committed come again and are stored once)"
        );
    }
}
