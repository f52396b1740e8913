//! The inbox worker: consumes the own `data-in` and `rpc-in` in batches,
//! checks each record (size, format, version, recipient, sender, signature,
//! decryption), stores what is good in one statement per batch, publishes
//! the events, and only then stores the offsets. A bad record is counted,
//! quarantined where useful, logged, and skipped; it never stops the worker or
//! the records behind it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use kirc_proto::v1::event::Kind as EventKind;
use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::{OwnedMessage, Timestamp};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Messaging, MessagingError, links};
use crate::contacts;
use crate::envelope::{self, Header, Rejection};
use crate::identity::ActorId;
use crate::store::{self, ContactRecord, ContactState, Incoming, MessageState, Quarantined};
use crate::supervise::Backoff;

/// Records handled together: one database statement and one receipt per
/// sender per batch.
const BATCH_MAX: usize = 1000;

pub async fn run(messaging: Arc<Messaging>, cancel: CancellationToken) {
    let topics = messaging.config.kafka.topics.clone();
    let consumer = match links::consumer(&messaging.config.kafka, messaging.me, "inbox") {
        Ok(consumer) => consumer,
        Err(err) => {
            tracing::error!(error = %err, "cannot create the inbox consumer");
            return;
        }
    };
    if let Err(err) = consumer.subscribe(&[&topics.data_in, &topics.rpc_in]) {
        tracing::error!(error = %err, "cannot subscribe the inbox consumer");
        return;
    }
    let health = messaging.config.health.clone();
    'outer: loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            received = consumer.recv() => received,
        };
        let mut batch = Vec::new();
        match first {
            Ok(record) => batch.push(record.detach()),
            Err(err) => {
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
            match process(&messaging, &batch).await {
                Ok(()) => break,
                Err(err) => {
                    // Nothing of the batch is acknowledged: it is processed
                    // again (storing is idempotent) once the database is back.
                    tracing::warn!(error = %err, records = batch.len(), "cannot store the inbox batch; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => break 'outer,
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
    }
    links::close_consumer(consumer, "inbox").await;
}

/// What one record turned out to be.
enum Checked {
    Chat(Incoming),
    Control(Header, wire::Envelope),
}

struct Rejected {
    rejection: Rejection,
    sender: Option<ActorId>,
    message_id: Option<Uuid>,
}

impl Rejected {
    fn plain(rejection: Rejection) -> Self {
        Rejected {
            rejection,
            sender: None,
            message_id: None,
        }
    }

    fn of(rejection: Rejection, header: &Header) -> Self {
        Rejected {
            rejection,
            sender: Some(header.sender),
            message_id: Some(header.message_id),
        }
    }
}

async fn process(messaging: &Messaging, batch: &[OwnedMessage]) -> Result<(), MessagingError> {
    let started = std::time::Instant::now();
    let data_in = &messaging.config.kafka.topics.data_in;
    let mut chats = Vec::new();
    let mut controls = Vec::new();
    let mut counts_changed = false;
    let checked_all = rate_limit(messaging, batch, check_all(messaging, batch, data_in)).await;
    for (record, checked) in batch.iter().zip(checked_all) {
        let bytes = record.payload().unwrap_or_default();
        match checked {
            Ok(Checked::Chat(incoming)) => chats.push(incoming),
            Ok(Checked::Control(header, envelope)) => controls.push((record, header, envelope)),
            Err(rejected) => {
                reject(messaging, record, bytes, &rejected).await?;
                counts_changed = true;
            }
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
    for id in &stored.replayed {
        messaging.rejections.add(Rejection::Replay);
        counts_changed = true;
        tracing::warn!(message_id = %id, "rejected a replayed message: already stored from elsewhere");
    }
    // Received receipts, one per sender, for what is now stored (a
    // redelivered message is acknowledged again: the first receipt may have
    // been lost with a crash).
    let replayed: std::collections::HashSet<Uuid> = stored.replayed.iter().copied().collect();
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
    tracing::debug!(
        records = batch.len(),
        checked_ms = checked.as_millis(),
        stored_ms = (inserted - checked).as_millis(),
        receipts_ms = (receipted - inserted).as_millis(),
        "inbox batch"
    );
    for (record, header, envelope) in controls {
        if let Err(rejected) = control(messaging, &header, &envelope).await? {
            reject(
                messaging,
                record,
                record.payload().unwrap_or_default(),
                &rejected,
            )
            .await?;
            counts_changed = true;
        }
    }
    if counts_changed {
        messaging.publish_rejections();
    }
    Ok(())
}

async fn reject(
    messaging: &Messaging,
    record: &OwnedMessage,
    bytes: &[u8],
    rejected: &Rejected,
) -> Result<(), MessagingError> {
    messaging.rejections.add(rejected.rejection);
    // A flood is logged once per batch (by `rate_limit`), not per record.
    if rejected.rejection != Rejection::RateLimited {
        tracing::warn!(
            reason = rejected.rejection.reason(),
            topic = record.topic(),
            partition = record.partition(),
            offset = record.offset(),
            sender = ?rejected.sender,
            "rejected an inbound record"
        );
    }
    // A replay is a copy of something stored and a flood is many copies of
    // the same: nothing worth keeping.
    if !matches!(
        rejected.rejection,
        Rejection::Replay | Rejection::RateLimited
    ) {
        store::quarantine(
            &messaging.pool,
            &Quarantined {
                topic: record.topic(),
                partition: record.partition(),
                offset: record.offset(),
                reason: rejected.rejection.reason(),
                sender: rejected.sender,
                message_id: rejected.message_id,
                bytes,
            },
        )
        .await?;
    }
    Ok(())
}

/// The minute (since the epoch) a record reached the inbox: the broker's
/// append time where the topic keeps it (the inboxes kircd and terraform/
/// make do, see `kafka::APPEND_TIME_TOPICS`), else the minute it is read.
/// A producer's own timestamp is never used: a contact could forge it.
fn arrival_minute(record: &OwnedMessage, now_minute: i64) -> i64 {
    match record.timestamp() {
        Timestamp::LogAppendTime(ms) => (ms / 60_000).min(now_minute),
        Timestamp::CreateTime(_) | Timestamp::NotAvailable => now_minute,
    }
}

/// Applies the per-sender inbound rate (buckets in Valkey, one per sender
/// and minute of arrival): records beyond a sender's allowance for the
/// minute they arrived in become `RateLimited`; other senders are
/// unaffected. Counting by arrival rather than by reading keeps a backlog
/// read after days offline within the rate it was sent at.
async fn rate_limit(
    messaging: &Messaging,
    batch: &[OwnedMessage],
    checked: Vec<Result<Checked, Rejected>>,
) -> Vec<Result<Checked, Rejected>> {
    let sender_of = |checked: &Result<Checked, Rejected>| match checked {
        Ok(Checked::Chat(incoming)) => Some(incoming.sender),
        // Our own keep-warm heartbeat is not a sender to limit.
        Ok(Checked::Control(header, _)) if header.sender != messaging.me => Some(header.sender),
        _ => None,
    };
    let now_minute = kirc_proto::unix_ms(std::time::SystemTime::now()) / 60_000;
    let bucket_of = |record: &OwnedMessage, result: &Result<Checked, Rejected>| {
        sender_of(result).map(|sender| (sender, arrival_minute(record, now_minute)))
    };
    let mut counts: HashMap<(ActorId, i64), u64> = HashMap::new();
    for (record, result) in batch.iter().zip(&checked) {
        if let Some(bucket) = bucket_of(record, result) {
            *counts.entry(bucket).or_default() += 1;
        }
    }
    let mut allowed: HashMap<(ActorId, i64), u64> = HashMap::new();
    for (&(sender, minute), &count) in &counts {
        let allowance = messaging.live.allowed(sender, minute, count).await;
        if allowance < count {
            tracing::warn!(%sender, minute, records = count, allowed = allowance, "a sender exceeds its inbound rate; the excess is dropped");
        }
        allowed.insert((sender, minute), allowance);
    }
    batch
        .iter()
        .zip(checked)
        .map(|(record, result)| {
            let Some(bucket) = bucket_of(record, &result) else {
                return result;
            };
            let left = allowed.entry(bucket).or_default();
            if *left == 0 {
                let header = match &result {
                    Ok(Checked::Chat(incoming)) => (Some(incoming.sender), Some(incoming.id)),
                    Ok(Checked::Control(header, _)) => {
                        (Some(header.sender), Some(header.message_id))
                    }
                    Err(_) => (None, None),
                };
                return Err(Rejected {
                    rejection: Rejection::RateLimited,
                    sender: header.0,
                    message_id: header.1,
                });
            }
            *left -= 1;
            result
        })
        .collect()
}

/// Below this many records a batch is checked on one thread.
const PARALLEL_FROM: usize = 64;

/// Checks every record of the batch, in order. Signature checks and
/// decryption are most of the inbox's CPU time, so a large batch is split
/// over the machine's cores (off the async workers).
fn check_all(
    messaging: &Messaging,
    batch: &[OwnedMessage],
    data_in: &str,
) -> Vec<Result<Checked, Rejected>> {
    let check_part = |part: &[OwnedMessage]| -> Vec<Result<Checked, Rejected>> {
        part.iter()
            .map(|record| check(messaging, record, record.topic() == data_in))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if batch.len() < PARALLEL_FROM || threads < 2 {
        return check_part(batch);
    }
    let chunk = batch.len().div_ceil(threads);
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let parts: Vec<_> = batch
                .chunks(chunk)
                .map(|part| scope.spawn(move || check_part(part)))
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
    })
}

/// The checks that need no database: format, recipient, sender, signature,
/// decryption of chat messages.
fn check(messaging: &Messaging, record: &OwnedMessage, is_data: bool) -> Result<Checked, Rejected> {
    let bytes = record.payload().unwrap_or_default();
    let (envelope, header) = envelope::parse(bytes, messaging.me).map_err(Rejected::plain)?;
    match (is_data, header.kind) {
        (true, wire::Kind::Chat) => {}
        // Control kinds belong on rpc-in, chat on data-in.
        (false, wire::Kind::Chat) | (true, _) => {
            return Err(Rejected::of(Rejection::Malformed, &header));
        }
        (false, _) => return Ok(Checked::Control(header, envelope)),
    }
    let (contact, chat) = open_from_contact::<wire::ChatPayload>(messaging, &header, &envelope)?;
    Ok(Checked::Chat(Incoming {
        id: header.message_id,
        conversation_id: contact.conversation_id,
        sender: header.sender,
        action: chat.action,
        body: chat.text,
        created_at_unix_ms: header.created_at_unix_ms(),
        partition: record.partition(),
        offset: record.offset(),
    }))
}

/// A record from a contact that may write to us: its signature checked
/// against the contact's key, then decrypted and decoded as `T`.
fn open_from_contact<T: prost::Message + Default>(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<(ContactRecord, T), Rejected> {
    let contact = sender_contact(messaging, header)?;
    envelope::verify(envelope, &contact.signing_key)
        .map_err(|rejection| Rejected::of(rejection, header))?;
    let payload = envelope::open(envelope, header, &contact.pair)
        .map_err(|rejection| Rejected::of(rejection, header))?;
    let decoded = T::decode(payload.as_slice())
        .map_err(|_| Rejected::of(Rejection::Undecryptable, header))?;
    Ok((contact, decoded))
}

/// The sender as a contact that may write to us.
fn sender_contact(messaging: &Messaging, header: &Header) -> Result<ContactRecord, Rejected> {
    match messaging.known(&header.sender) {
        None => Err(Rejected::of(Rejection::Stranger, header)),
        Some(contact) if contact.state == ContactState::Blocked => {
            Err(Rejected::of(Rejection::Blocked, header))
        }
        Some(contact) => Ok(contact),
    }
}

/// Handles one control envelope. The outer error is a database failure (the
/// batch is retried); the inner one a rejection of this record.
async fn control(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    match header.kind {
        wire::Kind::ContactRequest => contact_request(messaging, header, envelope).await,
        wire::Kind::ContactAccepted => contact_accepted(messaging, header, envelope).await,
        wire::Kind::Receipt => receipt(messaging, header, envelope).await,
        wire::Kind::Presence => presence(messaging, header, envelope).await,
        wire::Kind::Typing => typing(messaging, header, envelope).await,
        wire::Kind::Heartbeat => Ok(heartbeat(messaging, header, envelope)),
        wire::Kind::Chat => Ok(Err(Rejected::of(Rejection::Malformed, header))),
    }
}

async fn contact_request(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    let reject = |rejection| Ok(Err(Rejected::of(rejection, header)));
    let Ok(payload) = envelope::open_anonymous(envelope, &messaging.identity) else {
        return reject(Rejection::Undecryptable);
    };
    let Ok(request) = wire::ContactRequest::decode(payload.as_slice()) else {
        return reject(Rejection::Undecryptable);
    };
    let Some(profile) = request
        .profile
        .as_ref()
        .and_then(|signed| contacts::verify_profile(signed).ok())
    else {
        return reject(Rejection::BadSignature);
    };
    // The envelope must come from the actor the profile describes.
    if profile.actor_id != header.sender
        || envelope::verify(envelope, &profile.signing_key).is_err()
    {
        return reject(Rejection::BadSignature);
    }
    if let Some(existing) = messaging.known(&header.sender)
        && existing.state == ContactState::Blocked
    {
        return reject(Rejection::Blocked);
    }
    let claim = if request.invite_secret.is_empty() {
        store::InviteClaim::Unknown
    } else {
        store::claim_invite(
            &messaging.pool,
            &contacts::secret_hash(&request.invite_secret),
            header.sender,
        )
        .await?
    };
    let state = if claim == store::InviteClaim::Valid {
        ContactState::Accepted
    } else {
        ContactState::Request
    };
    let contact =
        store::save_contact(&messaging.pool, &messaging.identity, &profile, state, true).await?;
    tracing::info!(contact = %contact.display_name, ?claim, state = ?contact.state, "contact request");
    messaging.remember(&contact);
    if contact.state == ContactState::Accepted {
        messaging.send_accepted(&contact).await?;
    }
    Ok(Ok(()))
}

async fn contact_accepted(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    let (contact, accepted) =
        match open_from_contact::<wire::ContactAccepted>(messaging, header, envelope) {
            Ok(opened) => opened,
            Err(rejected) => return Ok(Err(rejected)),
        };
    let reject = |rejection| Ok(Err(Rejected::of(rejection, header)));
    let Some(profile) = accepted
        .profile
        .as_ref()
        .and_then(|signed| contacts::verify_profile(signed).ok())
    else {
        return reject(Rejection::BadSignature);
    };
    if profile.actor_id != header.sender {
        return reject(Rejection::BadSignature);
    }
    let contact = store::save_contact(
        &messaging.pool,
        &messaging.identity,
        &profile,
        contact.state,
        true,
    )
    .await?;
    messaging.remember(&contact);
    Ok(Ok(()))
}

async fn receipt(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    let (contact, receipt) = match open_from_contact::<wire::Receipt>(messaging, header, envelope) {
        Ok(opened) => opened,
        Err(rejected) => return Ok(Err(rejected)),
    };
    let ids: Vec<Uuid> = receipt
        .message_ids
        .iter()
        .filter_map(|id| Uuid::from_slice(id).ok())
        .collect();
    let (state, kind) = match wire::ReceiptKind::try_from(receipt.kind) {
        Ok(wire::ReceiptKind::Read) => (MessageState::Read, "read"),
        _ => (MessageState::Received, "received"),
    };
    // Only our messages in the conversation with this contact: a contact
    // cannot mark messages to others.
    let ids = store::outgoing_in(&messaging.pool, contact.conversation_id, &ids).await?;
    store::insert_receipts(&messaging.pool, &ids, kind).await?;
    messaging.advance(&ids, state).await?;
    Ok(Ok(()))
}

/// The keep-warm heartbeat this actor sent itself.
fn heartbeat(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<(), Rejected> {
    if header.sender != messaging.me {
        return Err(Rejected::of(Rejection::Stranger, header));
    }
    envelope::verify(envelope, &messaging.identity.signing_key())
        .map_err(|rejection| Rejected::of(rejection, header))?;
    let at = header.created_at_unix_ms();
    messaging.hub.update_status(|status| {
        status.heartbeat_consumed_unix_ms = status.heartbeat_consumed_unix_ms.max(at)
    });
    Ok(())
}

async fn presence(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    let (contact, presence) = match open_from_contact::<wire::Presence>(messaging, header, envelope)
    {
        Ok(opened) => opened,
        Err(rejected) => return Ok(Err(rejected)),
    };
    // Presence is shared between contacts only.
    if contact.state != ContactState::Accepted {
        return Ok(Ok(()));
    }
    let ttl = std::time::Duration::from_secs(u64::from(presence.ttl_seconds.clamp(1, 86_400)));
    if crate::presence::is_stale(header.created_at_unix_ms(), ttl) {
        return Ok(Err(Rejected::of(Rejection::Stale, header)));
    }
    let state = match wire::PresenceState::try_from(presence.state)
        .unwrap_or(wire::PresenceState::Unknown)
    {
        wire::PresenceState::Online => kirc_proto::v1::PresenceState::Online,
        wire::PresenceState::Away => kirc_proto::v1::PresenceState::Away,
        wire::PresenceState::Offline => kirc_proto::v1::PresenceState::Offline,
        wire::PresenceState::Unknown => kirc_proto::v1::PresenceState::Unknown,
    };
    messaging
        .live
        .peer_presence(contact.actor_id, state, presence.text, ttl)
        .await;
    Ok(Ok(()))
}

async fn typing(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<(), Rejected>, MessagingError> {
    let (contact, typing) = match open_from_contact::<wire::Typing>(messaging, header, envelope) {
        Ok(opened) => opened,
        Err(rejected) => return Ok(Err(rejected)),
    };
    if contact.state != ContactState::Accepted {
        return Ok(Ok(()));
    }
    // A typing record that waited (a daemon that was down) means nothing now.
    if crate::presence::is_stale(header.created_at_unix_ms(), crate::presence::TYPING_STALE) {
        return Ok(Err(Rejected::of(Rejection::Stale, header)));
    }
    messaging
        .live
        .peer_typing(contact.actor_id, typing.active)
        .await;
    Ok(Ok(()))
}
