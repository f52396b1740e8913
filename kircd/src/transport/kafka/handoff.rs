//! The send path's hand-over to the delivery workers. A record the own
//! outbox has acknowledged is also handed straight to its lane's delivery
//! worker, which hands it on to the contact at once when it is the next
//! record of its partition, instead of waiting for its consumer to fetch it
//! back from the broker (0.25 ms p50 on every message's way on the
//! development machine; at a distance the fetched record and the
//! acknowledgement arrive together, and it saves nothing). The fetched
//! copy then only stores its offset.
//!
//! Nothing else about delivery changes: the worker still hands on one record
//! at a time per outbox, in offset order within a partition, and stores an
//! offset only once every record up to it was handed on. A record that is
//! not the next one (the worker is behind, retrying, or has just started
//! and does not know where a partition stands) is left to the consumer,
//! which brings every record in any case. The hand-over is lossy on
//! purpose: a full queue drops it, and so does a worker that stopped.
//!
//! The writes the sender makes behind a message (its QUEUED state, the
//! place of the copy handed on) wait until the worker's first attempt to
//! hand the message on is over ([`FirstAttempt`]): on the two cores of the
//! development machine a commit beside the produce to the contact slowed
//! that produce from 0.56 to 1.07 ms p50, on every message's way. When that
//! attempt handed it on, the worker writes the message's place, the
//! copy's and DELIVERED in one statement and the send path writes no
//! QUEUED: one commit behind the message instead of three.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::transport::Lane;

/// How many acknowledged records may wait for a busy worker; beyond that
/// they come through the consumer. A worker that keeps up takes each at
/// once; one retrying an unreachable contact holds at most this many
/// copies of envelopes of at most 64 KiB (`MAX_ENVELOPE_BYTES`): 4 MiB per
/// lane at worst.
const WAITING: usize = 64;

/// A record the own outbox acknowledged, at its place.
#[derive(Debug)]
pub struct Handed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Sent to once the worker's first attempt handed the record on;
    /// dropped when that attempt failed, or with the record when the worker
    /// does not take it.
    pub first_attempt: Option<oneshot::Sender<()>>,
    /// Whether its message is stored, for chat.
    pub stored: Stored,
}

/// Whether the message of a chat record is in the sender's store, which it
/// must be before the record is handed on: a record whose message was never
/// stored (the write failed, or found its idempotency key taken) would show
/// the contact a message the sender's history lacks, and a retry of the
/// call would send it again under another id. A new message is stored while
/// its record is produced (two waits side by side instead of one after the
/// other on every send), so its record may reach the worker first.
#[derive(Debug)]
pub enum Stored {
    /// Stored before the record was produced (a message produced again),
    /// or not chat.
    Before,
    /// Being stored while the record is produced: `Some(stored)` here once
    /// the write is over; closed without it when the call was cut short
    /// (then it is looked up).
    Pending(watch::Receiver<Option<bool>>),
    /// Not known: a record fetched back from the outbox (after a restart,
    /// or one the hand-over did not bring), looked up.
    Unknown,
}

/// How long the writes behind a message wait for its first attempt at
/// most. An acknowledgement takes well under a millisecond on loopback and
/// a round trip at a distance (where the produce waits on the network, not
/// on the cores); an attempt still going after this is failing, and a
/// receipt from any contact waits for the copy's place to be written, so
/// the writes go ahead then.
pub const FIRST_ATTEMPT_AT_MOST: Duration = Duration::from_millis(50);

/// The wait of the writes behind one message for the worker's first
/// attempt to hand it on.
#[derive(Debug)]
pub struct FirstAttempt(oneshot::Receiver<()>);

impl FirstAttempt {
    /// A wait and the sender that ends it.
    pub fn new() -> (oneshot::Sender<()>, Self) {
        let (over, wait) = oneshot::channel();
        (over, FirstAttempt(wait))
    }

    /// Until the first attempt is over (at once when the worker did not
    /// take the record), and [`FIRST_ATTEMPT_AT_MOST`] at the latest:
    /// whether it handed the record on.
    pub async fn over(self) -> bool {
        matches!(
            tokio::time::timeout(FIRST_ATTEMPT_AT_MOST, self.0).await,
            Ok(Ok(()))
        )
    }
}

/// The send path's end: where the outbox hands what it produced.
#[derive(Debug, Clone)]
pub struct HandOver {
    data: mpsc::Sender<Handed>,
    control: mpsc::Sender<Handed>,
}

/// The workers' ends, one per lane.
#[derive(Debug)]
pub struct HandedRecords {
    pub data: mpsc::Receiver<Handed>,
    pub control: mpsc::Receiver<Handed>,
}

/// A hand-over and the records it hands over.
pub fn channel() -> (HandOver, HandedRecords) {
    let (data, data_records) = mpsc::channel(WAITING);
    let (control, control_records) = mpsc::channel(WAITING);
    (
        HandOver { data, control },
        HandedRecords {
            data: data_records,
            control: control_records,
        },
    )
}

impl HandOver {
    /// Hands `record` to the worker of `lane`, unless it is busy with more
    /// than it can queue or stopped: then its consumer brings the record.
    pub fn hand(&self, lane: Lane, record: Handed) {
        let worker = match lane {
            Lane::Data => &self.data,
            Lane::Control => &self.control,
        };
        // Dropping it is the designed fallback, not an error.
        let _ = worker.try_send(record);
    }
}

/// Where a delivery worker stands in each partition of its outbox: the
/// offset of the next record to hand on, where it is known, and the
/// records it took from the hand-over whose fetched copies have not come
/// yet.
#[derive(Debug, Default)]
pub struct Progress {
    next: HashMap<i32, i64>,
    handed_over: HashMap<i32, BTreeSet<i64>>,
}

impl Progress {
    /// A worker whose partitions start at these offsets (partition,
    /// offset): every record below them was handed on before.
    pub fn starting_at(starts: impl IntoIterator<Item = (i32, i64)>) -> Self {
        Progress {
            next: starts.into_iter().collect(),
            handed_over: HashMap::new(),
        }
    }

    /// Whether a handed record is the next one of its partition, so that
    /// handing it on now keeps the partition's order.
    pub fn is_next(&self, partition: i32, offset: i64) -> bool {
        self.next.get(&partition) == Some(&offset)
    }

    /// The handed record at `offset` was handed on.
    pub fn took_handed(&mut self, partition: i32, offset: i64) {
        self.next.insert(partition, offset + 1);
        self.handed_over
            .entry(partition)
            .or_default()
            .insert(offset);
    }

    /// A record was fetched: whether it was handed on already, from the
    /// hand-over. Only the very offsets taken from it count, never a guess
    /// from where the worker stands: a consumer sent back to an earlier
    /// offset (a topic made anew) hands on again whatever it fetches.
    pub fn fetched(&mut self, partition: i32, offset: i64) -> bool {
        let Some(taken) = self.handed_over.get_mut(&partition) else {
            return false;
        };
        // The consumer reads a partition in order: a copy below this one
        // that has not come will not come.
        let later = taken.split_off(&offset);
        *taken = later;
        taken.remove(&offset)
    }

    /// The fetched record at `offset` was handed on.
    pub fn passed(&mut self, partition: i32, offset: i64) {
        self.next.insert(partition, offset + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the worker does with each record, in the order they reach it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reaches {
        HandedOver(i32, i64),
        Fetched(i32, i64),
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Done {
        HandedOn(i32, i64),
        Skipped(i32, i64),
    }

    /// Runs a worker's decisions over `arrivals` from `starts`.
    fn worker(starts: &[(i32, i64)], arrivals: &[Reaches]) -> Vec<Done> {
        let mut progress = Progress::starting_at(starts.iter().copied());
        let mut done = Vec::new();
        for arrival in arrivals {
            match *arrival {
                HandedOver(partition, offset) => {
                    if progress.is_next(partition, offset) {
                        progress.took_handed(partition, offset);
                        done.push(HandedOn(partition, offset));
                    }
                }
                Fetched(partition, offset) => {
                    if progress.fetched(partition, offset) {
                        done.push(Skipped(partition, offset));
                    } else {
                        progress.passed(partition, offset);
                        done.push(HandedOn(partition, offset));
                    }
                }
            }
        }
        done
    }

    /// A case: its name, where the partitions start, what reaches the
    /// worker, and what it must do.
    type Case = (
        &'static str,
        &'static [(i32, i64)],
        &'static [Reaches],
        &'static [Done],
    );

    use Done::{HandedOn, Skipped};
    use Reaches::{Fetched, HandedOver};

    #[test]
    fn each_record_is_handed_on_once_in_offset_order_whoever_brings_it_first() {
        let cases: &[Case] = &[
            (
                "the hand-over first, the fetched copy only skipped",
                &[(0, 5)],
                &[HandedOver(0, 5), Fetched(0, 5)],
                &[HandedOn(0, 5), Skipped(0, 5)],
            ),
            (
                "the fetched copy first, the late hand-over dropped",
                &[(0, 5)],
                &[Fetched(0, 5), HandedOver(0, 5)],
                &[HandedOn(0, 5)],
            ),
            (
                "a hand-over past a record not yet handed on waits for the consumer",
                &[(0, 5)],
                &[HandedOver(0, 6), Fetched(0, 5), Fetched(0, 6)],
                &[HandedOn(0, 5), HandedOn(0, 6)],
            ),
            (
                "a partition without a known start takes no hand-over until a fetch",
                &[],
                &[
                    HandedOver(1, 0),
                    Fetched(1, 0),
                    HandedOver(1, 1),
                    Fetched(1, 1),
                ],
                &[HandedOn(1, 0), HandedOn(1, 1), Skipped(1, 1)],
            ),
            (
                "partitions stand apart",
                &[(0, 3), (1, 9)],
                &[
                    HandedOver(1, 9),
                    HandedOver(0, 4),
                    Fetched(0, 3),
                    HandedOver(0, 4),
                ],
                &[HandedOn(1, 9), HandedOn(0, 3), HandedOn(0, 4)],
            ),
            (
                "a hand-over already passed by the consumer is not handed on again",
                &[(0, 0)],
                &[
                    Fetched(0, 0),
                    Fetched(0, 1),
                    HandedOver(0, 1),
                    HandedOver(0, 0),
                ],
                &[HandedOn(0, 0), HandedOn(0, 1)],
            ),
            (
                "a consumer sent back before its start hands on what it fetches",
                &[(0, 500)],
                &[HandedOver(0, 3), Fetched(0, 0), Fetched(0, 1)],
                &[HandedOn(0, 0), HandedOn(0, 1)],
            ),
            (
                "a copy the consumer went past is forgotten, and handed on again if it comes back",
                &[(0, 5)],
                &[HandedOver(0, 5), Fetched(0, 6), Fetched(0, 5)],
                &[HandedOn(0, 5), HandedOn(0, 6), HandedOn(0, 5)],
            ),
        ];
        for (name, starts, arrivals, wanted) in cases {
            assert_eq!(worker(starts, arrivals), *wanted, "{name}");
        }
    }

    #[test]
    fn a_full_or_stopped_worker_drops_the_hand_over_without_blocking() {
        let (hand_over, mut records) = channel();
        for offset in 0..(WAITING as i64 + 10) {
            hand_over.hand(
                Lane::Data,
                Handed {
                    topic: String::from("data-out"),
                    partition: 0,
                    offset,
                    key: Vec::new(),
                    value: Vec::new(),
                    first_attempt: None,
                    stored: Stored::Before,
                },
            );
        }
        let mut queued = 0;
        while records.data.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, WAITING);
        drop(records);
        hand_over.hand(
            Lane::Control,
            Handed {
                topic: String::from("rpc-out"),
                partition: 0,
                offset: 0,
                key: Vec::new(),
                value: Vec::new(),
                first_attempt: None,
                stored: Stored::Before,
            },
        );
    }
}
