//! A producer whose sends are futures that resolve with the broker's
//! acknowledgement, like rdkafka's `FutureProducer`, but idle at no CPU cost.
//!
//! `FutureProducer` serves delivery reports from a thread that polls in
//! 100 ms slices, and rdkafka truncates the time left in a slice to whole
//! milliseconds: when librdkafka's wait returns a fraction of a millisecond
//! early, the rest of the slice is spent polling with a zero timeout. That
//! spin cost about 1 % of a core per producer on an idle daemon (measured
//! with `perf` on the outbox producer), one more for every peer cluster. Here
//! the polling thread waits in slices of [`DELIVERY_POLL`], which leaves the
//! spin at a few hundredths of a per mille, and a delivery report still wakes
//! it at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use tokio::sync::oneshot;

use super::KafkaContext;

/// How long one wait of the delivery thread lasts. A delivery report ends the
/// wait at once; the length bounds how long the thread (and with it the
/// librdkafka client) outlives the last handle, and sets how often the spin
/// at the end of a slice comes: at 2 s the outbox's delivery thread used
/// 0.037 % of a core on an idle daemon, a sixth of its idle CPU.
const DELIVERY_POLL: Duration = Duration::from_secs(10);

/// Where a record landed: partition and offset.
pub type Delivered = (i32, i64);

/// What the delivery thread hands to a waiting send.
pub type DeliverySender = oneshot::Sender<Result<Delivered, KafkaError>>;

/// A cheap-to-clone handle; the client closes once every handle is gone.
#[derive(Clone)]
pub struct AckedProducer {
    inner: Arc<Inner>,
}

struct Inner {
    producer: Arc<BaseProducer<KafkaContext>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The delivery thread holds the last reference to the client and
        // drops it, with librdkafka's final purge and flush, on its way out.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for AckedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedProducer").finish_non_exhaustive()
    }
}

impl AckedProducer {
    pub fn new(config: &ClientConfig, name: &str) -> Result<Self, KafkaError> {
        let producer = Arc::new(BaseProducer::from_config_and_context(
            config,
            KafkaContext::new(config),
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let (poller, stopped) = (Arc::clone(&producer), Arc::clone(&stop));
        std::thread::Builder::new()
            .name(format!("kafka-acks-{name}"))
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    poller.poll(DELIVERY_POLL);
                    super::restore_lost_brokers(poller.client());
                }
            })
            .map_err(|err| KafkaError::ClientCreation(err.to_string()))?;
        Ok(AckedProducer {
            inner: Arc::new(Inner { producer, stop }),
        })
    }

    /// The librdkafka client, shared with the daemon's Kafka health probe.
    pub fn client(&self) -> Arc<BaseProducer<KafkaContext>> {
        Arc::clone(&self.inner.producer)
    }

    /// Queues one record and waits for the broker's acknowledgement (or the
    /// failure after `message.timeout.ms`). A full local queue fails at once.
    pub async fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<Delivered, KafkaError> {
        let (acked_tx, acked_rx) = oneshot::channel();
        let record: BaseRecord<'_, [u8], [u8], Box<DeliverySender>> =
            BaseRecord::with_opaque_to(topic, Box::new(acked_tx))
                .key(key)
                .payload(value);
        self.inner
            .producer
            .send(record)
            .map_err(|(err, _record)| err)?;
        // Every queued record gets a delivery report, purged ones included;
        // a dropped sender means the client went away first.
        acked_rx.await.unwrap_or(Err(KafkaError::Canceled))
    }

    /// The earliest offset still held in each partition of `topic`: what
    /// is below it expired. Blocks for up to `timeout` per request.
    pub fn low_watermarks(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<(i32, i64)>, KafkaError> {
        let client = self.inner.producer.client();
        let metadata = client.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
            .collect();
        partitions
            .into_iter()
            .map(|partition| {
                client
                    .fetch_watermarks(topic, partition, timeout)
                    .map(|(low, _)| (partition, low))
            })
            .collect()
    }

    /// Waits for everything queued to be acknowledged (at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.inner.producer.flush(timeout)
    }
}
