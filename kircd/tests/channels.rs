//! Channels between real kircd processes: an owner and members who join by
//! token, messages that reach everyone in the owner's order, and a kick
//! after which the removed member reads nothing new.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kirc_proto::v1::{self as pb};
use kirc_testkit::{
    Actor, Daemon, act, create_channel, invite_to, join_by, said, send, wait_channel, wait_said,
};

#[tokio::test]
async fn members_join_by_token_hear_each_other_in_order_and_a_kicked_one_hears_no_more() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let carol = Actor::new("carol").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;

    let channel = create_channel(&alice_daemon, "#kirc").await;
    let token = invite_to(&alice_daemon, "#kirc").await;
    assert!(token.starts_with("kircc1:"));
    assert_eq!(join_by(&bob_daemon, &token).await, channel);
    wait_channel(&bob_daemon, &channel, 2, pb::ChannelMembership::Joined).await;
    assert_eq!(join_by(&carol_daemon, &token).await, channel);
    wait_channel(&carol_daemon, &channel, 3, pb::ChannelMembership::Joined).await;
    wait_channel(&bob_daemon, &channel, 3, pb::ChannelMembership::Joined).await;

    send(&alice_daemon, "#kirc", "hello from the owner").await;
    send(&bob_daemon, "#kirc", "bob here").await;
    send(&carol_daemon, &channel, "carol too").await;
    let seen: Vec<Vec<String>> = vec![
        wait_said(&alice_daemon, &channel, 3).await,
        wait_said(&bob_daemon, &channel, 3).await,
        wait_said(&carol_daemon, &channel, 3).await,
    ];
    assert_eq!(seen[0].len(), 3, "{seen:?}");
    assert_eq!(seen[0], seen[1], "the same order everywhere");
    assert_eq!(seen[0], seen[2], "the same order everywhere");

    // Carol is kicked: she sees it, and nothing said after.
    act(&alice_daemon, "#kirc", pb::ChannelLine::Kick, "carol", "")
        .await
        .unwrap();
    wait_channel(&carol_daemon, &channel, 2, pb::ChannelMembership::Left).await;
    wait_channel(&bob_daemon, &channel, 2, pb::ChannelMembership::Joined).await;
    send(&bob_daemon, "#kirc", "after the kick").await;
    let bob_saw = wait_said(&alice_daemon, &channel, 4).await;
    assert_eq!(bob_saw.last().unwrap(), "after the kick");
    assert_eq!(said(&carol_daemon, &channel).await.len(), 3);
    // And she can no longer speak there.
    let refused = carol_daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: channel.clone(),
            text: "let me back".into(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
}

async fn keyed(
    daemon: &Daemon,
    channel: &str,
    text: &str,
    key: &str,
) -> Result<pb::ChatMessage, tonic::Status> {
    daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: channel.into(),
            text: text.into(),
            idempotency_key: key.into(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_channel_message_sent_again_with_its_key_is_sent_once() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let channel = create_channel(&alice_daemon, "#keys").await;
    join_by(&bob_daemon, &invite_to(&alice_daemon, "#keys").await).await;
    wait_channel(&alice_daemon, &channel, 2, pb::ChannelMembership::Joined).await;
    wait_channel(&bob_daemon, &channel, 2, pb::ChannelMembership::Joined).await;

    for daemon in [&bob_daemon, &alice_daemon] {
        let key = format!("key-of-{}", daemon.status().await.actor_id);
        let first = keyed(daemon, &channel, "once", &key).await.unwrap();
        let again = keyed(daemon, &channel, "once", &key).await.unwrap();
        assert_eq!(first.id, again.id, "the same message again");
        let other = keyed(daemon, &channel, "something else", &key)
            .await
            .unwrap_err();
        assert_eq!(other.code(), tonic::Code::InvalidArgument, "{other}");
    }
    assert_eq!(
        wait_said(&alice_daemon, &channel, 2).await,
        ["once", "once"]
    );
    assert_eq!(wait_said(&bob_daemon, &channel, 2).await, ["once", "once"]);
}

/// The message of `channel` whose text is `text`, as `daemon` holds it,
/// once `done` holds for it.
async fn message_where(
    daemon: &Daemon,
    channel: &str,
    text: &str,
    done: impl Fn(&pb::ChatMessage) -> bool,
) -> pb::ChatMessage {
    let history = kirc_testkit::wait_history(
        daemon,
        channel,
        text,
        std::time::Duration::from_secs(60),
        |history| {
            history
                .iter()
                .any(|message| message.body == text && done(message))
        },
    )
    .await;
    history
        .into_iter()
        .find(|message| message.body == text && done(message))
        .unwrap()
}

#[tokio::test]
async fn replies_reactions_edits_and_deletions_reach_every_member() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let carol = Actor::new("carol").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;
    let channel = create_channel(&alice_daemon, "#acts").await;
    let token = invite_to(&alice_daemon, "#acts").await;
    for daemon in [&bob_daemon, &carol_daemon] {
        join_by(daemon, &token).await;
    }
    for daemon in [&alice_daemon, &bob_daemon, &carol_daemon] {
        wait_channel(daemon, &channel, 3, pb::ChannelMembership::Joined).await;
    }
    let daemons = [&alice_daemon, &bob_daemon, &carol_daemon];

    let hello = send(&bob_daemon, "#acts", "hello").await;
    message_where(&carol_daemon, &channel, "hello", |_| true).await;
    let reply = carol_daemon
        .client()
        .await
        .send_message(pb::SendMessageRequest {
            to: channel.clone(),
            text: "hi bob".into(),
            reply_to: hello.id.clone(),
            ..pb::SendMessageRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    for daemon in daemons {
        message_where(daemon, &channel, "hi bob", |message| {
            message.id == reply.id
                && message
                    .quote
                    .as_ref()
                    .is_some_and(|quote| quote.excerpt == "hello")
        })
        .await;
    }

    let mut client = carol_daemon.client().await;
    for daemon in [&carol_daemon, &alice_daemon] {
        daemon
            .client()
            .await
            .react(pb::ReactRequest {
                message_id: hello.id.clone(),
                emoji: "👍".into(),
                remove: false,
            })
            .await
            .unwrap();
    }
    let refused = client
        .edit_message(pb::EditMessageRequest {
            message_id: hello.id.clone(),
            text: "carol's words".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    bob_daemon
        .client()
        .await
        .edit_message(pb::EditMessageRequest {
            message_id: hello.id.clone(),
            text: "hello, everyone".into(),
        })
        .await
        .unwrap();
    for daemon in daemons {
        let shown = message_where(daemon, &channel, "hello, everyone", |message| {
            message.edited
                && message
                    .reactions
                    .first()
                    .is_some_and(|reaction| reaction.count == 2)
        })
        .await;
        assert_eq!(shown.id, hello.id);
    }

    bob_daemon
        .client()
        .await
        .delete_message(pb::MessageRequest {
            message_id: hello.id.clone(),
        })
        .await
        .unwrap();
    for daemon in daemons {
        let gone = message_where(daemon, &channel, "", |message| message.deleted).await;
        assert_eq!(gone.id, hello.id);
        // The acts were posts like any, but none is a message of its own.
        assert_eq!(said(daemon, &channel).await, ["", "hi bob"]);
    }
}
