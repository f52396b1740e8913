//! The checks of a record that need no database: format, recipient,
//! sender, signature, decryption of chat messages, and the inbound rate.

use std::collections::HashMap;
use std::time::Instant;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::{OwnedMessage, Timestamp};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::super::Messaging;
use super::super::rejections::RejectionLog;
use crate::crypto::envelope::{self, Header, Rejection};
use crate::crypto::identity::ActorId;
use crate::store::{ContactRecord, ContactState, Incoming};

/// What one record turned out to be.
pub(super) enum Checked {
    Chat(Incoming),
    Control(Header, wire::Envelope),
}

/// A record refused, with what is known of where it claims to come from.
pub(super) struct Rejected {
    pub rejection: Rejection,
    pub sender: Option<ActorId>,
    pub message_id: Option<Uuid>,
}

impl Rejected {
    fn plain(rejection: Rejection) -> Self {
        Rejected {
            rejection,
            sender: None,
            message_id: None,
        }
    }

    pub fn of(rejection: Rejection, header: &Header) -> Self {
        Rejected {
            rejection,
            sender: Some(header.sender),
            message_id: Some(header.message_id),
        }
    }
}

/// SHA-256 of a record's bytes: what tells the same record again from
/// another one under the same id.
pub(super) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
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
pub(super) async fn rate_limit(
    messaging: &Messaging,
    batch: &[OwnedMessage],
    checked: Vec<Result<Checked, Rejected>>,
    log: &mut RejectionLog,
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
        if allowance < count && log.admit(Rejection::RateLimited, Instant::now()) {
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
pub(super) fn check_all(
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
    let contact = sender_contact(messaging, &header)?;
    let payload = open_from_contact(&contact, &header, &envelope)?;
    let chat = wire::ChatPayload::decode(payload.as_slice())
        .map_err(|_| Rejected::of(Rejection::Undecryptable, &header))?;
    Ok(Checked::Chat(Incoming {
        id: header.message_id,
        conversation_id: contact.conversation_id,
        sender: header.sender,
        action: chat.action,
        body: chat.text,
        created_at_unix_ms: header.created_at_unix_ms(),
        partition: record.partition(),
        offset: record.offset(),
        digest: digest(bytes),
    }))
}

/// A record from a contact that may write to us: its signature checked
/// against the contact's key, then decrypted.
pub(super) fn open_from_contact(
    contact: &ContactRecord,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Vec<u8>, Rejected> {
    envelope::verify(envelope, &contact.signing_key)
        .map_err(|rejection| Rejected::of(rejection, header))?;
    envelope::open(envelope, header, &contact.pair)
        .map_err(|rejection| Rejected::of(rejection, header))
}

/// The sender as a contact that may write to us.
pub(super) fn sender_contact(
    messaging: &Messaging,
    header: &Header,
) -> Result<ContactRecord, Rejected> {
    match messaging.known(&header.sender) {
        None => Err(Rejected::of(Rejection::Stranger, header)),
        Some(contact) if contact.state == ContactState::Blocked => {
            Err(Rejected::of(Rejection::Blocked, header))
        }
        Some(contact) => Ok(contact),
    }
}
