//! Kafka clients of the messaging core: the producer to this actor's own
//! outbox topics, producers to peers' clusters (one per distinct cluster and
//! credential), and the consumers of the own topics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;

use crate::backends::kafka::{AckedProducer, Delivered, KafkaContext, client_config};
use crate::backends::traffic::{Budgets, Priority};
use crate::config::KafkaConfig;
use crate::crypto::identity::ActorId;

/// How long a produce may wait in librdkafka before it fails and the caller
/// retries with its own backoff (and, for peers, a fresh look at the
/// contact's profile).
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Producer settings shared by the outbox and peer producers: idempotent
/// (no duplicates or reordering from retries), acknowledged by all replicas,
/// sent at once.
fn producer_settings(config: &mut ClientConfig) {
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set(
            "message.timeout.ms",
            PRODUCE_TIMEOUT.as_millis().to_string(),
        )
        // An idle daemon keeps at most this much of its own messages in
        // librdkafka's queue; it bounds memory, not throughput.
        .set("queue.buffering.max.kbytes", "16384");
}

/// A producer to the actor's own cluster (data-out, rpc-out).
#[derive(Clone)]
pub struct Outbox {
    producer: AckedProducer,
    cluster: String,
    budgets: Budgets,
    data_out: String,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    pub fn new(config: &KafkaConfig, actor: ActorId, budgets: Budgets) -> Result<Self, KafkaError> {
        let mut settings = client_config(config, &format!("kircd-{actor}-outbox"));
        producer_settings(&mut settings);
        Ok(Outbox {
            producer: AckedProducer::new(&settings, "outbox")?,
            cluster: config.bootstrap_servers.clone(),
            budgets,
            data_out: config.topics.data_out.clone(),
        })
    }

    /// Produces one record and waits for the broker's acknowledgement.
    pub async fn produce(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Delivered, KafkaError> {
        let priority = if topic == self.data_out {
            Priority::Chat
        } else {
            Priority::Control
        };
        self.budgets
            .acquire(&self.cluster, key.len() + value.len(), priority)
            .await;
        self.producer.send(topic, key, value).await
    }

    /// The earliest offset each partition of `topic` still holds (off the
    /// async workers: librdkafka's calls block).
    pub async fn low_watermarks(&self, topic: &str) -> Result<Vec<(i32, i64)>, KafkaError> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || producer.low_watermarks(&topic, PRODUCE_TIMEOUT))
            .await
            .unwrap_or_else(|_| Err(KafkaError::Canceled))
    }

    /// Waits for everything queued to be acknowledged (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer.flush(timeout) {
            tracing::warn!(error = %err, "outbox flush did not complete");
        }
    }
}

/// What identifies a peer cluster connection: the same cluster with the same
/// credential shares one producer.
fn access_key(access: &wire::KafkaAccess) -> String {
    format!(
        "{}|{}|{}|{}",
        access.bootstrap_servers, access.security_protocol, access.sasl_mechanism, access.username
    )
}

fn peer_config(access: &wire::KafkaAccess, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &access.bootstrap_servers)
        .set("client.id", client_id)
        .set("security.protocol", &access.security_protocol)
        .set("reconnect.backoff.max.ms", "10000")
        .set("socket.nagle.disable", "true")
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    if access.security_protocol == "sasl_ssl" {
        config
            .set("sasl.mechanisms", &access.sasl_mechanism)
            .set("sasl.username", &access.username)
            .set("sasl.password", &access.password);
    }
    if !access.ca_pem.is_empty() {
        config.set("ssl.ca.pem", &access.ca_pem);
    }
    producer_settings(&mut config);
    config
}

/// Producers to peers' clusters, made on first use.
#[derive(Clone)]
pub struct PeerProducers {
    producers: Arc<Mutex<HashMap<String, AckedProducer>>>,
    budgets: Budgets,
}

impl std::fmt::Debug for PeerProducers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerProducers").finish_non_exhaustive()
    }
}

impl PeerProducers {
    pub fn new(budgets: Budgets) -> Self {
        PeerProducers {
            producers: Arc::new(Mutex::new(HashMap::new())),
            budgets,
        }
    }

    fn producer(
        &self,
        access: &wire::KafkaAccess,
        me: ActorId,
    ) -> Result<AckedProducer, KafkaError> {
        let key = access_key(access);
        let mut producers = self
            .producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(producer) = producers.get(&key) {
            return Ok(producer.clone());
        }
        let producer =
            AckedProducer::new(&peer_config(access, &format!("kircd-{me}-peer")), "peer")?;
        producers.insert(key, producer.clone());
        Ok(producer)
    }

    /// Produces to a peer's topic, paced by the peer cluster's budget, and
    /// waits for its broker's acknowledgement.
    pub async fn produce(
        &self,
        access: &wire::KafkaAccess,
        me: ActorId,
        topic: &str,
        key: &[u8],
        value: &[u8],
        priority: Priority,
    ) -> Result<(), KafkaError> {
        self.budgets
            .acquire(&access.bootstrap_servers, key.len() + value.len(), priority)
            .await;
        let producer = self.producer(access, me)?;
        producer.send(topic, key, value).await.map(drop)
    }

    /// Drops the producer of `access` (after failures, so that a changed DNS
    /// or a replaced cluster gets a fresh connection).
    pub fn forget(&self, access: &wire::KafkaAccess) {
        self.producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&access_key(access));
    }
}

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
        .set("session.timeout.ms", "30000")
        .set("enable.auto.commit", "true")
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
        // Measured (dev/bench): at librdkafka's default of 500 ms, the
        // SendMessage → event p50 was 5.1 ms against 3.9 ms at 100 ms; the
        // shorter long-poll costs an idle daemon 0.47 % of a core instead of
        // 0.23 %. Chat latency wins.
        .set("fetch.wait.max.ms", "100");
    StreamConsumer::from_config_and_context(&settings, KafkaContext::default())
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
