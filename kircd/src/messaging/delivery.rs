//! The delivery worker: consumes one of the own outbox topics (`data-out` or
//! `rpc-out`) and produces each envelope to the recipient's inbox on the
//! recipient's cluster. The outbox offset is stored only after the peer's
//! broker acknowledged the record (and, for chat, after the message was
//! marked delivered), so a crash re-delivers rather than loses. Records are
//! handled one at a time per partition, which keeps each conversation's order
//! (the record key is the conversation id); an unreachable peer is retried
//! with capped backoff, re-reading its profile each time, so a corrected
//! profile takes effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Messaging, links};
use crate::backends::kafka::KafkaContext;
use crate::backends::supervise::Backoff;
use crate::backends::traffic::Priority;
use crate::crypto::identity::ActorId;
use crate::store::MessageState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// data-out → the peer's data-in; chat messages become DELIVERED.
    Data,
    /// rpc-out → the peer's rpc-in.
    Rpc,
}

impl Route {
    fn role(self) -> &'static str {
        match self {
            Route::Data => "delivery-data",
            Route::Rpc => "delivery-rpc",
        }
    }

    fn priority(self) -> Priority {
        match self {
            Route::Data => Priority::Chat,
            Route::Rpc => Priority::Control,
        }
    }

    fn peer_topic(self, access: &wire::KafkaAccess) -> &str {
        match self {
            Route::Data => &access.data_in_topic,
            Route::Rpc => &access.rpc_in_topic,
        }
    }
}

pub async fn run(
    messaging: Arc<Messaging>,
    topic: String,
    route: Route,
    cancel: CancellationToken,
) {
    let health = messaging.config.health.clone();
    let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
    loop {
        let consumer = match links::subscribed(
            &messaging.config.kafka,
            messaging.me,
            route.role(),
            &[&topic],
        ) {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::error!(error = %err, topic, "cannot create the delivery consumer; retrying");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let fatal = consume(&messaging, &consumer, &topic, route, &cancel).await;
        links::close_consumer(consumer, route.role()).await;
        let Some(reason) = fatal else {
            break;
        };
        // What it had not committed is delivered again by the new one; the
        // contact stores an id once.
        tracing::warn!(
            reason,
            topic,
            "the delivery consumer failed for good; replacing it"
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
    messaging: &Messaging,
    consumer: &StreamConsumer<KafkaContext>,
    topic: &str,
    route: Route,
    cancel: &CancellationToken,
) -> Option<String> {
    let health = messaging.config.health.clone();
    loop {
        let received = tokio::select! {
            () = cancel.cancelled() => return None,
            () = consumer.context().failed() => {
                return Some(links::fatal(consumer).unwrap_or_default());
            }
            received = consumer.recv() => received,
        };
        let record = match received {
            Ok(record) => record,
            Err(err) => {
                if let Some(reason) = links::fatal(consumer) {
                    return Some(reason);
                }
                // librdkafka reconnects by itself; the health supervisor
                // reports the outage.
                tracing::debug!(error = %err, topic, "delivery consumer error");
                continue;
            }
        };
        let (partition, offset) = (record.partition(), record.offset());
        let key = record.key().unwrap_or_default().to_vec();
        let value = record.payload().unwrap_or_default().to_vec();
        drop(record);
        let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
        if !deliver(messaging, route, &key, &value, &mut backoff, cancel).await {
            // Cancelled before delivery: the offset stays, the record comes
            // again at the next start.
            return None;
        }
        if let Err(err) = consumer.store_offset(topic, partition, offset) {
            tracing::warn!(error = %err, topic, partition, offset, "could not store the delivery offset");
        }
    }
}

/// Delivers one record, retrying until it is done or the worker is cancelled
/// (then false).
async fn deliver(
    messaging: &Messaging,
    route: Route,
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
    let mut failures = 0u32;
    loop {
        let Some(contact) = messaging.known(&recipient) else {
            tracing::warn!(%recipient, "dropping an outbox record for an actor that is no longer a contact");
            return true;
        };
        let access = &contact.access;
        match messaging
            .peers
            .produce(
                access,
                messaging.me,
                route.peer_topic(access),
                key,
                value,
                route.priority(),
            )
            .await
        {
            Ok(()) => break,
            Err(err) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(contact = %contact.display_name, cluster = %access.bootstrap_servers, error = %err, "cannot deliver; retrying with backoff");
                } else {
                    tracing::debug!(contact = %contact.display_name, failures, error = %err, "still cannot deliver");
                }
                messaging.peers.forget(access);
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return false;
                }
            }
        }
    }
    if route == Route::Data
        && let Ok(id) = Uuid::from_slice(&envelope.message_id)
    {
        while let Err(err) = messaging.advance(&[id], MessageState::Delivered).await {
            tracing::warn!(error = %err, "cannot record a delivery; retrying");
            if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                return false;
            }
        }
    }
    true
}

async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}
