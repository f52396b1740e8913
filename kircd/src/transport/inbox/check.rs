//! The checks of an inbox record, as a function of the record and the
//! contact book: size, format, version, lane, recipient, sender, signature,
//! and decryption of chat; and the opening of a control record by the way
//! its kind is authenticated. No I/O: the inbox runs these on every core.

use std::sync::Arc;

use kirc_proto::wire::v1 as wire;
use prost::Message as _;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::book::{Contact, ContactBook};
use crate::content::Content;
use crate::crypto::envelope::{self, Header, Rejection};
use crate::crypto::identity::ActorId;
use crate::crypto::profile::verify_profile;
use crate::store::{ContactState, Incoming};
use crate::transport::router::{Opening, Sender};
use crate::transport::{Lane, carries_chat};

/// A record of an own inbox, or of a contact's data channel, as the checks
/// see it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// `Data` for data-in, `Control` for rpc-in; for the direct path, the
    /// lane of the kind the record claims.
    pub lane: Lane,
    /// `marks::DIRECT` for the direct path.
    pub partition: i32,
    pub offset: i64,
    pub bytes: &'a [u8],
    /// The contact whose data channel carried the record.
    pub via: Option<ActorId>,
}

/// What a data channel may carry: chat and acts on it (their fast copy),
/// typing and presence. Everything else takes Kafka alone.
pub fn carried_directly(kind: wire::Kind) -> bool {
    carries_chat(kind) || matches!(kind, wire::Kind::Typing | wire::Kind::Presence)
}

/// What one record turned out to be.
#[derive(Debug)]
pub enum Checked {
    Chat(Incoming),
    /// A control record that parsed; its sender is established when it is
    /// opened, by its kind's rule.
    Control(Header, wire::Envelope),
}

impl Checked {
    /// The sender the record names, and its id.
    pub fn claimed(&self) -> (ActorId, Uuid) {
        match self {
            Checked::Chat(incoming) => (incoming.sender, incoming.id),
            Checked::Control(header, _) => (header.sender, header.message_id),
        }
    }
}

/// A record refused, with what is known of where it claims to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub rejection: Rejection,
    pub sender: Option<ActorId>,
    pub message_id: Option<Uuid>,
}

impl Rejected {
    pub fn plain(rejection: Rejection) -> Self {
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
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Chat envelopes whose signatures are checked together
/// ([`crate::crypto::signatures`]). Their equation has one point per
/// envelope and one per sender, and curve25519-dalek multiplies that many by
/// Pippenger's method, which costs less per point the more there are: per
/// envelope, on one core, 11.1 µs in groups of 128, 10.4 µs in groups of
/// 256, 8.8 µs in groups of 512 and 8.5 µs in groups of 1,024 (`--bench
/// signatures`), against 37 µs one by one. A group with a bad signature is
/// checked again one by one, so a forger who spoils every group costs the
/// inbox about one and a quarter times the work of checking one by one.
const VERIFY_GROUP: usize = 512;

/// Checks one record: a chat message comes out verified and decrypted, a
/// control record parsed (see [`open_control`]).
pub fn check(record: &Record<'_>, book: &ContactBook) -> Result<Checked, Rejected> {
    let (envelope, header, contact) = match prepare(record, book) {
        Prepared::Done(result) => return result,
        Prepared::Chat(chat) => *chat,
    };
    envelope::verify(&envelope, &contact.signing_key)
        .map_err(|rejection| Rejected::of(rejection, &header))?;
    finish_chat(record, &envelope, &header, &contact)
}

/// Checks records in order, like [`check`] each, with the chat signatures
/// of each run of [`VERIFY_GROUP`] checked together.
pub fn check_many(records: &[Record<'_>], book: &ContactBook) -> Vec<Result<Checked, Rejected>> {
    let mut results: Vec<Option<Result<Checked, Rejected>>> = Vec::with_capacity(records.len());
    // Chat waiting for its group's signature check: (index, what it needs).
    let mut waiting: Vec<(usize, PreparedChat)> = Vec::with_capacity(VERIFY_GROUP);
    for (index, record) in records.iter().enumerate() {
        match prepare(record, book) {
            Prepared::Done(result) => results.push(Some(result)),
            Prepared::Chat(chat) => {
                results.push(None);
                waiting.push((index, *chat));
                if waiting.len() == VERIFY_GROUP {
                    verify_group(records, &mut waiting, &mut results);
                }
            }
        }
    }
    verify_group(records, &mut waiting, &mut results);
    results
        .into_iter()
        // Every chat left a `None` that its group's check filled.
        .map(|result| result.unwrap_or_else(|| Err(Rejected::plain(Rejection::Malformed))))
        .collect()
}

/// Checks the waiting chat's signatures together (one by one if that
/// fails, or for a group of one), decrypts what passed, and empties the
/// group into `results`.
fn verify_group(
    records: &[Record<'_>],
    waiting: &mut Vec<(usize, PreparedChat)>,
    results: &mut [Option<Result<Checked, Rejected>>],
) {
    let together = waiting.len() > 1
        && envelope::verify_all(
            &waiting
                .iter()
                .map(|(_, (envelope, _, contact))| (envelope, &contact.signing_key))
                .collect::<Vec<_>>(),
        );
    for (index, (envelope, header, contact)) in waiting.drain(..) {
        let verified = if together {
            Ok(())
        } else {
            envelope::verify(&envelope, &contact.signing_key)
                .map_err(|rejection| Rejected::of(rejection, &header))
        };
        results[index] = Some(
            verified.and_then(|()| finish_chat(&records[index], &envelope, &header, &contact)),
        );
    }
}

/// A chat record that passed every check but its signature's, and what that
/// check and the decryption need.
type PreparedChat = (wire::Envelope, Header, Arc<Contact>);

/// A record after the checks that come before the signature.
enum Prepared {
    Done(Result<Checked, Rejected>),
    Chat(Box<PreparedChat>),
}

/// Size, format, version, lane, recipient and sender: everything but the
/// signature and the decryption.
fn prepare(record: &Record<'_>, book: &ContactBook) -> Prepared {
    let (envelope, header) = match envelope::parse(record.bytes, book.me()) {
        Ok(parsed) => parsed,
        Err(rejection) => return Prepared::Done(Err(Rejected::plain(rejection))),
    };
    let refuse = |rejection| Prepared::Done(Err(Rejected::of(rejection, &header)));
    match record.via {
        // Chat belongs on data-in, control kinds on rpc-in.
        None if Lane::of(header.kind) != record.lane => return refuse(Rejection::Malformed),
        // A channel carries its contact's own envelopes, of a few kinds.
        Some(contact) if contact != header.sender => return refuse(Rejection::Stranger),
        Some(_) if !carried_directly(header.kind) => return refuse(Rejection::Malformed),
        _ => {}
    }
    // Every kind but chat goes to its handler, whichever lane it came on
    // (channel records take the data lane for its retention).
    if !carries_chat(header.kind) {
        return Prepared::Done(Ok(Checked::Control(header, envelope)));
    }
    match sender_contact(book, &header) {
        Ok(contact) => Prepared::Chat(Box::new((envelope, header, contact))),
        Err(rejected) => Prepared::Done(Err(rejected)),
    }
}

/// Decrypts and decodes a chat record whose signature passed.
fn finish_chat(
    record: &Record<'_>,
    envelope: &wire::Envelope,
    header: &Header,
    contact: &Contact,
) -> Result<Checked, Rejected> {
    let payload = envelope::open(envelope, header, &contact.pair)
        .map_err(|rejection| Rejected::of(rejection, header))?;
    let content = wire::ChatPayload::decode(payload.as_slice())
        .ok()
        .and_then(|chat| Content::from_payload(chat).ok())
        .ok_or_else(|| Rejected::of(Rejection::Undecryptable, header))?;
    // An act travels as its own kind, so that a kircd that predates acts
    // refuses it; chat that carries one, or an act that carries none, is
    // neither.
    if content.kind() != header.kind {
        return Err(Rejected::of(Rejection::Malformed, header));
    }
    Ok(Checked::Chat(Incoming {
        id: header.message_id,
        conversation_id: contact.conversation_id,
        sender: header.sender,
        action: content.action,
        body: content.body().to_owned(),
        reply_to: content.reply_to,
        act: content.act,
        created_at_unix_ms: header.created_at_unix_ms(),
        partition: record.partition,
        offset: record.offset,
        digest: digest(record.bytes),
        after_refused: false,
    }))
}

/// Establishes who sent a control record, by the rule of its kind, and
/// decrypts it. Only an opened record may be judged against (and move) its
/// sender's mark.
pub fn open_control(
    opening: Opening,
    header: &Header,
    envelope: &wire::Envelope,
    book: &ContactBook,
) -> Result<(Sender, Vec<u8>), Rejected> {
    let reject = |rejection| Rejected::of(rejection, header);
    match opening {
        Opening::ContactRequest => {
            let payload = envelope::open_anonymous(envelope, book.identity())
                .map_err(|_| reject(Rejection::Undecryptable))?;
            let request = wire::ContactRequest::decode(payload.as_slice())
                .map_err(|_| reject(Rejection::Undecryptable))?;
            let profile = request
                .profile
                .as_ref()
                .and_then(|signed| verify_profile(signed).ok())
                .ok_or_else(|| reject(Rejection::BadSignature))?;
            // The envelope must come from the actor the profile describes.
            if profile.actor_id != header.sender
                || envelope::verify(envelope, &profile.signing_key).is_err()
            {
                return Err(reject(Rejection::BadSignature));
            }
            if book
                .get(&header.sender)
                .is_some_and(|existing| existing.state == ContactState::Blocked)
            {
                return Err(reject(Rejection::Blocked));
            }
            Ok((Sender::Requester(Box::new(profile)), payload))
        }
        Opening::Own => {
            if header.sender != book.me() {
                return Err(reject(Rejection::Stranger));
            }
            let identity = book.identity();
            envelope::verify(envelope, &identity.signing_key()).map_err(reject)?;
            let pair = envelope::PairKey::new(identity, &identity.box_key());
            let payload = envelope::open(envelope, header, &pair).map_err(reject)?;
            Ok((Sender::Own, payload))
        }
        Opening::FromContact => {
            let contact = sender_contact(book, header)?;
            let payload = open_from_contact(&contact, header, envelope)?;
            Ok((Sender::Contact(contact), payload))
        }
    }
}

/// A record from a contact: its signature checked against the contact's
/// key, then decrypted.
fn open_from_contact(
    contact: &Contact,
    header: &Header,
    envelope: &wire::Envelope,
) -> Result<Vec<u8>, Rejected> {
    envelope::verify(envelope, &contact.signing_key)
        .map_err(|rejection| Rejected::of(rejection, header))?;
    envelope::open(envelope, header, &contact.pair)
        .map_err(|rejection| Rejected::of(rejection, header))
}

/// The sender as a contact that may write to us.
fn sender_contact(book: &ContactBook, header: &Header) -> Result<Arc<Contact>, Rejected> {
    match book.get(&header.sender) {
        None => Err(Rejected::of(Rejection::Stranger, header)),
        Some(contact) if contact.state == ContactState::Blocked => {
            Err(Rejected::of(Rejection::Blocked, header))
        }
        Some(contact) => Ok(contact),
    }
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
