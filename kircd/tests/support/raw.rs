//! Valid chat envelopes written straight into an actor's inbox, as a
//! contact's kircd would write them: for tests that need records in an
//! inbox while its kircd is stopped, or faster than a kircd sends.

use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use kirc_testkit::Actor;
use kircd::crypto::envelope;
use kircd::crypto::identity::Identity;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// `from`'s keys writing valid chat envelopes straight into `to`'s inbox, as
/// `from`'s kircd would, with a raw producer.
pub struct RawSender {
    keys: Identity,
    to: kircd::crypto::identity::ActorId,
    pair: envelope::PairKey,
    conversation: uuid::Uuid,
    topic: String,
    producer: FutureProducer,
}

impl RawSender {
    pub fn new(from: &Actor, to: &Actor) -> Self {
        let keys = Identity::load(&from.dir.path().join("identity.key")).unwrap();
        let to_keys = Identity::load(&to.dir.path().join("identity.key")).unwrap();
        RawSender {
            pair: envelope::PairKey::new(&keys, &to_keys.box_key()),
            conversation: envelope::conversation_id(keys.id(), to_keys.id()),
            to: to_keys.id(),
            keys,
            topic: format!("{}data-in", to.topic_prefix),
            producer: ClientConfig::new()
                .set("bootstrap.servers", &to.stack.kafka)
                .create()
                .unwrap(),
        }
    }

    /// Sends one chat message; returns the broker's timestamp of the record
    /// (its append time on kircd's inboxes).
    pub async fn chat(&self, text: &str) -> i64 {
        let payload = wire::ChatPayload {
            text: text.to_owned(),
            ..wire::ChatPayload::default()
        };
        self.send(wire::Kind::Chat, &payload).await.1
    }

    /// Sends `payload` as a record of `kind`; returns its message id and the
    /// broker's timestamp of the record.
    pub async fn send(&self, kind: wire::Kind, payload: &wire::ChatPayload) -> (uuid::Uuid, i64) {
        self.send_as(envelope::new_message_id(), kind, payload)
            .await
    }

    /// [`RawSender::send`] under message id `id`.
    pub async fn send_as(
        &self,
        id: uuid::Uuid,
        kind: wire::Kind,
        payload: &wire::ChatPayload,
    ) -> (uuid::Uuid, i64) {
        let bytes = envelope::seal(
            &self.keys,
            self.to,
            &self.pair,
            kind,
            id,
            &payload.encode_to_vec(),
        );
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(self.conversation.as_bytes().as_slice())
                    .payload(&bytes),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        (id, delivery.timestamp.to_millis().unwrap())
    }
}
