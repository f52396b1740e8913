//! Control records (rpc-in): authenticated first, then judged against the
//! sender's mark for the stream (see `marks`), then applied, and the mark
//! advanced. A record that is not newer than what is applied never applies.

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use uuid::Uuid;

use super::super::marks::{Mark, Stream, Verdict};
use super::super::{Messaging, MessagingError};
use super::check::{Rejected, digest, open_from_contact, sender_contact};
use crate::crypto::envelope::{self, Header, Rejection};
use crate::crypto::profile::{self, VerifiedProfile};
use crate::store::{self, ContactRecord, ContactState, MessageState};

/// What became of a control record that was not rejected.
pub(super) enum Handled {
    Applied,
    /// Already applied: our own consumer read it again, or its sender sent
    /// the same record again.
    Redelivered,
}

/// A control record whose sender is established.
enum Opened {
    /// A contact request: the sender's profile is inside, verified, and the
    /// envelope is signed by the key it names.
    Request(wire::ContactRequest, VerifiedProfile),
    /// From a contact who may write to us, decrypted.
    FromContact(ContactRecord, Vec<u8>),
    /// Our own heartbeat.
    Own,
}

/// Handles one control envelope. The outer error is a database failure (the
/// batch is retried); the inner one a rejection of this record.
pub(super) async fn control(
    messaging: &Messaging,
    record: &OwnedMessage,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Result<Handled, Rejected>, MessagingError> {
    let Some(stream) = Stream::of(header.kind) else {
        return Ok(Err(Rejected::of(Rejection::Malformed, header)));
    };
    // Only an authenticated record is judged against (and may move) its
    // sender's mark.
    let opened = match open(messaging, header, envelope) {
        Ok(opened) => opened,
        Err(rejected) => return Ok(Err(rejected)),
    };
    let place = Mark {
        message_id: header.message_id,
        partition: record.partition(),
        offset: record.offset(),
        digest: digest(record.payload().unwrap_or_default()),
    };
    match messaging.marks.judge(header.sender, stream, &place) {
        Verdict::Apply => {}
        Verdict::Redelivered => return Ok(Ok(Handled::Redelivered)),
        Verdict::Stale => return Ok(Err(Rejected::of(Rejection::Stale, header))),
        Verdict::Replay => return Ok(Err(Rejected::of(Rejection::Replay, header))),
    }
    let applied = match opened {
        Opened::Request(request, profile) => {
            contact_request(messaging, header, &request, &profile).await?
        }
        Opened::Own => {
            heartbeat(messaging, header);
            Ok(())
        }
        Opened::FromContact(contact, payload) => match header.kind {
            wire::Kind::ContactAccepted => {
                contact_accepted(messaging, header, &contact, &payload).await?
            }
            wire::Kind::Receipt => receipt(messaging, header, &contact, &payload).await?,
            wire::Kind::Presence => presence(messaging, header, &contact, &payload).await,
            wire::Kind::Typing => typing(messaging, header, &contact, &payload).await,
            _ => Err(Rejected::of(Rejection::Malformed, header)),
        },
    };
    if applied.is_ok() {
        messaging
            .marks
            .advance(&messaging.pool, header.sender, stream, &place)
            .await?;
    }
    Ok(applied.map(|()| Handled::Applied))
}

/// Establishes who sent the record: the checks of signature and encryption
/// each kind needs.
fn open(
    messaging: &Messaging,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Opened, Rejected> {
    let reject = |rejection| Rejected::of(rejection, header);
    match header.kind {
        wire::Kind::ContactRequest => {
            let payload = envelope::open_anonymous(envelope, &messaging.identity)
                .map_err(|_| reject(Rejection::Undecryptable))?;
            let request = wire::ContactRequest::decode(payload.as_slice())
                .map_err(|_| reject(Rejection::Undecryptable))?;
            let profile = request
                .profile
                .as_ref()
                .and_then(|signed| profile::verify_profile(signed).ok())
                .ok_or_else(|| reject(Rejection::BadSignature))?;
            // The envelope must come from the actor the profile describes.
            if profile.actor_id != header.sender
                || envelope::verify(envelope, &profile.signing_key).is_err()
            {
                return Err(reject(Rejection::BadSignature));
            }
            if messaging
                .known(&header.sender)
                .is_some_and(|existing| existing.state == ContactState::Blocked)
            {
                return Err(reject(Rejection::Blocked));
            }
            Ok(Opened::Request(request, profile))
        }
        wire::Kind::Heartbeat => {
            if header.sender != messaging.me {
                return Err(reject(Rejection::Stranger));
            }
            envelope::verify(envelope, &messaging.identity.signing_key()).map_err(reject)?;
            Ok(Opened::Own)
        }
        _ => {
            let contact = sender_contact(messaging, header)?;
            let payload = open_from_contact(&contact, header, envelope)?;
            Ok(Opened::FromContact(contact, payload))
        }
    }
}

fn decode<T: prost::Message + Default>(header: &Header, payload: &[u8]) -> Result<T, Rejected> {
    T::decode(payload).map_err(|_| Rejected::of(Rejection::Undecryptable, header))
}

async fn contact_request(
    messaging: &Messaging,
    header: &Header,
    request: &wire::ContactRequest,
    profile: &VerifiedProfile,
) -> Result<Result<(), Rejected>, MessagingError> {
    let claim = if request.invite_secret.is_empty() {
        store::InviteClaim::Unknown
    } else {
        store::claim_invite(
            &messaging.pool,
            &profile::secret_hash(&request.invite_secret),
            header.sender,
        )
        .await?
    };
    let state = if claim == store::InviteClaim::Valid {
        ContactState::Accepted
    } else {
        ContactState::Request
    };
    let contact = store::save_contact(&messaging.pool, &messaging.identity, profile, state, true)
        .await?
        .contact;
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
    contact: &ContactRecord,
    payload: &[u8],
) -> Result<Result<(), Rejected>, MessagingError> {
    let accepted = match decode::<wire::ContactAccepted>(header, payload) {
        Ok(accepted) => accepted,
        Err(rejected) => return Ok(Err(rejected)),
    };
    let Some(profile) = accepted
        .profile
        .as_ref()
        .and_then(|signed| profile::verify_profile(signed).ok())
        .filter(|profile| profile.actor_id == header.sender)
    else {
        return Ok(Err(Rejected::of(Rejection::BadSignature, header)));
    };
    let saved = store::save_contact(
        &messaging.pool,
        &messaging.identity,
        &profile,
        contact.state,
        true,
    )
    .await?;
    messaging.remember(&saved.contact);
    if !saved.profile_newer {
        // Accepted (again), but with a profile older than the stored one.
        return Ok(Err(Rejected::of(Rejection::Stale, header)));
    }
    Ok(Ok(()))
}

async fn receipt(
    messaging: &Messaging,
    header: &Header,
    contact: &ContactRecord,
    payload: &[u8],
) -> Result<Result<(), Rejected>, MessagingError> {
    let receipt = match decode::<wire::Receipt>(header, payload) {
        Ok(receipt) => receipt,
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
fn heartbeat(messaging: &Messaging, header: &Header) {
    let at = header.created_at_unix_ms();
    messaging.hub.update_status(|status| {
        status.heartbeat_consumed_unix_ms = status.heartbeat_consumed_unix_ms.max(at)
    });
}

async fn presence(
    messaging: &Messaging,
    header: &Header,
    contact: &ContactRecord,
    payload: &[u8],
) -> Result<(), Rejected> {
    let presence = decode::<wire::Presence>(header, payload)?;
    // Presence is shared between contacts only.
    if contact.state != ContactState::Accepted {
        return Ok(());
    }
    let ttl = std::time::Duration::from_secs(u64::from(presence.ttl_seconds.clamp(1, 86_400)));
    if crate::presence::is_stale(header.created_at_unix_ms(), ttl) {
        return Err(Rejected::of(Rejection::Stale, header));
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
    Ok(())
}

async fn typing(
    messaging: &Messaging,
    header: &Header,
    contact: &ContactRecord,
    payload: &[u8],
) -> Result<(), Rejected> {
    let typing = decode::<wire::Typing>(header, payload)?;
    if contact.state != ContactState::Accepted {
        return Ok(());
    }
    // A typing record that waited (a daemon that was down) means nothing now.
    if crate::presence::is_stale(header.created_at_unix_ms(), crate::presence::TYPING_STALE) {
        return Err(Rejected::of(Rejection::Stale, header));
    }
    messaging
        .live
        .peer_typing(contact.actor_id, typing.active)
        .await;
    Ok(())
}
