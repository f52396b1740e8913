//! The inbound rate per sender: records beyond a sender's allowance for the
//! minute they arrived in are refused as `RateLimited`; other senders are
//! unaffected. Counting by the minute of arrival (the broker's append time,
//! which a sender cannot forge) rather than of reading keeps a backlog read
//! after days offline within the rate it was sent at.

use std::collections::HashMap;
use std::time::Instant;

use rdkafka::message::Timestamp;

use super::check::{Checked, Rejected};
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::live::Live;
use crate::transport::rejections::RejectionLog;

/// The minute (since the epoch) a record reached the inbox: the broker's
/// append time where the topic keeps it (the inboxes kircd and terraform/
/// make do, see `kafka::APPEND_TIME_TOPICS`), else the minute it is read.
/// A producer's own timestamp is never used: a contact could forge it.
pub fn arrival_minute(timestamp: Timestamp, now_minute: i64) -> i64 {
    match timestamp {
        Timestamp::LogAppendTime(ms) => (ms / 60_000).min(now_minute),
        Timestamp::CreateTime(_) | Timestamp::NotAvailable => now_minute,
    }
}

/// Applies the per-sender rate (buckets in Valkey, one per sender and
/// minute of arrival) to a checked batch; `arrivals` holds each record's
/// minute of arrival. The own heartbeat is not limited.
pub async fn limit(
    live: &Live,
    me: ActorId,
    arrivals: &[i64],
    checked: Vec<Result<Checked, Rejected>>,
    log: &mut RejectionLog,
) -> Vec<Result<Checked, Rejected>> {
    let bucket_of = |minute: i64, result: &Result<Checked, Rejected>| match result {
        Ok(checked) => {
            let (sender, _) = checked.claimed();
            (sender != me).then_some((sender, minute))
        }
        Err(_) => None,
    };
    let mut counts: HashMap<(ActorId, i64), u64> = HashMap::new();
    for (minute, result) in arrivals.iter().zip(&checked) {
        if let Some(bucket) = bucket_of(*minute, result) {
            *counts.entry(bucket).or_default() += 1;
        }
    }
    let mut allowed: HashMap<(ActorId, i64), u64> = HashMap::new();
    for (&(sender, minute), &count) in &counts {
        let allowance = live.allowed(sender, minute, count).await;
        if allowance < count && log.admit(Rejection::RateLimited, Instant::now()) {
            tracing::warn!(%sender, minute, records = count, allowed = allowance, "a sender exceeds its inbound rate; the excess is dropped");
        }
        allowed.insert((sender, minute), allowance);
    }
    arrivals
        .iter()
        .zip(checked)
        .map(|(minute, result)| {
            let Some(bucket) = bucket_of(*minute, &result) else {
                return result;
            };
            let left = allowed.entry(bucket).or_default();
            if *left == 0 {
                let (sender, message_id) = match &result {
                    Ok(checked) => checked.claimed(),
                    // `bucket_of` gives no bucket to a rejected record.
                    Err(rejected) => return Err(rejected.clone()),
                };
                return Err(Rejected {
                    rejection: Rejection::RateLimited,
                    sender: Some(sender),
                    message_id: Some(message_id),
                });
            }
            *left -= 1;
            result
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_in_the_minute_the_broker_appended_them() {
        let now = 1_000;
        assert_eq!(
            arrival_minute(Timestamp::LogAppendTime(990 * 60_000 + 5), now),
            990
        );
        // A broker clock ahead of ours does not move the bucket into the future.
        assert_eq!(
            arrival_minute(Timestamp::LogAppendTime(1_005 * 60_000), now),
            now
        );
        // A producer's time is never trusted.
        assert_eq!(arrival_minute(Timestamp::CreateTime(5 * 60_000), now), now);
        assert_eq!(arrival_minute(Timestamp::NotAvailable, now), now);
    }
}
