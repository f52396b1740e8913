use super::*;
use crate::testing::{book, identity, profile};

#[test]
fn contacts_resolve_by_id_name_or_conversation_and_ambiguity_is_an_error() {
    let me = identity(1);
    let (alice, bob, bob_too) = (identity(2), identity(3), identity(4));
    let book = book(
        &me,
        &[
            (&alice, "alice", ContactState::Accepted),
            (&bob, "bob", ContactState::Request),
            (&bob_too, "Bob", ContactState::Accepted),
        ],
    );
    let found = book.resolve(&alice.id().to_string()).unwrap();
    assert_eq!(found.actor_id, alice.id());
    assert_eq!(book.resolve(" ALICE ").unwrap().actor_id, alice.id());
    let conversation = found.conversation_id.to_string();
    assert_eq!(book.resolve(&conversation).unwrap().actor_id, alice.id());
    assert_eq!(
        book.resolve("bob").unwrap_err(),
        LookupError::Ambiguous(String::from("bob"))
    );
    assert_eq!(
        book.resolve("carol").unwrap_err(),
        LookupError::Unknown(String::from("carol"))
    );
    // The id still names one contact when names collide.
    assert_eq!(
        book.resolve(&bob.id().to_string()).unwrap().actor_id,
        bob.id()
    );
}

#[test]
fn a_contact_carries_what_its_profile_derives_once() {
    let me = identity(1);
    let alice = identity(2);
    let book = book(&me, &[(&alice, "alice", ContactState::Accepted)]);
    let contact = book.get(&alice.id()).unwrap();
    assert_eq!(
        contact.conversation_id,
        conversation_id(me.id(), alice.id())
    );
    assert_eq!(contact.access.data_in_topic, "alice.data-in");
    assert_eq!(
        book.by_conversation(contact.conversation_id)
            .unwrap()
            .actor_id,
        alice.id()
    );
    // The pair key opens what alice seals for us.
    let id = crate::crypto::envelope::new_message_id();
    let alice_book = crate::testing::book(&alice, &[(&me, "me", ContactState::Accepted)]);
    let to_me = alice_book.get(&me.id()).unwrap();
    let sealed = crate::crypto::envelope::seal(
        &alice,
        me.id(),
        &to_me.pair,
        kirc_proto::wire::v1::Kind::Chat,
        id,
        b"hello",
    );
    let (envelope, header) = crate::crypto::envelope::parse(&sealed, me.id()).unwrap();
    assert_eq!(
        crate::crypto::envelope::open(&envelope, &header, &contact.pair).unwrap(),
        b"hello"
    );
}

#[test]
fn only_accepted_contacts_are_accepted_and_all_come_in_the_order_added() {
    let me = identity(1);
    let (a, b, c) = (identity(2), identity(3), identity(4));
    let book = book(
        &me,
        &[
            (&a, "a", ContactState::Blocked),
            (&b, "b", ContactState::Accepted),
            (&c, "c", ContactState::Request),
        ],
    );
    let accepted: Vec<ActorId> = book.accepted().iter().map(|c| c.actor_id).collect();
    assert_eq!(accepted, vec![b.id()]);
    let all: Vec<ActorId> = book.all().iter().map(|c| c.actor_id).collect();
    assert_eq!(all, vec![a.id(), b.id(), c.id()]);
}

#[test]
fn presence_goes_only_to_contacts_that_accepted_us_too() {
    let me = identity(1);
    let (added, mutual) = (identity(2), identity(3));
    let book = book(&me, &[(&mutual, "mutual", ContactState::Accepted)]);
    // Added by its invite a moment ago: our request is still on its way.
    let row = StoredContact {
        actor_id: added.id().as_bytes().to_vec(),
        signed_profile: Vec::new(),
        profile_updated_at_unix_ms: 1,
        state: ContactState::Accepted,
        peer_accepted: false,
        added_at_unix_ms: 9,
    };
    book.admit(Contact::new(&me, &profile(&added, "added", 1), &row));
    assert_eq!(book.accepted().len(), 2);
    let mutual_ids: Vec<ActorId> = book.mutual().iter().map(|c| c.actor_id).collect();
    assert_eq!(mutual_ids, vec![mutual.id()]);
}

#[test]
fn commands_wait_until_the_book_is_loaded() {
    let book = ContactBook::new(identity(1));
    assert_eq!(book.check_loaded(), Err(NotLoaded));
    book.set_loaded();
    assert_eq!(book.check_loaded(), Ok(()));
}

#[test]
fn a_stored_profile_is_read_for_its_stamp_and_verified_against_its_row() {
    let me = identity(1);
    let alice = identity(2);
    let verified = profile(&alice, "alice", 77);
    let bytes = verified.signed.encode_to_vec();
    assert_eq!(profile_stamp(&bytes), Some(77));
    assert_eq!(profile_stamp(b"junk"), None);
    let book = ContactBook::new(Arc::clone(&me));
    let row = StoredContact {
        actor_id: alice.id().as_bytes().to_vec(),
        signed_profile: bytes.clone(),
        profile_updated_at_unix_ms: 77,
        state: ContactState::Accepted,
        peer_accepted: true,
        added_at_unix_ms: 5,
    };
    let contact = book.verify_stored(&row).unwrap();
    assert_eq!(contact.display_name, "alice");
    assert_eq!(contact.profile_updated_at_unix_ms, 77);
    // A row whose id is not the profile's is damaged.
    let other = StoredContact {
        actor_id: me.id().as_bytes().to_vec(),
        ..row
    };
    assert!(matches!(
        book.verify_stored(&other),
        Err(BookError::DamagedContact(_))
    ));
}
