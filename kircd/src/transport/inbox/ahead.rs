//! Checking a batch, and checking the next one while a batch is applied.
//!
//! Signature checks and decryption are most of the inbox's CPU time and use
//! no state but the contact book; storing a batch is mostly waiting for
//! PostgreSQL. During a backlog the two overlap: once batch N is checked,
//! the records already fetched behind it are taken as batch N+1 and checked
//! on the blocking pool while N is applied. Only a batch with no control
//! record lets the next one be checked early, because applying a control
//! record (a profile, a block) may change the book the check reads; the
//! rate limit, the store and the offsets stay in batch order.

use std::sync::Arc;
use std::time::SystemTime;

use rdkafka::message::OwnedMessage;
use tokio::task::{JoinError, JoinHandle};

use super::PARALLEL_FROM;
use super::arrival::Arrival;
use super::check::{self, Checked, Record, Rejected};
use crate::book::ContactBook;

/// What the check of a batch gives: one result per record, in order.
pub(super) type CheckedBatch = Vec<Result<Checked, Rejected>>;

/// Checks the records on the calling thread and, for a large batch, as many
/// more as the machine has cores. It blocks: call it off the async workers.
pub(super) fn check_spread(records: &[Record<'_>], book: &ContactBook) -> CheckedBatch {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if records.len() < PARALLEL_FROM || threads < 2 {
        return check::check_many(records, book);
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || check::check_many(part, book)))
            .collect();
        parts
            .into_iter()
            // A panic in a check is a bug; it must not drop records.
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Whether applying the batch may change what the next one's check reads.
pub(super) fn lets_next_be_checked(checked: &CheckedBatch) -> bool {
    !checked
        .iter()
        .any(|result| matches!(result, Ok(Checked::Control(..))))
}

/// The batch behind the one being applied, being checked meanwhile.
pub(super) struct Ahead {
    /// When its records were taken from Kafka.
    pub arrived: Option<SystemTime>,
    /// Set when something was applied out of turn (a data channel's
    /// records) after the check began: it is checked again.
    pub stale: bool,
    check: JoinHandle<(Vec<OwnedMessage>, CheckedBatch)>,
}

impl Ahead {
    /// Starts checking `batch`, read from the own topics (`data_in` names the
    /// chat inbox), on the blocking pool.
    pub fn start(
        batch: Vec<OwnedMessage>,
        arrived: Option<SystemTime>,
        data_in: String,
        book: Arc<ContactBook>,
    ) -> Ahead {
        let check = tokio::task::spawn_blocking(move || {
            let checked = {
                let arrivals: Vec<Arrival<'_>> = batch
                    .iter()
                    // The minute is the rate limit's, read after the check.
                    .map(|record| Arrival::from_kafka(record, &data_in, 0, arrived))
                    .collect();
                let records: Vec<Record<'_>> = arrivals.iter().map(Arrival::record).collect();
                check_spread(&records, &book)
            };
            (batch, checked)
        });
        Ahead {
            arrived,
            stale: false,
            check,
        }
    }
}

/// The checked batch ahead, once its check is done; never if there is none.
/// Cancel-safe: the check goes on if this is dropped.
pub(super) async fn checked_ahead(
    ahead: &mut Option<Ahead>,
) -> Result<(Vec<OwnedMessage>, CheckedBatch), JoinError> {
    match ahead {
        Some(ahead) => (&mut ahead.check).await,
        None => std::future::pending().await,
    }
}
