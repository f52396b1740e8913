//! The inbox worker: consumes the own `data-in` and `rpc-in` in batches
//! (and the data channels' records, `direct.rs`),
//! checks each record (`check.rs`), limits each sender's rate (`rate.rs`),
//! hands chat to the router's chat sink and each control record to its
//! kind's handler (after judging it against its sender's mark), and only
//! then stores the offsets. A bad record is counted, quarantined where
//! useful (within bounds), logged (a few lines per reason, then summaries;
//! `settle.rs`), and skipped; it never stops the worker or the records
//! behind it.

mod ahead;
mod arrival;
pub mod check;
mod direct;
mod rate;
mod settle;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Lane;
use super::direct::DirectRecord;
use super::marks::{self, Mark, Marks, Verdict};
use super::rejections::{RejectionLog, Rejections};
use super::router::{Control, HandlerError, Router};
use crate::backends::hops;
use crate::backends::kafka::consumer::Reader;
use crate::backends::kafka::{Feed, OwnTopics};
use crate::backends::supervise::Backoff;
use crate::book::ContactBook;
use crate::config::{HealthConfig, KafkaConfig};
use crate::crypto::envelope::{Header, Rejection};
use crate::crypto::identity::ActorId;
use crate::hub::Hub;
use crate::live::Live;
use crate::store::{QuarantineBounds, StoreError};
use ahead::{Ahead, CheckedBatch};
use arrival::Arrival;
use check::{Checked, Record, Rejected};
pub use rate::RateCounts;

/// Records handled together: one database statement and one receipt per
/// sender per batch.
const BATCH_MAX: usize = 4000;

/// Below this many records a batch is checked on one thread.
const PARALLEL_FROM: usize = 64;

/// How much of itself the inbox logs and keeps of what it refuses.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub rejection_log_burst: u32,
    pub rejection_log_interval: Duration,
    pub quarantine: QuarantineBounds,
}

/// What the inbox worker needs.
#[derive(Debug)]
pub struct Inbox {
    pub kafka: KafkaConfig,
    /// The own topics' consumer, shared with the delivery lanes.
    pub topics: Arc<OwnTopics>,
    pub health: HealthConfig,
    pub limits: Limits,
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    pub book: Arc<ContactBook>,
    pub live: Arc<Live>,
    pub router: Router,
    pub marks: Arc<Marks>,
    pub rejections: Arc<Rejections>,
    /// Records from contacts' data channels, taken by the running worker.
    pub direct: std::sync::Mutex<Option<mpsc::Receiver<DirectRecord>>>,
    /// The rate counts kept in this process.
    pub rate_counts: RateCounts,
}

/// The name the direct path goes by where a topic is shown.
const DIRECT_TOPIC: &str = "direct";

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Handler(HandlerError),
}

/// Why a consumer loop ended.
enum Ended {
    Cancelled,
    /// librdkafka's fatal error: the consumer must be replaced.
    Fatal(String),
}

impl Inbox {
    /// Publishes the counters.
    pub fn publish_figures(&self) {
        self.hub.set_inbox(self.rejections.figures());
    }

    /// Consumes the own inboxes until cancelled, once the state is loaded.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.book.wait_loaded() => {}
        }
        let mut log = RejectionLog::new(
            self.limits.rejection_log_burst,
            self.limits.rejection_log_interval,
        );
        let mut backoff = Backoff::new(self.health.retry_initial, self.health.retry_max);
        let channels = self
            .direct
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // The channels' chat is stored beside this loop; their control
        // records come back to it.
        let (mut direct, direct_task) = match channels {
            Some(records) => {
                let (controls, direct_controls) = mpsc::channel(direct::CONTROLS_WAITING);
                let task = tokio::spawn(direct::run(
                    Arc::clone(&self),
                    records,
                    controls,
                    cancel.clone(),
                ));
                (Some(direct_controls), Some(task))
            }
            None => (None, None),
        };
        loop {
            let feed = tokio::select! {
                () = cancel.cancelled() => break,
                claimed = self.topics.claim(Reader::Inbox) => match claimed {
                    Ok(feed) => feed,
                    Err(err) => {
                        tracing::error!(error = %err, "cannot open the own topics' consumer; retrying");
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(backoff.next_delay()) => continue,
                        }
                    }
                },
            };
            let ended = self
                .consume(&feed, &cancel, &mut log, direct.as_mut())
                .await;
            self.topics.release(feed).await;
            match ended {
                Ended::Cancelled => break,
                Ended::Fatal(reason) => {
                    // What it had not committed comes again to the new one,
                    // and is stored once.
                    tracing::warn!(
                        reason,
                        "the own topics' consumer failed for good; replacing it"
                    );
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        if let Some(task) = direct_task
            && let Err(err) = task.await
        {
            tracing::error!(error = %err, "the data channels' inbox task failed");
        }
        self.write_summaries(&mut log);
    }

    async fn consume(
        &self,
        feed: &Feed,
        cancel: &CancellationToken,
        log: &mut RejectionLog,
        mut direct: Option<&mut mpsc::Receiver<DirectRecord>>,
    ) -> Ended {
        let data_in = &self.kafka.topics.data_in;
        let mut ahead: Option<Ahead> = None;
        loop {
            let summary_due = log.next_due();
            // Biased: a control record from a data channel (typing,
            // presence) took the channel to be fast; Kafka's may wait.
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ended::Cancelled,
                Some(record) = next_direct(&mut direct) => {
                    let mut records = vec![record];
                    if let Some(direct) = direct.as_mut() {
                        while records.len() < BATCH_MAX {
                            match direct.try_recv() {
                                Ok(record) => records.push(record),
                                Err(_) => break,
                            }
                        }
                    }
                    if self.process_direct(&records, log, cancel).await.is_err() {
                        return Ended::Cancelled;
                    }
                    if let Some(ahead) = ahead.as_mut() {
                        ahead.stale = true;
                    }
                    continue;
                }
                () = feed.failed() => return Ended::Fatal(feed.fatal().unwrap_or_default()),
                () = sleep_until(summary_due) => {
                    self.write_summaries(log);
                    continue;
                }
                checked = ahead::checked_ahead(&mut ahead), if ahead.is_some() => Next::Ahead(checked),
                // Records behind the batch ahead wait for it: batches are
                // applied in the order they were read.
                received = feed.recv(), if ahead.is_none() => Next::Fetched(received),
            };
            let (batch, arrived, checked) = match next {
                Next::Ahead(Ok((batch, checked))) => {
                    let Some(ahead) = ahead.take() else {
                        // The branch is enabled only with a batch ahead.
                        continue;
                    };
                    (batch, ahead.arrived, (!ahead.stale).then_some(checked))
                }
                Next::Ahead(Err(err)) => match err.try_into_panic() {
                    // A panic in a check is a bug; it must not drop records.
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // The runtime is shutting down.
                    Err(_) => return Ended::Cancelled,
                },
                Next::Fetched(first) => {
                    let arrived = hops::now();
                    let first = match first {
                        Ok(record) => record,
                        Err(err) => {
                            if let Some(reason) = feed.fatal() {
                                return Ended::Fatal(reason);
                            }
                            tracing::debug!(error = %err, "inbox consumer error");
                            continue;
                        }
                    };
                    (fetched(feed, vec![first]), arrived, None)
                }
            };
            let now_minute = kirc_proto::unix_ms(SystemTime::now()) / 60_000;
            let arrivals: Vec<Arrival<'_>> = batch
                .iter()
                .map(|record| Arrival::from_kafka(record, data_in, now_minute, arrived))
                .collect();
            let checked = checked.unwrap_or_else(|| {
                let records: Vec<Record<'_>> = arrivals.iter().map(Arrival::record).collect();
                self.check_all(&records)
            });
            // A backlog: what is already fetched is checked while this
            // batch is applied.
            if ahead::lets_next_be_checked(&checked) {
                let next = fetched(feed, Vec::new());
                if !next.is_empty() {
                    tracing::debug!(
                        records = next.len(),
                        "checking the next batch while this one is stored"
                    );
                    ahead = Some(Ahead::start(
                        next,
                        hops::now(),
                        data_in.clone(),
                        Arc::clone(&self.book),
                    ));
                }
            }
            if self
                .process_until_stored(&arrivals, Some(checked), log, cancel)
                .await
                .is_err()
            {
                return Ended::Cancelled;
            }
            for record in &batch {
                if let Err(err) =
                    feed.store_offset(record.topic(), record.partition(), record.offset())
                {
                    tracing::warn!(error = %err, "could not store an inbox offset");
                }
            }
            if let Some(reason) = feed.fatal() {
                return Ended::Fatal(reason);
            }
        }
    }

    /// One line per reason whose log interval ended with lines folded.
    fn write_summaries(&self, log: &mut RejectionLog) {
        let summaries = log.due(Instant::now());
        if summaries.is_empty() {
            return;
        }
        for summary in summaries {
            self.rejections.add_suppressed(summary.folded);
            tracing::warn!(
                reason = summary.rejection.reason(),
                records = summary.folded,
                over_secs = summary.over.as_secs(),
                "rejected more inbound records than were logged one by one"
            );
        }
        self.publish_figures();
    }

    /// Checks every record of the batch, in order; a large batch over the
    /// machine's cores, off the async workers.
    fn check_all(&self, records: &[Record<'_>]) -> CheckedBatch {
        if records.len() < PARALLEL_FROM {
            return check::check_many(records, &self.book);
        }
        tokio::task::block_in_place(|| ahead::check_spread(records, &self.book))
    }

    /// Records from data channels: processed like the inbox's own, with no
    /// offsets to store; Err once cancelled.
    async fn process_direct(
        &self,
        records: &[DirectRecord],
        log: &mut RejectionLog,
        cancel: &CancellationToken,
    ) -> Result<(), ()> {
        let now_minute = kirc_proto::unix_ms(SystemTime::now()) / 60_000;
        let arrivals: Vec<Arrival<'_>> = records
            .iter()
            .map(|record| Arrival {
                topic: DIRECT_TOPIC,
                partition: marks::DIRECT,
                offset: marks::DIRECT_OFFSET,
                bytes: &record.bytes,
                // The lane is the kind's; the check reads it from the
                // envelope for a record with `via`.
                lane: Lane::Data,
                minute: now_minute,
                via: Some(record.from),
                arrived: record.arrived,
            })
            .collect();
        self.process_until_stored(&arrivals, None, log, cancel)
            .await
    }

    /// Processes the records until they are stored: nothing of them is
    /// acknowledged before, and they are processed again (storing is
    /// idempotent, and they are checked again) once the database is back.
    /// `checked` is their check if it was done already. Err once cancelled.
    async fn process_until_stored(
        &self,
        arrivals: &[Arrival<'_>],
        mut checked: Option<CheckedBatch>,
        log: &mut RejectionLog,
        cancel: &CancellationToken,
    ) -> Result<(), ()> {
        let mut backoff = Backoff::new(self.health.retry_initial, self.health.retry_max);
        loop {
            match self.process(arrivals, checked.take(), log).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!(error = %err, records = arrivals.len(), "cannot store inbound records; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(()),
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
    }

    async fn process(
        &self,
        batch: &[Arrival<'_>],
        checked: Option<CheckedBatch>,
        log: &mut RejectionLog,
    ) -> Result<(), BatchError> {
        let started = Instant::now();
        let checked = checked.unwrap_or_else(|| {
            let records: Vec<Record<'_>> = batch.iter().map(Arrival::record).collect();
            self.check_all(&records)
        });
        let arrivals: Vec<rate::Arrived> = batch
            .iter()
            .map(|arrival| rate::Arrived {
                minute: arrival.minute,
                place: arrival.via.is_none().then_some(rate::Place {
                    lane: arrival.lane,
                    partition: arrival.partition,
                    offset: arrival.offset,
                }),
            })
            .collect();
        let checked_all = rate::limit(
            &self.live,
            &self.rate_counts,
            self.book.me(),
            &arrivals,
            checked,
            log,
        )
        .await;
        let checked_at = hops::now();

        let mut chats = Vec::new();
        let mut controls = Vec::new();
        let mut rejected: Vec<(&Arrival<'_>, Rejected)> = Vec::new();
        // Where each chat message came from, to report a replay found when
        // storing (a duplicate in the batch reports its later copy).
        let mut chat_records: HashMap<Uuid, (&Arrival<'_>, ActorId)> = HashMap::new();
        // Senders named by a data-in record refused since their last chat
        // in this batch: the receipt for their next one starts a new range.
        let mut refused_from: HashSet<ActorId> = HashSet::new();
        for (record, checked) in batch.iter().zip(checked_all) {
            let from_data_in = record.via.is_none() && record.lane == Lane::Data;
            match checked {
                Ok(Checked::Chat(mut incoming)) => {
                    if from_data_in {
                        incoming.after_refused = refused_from.remove(&incoming.sender);
                    }
                    let (arrived, checked) = if record.via.is_some() {
                        ("direct.arrived", "direct.checked")
                    } else {
                        ("kafka.arrived", "kafka.checked")
                    };
                    hops::mark_at(arrived, incoming.id, record.arrived);
                    hops::mark_at(checked, incoming.id, checked_at);
                    chat_records.insert(incoming.id, (record, incoming.sender));
                    chats.push(incoming);
                }
                Ok(Checked::Control(header, envelope)) => controls.push((record, header, envelope)),
                Err(refused) => {
                    if let (true, Some(sender)) = (from_data_in, refused.sender) {
                        refused_from.insert(sender);
                    }
                    rejected.push((record, refused));
                }
            }
        }

        let checked = started.elapsed();
        let stored = self
            .router
            .chat()
            .store(&chats)
            .await
            .map_err(BatchError::Handler)?;
        let mut redelivered = stored.redelivered;
        for (id, rejection) in &stored.refused {
            if let Some(&(record, sender)) = chat_records.get(id) {
                rejected.push((
                    record,
                    Rejected {
                        rejection: *rejection,
                        sender: Some(sender),
                        message_id: Some(*id),
                    },
                ));
            }
        }

        let chats_done = started.elapsed();
        for (record, header, envelope) in controls {
            match self.control(record, &header, &envelope).await? {
                Ok(Handled::Applied) => {}
                Ok(Handled::Redelivered) => redelivered += 1,
                Err(refused) => rejected.push((record, refused)),
            }
        }
        if redelivered > 0 {
            self.rejections.add_redelivered(redelivered);
            tracing::debug!(
                records = redelivered,
                "ignored records already applied (a redelivery)"
            );
        }
        let changed = redelivered > 0 || !rejected.is_empty();
        self.settle(&rejected, log).await?;
        if changed {
            self.publish_figures();
        }
        tracing::debug!(
            records = batch.len(),
            checked_ms = checked.as_millis(),
            chats_ms = (chats_done - checked).as_millis(),
            controls_ms = (started.elapsed() - chats_done).as_millis(),
            "inbox batch"
        );
        Ok(())
    }

    /// One control record: opened by its kind's rule, judged against its
    /// sender's mark for the handler's stream, handed to the handler, and
    /// the mark advanced if it applied. The outer error is a failure to
    /// retry the batch for; the inner one a rejection of this record.
    async fn control(
        &self,
        record: &Arrival<'_>,
        header: &Header,
        envelope: &kirc_proto::wire::v1::Envelope,
    ) -> Result<Result<Handled, Rejected>, BatchError> {
        let Some(handler) = self.router.control(header.kind) else {
            return Ok(Err(Rejected::of(Rejection::Malformed, header)));
        };
        let (sender, payload) =
            match check::open_control(handler.opening(), header, envelope, &self.book) {
                Ok(opened) => opened,
                Err(rejected) => return Ok(Err(rejected)),
            };
        let stream = handler.stream();
        let place = Mark {
            message_id: header.message_id,
            partition: record.partition,
            offset: record.offset,
            digest: check::digest(record.bytes),
        };
        match self.marks.judge(header.sender, stream, &place) {
            Verdict::Apply => {}
            Verdict::Redelivered => return Ok(Ok(Handled::Redelivered)),
            Verdict::Stale => return Ok(Err(Rejected::of(Rejection::Stale, header))),
            Verdict::Replay => return Ok(Err(Rejected::of(Rejection::Replay, header))),
        }
        let applied = handler
            .handle(Control {
                header,
                sender,
                payload,
            })
            .await
            .map_err(BatchError::Handler)?;
        match applied {
            Ok(()) => {
                self.marks
                    .advance(&self.pool, header.sender, stream, &place)
                    .await?;
                Ok(Ok(Handled::Applied))
            }
            Err(rejection) => Ok(Err(Rejected::of(rejection, header))),
        }
    }
}

/// What became of a control record that was not rejected.
enum Handled {
    Applied,
    /// Already applied: our own consumer read it again, or its sender sent
    /// the same record again.
    Redelivered,
}

/// What woke the consumer loop with records to process.
enum Next {
    Fetched(Result<OwnedMessage, rdkafka::error::KafkaError>),
    Ahead(Result<(Vec<OwnedMessage>, CheckedBatch), tokio::task::JoinError>),
}

/// `batch` and whatever else is already fetched, up to a batch.
fn fetched(feed: &Feed, mut batch: Vec<OwnedMessage>) -> Vec<OwnedMessage> {
    while batch.len() < BATCH_MAX {
        match feed.try_recv() {
            Some(Ok(record)) => batch.push(record),
            _ => break,
        }
    }
    batch
}

/// The next record from the data channels, or never if there are none.
async fn next_direct(
    direct: &mut Option<&mut mpsc::Receiver<DirectRecord>>,
) -> Option<DirectRecord> {
    match direct {
        Some(direct) => direct.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
