//! The inbound rate per sender: records beyond a sender's allowance for the
//! minute they arrived in are refused as `RateLimited`; other senders are
//! unaffected. Counting by the minute of arrival (the broker's append time,
//! which a sender cannot forge) rather than of reading keeps a backlog read
//! after days offline within the rate it was sent at.
//!
//! Records from the Kafka inboxes are counted in Valkey, so that a restart
//! does not give a sender a fresh allowance for a backlog. The inbox has one
//! reader, though: every record of a minute that began after this process
//! did reaches this process, and so does every record of an earlier minute
//! that Valkey did not count yet. So Valkey is asked once per sender and
//! minute from before the start (its answer then counted on here), and
//! otherwise only told, without waiting (for the next start): neither a chat
//! message nor a backlog's batch waits for a round trip to Valkey. Records
//! from a data channel are counted in this process only: a channel is one
//! contact's connection to this daemon and ends with it, and the Kafka copy
//! of every chat message is still counted.
//!
//! A record is counted once, however often it is read. What a crash leaves
//! uncommitted is read again by the next process, and Valkey counted it
//! already: counted again, a sender's fast but honest burst would exceed its
//! allowance on the second reading, and its last messages be dropped. So
//! Valkey keeps, with the counts and in the same transaction, the offset
//! through which each inbox partition was counted; a record at or below it
//! is read again: neither counted nor limited (its first reading either
//! stored it, and storing it again changes nothing, or refused it as over
//! the rate, and letting it in now lets in at most what one crash left
//! uncommitted, or one batch whose storing failed and is tried again).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use rdkafka::message::Timestamp;

use super::check::{Checked, Rejected};
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::live::{Live, RateTally};
use crate::transport::Lane;
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

/// Records counted in this process, per sender and minute of arrival.
#[derive(Debug, Default)]
struct MinuteCounts {
    counts: Mutex<HashMap<(ActorId, i64), u64>>,
}

impl MinuteCounts {
    /// Adds `records` to `sender`'s count for `minute` and returns the count
    /// before. Minutes before the previous one are forgotten: nothing
    /// arrives in them any more.
    fn add(&self, sender: ActorId, minute: i64, records: u64) -> u64 {
        self.add_if(sender, minute, records, true)
            .unwrap_or_default()
    }

    /// [`MinuteCounts::add`], but a sender and minute not counted yet are
    /// begun only if `may_begin` (otherwise `None`, nothing added).
    fn add_if(&self, sender: ActorId, minute: i64, records: u64, may_begin: bool) -> Option<u64> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.retain(|&(_, counted), _| counted >= minute - 1);
        let count = match counts.entry((sender, minute)) {
            std::collections::hash_map::Entry::Occupied(counted) => counted.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) if may_begin => new.insert(0),
            std::collections::hash_map::Entry::Vacant(_) => return None,
        };
        let before = *count;
        *count += records;
        Some(before)
    }
}

/// What the rate counts in this process.
#[derive(Debug)]
pub struct RateCounts {
    /// Records from data channels.
    channels: MinuteCounts,
    /// Records from the Kafka inboxes in minutes from `kafka_complete_from`
    /// on.
    kafka: MinuteCounts,
    /// The first minute all of whose Kafka records reach this process: two
    /// after the one it started in, a margin for a broker clock up to a
    /// minute ahead of ours (an earlier process may have read records the
    /// broker stamped with the minute we started in, or the next).
    kafka_complete_from: i64,
    /// Per inbox partition, the offset through which its records were
    /// counted, here or by an earlier process; a partition is asked of
    /// Valkey the first time it is read.
    counted_through: Mutex<HashMap<Partition, i64>>,
}

impl RateCounts {
    /// Counts for a process that starts in `minute`.
    pub fn starting_in(minute: i64) -> Self {
        RateCounts {
            channels: MinuteCounts::default(),
            kafka: MinuteCounts::default(),
            kafka_complete_from: minute + 2,
            counted_through: Mutex::default(),
        }
    }

    /// Whether each arrival is read for the first time (always, for a data
    /// channel's); then takes the batch as counted through its offsets.
    async fn first_readings(&self, live: &Live, arrivals: &[Arrived]) -> Vec<bool> {
        let unknown: HashSet<Partition> = {
            let known = self.lock_counted_through();
            arrivals
                .iter()
                .filter_map(|arrived| arrived.place)
                .map(|place| place.partition())
                .filter(|partition| !known.contains_key(partition))
                .collect()
        };
        let mut asked = Vec::with_capacity(unknown.len());
        for partition in unknown {
            // Valkey away: nothing known, everything counted, as before.
            let through = live
                .counted_through(&partition_name(partition))
                .await
                .unwrap_or(-1);
            asked.push((partition, through));
        }
        let mut known = self.lock_counted_through();
        for (partition, through) in asked {
            known.entry(partition).or_insert(through);
        }
        first_readings(&mut known, arrivals)
    }

    fn lock_counted_through(&self) -> std::sync::MutexGuard<'_, HashMap<Partition, i64>> {
        self.counted_through
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `records` from `sender` in `minute` here if this process has
    /// all of that minute's records from their path, or Valkey's count of
    /// the others, and returns the count before them; `None` if Valkey's
    /// count must decide (then [`RateCounts::counted_in_valkey`]).
    fn count_here(&self, sender: ActorId, minute: i64, records: u64, direct: bool) -> Option<u64> {
        if direct {
            Some(self.channels.add(sender, minute, records))
        } else {
            self.kafka
                .add_if(sender, minute, records, minute >= self.kafka_complete_from)
        }
    }

    /// Takes Valkey's count of `sender`'s records in `minute` (`before`, and
    /// the `records` it just added) as the count here from now on.
    fn counted_in_valkey(&self, sender: ActorId, minute: i64, before: u64, records: u64) {
        self.kafka.add(sender, minute, before + records);
    }
}

/// When and how a record arrived, as the rate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Arrived {
    /// Minutes since the epoch.
    pub minute: i64,
    /// Where in a Kafka inbox it was read; `None` over a data channel.
    pub place: Option<Place>,
}

impl Arrived {
    fn direct(&self) -> bool {
        self.place.is_none()
    }
}

/// Where in the Kafka inboxes a record was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub lane: Lane,
    pub partition: i32,
    pub offset: i64,
}

impl Place {
    fn partition(&self) -> Partition {
        (self.lane, self.partition)
    }
}

/// An inbox partition: the lane of its topic, and its number.
type Partition = (Lane, i32);

/// How Valkey names an inbox partition.
fn partition_name((lane, number): Partition) -> String {
    let topic = match lane {
        Lane::Data => "data-in",
        Lane::Control => "rpc-in",
    };
    format!("{topic}:{number}")
}

/// Whether each arrival is read for the first time, given the offsets each
/// partition was counted through (`known`, which must hold every partition
/// of `arrivals`); raises those to the batch's offsets.
fn first_readings(known: &mut HashMap<Partition, i64>, arrivals: &[Arrived]) -> Vec<bool> {
    arrivals
        .iter()
        .map(|arrived| {
            let Some(place) = arrived.place else {
                return true;
            };
            let through = known.entry(place.partition()).or_insert(-1);
            let first = place.offset > *through;
            *through = (*through).max(place.offset);
            first
        })
        .collect()
}

/// The partitions of `arrivals`, by Valkey's name, with the highest offset
/// read of each.
fn read_through(arrivals: &[Arrived]) -> Vec<(String, i64)> {
    let mut through: HashMap<Partition, i64> = HashMap::new();
    for place in arrivals.iter().filter_map(|arrived| arrived.place) {
        let highest = through.entry(place.partition()).or_insert(place.offset);
        *highest = (*highest).max(place.offset);
    }
    through
        .into_iter()
        .map(|(partition, offset)| (partition_name(partition), offset))
        .collect()
}

/// One sender's records of one minute, by one path.
type Bucket = (ActorId, i64, bool);

/// Applies the per-sender rate to a checked batch; `arrivals` says how and
/// when each record arrived. The own heartbeat is not limited, nor a record
/// read again.
pub async fn limit(
    live: &Live,
    here: &RateCounts,
    me: ActorId,
    arrivals: &[Arrived],
    checked: Vec<Result<Checked, Rejected>>,
    log: &mut RejectionLog,
) -> Vec<Result<Checked, Rejected>> {
    let first_readings = here.first_readings(live, arrivals).await;
    let bucket_of = |arrived: Arrived, first: bool, result: &Result<Checked, Rejected>| match result
    {
        Ok(checked) if first => {
            let (sender, _) = checked.claimed();
            (sender != me).then_some((sender, arrived.minute, arrived.direct()))
        }
        _ => None,
    };
    let mut counts: HashMap<Bucket, u64> = HashMap::new();
    for ((arrived, first), result) in arrivals.iter().zip(&first_readings).zip(&checked) {
        if let Some(bucket) = bucket_of(*arrived, *first, result) {
            *counts.entry(bucket).or_default() += 1;
        }
    }
    let mut allowed: HashMap<Bucket, u64> = HashMap::new();
    let mut tally = RateTally {
        counts: Vec::new(),
        through: read_through(arrivals),
    };
    // Indices into `tally.counts` of the buckets only Valkey can decide.
    let mut undecided = Vec::new();
    for (&(sender, minute, direct), &count) in &counts {
        let before = here.count_here(sender, minute, count, direct);
        if !direct {
            if before.is_none() {
                undecided.push(tally.counts.len());
            }
            tally.counts.push((sender, minute, count));
        }
        if let Some(before) = before {
            allowed.insert((sender, minute, direct), live.allowance(before, count));
        }
    }
    if undecided.is_empty() {
        if !tally.is_empty() {
            live.add_to_rate(tally);
        }
    } else {
        let befores = live.count_in_valkey(&tally).await;
        for index in undecided {
            let (sender, minute, count) = tally.counts[index];
            let allowance = match befores.as_ref().and_then(|befores| befores.get(index)) {
                Some(&before) => {
                    here.counted_in_valkey(sender, minute, before, count);
                    live.allowance(before, count)
                }
                // With Valkey away there is no limit: chat goes on.
                None => count,
            };
            allowed.insert((sender, minute, false), allowance);
        }
    }
    for (&(sender, minute, direct), &count) in &counts {
        let allowance = allowed
            .get(&(sender, minute, direct))
            .copied()
            .unwrap_or(count);
        if allowance < count && log.admit(Rejection::RateLimited, Instant::now()) {
            tracing::warn!(%sender, minute, records = count, allowed = allowance, direct, "a sender exceeds its inbound rate; the excess is dropped");
        }
    }
    arrivals
        .iter()
        .zip(first_readings)
        .zip(checked)
        .map(|((arrived, first), result)| {
            let Some(bucket) = bucket_of(*arrived, first, &result) else {
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
    fn counts_add_per_sender_and_minute_and_forget_old_minutes() {
        let counts = MinuteCounts::default();
        let (alice, bob) = (
            ActorId::from_slice(&[1; 16]).unwrap(),
            ActorId::from_slice(&[2; 16]).unwrap(),
        );
        assert_eq!(counts.add(alice, 10, 3), 0);
        assert_eq!(counts.add(alice, 10, 2), 3);
        assert_eq!(counts.add(bob, 10, 1), 0, "each sender has its own count");
        assert_eq!(counts.add(alice, 11, 1), 0, "each minute starts afresh");
        assert_eq!(counts.add(alice, 10, 1), 5, "the previous minute is kept");
        assert_eq!(counts.add(alice, 12, 1), 0);
        let kept = counts.counts.lock().unwrap().len();
        assert_eq!(kept, 2, "minutes 11 and 12 of alice are kept, 10 is gone");
    }

    #[test]
    fn kafka_records_are_counted_here_from_the_second_minute_after_the_start() {
        let here = RateCounts::starting_in(100);
        let alice = ActorId::from_slice(&[1; 16]).unwrap();
        // An earlier process may have read some of these minutes' records.
        assert_eq!(here.count_here(alice, 99, 5, false), None);
        assert_eq!(here.count_here(alice, 100, 5, false), None);
        assert_eq!(here.count_here(alice, 101, 5, false), None);
        assert_eq!(here.count_here(alice, 102, 5, false), Some(0));
        assert_eq!(here.count_here(alice, 102, 2, false), Some(5));
        // Channels are counted apart from Kafka, and always here.
        assert_eq!(here.count_here(alice, 102, 1, true), Some(0));
        assert_eq!(here.count_here(alice, 100, 1, true), Some(0));
        assert_eq!(here.count_here(alice, 102, 1, false), Some(7));
    }

    #[test]
    fn an_earlier_minute_asks_valkey_once_and_is_counted_here_after() {
        let here = RateCounts::starting_in(100);
        let alice = ActorId::from_slice(&[1; 16]).unwrap();
        assert_eq!(here.count_here(alice, 100, 5, false), None);
        // Valkey had 30 of an earlier process, and now the 5.
        here.counted_in_valkey(alice, 100, 30, 5);
        assert_eq!(here.count_here(alice, 100, 2, false), Some(35));
        assert_eq!(here.count_here(alice, 100, 1, false), Some(37));
        // Another sender's minute is its own.
        let bob = ActorId::from_slice(&[2; 16]).unwrap();
        assert_eq!(here.count_here(bob, 100, 1, false), None);
    }

    #[test]
    fn a_record_at_or_below_its_partitions_counted_offset_is_read_again() {
        let kafka = |lane, partition, offset| Arrived {
            minute: 7,
            place: Some(Place {
                lane,
                partition,
                offset,
            }),
        };
        let channel = Arrived {
            minute: 7,
            place: None,
        };
        // An earlier process counted data-in:0 through offset 10.
        let mut known = HashMap::from([((Lane::Data, 0), 10)]);
        let batch = [
            kafka(Lane::Data, 0, 9),
            kafka(Lane::Data, 0, 10),
            kafka(Lane::Data, 0, 11),
            kafka(Lane::Control, 0, 3),
            kafka(Lane::Data, 1, 0),
            channel,
        ];
        assert_eq!(
            first_readings(&mut known, &batch),
            [false, false, true, true, true, true],
            "each partition has its own offsets; a channel's record has none"
        );
        assert_eq!(known[&(Lane::Data, 0)], 11);
        assert_eq!(known[&(Lane::Control, 0)], 3);
        assert_eq!(known[&(Lane::Data, 1)], 0);
        // The same records again (a replaced consumer): all read again.
        assert_eq!(
            first_readings(&mut known, &batch[..5]),
            [false, false, false, false, false]
        );
        let mut through = read_through(&batch);
        through.sort();
        assert_eq!(
            through,
            [
                ("data-in:0".to_owned(), 11),
                ("data-in:1".to_owned(), 0),
                ("rpc-in:0".to_owned(), 3)
            ]
        );
    }

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
