//! A channel's rules enforced between real kircd processes: moderated
//! mode, ops, the topic, a ban that refuses the rejoin; and forged posts,
//! by a member in another's name or by the owner altering one, refused and
//! counted by whoever receives them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1 as pb;
use kirc_proto::wire::v1 as wire;
use kirc_testkit::kafka::{produce, producer};
use kirc_testkit::{
    Actor, Daemon, act, create_channel, history_all, invite_to, join_by, rejected, send,
    wait_channel, wait_said,
};
use kircd::crypto::envelope::{self, PairKey};
use kircd::crypto::group::{OutboundSession, sign_post};
use kircd::crypto::identity::Identity;
use prost::Message as _;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// The owner alice and members bob and carol in `name`; returns the daemons
/// and the channel's id.
async fn channel_of_three(
    name: &str,
    alice: &Actor,
    bob: &Actor,
    carol: &Actor,
) -> (Daemon, Daemon, Daemon, String) {
    let alice_daemon = Daemon::start(alice).await;
    let bob_daemon = Daemon::start(bob).await;
    let carol_daemon = Daemon::start(carol).await;
    let channel = create_channel(&alice_daemon, name).await;
    let token = invite_to(&alice_daemon, name).await;
    join_by(&bob_daemon, &token).await;
    wait_channel(&bob_daemon, &channel, 2, pb::ChannelMembership::Joined).await;
    join_by(&carol_daemon, &token).await;
    for daemon in [&alice_daemon, &bob_daemon, &carol_daemon] {
        wait_channel(daemon, &channel, 3, pb::ChannelMembership::Joined).await;
    }
    (alice_daemon, bob_daemon, carol_daemon, channel)
}

async fn wait_info(
    daemon: &Daemon,
    channel: &str,
    what: &str,
    holds: impl Fn(&pb::ChannelInfo) -> bool,
) {
    daemon
        .watch()
        .await
        .wait_for(what, WAIT, |view| {
            view.conversation(channel)
                .and_then(|conversation| conversation.channel.as_ref())
                .is_some_and(&holds)
        })
        .await;
}

async fn try_send(daemon: &Daemon, channel: &str, text: &str) -> Result<(), tonic::Status> {
    daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: channel.into(),
            text: text.into(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn ops_moderated_mode_the_topic_and_bans_are_enforced_and_shown_to_all() {
    let (alice, bob, carol) = (
        Actor::new("alice").await,
        Actor::new("bob").await,
        Actor::new("carol").await,
    );
    let (alice_daemon, bob_daemon, carol_daemon, channel) =
        channel_of_three("#rules", &alice, &bob, &carol).await;

    // A member may not moderate; the owner may, and every member sees it.
    let refused = act(&bob_daemon, &channel, pb::ChannelLine::Moderated, "", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    act(&alice_daemon, &channel, pb::ChannelLine::Moderated, "", "")
        .await
        .unwrap();
    wait_info(&carol_daemon, &channel, "moderated", |info| info.moderated).await;
    wait_info(&bob_daemon, &channel, "moderated", |info| info.moderated).await;
    let refused = try_send(&carol_daemon, &channel, "may I?")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");

    // bob made an op speaks, and sets the topic; carol still may not speak.
    act(&alice_daemon, &channel, pb::ChannelLine::Op, "bob", "")
        .await
        .unwrap();
    let is_op = |info: &pb::ChannelInfo| {
        info.members
            .iter()
            .any(|member| member.display_name == "bob" && member.role == pb::ChannelRole::Op as i32)
    };
    wait_info(&bob_daemon, &channel, "bob an op", is_op).await;
    wait_info(&carol_daemon, &channel, "bob an op", is_op).await;
    send(&bob_daemon, &channel, "an op speaks").await;
    act(
        &bob_daemon,
        &channel,
        pb::ChannelLine::Topic,
        "",
        "moderated now",
    )
    .await
    .unwrap();
    for daemon in [&alice_daemon, &carol_daemon] {
        wait_info(daemon, &channel, "the new topic", |info| {
            info.topic == "moderated now"
        })
        .await;
    }
    assert_eq!(
        wait_said(&carol_daemon, &channel, 1).await,
        ["an op speaks"]
    );
    assert!(try_send(&carol_daemon, &channel, "still?").await.is_err());

    // A ban puts carol out, and her join with the same token is refused.
    act(
        &alice_daemon,
        &channel,
        pb::ChannelLine::Ban,
        "carol",
        "enough",
    )
    .await
    .unwrap();
    wait_channel(&carol_daemon, &channel, 2, pb::ChannelMembership::Left).await;
    let token = invite_to(&alice_daemon, &channel).await;
    join_by(&carol_daemon, &token).await;
    // Until the owner answers, she holds only what the token says.
    wait_info(&carol_daemon, &channel, "the join refused", |info| {
        info.membership == pb::ChannelMembership::Left as i32
    })
    .await;
    let lines: Vec<i32> = history_all(&carol_daemon, &channel)
        .await
        .iter()
        .map(|message| message.line)
        .collect();
    let bans = lines
        .iter()
        .filter(|line| **line == pb::ChannelLine::Ban as i32)
        .count();
    assert_eq!(bans, 2, "the ban and the refusal show: {lines:?}");
    wait_info(&alice_daemon, &channel, "two members", |info| {
        info.members.len() == 2
    })
    .await;
}

#[tokio::test]
async fn a_post_in_another_members_name_or_altered_by_the_owner_is_refused_and_counted() {
    let (alice, bob, carol) = (
        Actor::new("alice").await,
        Actor::new("bob").await,
        Actor::new("carol").await,
    );
    let (alice_daemon, bob_daemon, carol_daemon, channel) =
        channel_of_three("#forged", &alice, &bob, &carol).await;
    send(&bob_daemon, &channel, "the real bob").await;
    wait_said(&carol_daemon, &channel, 1).await;

    let keys = |actor: &Actor| Identity::load(&actor.dir.path().join("identity.key")).unwrap();
    let (alice_keys, bob_keys, carol_keys) = (keys(&alice), keys(&bob), keys(&carol));
    let channel_id: Uuid = channel.parse().unwrap();
    let kafka = producer(&alice.stack.kafka);

    // bob writes a post in carol's name (signed by himself) to the owner.
    let mut session = OutboundSession::new();
    let ciphertext = session.encrypt(b"carol says something she did not");
    let post_id = Uuid::now_v7();
    let in_carols_name = wire::ChannelPost {
        channel_id: channel_id.as_bytes().to_vec(),
        post_id: post_id.as_bytes().to_vec(),
        author: carol_keys.id().as_bytes().to_vec(),
        session_id: session.id(),
        signature: sign_post(&bob_keys, channel_id, post_id, &session.id(), &ciphertext),
        ciphertext,
    };
    let to_alice = envelope::seal(
        &bob_keys,
        alice_keys.id(),
        &PairKey::new(&bob_keys, &alice_keys.box_key()),
        wire::Kind::ChannelPost,
        envelope::new_message_id(),
        &in_carols_name.encode_to_vec(),
    );
    let key = envelope::conversation_id(bob_keys.id(), alice_keys.id());
    produce(
        &kafka,
        &format!("{}data-in", alice.topic_prefix),
        key.as_bytes(),
        &to_alice,
    )
    .await;

    // The owner alters a post of bob's on its way to carol.
    let mut altered = in_carols_name.clone();
    altered.author = bob_keys.id().as_bytes().to_vec();
    altered.signature = sign_post(
        &bob_keys,
        channel_id,
        post_id,
        &altered.session_id,
        &altered.ciphertext,
    );
    altered.ciphertext[4] ^= 1;
    let relay = wire::ChannelRelay {
        channel_id: channel_id.as_bytes().to_vec(),
        seq: 1_000_000,
        item: Some(wire::channel_relay::Item::Post(altered)),
        state: None,
    };
    let to_carol = envelope::seal(
        &alice_keys,
        carol_keys.id(),
        &PairKey::new(&alice_keys, &carol_keys.box_key()),
        wire::Kind::ChannelRelay,
        envelope::new_message_id(),
        &relay.encode_to_vec(),
    );
    let key = envelope::conversation_id(alice_keys.id(), carol_keys.id());
    produce(
        &kafka,
        &format!("{}data-in", carol.topic_prefix),
        key.as_bytes(),
        &to_carol,
    )
    .await;

    for daemon in [&alice_daemon, &carol_daemon] {
        daemon
            .watch()
            .await
            .wait_until("the forgery counted", WAIT, |status| {
                rejected(status, "bad_signature") >= 1
            })
            .await;
    }
    // Nobody shows either; the channel goes on.
    send(&bob_daemon, &channel, "still the real bob").await;
    for daemon in [&alice_daemon, &bob_daemon, &carol_daemon] {
        assert_eq!(
            wait_said(daemon, &channel, 2).await,
            ["the real bob", "still the real bob"]
        );
    }
}
