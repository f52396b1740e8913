//! Channels: making one, inviting, joining, acting on it, and waiting for
//! what members see.

use std::time::Duration;

use kirc_proto::v1 as pb;

use crate::{Daemon, history_all};

/// How long a channel's step may take to reach a member.
const WAIT: Duration = Duration::from_secs(60);

pub async fn create_channel(daemon: &Daemon, name: &str) -> String {
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

pub async fn invite_to(daemon: &Daemon, channel: &str) -> String {
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

pub async fn join_by(daemon: &Daemon, token: &str) -> String {
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

pub async fn act(
    daemon: &Daemon,
    channel: &str,
    act: pb::ChannelLine,
    member: &str,
    text: &str,
) -> Result<(), tonic::Status> {
    daemon
        .client()
        .await
        .channel_act(pb::ChannelActRequest {
            channel: channel.into(),
            act: act as i32,
            member: member.into(),
            text: text.into(),
        })
        .await
        .map(drop)
}

/// Waits until `daemon` shows `channel` with `members` members and this
/// actor's membership `membership`.
pub async fn wait_channel(
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
pub async fn said(daemon: &Daemon, channel: &str) -> Vec<String> {
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
pub async fn wait_said(daemon: &Daemon, channel: &str, count: usize) -> Vec<String> {
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
