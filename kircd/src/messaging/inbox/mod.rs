//! The inbox worker: consumes the own `data-in` and `rpc-in` in batches,
//! checks each record (size, format, version, recipient, sender, signature,
//! decryption, rate, replay), stores what is good in one statement per batch,
//! publishes the events, and only then stores the offsets. A bad record is
//! counted, quarantined where useful (within bounds), logged (a few lines per
//! reason, then summaries), and skipped; it never stops the worker or the
//! records behind it.
//!
//! `check.rs` holds the checks that need no database, `control.rs` what each
//! control kind does once it passed them.

mod check;
mod control;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use kirc_proto::v1::event::Kind as EventKind;
use kirc_proto::wire::v1 as wire;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::rejections::RejectionLog;
use super::{Messaging, MessagingError, links};
use crate::backends::kafka::KafkaContext;
use crate::backends::supervise::Backoff;
use crate::crypto::envelope::Rejection;
use crate::crypto::identity::ActorId;
use crate::store::{self, ContactState, QuarantineBounds, Quarantined};
use check::{Checked, Rejected};
use control::Handled;

/// Records handled together: one database statement and one receipt per
/// sender per batch.
const BATCH_MAX: usize = 1000;

pub async fn run(messaging: Arc<Messaging>, cancel: CancellationToken) {
    let topics = messaging.config.kafka.topics.clone();
    let health = messaging.config.health.clone();
    let mut log = RejectionLog::new(
        messaging.config.messaging.rejection_log_burst,
        messaging.config.messaging.rejection_log_interval,
    );
    let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
    loop {
        let consumer = match links::subscribed(
            &messaging.config.kafka,
            messaging.me,
            "inbox",
            &[&topics.data_in, &topics.rpc_in],
        ) {
            Ok(consumer) => consumer,
            Err(err) => {
                tracing::error!(error = %err, "cannot create the inbox consumer; retrying");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        let ended = consume(&messaging, &consumer, &cancel, &mut log).await;
        links::close_consumer(consumer, "inbox").await;
        match ended {
            Ended::Cancelled => break,
            Ended::Fatal(reason) => {
                // What it had not committed comes again to the new one, and
                // is stored once.
                tracing::warn!(reason, "the inbox consumer failed for good; replacing it");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
    write_summaries(&messaging, &mut log);
}

/// Why a consumer loop ended.
enum Ended {
    Cancelled,
    /// librdkafka's fatal error: the consumer must be replaced.
    Fatal(String),
}

async fn consume(
    messaging: &Messaging,
    consumer: &StreamConsumer<KafkaContext>,
    cancel: &CancellationToken,
    log: &mut RejectionLog,
) -> Ended {
    let health = messaging.config.health.clone();
    loop {
        let summary_due = log.next_due();
        let first = tokio::select! {
            () = cancel.cancelled() => return Ended::Cancelled,
            () = consumer.context().failed() => {
                return Ended::Fatal(links::fatal(consumer).unwrap_or_default());
            }
            () = sleep_until(summary_due) => {
                write_summaries(messaging, log);
                continue;
            }
            received = consumer.recv() => received,
        };
        let mut batch = Vec::new();
        match first {
            Ok(record) => batch.push(record.detach()),
            Err(err) => {
                if let Some(reason) = links::fatal(consumer) {
                    return Ended::Fatal(reason);
                }
                tracing::debug!(error = %err, "inbox consumer error");
                continue;
            }
        }
        // Whatever else is already fetched joins the batch.
        while batch.len() < BATCH_MAX {
            match consumer.recv().now_or_never() {
                Some(Ok(record)) => batch.push(record.detach()),
                _ => break,
            }
        }
        let mut backoff = Backoff::new(health.retry_initial, health.retry_max);
        loop {
            match process(messaging, &batch, log).await {
                Ok(()) => break,
                Err(err) => {
                    // Nothing of the batch is acknowledged: it is processed
                    // again (storing is idempotent) once the database is back.
                    tracing::warn!(error = %err, records = batch.len(), "cannot store the inbox batch; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Ended::Cancelled,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        for record in &batch {
            if let Err(err) =
                consumer.store_offset(record.topic(), record.partition(), record.offset())
            {
                tracing::warn!(error = %err, "could not store an inbox offset");
            }
        }
        if let Some(reason) = links::fatal(consumer) {
            return Ended::Fatal(reason);
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One line per reason whose log interval ended with lines folded.
fn write_summaries(messaging: &Messaging, log: &mut RejectionLog) {
    let summaries = log.due(Instant::now());
    if summaries.is_empty() {
        return;
    }
    for summary in summaries {
        messaging.rejections.add_suppressed(summary.folded);
        tracing::warn!(
            reason = summary.rejection.reason(),
            records = summary.folded,
            over_secs = summary.over.as_secs(),
            "rejected more inbound records than were logged one by one"
        );
    }
    messaging.publish_rejections();
}

async fn process(
    messaging: &Messaging,
    batch: &[OwnedMessage],
    log: &mut RejectionLog,
) -> Result<(), MessagingError> {
    let started = Instant::now();
    let data_in = &messaging.config.kafka.topics.data_in;
    let mut chats = Vec::new();
    let mut controls = Vec::new();
    let mut rejected: Vec<(&OwnedMessage, Rejected)> = Vec::new();
    let checked_all = check::rate_limit(
        messaging,
        batch,
        check::check_all(messaging, batch, data_in),
        log,
    )
    .await;
    // Where each chat message came from, to report a replay found when
    // storing (a duplicate in the batch reports its later copy).
    let mut chat_records: HashMap<Uuid, (&OwnedMessage, ActorId)> = HashMap::new();
    for (record, checked) in batch.iter().zip(checked_all) {
        match checked {
            Ok(Checked::Chat(incoming)) => {
                chat_records.insert(incoming.id, (record, incoming.sender));
                chats.push(incoming);
            }
            Ok(Checked::Control(header, envelope)) => controls.push((record, header, envelope)),
            Err(refused) => rejected.push((record, refused)),
        }
    }

    let checked = started.elapsed();
    let stored = store::insert_incoming(&messaging.pool, &chats).await?;
    let inserted = started.elapsed();
    for message in &stored.added {
        messaging
            .hub
            .publish_event(EventKind::MessageAdded(message.clone()));
    }
    let mut redelivered = stored.redelivered.len() as u64;
    for id in &stored.replayed {
        if let Some(&(record, sender)) = chat_records.get(id) {
            rejected.push((
                record,
                Rejected {
                    rejection: Rejection::Replay,
                    sender: Some(sender),
                    message_id: Some(*id),
                },
            ));
        }
    }
    // Received receipts, one per sender, for what is now stored (a
    // redelivered message is acknowledged again: the first receipt may have
    // been lost with a crash).
    let replayed: HashSet<Uuid> = stored.replayed.iter().copied().collect();
    let mut by_sender: HashMap<ActorId, Vec<Uuid>> = HashMap::new();
    for chat in chats.iter().filter(|chat| !replayed.contains(&chat.id)) {
        by_sender.entry(chat.sender).or_default().push(chat.id);
    }
    for (sender, ids) in by_sender {
        if let Some(contact) = messaging.known(&sender)
            && contact.state == ContactState::Accepted
        {
            messaging
                .send_receipt(&contact, wire::ReceiptKind::Received, &ids)
                .await?;
        }
    }

    let receipted = started.elapsed();
    for (record, header, envelope) in controls {
        match control::control(messaging, record, &header, &envelope).await? {
            Ok(Handled::Applied) => {}
            Ok(Handled::Redelivered) => redelivered += 1,
            Err(refused) => rejected.push((record, refused)),
        }
    }
    if redelivered > 0 {
        messaging.rejections.add_redelivered(redelivered);
        tracing::debug!(
            records = redelivered,
            "ignored records already applied (a redelivery)"
        );
    }
    let changed = redelivered > 0 || !rejected.is_empty();
    settle(messaging, &rejected, log).await?;
    if changed {
        messaging.publish_rejections();
    }
    tracing::debug!(
        records = batch.len(),
        checked_ms = checked.as_millis(),
        stored_ms = (inserted - checked).as_millis(),
        receipts_ms = (receipted - inserted).as_millis(),
        controls_ms = (started.elapsed() - receipted).as_millis(),
        "inbox batch"
    );
    Ok(())
}

/// Counts, logs and quarantines the batch's rejected records.
async fn settle(
    messaging: &Messaging,
    rejected: &[(&OwnedMessage, Rejected)],
    log: &mut RejectionLog,
) -> Result<(), MessagingError> {
    if rejected.is_empty() {
        return Ok(());
    }
    write_summaries(messaging, log);
    let now = Instant::now();
    let mut kept = Vec::new();
    for (record, refused) in rejected {
        messaging.rejections.add(refused.rejection);
        // A flood is logged by `rate_limit`, once per sender and batch.
        if refused.rejection != Rejection::RateLimited && log.admit(refused.rejection, now) {
            tracing::warn!(
                reason = refused.rejection.reason(),
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                sender = refused
                    .sender
                    .map(|sender| sender.to_string())
                    .unwrap_or_default(),
                "rejected an inbound record"
            );
        }
        // A replay is a copy of something applied and a flood many records
        // of one sender: nothing worth keeping.
        if !matches!(
            refused.rejection,
            Rejection::Replay | Rejection::RateLimited
        ) {
            kept.push(Quarantined {
                topic: record.topic(),
                partition: record.partition(),
                offset: record.offset(),
                reason: refused.rejection.reason(),
                sender: refused.sender,
                message_id: refused.message_id,
                bytes: record.payload().unwrap_or_default(),
            });
        }
    }
    if !kept.is_empty() {
        let config = &messaging.config.messaging;
        let fill = store::quarantine(
            &messaging.pool,
            &kept,
            QuarantineBounds {
                rows: config.quarantine_max_rows,
                bytes: config.quarantine_max_bytes,
            },
            messaging.rejections.quarantine(),
        )
        .await?;
        messaging.rejections.set_quarantine(fill);
    }
    Ok(())
}
