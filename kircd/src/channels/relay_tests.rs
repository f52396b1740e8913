use super::*;
use crate::crypto::group::{OutboundSession, sign_post};
use crate::crypto::identity::Identity;
use crate::testing::{identity, profile};

const OWNER: u8 = 1;
const ALICE: u8 = 2;
const BOB: u8 = 3;
const MALLORY: u8 = 4;

fn channel() -> Uuid {
    Uuid::from_bytes([9; 16])
}

fn member(seed: u8, role: wire::ChannelRole) -> wire::ChannelMember {
    wire::ChannelMember {
        profile: Some(profile(&identity(seed), &format!("m{seed}"), 1).signed),
        role: role as i32,
    }
}

/// The owner, alice and bob.
fn state() -> wire::ChannelState {
    wire::ChannelState {
        channel_id: channel().as_bytes().to_vec(),
        name: "#k".into(),
        topic: "t".into(),
        moderated: false,
        members: vec![
            member(OWNER, wire::ChannelRole::Owner),
            member(ALICE, wire::ChannelRole::Member),
            member(BOB, wire::ChannelRole::Op),
        ],
        epoch: 3,
    }
}

fn view() -> ChannelView {
    ChannelView::from_state(identity(OWNER).id(), &state(), 5).unwrap()
}

fn post_by(author: &Identity, signer: &Identity, text: &[u8]) -> wire::ChannelPost {
    let mut session = OutboundSession::new();
    let ciphertext = session.encrypt(text);
    let post_id = Uuid::now_v7();
    wire::ChannelPost {
        channel_id: channel().as_bytes().to_vec(),
        post_id: post_id.as_bytes().to_vec(),
        author: author.id().as_bytes().to_vec(),
        session_id: session.id(),
        signature: sign_post(signer, channel(), post_id, &session.id(), &ciphertext),
        ciphertext,
    }
}

fn relay(seq: u64, item: wire::channel_relay::Item) -> wire::ChannelRelay {
    wire::ChannelRelay {
        channel_id: channel().as_bytes().to_vec(),
        seq,
        item: Some(item),
        state: None,
    }
}

fn post_relay(seq: u64, post: wire::ChannelPost) -> wire::ChannelRelay {
    relay(seq, wire::channel_relay::Item::Post(post))
}

#[test]
fn a_members_post_from_the_owner_in_order_is_accepted() {
    let alice = identity(ALICE);
    let post = post_by(&alice, &alice, b"hi");
    let accepted = view()
        .check(identity(OWNER).id(), &post_relay(6, post.clone()))
        .unwrap();
    assert_eq!(accepted.seq, 6);
    assert!(accepted.view.is_none());
    let Step::Post(checked) = accepted.step else {
        panic!("a post")
    };
    assert_eq!(checked.author, alice.id());
    assert_eq!(checked.ciphertext, post.ciphertext);
    assert_eq!(checked.session_id, post.session_id);
}

#[test]
fn forged_stale_foreign_and_strangers_posts_are_refused() {
    let owner = identity(OWNER);
    let alice = identity(ALICE);
    let mallory = identity(MALLORY);
    let good = || post_by(&alice, &alice, b"hi");

    let mut altered = good();
    altered.ciphertext[3] ^= 1;
    let mut renamed = good();
    renamed.author = identity(BOB).id().as_bytes().to_vec();
    let mut other_channel = good();
    other_channel.channel_id = vec![8; 16];
    let mut empty = good();
    empty.ciphertext.clear();
    let mut foreign_relay = post_relay(6, good());
    foreign_relay.channel_id = vec![8; 16];
    let mut no_item = post_relay(6, good());
    no_item.item = None;

    let cases: Vec<(&str, ActorId, wire::ChannelRelay, RelayError)> = vec![
        (
            "the owner altered the ciphertext",
            owner.id(),
            post_relay(6, altered),
            RelayError::Forged,
        ),
        (
            "alice's post as bob's",
            owner.id(),
            post_relay(6, renamed),
            RelayError::Forged,
        ),
        (
            "signed by someone else in alice's name",
            owner.id(),
            post_relay(6, post_by(&alice, &mallory, b"hi")),
            RelayError::Forged,
        ),
        (
            "a stranger's own post",
            owner.id(),
            post_relay(6, post_by(&mallory, &mallory, b"hi")),
            RelayError::NotAMember,
        ),
        (
            "relayed by a member, not the owner",
            alice.id(),
            post_relay(6, good()),
            RelayError::NotFromOwner,
        ),
        (
            "a step already applied",
            owner.id(),
            post_relay(5, good()),
            RelayError::Old,
        ),
        (
            "a post of another channel",
            owner.id(),
            post_relay(6, other_channel),
            RelayError::WrongChannel,
        ),
        (
            "a relay of another channel",
            owner.id(),
            foreign_relay,
            RelayError::WrongChannel,
        ),
        (
            "an empty post",
            owner.id(),
            post_relay(6, empty),
            RelayError::Malformed("the post's size"),
        ),
        (
            "nothing relayed",
            owner.id(),
            no_item,
            RelayError::Malformed("neither a post nor an event"),
        ),
    ];
    for (case, sender, relay, expected) in cases {
        assert_eq!(view().check(sender, &relay).err(), Some(expected), "{case}");
    }
}

#[test]
fn a_new_roster_comes_with_its_step_and_is_checked_whole() {
    let owner = identity(OWNER);
    let kick = wire::ChannelEvent {
        kind: wire::ChannelEventKind::Kick as i32,
        actor: identity(BOB).id().as_bytes().to_vec(),
        target: identity(ALICE).id().as_bytes().to_vec(),
        text: "bye".into(),
    };
    let mut after = state();
    after.members.remove(1);
    after.epoch = 4;
    let mut step = relay(6, wire::channel_relay::Item::Event(kick));
    step.state = Some(after);
    let accepted = view().check(owner.id(), &step).unwrap();
    let next = accepted.view.unwrap();
    assert_eq!(next.seq, 6);
    assert_eq!(next.roster.epoch, 4);
    assert!(next.roster.role(&identity(ALICE).id()).is_none());
    assert!(!next.profiles.contains_key(&identity(ALICE).id()));
    let Step::Event(event) = accepted.step else {
        panic!("an event")
    };
    assert_eq!(event.kind, wire::ChannelEventKind::Kick);
    assert_eq!(event.target, Some(identity(ALICE).id()));

    // After the kick, alice's posts are refused: she is not in the roster.
    let post = post_by(&identity(ALICE), &identity(ALICE), b"still here?");
    assert_eq!(
        next.check(owner.id(), &post_relay(7, post)).err(),
        Some(RelayError::NotAMember)
    );
}

#[test]
fn a_roster_that_is_forged_or_impossible_is_refused() {
    let owner = identity(OWNER).id();
    let mut forged_profile = state();
    if let Some(signed) = forged_profile.members[1].profile.as_mut() {
        let last = signed.profile.len() - 1;
        signed.profile[last] ^= 1;
    }
    let mut second_owner = state();
    second_owner.members[1].role = wire::ChannelRole::Owner as i32;
    let mut twice = state();
    twice.members.push(member(ALICE, wire::ChannelRole::Member));
    let mut no_owner = state();
    no_owner.members.remove(0);
    let mut unknown_role = state();
    unknown_role.members[1].role = 99;
    let mut too_many = state();
    too_many.members = vec![member(ALICE, wire::ChannelRole::Member); MAX_ROSTER + 1];
    let mut bad_name = state();
    bad_name.name = "no hash".into();

    let cases = [
        (
            "forged profile",
            forged_profile,
            RelayError::BadRoster("a profile is forged"),
        ),
        (
            "second owner",
            second_owner,
            RelayError::BadRoster("someone else as the owner"),
        ),
        (
            "a member twice",
            twice,
            RelayError::BadRoster("a member twice"),
        ),
        (
            "no owner",
            no_owner,
            RelayError::BadRoster("the owner is missing"),
        ),
        (
            "unknown role",
            unknown_role,
            RelayError::BadRoster("an unknown role"),
        ),
        (
            "too many",
            too_many,
            RelayError::BadRoster("too many members"),
        ),
        (
            "bad name",
            bad_name,
            RelayError::Malformed("the channel's name"),
        ),
    ];
    for (case, state, expected) in cases {
        assert_eq!(
            ChannelView::from_state(owner, &state, 0).err(),
            Some(expected),
            "{case}"
        );
    }
}
