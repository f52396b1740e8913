//! One record for the inbox to process, from an own Kafka inbox or a data
//! channel, and what the check reads of it.

use std::time::SystemTime;

use rdkafka::Message;
use rdkafka::message::OwnedMessage;

use super::check::Record;
use super::rate;
use crate::crypto::identity::ActorId;
use crate::transport::Lane;

/// One record to process, from an own Kafka inbox or a data channel.
pub(super) struct Arrival<'a> {
    /// The topic, or "direct".
    pub topic: &'a str,
    /// `marks::DIRECT` for the direct path.
    pub partition: i32,
    pub offset: i64,
    pub bytes: &'a [u8],
    pub lane: Lane,
    /// Minutes since the epoch, for the rate limit.
    pub minute: i64,
    pub via: Option<ActorId>,
    /// When it was taken from Kafka or the channel, for the timing marks.
    pub arrived: Option<SystemTime>,
}

impl<'a> Arrival<'a> {
    /// A record of the own `data-in` (named `data_in`) or `rpc-in`.
    pub fn from_kafka(
        record: &'a OwnedMessage,
        data_in: &str,
        now_minute: i64,
        arrived: Option<SystemTime>,
    ) -> Arrival<'a> {
        Arrival {
            topic: record.topic(),
            partition: record.partition(),
            offset: record.offset(),
            bytes: record.payload().unwrap_or_default(),
            lane: if record.topic() == data_in {
                Lane::Data
            } else {
                Lane::Control
            },
            minute: rate::arrival_minute(record.timestamp(), now_minute),
            via: None,
            arrived,
        }
    }

    /// What the check reads of it.
    pub fn record(&self) -> Record<'a> {
        Record {
            lane: self.lane,
            partition: self.partition,
            offset: self.offset,
            bytes: self.bytes,
            via: self.via,
        }
    }
}
