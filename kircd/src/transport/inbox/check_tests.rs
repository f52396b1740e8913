//! The inbox's checks, record by record, without Kafka or a database.

use kirc_proto::wire::v1 as wire;
use prost::Message as _;

use super::*;
use crate::crypto::envelope::{new_message_id, seal, seal_anonymous};
use crate::crypto::identity::Identity;
use crate::testing::{book, contact, identity, profile};

/// Bob's inbox, knowing alice (accepted), mallory (blocked) and carol (a
/// request). `eve` is a stranger.
struct World {
    bob: Arc<Identity>,
    alice: Arc<Identity>,
    mallory: Arc<Identity>,
    carol: Arc<Identity>,
    eve: Arc<Identity>,
    book: ContactBook,
}

fn world() -> World {
    let (bob, alice, mallory, carol, eve) = (
        identity(1),
        identity(2),
        identity(3),
        identity(4),
        identity(5),
    );
    let book = book(
        &bob,
        &[
            (&alice, "alice", ContactState::Accepted),
            (&mallory, "mallory", ContactState::Blocked),
            (&carol, "carol", ContactState::Request),
        ],
    );
    World {
        bob,
        alice,
        mallory,
        carol,
        eve,
        book,
    }
}

/// `from` seals `payload` of `kind` for bob, as its kircd would.
fn sealed(from: &Arc<Identity>, bob: &Arc<Identity>, kind: wire::Kind, payload: &[u8]) -> Vec<u8> {
    let their_book = book(from, &[(bob, "bob", ContactState::Accepted)]);
    let to_bob = contact(&their_book, bob);
    seal(
        from,
        bob.id(),
        &to_bob.pair,
        kind,
        new_message_id(),
        payload,
    )
}

fn chat(text: &str) -> Vec<u8> {
    wire::ChatPayload {
        text: text.into(),
        action: true,
        ..wire::ChatPayload::default()
    }
    .encode_to_vec()
}

fn record(lane: Lane, bytes: &[u8]) -> Record<'_> {
    Record {
        lane,
        partition: 1,
        offset: 42,
        bytes,
        via: None,
    }
}

/// A record that came over `via`'s data channel.
fn direct<'a>(via: &Arc<Identity>, bytes: &'a [u8]) -> Record<'a> {
    Record {
        lane: Lane::Data,
        partition: crate::transport::marks::DIRECT,
        offset: crate::transport::marks::DIRECT_OFFSET,
        bytes,
        via: Some(via.id()),
    }
}

fn rejection(result: Result<Checked, Rejected>) -> Rejection {
    match result {
        Ok(checked) => panic!("accepted: {checked:?}"),
        Err(rejected) => rejected.rejection,
    }
}

#[test]
fn a_contacts_chat_comes_out_verified_and_decrypted() {
    let world = world();
    let bytes = sealed(&world.alice, &world.bob, wire::Kind::Chat, &chat("hi bob"));
    let Ok(Checked::Chat(incoming)) = check(&record(Lane::Data, &bytes), &world.book) else {
        panic!("not a chat");
    };
    assert_eq!(incoming.sender, world.alice.id());
    assert_eq!(incoming.body, "hi bob");
    assert!(incoming.action);
    assert_eq!(
        incoming.conversation_id,
        contact(&world.book, &world.alice).conversation_id
    );
    assert_eq!((incoming.partition, incoming.offset), (1, 42));
    assert_eq!(incoming.digest, digest(&bytes));
}

#[test]
fn each_bad_record_is_refused_for_its_own_reason() {
    let world = world();
    let from_alice = sealed(&world.alice, &world.bob, wire::Kind::Chat, &chat("hi"));
    let mut tampered = wire::Envelope::decode(from_alice.as_slice()).unwrap();
    tampered.ciphertext[0] ^= 1;
    let tampered = tampered.encode_to_vec();
    let mut unboxed = wire::Envelope::decode(from_alice.as_slice()).unwrap();
    unboxed.version = 2;
    let unknown_version = unboxed.encode_to_vec();
    // Sealed for alice, not for bob.
    let for_someone_else = sealed(&world.carol, &world.alice, wire::Kind::Chat, &chat("hi"));
    let garbage_payload = sealed(&world.alice, &world.bob, wire::Kind::Chat, &[0xff; 7]);
    let cases: [(&str, Lane, Vec<u8>, Rejection); 10] = [
        ("junk", Lane::Data, vec![0xff; 40], Rejection::Undecodable),
        (
            "too large",
            Lane::Data,
            vec![0; envelope::MAX_ENVELOPE_BYTES + 1],
            Rejection::Oversized,
        ),
        (
            "a version not read",
            Lane::Data,
            unknown_version,
            Rejection::UnknownVersion,
        ),
        (
            "for another actor",
            Lane::Data,
            for_someone_else,
            Rejection::WrongRecipient,
        ),
        (
            "a stranger's chat",
            Lane::Data,
            sealed(&world.eve, &world.bob, wire::Kind::Chat, &chat("hi")),
            Rejection::Stranger,
        ),
        (
            "a blocked contact's chat",
            Lane::Data,
            sealed(&world.mallory, &world.bob, wire::Kind::Chat, &chat("hi")),
            Rejection::Blocked,
        ),
        (
            "altered bytes",
            Lane::Data,
            tampered,
            Rejection::BadSignature,
        ),
        (
            "a payload that is no chat",
            Lane::Data,
            garbage_payload,
            Rejection::Undecryptable,
        ),
        (
            "chat on rpc-in",
            Lane::Control,
            from_alice,
            Rejection::Malformed,
        ),
        (
            "control on data-in",
            Lane::Data,
            sealed(&world.alice, &world.bob, wire::Kind::Typing, &[8, 1]),
            Rejection::Malformed,
        ),
    ];
    for (name, lane, bytes, expected) in cases {
        assert_eq!(
            rejection(check(&record(lane, &bytes), &world.book)),
            expected,
            "{name}"
        );
    }
}

#[test]
fn records_checked_in_groups_come_out_as_checked_one_by_one() {
    let world = world();
    let count = 2 * VERIFY_GROUP + 88;
    let last = count - 1;
    let mut records: Vec<(Lane, Vec<u8>)> = (0..count)
        .map(|index| {
            let text = chat(&format!("{index}"));
            (
                Lane::Data,
                sealed(&world.alice, &world.bob, wire::Kind::Chat, &text),
            )
        })
        .collect();
    // Two full groups and a partial one: a forged signature in the first,
    // altered bytes in the last, and records that never reach a signature
    // check between them.
    let mut forged = wire::Envelope::decode(records[10].1.as_slice()).unwrap();
    forged.signature[0] ^= 1;
    records[10].1 = forged.encode_to_vec();
    let altered_at = count - 60;
    let mut altered = wire::Envelope::decode(records[altered_at].1.as_slice()).unwrap();
    altered.ciphertext[0] ^= 1;
    records[altered_at].1 = altered.encode_to_vec();
    records[70].1 = sealed(&world.eve, &world.bob, wire::Kind::Chat, &chat("hi"));
    records[71] = (
        Lane::Control,
        sealed(&world.alice, &world.bob, wire::Kind::Typing, &[8, 1]),
    );
    records[72].1 = vec![0xff; 40];
    let records: Vec<Record<'_>> = records
        .iter()
        .map(|(lane, bytes)| record(*lane, bytes))
        .collect();
    let outcome = |result: Result<Checked, Rejected>| match result {
        Ok(Checked::Chat(incoming)) => Ok(incoming.body),
        Ok(Checked::Control(header, _)) => Err(format!("control {:?}", header.kind)),
        Err(rejected) => Err(format!("{:?}", rejected.rejection)),
    };
    let together: Vec<_> = check_many(&records, &world.book)
        .into_iter()
        .map(outcome)
        .collect();
    let alone: Vec<_> = records
        .iter()
        .map(|record| outcome(check(record, &world.book)))
        .collect();
    assert_eq!(together, alone);
    assert_eq!(
        together.iter().filter(|result| result.is_ok()).count(),
        count - 5
    );
    assert_eq!(together[10], Err("BadSignature".into()));
    assert_eq!(together[altered_at], Err("BadSignature".into()));
    assert_eq!(together[last], Ok(format!("{last}")));
}

#[test]
fn a_chat_from_someone_who_asked_to_be_added_is_not_refused_by_the_checks() {
    // Whether to show it is the store's and the user's business; the checks
    // only establish who sent it.
    let world = world();
    let bytes = sealed(&world.carol, &world.bob, wire::Kind::Chat, &chat("hello?"));
    assert!(matches!(
        check(&record(Lane::Data, &bytes), &world.book),
        Ok(Checked::Chat(_))
    ));
}

#[test]
fn channel_records_come_on_data_in_and_go_to_their_handler() {
    let world = world();
    let relay = sealed(&world.alice, &world.bob, wire::Kind::ChannelRelay, b"relay");
    let Ok(Checked::Control(header, _)) = check(&record(Lane::Data, &relay), &world.book) else {
        panic!("a channel record on data-in is its handler's");
    };
    assert_eq!(header.kind, wire::Kind::ChannelRelay);
    // Not on the control lane, whose retention is a day.
    assert_eq!(
        check(&record(Lane::Control, &relay), &world.book)
            .unwrap_err()
            .rejection,
        Rejection::Malformed
    );
    // And typing is still refused on data-in.
    let typing = sealed(&world.alice, &world.bob, wire::Kind::Typing, b"t");
    assert_eq!(
        check(&record(Lane::Data, &typing), &world.book)
            .unwrap_err()
            .rejection,
        Rejection::Malformed
    );
}

fn control(world: &World, bytes: &[u8], opening: Opening) -> Result<(Sender, Vec<u8>), Rejected> {
    let Ok(Checked::Control(header, envelope)) = check(&record(Lane::Control, bytes), &world.book)
    else {
        panic!("not a control record");
    };
    open_control(opening, &header, &envelope, &world.book)
}

#[test]
fn control_from_a_contact_opens_with_the_pair_key() {
    let world = world();
    let typing = wire::Typing { active: true }.encode_to_vec();
    let bytes = sealed(&world.alice, &world.bob, wire::Kind::Typing, &typing);
    let (sender, payload) = control(&world, &bytes, Opening::FromContact).unwrap();
    assert!(matches!(sender, Sender::Contact(contact) if contact.actor_id == world.alice.id()));
    assert_eq!(payload, typing);
    let from_eve = sealed(&world.eve, &world.bob, wire::Kind::Typing, &typing);
    assert_eq!(
        control(&world, &from_eve, Opening::FromContact)
            .unwrap_err()
            .rejection,
        Rejection::Stranger
    );
}

fn request(from: &Identity, profile_of: &Identity, to: &Identity) -> Vec<u8> {
    let request = wire::ContactRequest {
        profile: Some(profile(profile_of, "eve", 1).signed),
        invite_secret: vec![7; 16],
        channel_join: Vec::new(),
    };
    seal_anonymous(
        from,
        to.id(),
        &to.box_key(),
        wire::Kind::ContactRequest,
        new_message_id(),
        &request.encode_to_vec(),
    )
}

#[test]
fn a_contact_request_is_opened_by_the_profile_inside() {
    let world = world();
    let bytes = request(&world.eve, &world.eve, &world.bob);
    let (sender, payload) = control(&world, &bytes, Opening::ContactRequest).unwrap();
    let Sender::Requester(profile) = sender else {
        panic!("not a requester");
    };
    assert_eq!(profile.actor_id, world.eve.id());
    assert!(wire::ContactRequest::decode(payload.as_slice()).is_ok());
    // A profile of someone else inside: the envelope is not theirs.
    let forged = request(&world.eve, &world.alice, &world.bob);
    assert_eq!(
        control(&world, &forged, Opening::ContactRequest)
            .unwrap_err()
            .rejection,
        Rejection::BadSignature
    );
    // A blocked actor cannot ask again.
    let blocked = request(&world.mallory, &world.mallory, &world.bob);
    assert_eq!(
        control(&world, &blocked, Opening::ContactRequest)
            .unwrap_err()
            .rejection,
        Rejection::Blocked
    );
}

#[test]
fn only_this_actor_opens_as_itself() {
    let world = world();
    let own_book = book(&world.bob, &[]);
    let heartbeat = {
        let pair = envelope::PairKey::new(&world.bob, &world.bob.box_key());
        seal(
            &world.bob,
            world.bob.id(),
            &pair,
            wire::Kind::Heartbeat,
            new_message_id(),
            &[0],
        )
    };
    let Ok(Checked::Control(header, envelope)) =
        check(&record(Lane::Control, &heartbeat), &own_book)
    else {
        panic!("not a control record");
    };
    assert!(matches!(
        open_control(Opening::Own, &header, &envelope, &own_book),
        Ok((Sender::Own, _))
    ));
    let from_alice = sealed(&world.alice, &world.bob, wire::Kind::Heartbeat, &[0]);
    assert_eq!(
        control(&world, &from_alice, Opening::Own)
            .unwrap_err()
            .rejection,
        Rejection::Stranger
    );
}

#[test]
fn a_data_channel_carries_only_its_contacts_chat_typing_and_presence() {
    let world = world();
    let hi = sealed(&world.alice, &world.bob, wire::Kind::Chat, &chat("hi"));
    let Ok(Checked::Chat(incoming)) = check(&direct(&world.alice, &hi), &world.book) else {
        panic!("the direct copy of a chat is a chat");
    };
    assert_eq!(incoming.partition, crate::transport::marks::DIRECT);
    let typing = sealed(
        &world.alice,
        &world.bob,
        wire::Kind::Typing,
        &wire::Typing { active: true }.encode_to_vec(),
    );
    assert!(matches!(
        check(&direct(&world.alice, &typing), &world.book),
        Ok(Checked::Control(..))
    ));
    // Carol's envelope on alice's channel: alice relays what is not hers.
    let from_carol = sealed(&world.carol, &world.bob, wire::Kind::Chat, &chat("hi"));
    assert_eq!(
        rejection(check(&direct(&world.alice, &from_carol), &world.book)),
        Rejection::Stranger
    );
    // Receipts, profiles and signalling take Kafka only.
    let receipt = sealed(
        &world.alice,
        &world.bob,
        wire::Kind::Receipt,
        &wire::Receipt::default().encode_to_vec(),
    );
    assert_eq!(
        rejection(check(&direct(&world.alice, &receipt), &world.book)),
        Rejection::Malformed
    );
}
