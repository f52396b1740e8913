//! The Kafka transport: the producer to the actor's own outbox topics, the
//! producers to contacts' inboxes (one per cluster and credential), the
//! delivery workers between them, and the keep-warm heartbeat.

pub mod delivery;
pub mod handoff;
pub mod keep_warm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kirc_proto::wire::v1 as wire;
use rdkafka::error::KafkaError;

use super::{Lane, Transport, TransportError};
use crate::backends::kafka::settings::PRODUCE_TIMEOUT;
use crate::backends::kafka::{
    AckedProducer, Delivered, client_config, peer_config, producer_settings,
};
use crate::backends::traffic::Budgets;
use crate::book::Contact;
use crate::config::{KafkaConfig, TopicNames};
use crate::crypto::identity::ActorId;

/// The producer to the actor's own cluster: its outbox topics, and its own
/// rpc-in for the keep-warm heartbeat.
#[derive(Clone)]
pub struct Outbox {
    producer: AckedProducer,
    cluster: String,
    budgets: Budgets,
    topics: TopicNames,
    hand_over: handoff::HandOver,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of `actor`'s cluster, handing what it produced to the
    /// delivery workers through `hand_over`.
    pub fn new(
        config: &KafkaConfig,
        actor: ActorId,
        budgets: Budgets,
        hand_over: handoff::HandOver,
    ) -> Result<Self, KafkaError> {
        let mut settings = client_config(config, &format!("kircd-{actor}-outbox"));
        producer_settings(&mut settings);
        Ok(Outbox {
            producer: AckedProducer::new(&settings, "outbox")?,
            cluster: config.bootstrap_servers.clone(),
            budgets,
            topics: config.topics.clone(),
            hand_over,
        })
    }

    /// The producer's librdkafka client, for the Kafka health probe.
    pub fn client(
        &self,
    ) -> Arc<rdkafka::producer::BaseProducer<crate::backends::kafka::KafkaContext>> {
        self.producer.client()
    }

    /// The own outbox topic of `lane`.
    pub fn topic(&self, lane: Lane) -> &str {
        match lane {
            Lane::Data => &self.topics.data_out,
            Lane::Control => &self.topics.rpc_out,
        }
    }

    /// Produces one record to the own outbox of `lane`, paced by the own
    /// cluster's budget, and waits for the broker's acknowledgement; then
    /// hands it to the lane's delivery worker, which need not wait for its
    /// consumer to fetch it. Returns where it lies, and the wait for the
    /// worker's first attempt to hand it on, which writes behind the
    /// record keep to. `stored` tells the worker whether a chat record's
    /// message is stored.
    pub async fn produce(
        &self,
        lane: Lane,
        key: &[u8],
        value: &[u8],
        stored: handoff::Stored,
    ) -> Result<(Delivered, handoff::FirstAttempt), TransportError> {
        let topic = self.topic(lane);
        let (partition, offset) = self.produce_to(topic, lane, key, value).await?;
        let (first_attempt_over, first_attempt) = handoff::FirstAttempt::new();
        self.hand_over.hand(
            lane,
            handoff::Handed {
                topic: topic.to_owned(),
                partition,
                offset,
                key: key.to_vec(),
                value: value.to_vec(),
                first_attempt: Some(first_attempt_over),
                stored,
            },
        );
        Ok(((partition, offset), first_attempt))
    }

    /// Produces one record to the own rpc-in, where the own inbox reads it.
    pub async fn produce_to_own_inbox(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Result<Delivered, TransportError> {
        self.produce_to(&self.topics.rpc_in, Lane::Control, key, value)
            .await
    }

    async fn produce_to(
        &self,
        topic: &str,
        lane: Lane,
        key: &[u8],
        value: &[u8],
    ) -> Result<Delivered, TransportError> {
        self.budgets
            .acquire(&self.cluster, key.len() + value.len(), lane.priority())
            .await;
        self.producer
            .send(topic, key, value)
            .await
            .map_err(|err| TransportError::Outbox(err.to_string()))
    }

    /// The earliest offset each partition of the own data-out still holds
    /// (off the async workers: librdkafka's calls block).
    pub async fn data_out_low_watermarks(&self) -> Result<Vec<(i32, i64)>, TransportError> {
        let producer = self.producer.clone();
        let topic = self.topics.data_out.clone();
        tokio::task::spawn_blocking(move || producer.low_watermarks(&topic, PRODUCE_TIMEOUT))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(|err| TransportError::Outbox(err.to_string()))
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

/// Producers to contacts' clusters, made on first use: the Kafka
/// [`Transport`].
#[derive(Clone)]
pub struct PeerProducers {
    me: ActorId,
    producers: Arc<Mutex<HashMap<String, AckedProducer>>>,
    budgets: Budgets,
}

impl std::fmt::Debug for PeerProducers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerProducers").finish_non_exhaustive()
    }
}

impl PeerProducers {
    pub fn new(me: ActorId, budgets: Budgets) -> Self {
        PeerProducers {
            me,
            producers: Arc::new(Mutex::new(HashMap::new())),
            budgets,
        }
    }

    fn producer(&self, access: &wire::KafkaAccess) -> Result<AckedProducer, KafkaError> {
        let key = access_key(access);
        let mut producers = self
            .producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(producer) = producers.get(&key) {
            return Ok(producer.clone());
        }
        let producer = AckedProducer::new(
            &peer_config(access, &format!("kircd-{}-peer", self.me)),
            "peer",
        )?;
        producers.insert(key, producer.clone());
        Ok(producer)
    }

    /// Produces to the contact's inbox of `lane`, paced by the contact
    /// cluster's budget, and waits for its broker's acknowledgement.
    async fn produce(
        &self,
        contact: &Contact,
        lane: Lane,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KafkaError> {
        let access = &contact.access;
        self.budgets
            .acquire(
                &access.bootstrap_servers,
                key.len() + value.len(),
                lane.priority(),
            )
            .await;
        let topic = match lane {
            Lane::Data => &access.data_in_topic,
            Lane::Control => &access.rpc_in_topic,
        };
        self.producer(access)?
            .send(topic, key, value)
            .await
            .map(drop)
    }
}

impl Transport for PeerProducers {
    fn deliver<'a>(
        &'a self,
        contact: &'a Contact,
        lane: Lane,
        key: &'a [u8],
        envelope: &'a [u8],
    ) -> BoxFuture<'a, Result<(), TransportError>> {
        async move {
            self.produce(contact, lane, key, envelope)
                .await
                .map_err(|err| TransportError::Peer(err.to_string()))
        }
        .boxed()
    }

    fn forget(&self, contact: &Contact) {
        self.producers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&access_key(&contact.access));
    }
}
