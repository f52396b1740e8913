//! Channels between real kircd processes: an owner and members who join by
//! token, messages that reach everyone in the owner's order, and a kick
//! after which the removed member reads nothing new.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kirc_proto::v1::{self as pb};
use kirc_testkit::{Actor, Daemon, history_all, send};

const WAIT: Duration = Duration::from_secs(60);

async fn create(daemon: &Daemon, name: &str) -> String {
    daemon
        .client()
        .await
        .create_channel(pb::CreateChannelRequest {
            name: name.into(),
            topic: "a topic".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conversation_id
}

async fn invite(daemon: &Daemon, channel: &str) -> String {
    daemon
        .client()
        .await
        .create_channel_invite(pb::ChannelRequest {
            channel: channel.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn join(daemon: &Daemon, token: &str) -> String {
    daemon
        .client()
        .await
        .join_channel(pb::JoinChannelRequest {
            token: token.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .conversation_id
}

async fn act(daemon: &Daemon, channel: &str, act: pb::ChannelLine, member: &str) {
    daemon
        .client()
        .await
        .channel_act(pb::ChannelActRequest {
            channel: channel.into(),
            act: act as i32,
            member: member.into(),
            text: String::new(),
        })
        .await
        .unwrap();
}

/// Waits until `daemon` shows `channel` with `members` members and this
/// actor's membership `membership`.
async fn wait_channel(
    daemon: &Daemon,
    channel: &str,
    members: usize,
    membership: pb::ChannelMembership,
) {
    let mut watch = daemon.watch().await;
    watch
        .wait_for(
            &format!("{channel} with {members} members, {membership:?}"),
            WAIT,
            |view| {
                view.conversation(channel)
                    .and_then(|conversation| conversation.channel.as_ref())
                    .is_some_and(|info| {
                        info.members.len() == members && info.membership == membership as i32
                    })
            },
        )
        .await;
}

/// The channel's messages (not its lines) as `daemon` holds them, in the
/// owner's order.
async fn said(daemon: &Daemon, channel: &str) -> Vec<String> {
    let mut messages: Vec<pb::ChatMessage> = history_all(daemon, channel)
        .await
        .into_iter()
        .filter(|message| message.line == pb::ChannelLine::None as i32)
        .collect();
    messages.sort_by_key(|message| message.channel_seq);
    messages.into_iter().map(|message| message.body).collect()
}

/// Waits until `daemon` holds `count` messages in `channel`, all placed by
/// the owner.
async fn wait_said(daemon: &Daemon, channel: &str, count: usize) -> Vec<String> {
    let mut watch = daemon.watch().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let history = history_all(daemon, channel).await;
        let placed = history
            .iter()
            .filter(|message| {
                message.line == pb::ChannelLine::None as i32 && message.channel_seq > 0
            })
            .count();
        if placed >= count {
            return said(daemon, channel).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{placed} of {count} messages placed: {history:#?}"
        );
        watch.next(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn members_join_by_token_hear_each_other_in_order_and_a_kicked_one_hears_no_more() {
    let alice = Actor::new("alice").await;
    let bob = Actor::new("bob").await;
    let carol = Actor::new("carol").await;
    let alice_daemon = Daemon::start(&alice).await;
    let bob_daemon = Daemon::start(&bob).await;
    let carol_daemon = Daemon::start(&carol).await;

    let channel = create(&alice_daemon, "#kirc").await;
    let token = invite(&alice_daemon, "#kirc").await;
    assert!(token.starts_with("kircc1:"));
    assert_eq!(join(&bob_daemon, &token).await, channel);
    wait_channel(&bob_daemon, &channel, 2, pb::ChannelMembership::Joined).await;
    assert_eq!(join(&carol_daemon, &token).await, channel);
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
    act(&alice_daemon, "#kirc", pb::ChannelLine::Kick, "carol").await;
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
